//! The functions that hold the most of a Python publish: each one's inclusive share (itself and everything it
//! called) of the publish's samples in a celery or kombu case's folded stacks, so a run can say that the
//! app's signal handler costs a quarter of a publish without anyone opening a flamegraph.

use super::folded::Folded;
use std::collections::{BTreeMap, BTreeSet};

/// The file the harness script runs as (`backend::python` writes it so): its frames are taskbench's, not the
/// app's.
const HARNESS_SCRIPT: &str = "taskbench_harness.py";

/// A function that hands at least this share of its inclusive time to one callee says little its callee
/// does not, and is left out in favour of it (80 %: a chain such as `send_method` -> `_write_frame` is one
/// line, and five lines name five places).
const PASS_THROUGH: f64 = 0.8;

/// One function and its inclusive share of the publish.
#[derive(Debug, Clone, PartialEq)]
pub struct TopFrame {
    /// `name (file:line)` as py-spy names it; `name (file)` when it was sampled on several lines.
    pub function: String,
    /// Of the samples inside the publish call, those in which the function was on the stack.
    pub share: f64,
}

/// A frame the harness adds rather than the app or its libraries: the markers for time outside a publish
/// (`(harness)`, `(unreadable)`) and the harness script's own functions (its `publish` closure, its stage
/// timers).
fn is_harness(frame: &str) -> bool {
    frame.starts_with('(') || frame.contains(&format!("({HARNESS_SCRIPT}:"))
}

/// A frame as (function, line): `Task.apply_async (celery/app/task.py:587)` is the function
/// `Task.apply_async (celery/app/task.py)` on line 587. A frame without a `(file:line)` is its own function.
fn function_of(frame: &str) -> (String, Option<&str>) {
    let split = frame
        .strip_suffix(')')
        .and_then(|f| f.rsplit_once(" ("))
        .and_then(|(name, place)| {
            let (file, line) = place.rsplit_once(':')?;
            line.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| (format!("{name} ({file})"), line))
        });
    match split {
        Some((function, line)) => (function, Some(line)),
        None => (frame.to_string(), None),
    }
}

/// The `n` functions with the largest inclusive share of the publish in `folded` (a celery or kombu case's
/// cpu or pywall profile), largest first. Only stacks inside a publish count (not `(harness)` and the other
/// markers), harness frames are skipped, and a function that hands [`PASS_THROUGH`] of its time to one
/// callee is left out (`apply_async` -> `send_task` is one story, told by the deeper frame).
pub fn top_frames(folded: &Folded, n: usize) -> Vec<TopFrame> {
    let mut publish_total = 0u64;
    let mut inclusive: BTreeMap<String, u64> = BTreeMap::new();
    let mut lines: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut to_callee: BTreeMap<(String, String), u64> = BTreeMap::new();
    for (stack, count) in folded.stacks() {
        if stack.starts_with('(') {
            continue;
        }
        publish_total += count;
        let frames: Vec<(String, Option<&str>)> = stack
            .split(';')
            .filter(|f| !is_harness(f))
            .map(function_of)
            .collect();
        let mut seen = BTreeSet::new();
        for (i, (function, line)) in frames.iter().enumerate() {
            if let Some(line) = line {
                lines
                    .entry(function.clone())
                    .or_default()
                    .insert(line.to_string());
            }
            // Recursion: a function counts once per stack.
            if !seen.insert(function) {
                continue;
            }
            *inclusive.entry(function.clone()).or_default() += count;
            if let Some((callee, _)) = frames[i + 1..].iter().find(|(f, _)| f != function) {
                *to_callee
                    .entry((function.clone(), callee.clone()))
                    .or_default() += count;
            }
        }
    }
    if publish_total == 0 {
        return Vec::new();
    }
    let mut most_to_one_callee: BTreeMap<&str, u64> = BTreeMap::new();
    for ((function, _), count) in &to_callee {
        let most = most_to_one_callee.entry(function).or_default();
        *most = (*most).max(*count);
    }
    let mut kept: Vec<(&String, u64)> = inclusive
        .iter()
        .filter(|(f, total)| {
            let most = most_to_one_callee.get(f.as_str()).copied().unwrap_or(0);
            (most as f64) < PASS_THROUGH * **total as f64
        })
        .map(|(f, total)| (f, *total))
        .collect();
    kept.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    kept.into_iter()
        .take(n)
        .map(|(function, total)| TopFrame {
            function: match lines.get(function).map(|l| l.iter().collect::<Vec<_>>()) {
                Some(one) if one.len() == 1 => {
                    let (name, file) = function
                        .rsplit_once(" (")
                        .expect("split from a (file:line)");
                    format!("{name} ({}:{})", file.trim_end_matches(')'), one[0])
                }
                _ => function.clone(),
            },
            share: total as f64 / publish_total as f64,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A celery publish as py-spy sees it through the harness: apply_async passes everything to send_task,
    /// which splits between the app's signal handler and kombu's publish.
    const CELERY: &str = "\
(harness) 5000
celery_publisher.<locals>.publish (taskbench_harness.py:222);Task.apply_async (celery/app/task.py:587) 20
celery_publisher.<locals>.publish (taskbench_harness.py:222);Task.apply_async (celery/app/task.py:587);Celery.send_task (celery/app/base.py:1033) 80
celery_publisher.<locals>.publish (taskbench_harness.py:222);Task.apply_async (celery/app/task.py:587);Celery.send_task (celery/app/base.py:1040);Signal.send (celery/utils/dispatch/signal.py:276);shop_tracing_before_publish (shop/celery.py:25) 240
celery_publisher.<locals>.publish (taskbench_harness.py:222);Task.apply_async (celery/app/task.py:587);Celery.send_task (celery/app/base.py:1050);Producer.publish (kombu/messaging.py:284);timed.<locals>.wrapper (taskbench_harness.py:59);Channel._basic_publish (amqp/channel.py:1696) 400
celery_publisher.<locals>.publish (taskbench_harness.py:222);Task.apply_async (celery/app/task.py:587);Celery.send_task (celery/app/base.py:1050);Producer.publish (kombu/messaging.py:284);Producer._prepare (kombu/messaging.py:400) 260
";

    fn shares(frames: &[TopFrame]) -> Vec<(String, String)> {
        frames
            .iter()
            .map(|f| (f.function.clone(), format!("{:.1}%", f.share * 100.0)))
            .collect()
    }

    #[test]
    fn names_the_frames_that_hold_the_publish_and_leaves_out_pass_throughs_and_the_harness() {
        let top = top_frames(&Folded::parse(CELERY).unwrap(), 5);
        assert_eq!(
            shares(&top),
            [
                // apply_async hands 98 % to send_task: told by send_task. send_task was sampled on three
                // lines, so it is named by its file alone.
                (
                    "Celery.send_task (celery/app/base.py)".into(),
                    "98.0%".into()
                ),
                (
                    "Producer.publish (kombu/messaging.py:284)".into(),
                    "66.0%".into()
                ),
                (
                    "Channel._basic_publish (amqp/channel.py:1696)".into(),
                    "40.0%".into()
                ),
                (
                    "Producer._prepare (kombu/messaging.py:400)".into(),
                    "26.0%".into()
                ),
                (
                    "shop_tracing_before_publish (shop/celery.py:25)".into(),
                    "24.0%".into()
                ),
            ]
        );
        // Signal.send hands everything to the handler; the harness's timer and publish closure never show.
        assert!(
            top_frames(&Folded::parse(CELERY).unwrap(), 20)
                .iter()
                .all(|f| !f.function.contains("Signal.send")
                    && !f.function.contains("taskbench_harness"))
        );
        assert_eq!(top_frames(&Folded::parse(CELERY).unwrap(), 2).len(), 2);
    }

    #[test]
    fn recursion_counts_once_and_no_publish_means_no_frames() {
        let folded = Folded::parse("publish (h.py:1);f (a.py:1);g (a.py:2);f (a.py:1) 10\npublish (h.py:1);g (a.py:3) 10\n").unwrap();
        let top = top_frames(&folded, 5);
        assert_eq!(
            shares(&top),
            [
                ("g (a.py)".into(), "100.0%".into()),
                ("publish (h.py:1)".into(), "100.0%".into()),
            ]
        );
        assert!(top_frames(&Folded::parse("(harness) 100\n").unwrap(), 5).is_empty());
    }
}
