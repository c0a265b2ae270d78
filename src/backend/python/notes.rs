//! What a reader of a celery or kombu case's numbers must know: the client and its versions, what the path
//! calls, how latency was measured, the py-spy sampling and its failures, and the harnesses' busy share.

use super::protocol::{Ready, Stats};
use super::spy;
use super::target::Shared;
use crate::catalog::Client;

/// What `client` does on `path` for every publish.
pub(super) fn path_note(client: Client, path: &str) -> &'static str {
    match (client, path) {
        (Client::Celery, "fresh") => {
            "celery fresh: task.apply_async with broker_pool_limit = 0, so every call opens a connection and closes it"
        }
        (Client::Celery, "acquire") => {
            "celery acquire: task.apply_async as shipped, a producer checked out of the app's pool and returned on every call (what delay() does)"
        }
        (Client::Celery, _) => {
            "celery pooled: one producer acquired once and passed to every task.apply_async(producer=...)"
        }
        (_, "fresh") => "kombu fresh: a Connection and a Producer per publish, closed after it",
        (_, "acquire") => {
            "kombu acquire: kombu.pools.producers[connection].acquire() around every publish"
        }
        _ => "kombu pooled: one Producer on one connection kept for the whole case",
    }
}

/// The case's notes, after the broker's: `ready` is what each harness said when it started (empty if none
/// did), `profile` whether py-spy sampled them (`--profile cpu`), `open_loop` whether the case ran on a
/// schedule.
pub(super) fn case_notes(
    ready: &[Ready],
    shared: &Shared,
    path_note: &str,
    profile: bool,
    open_loop: bool,
) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(r) = ready.first() {
        let pids: Vec<String> = ready.iter().map(|r| r.pid.to_string()).collect();
        notes.push(format!(
            "client {}: Celery {}, kombu {}, Python {} ({}); one harness process per publisher (pid {})",
            shared.client,
            r.celery,
            r.kombu,
            r.python,
            r.executable,
            pids.join(", ")
        ));
        notes.push(path_note.to_string());
        notes.push("latency is measured inside Python (time.perf_counter_ns around the apply_async or publish call) and recorded exactly; throughput also pays the pipe round trip to the harness".into());
        if !r.stages.is_empty() {
            let map: Vec<String> = r
                .stages
                .iter()
                .map(|(stage, fns)| format!("{stage} = {}", fns.join(" + ")))
                .collect();
            notes.push(format!(
                "stages timed in Python (exclusive: a timed call inside another counts only in its own stage): {}",
                map.join("; ")
            ));
        }
    } else {
        notes.push(format!(
            "client {} ({})",
            shared.client,
            shared.python.display()
        ));
    }
    profile_notes(shared, profile, &mut notes);
    let stats = shared.stats.lock().expect("not poisoned");
    load_notes(&stats, open_loop, &mut notes);
    notes
}

/// Why a profile is missing, and with `profile` (`--profile cpu`) how py-spy sampled and how often it
/// failed.
fn profile_notes(shared: &Shared, profile: bool, notes: &mut Vec<String>) {
    let profiles = shared.profiles.lock().expect("not poisoned");
    for (sampling, p) in profiles.iter() {
        if let Err(why) = p {
            notes.push(format!("no {}: {why}", sampling.profile_name()));
        }
    }
    if !profile {
        return;
    }
    notes.push(format!(
        "--profile cpu: two py-spy processes sampled each harness at {} Hz over the measured publishes only (attached after warm-up), {} ns per sample: one pausing it for each sample and leaving idle samples out (the cpu view, Python frames on CPU), one with --nonblocking --idle (the pywall view, Python frames on the wall clock, waiting on the broker included)",
        spy::RATE_HZ,
        spy::NS_PER_SAMPLE
    ));
    for sampling in [spy::Sampling::Cpu, spy::Sampling::Wall] {
        let (samples, errors) = profiles
            .iter()
            .filter(|(s, _)| *s == sampling)
            .filter_map(|(_, r)| r.as_ref().ok())
            .fold((0, 0), |(n, e), r| (n + r.samples, e + r.errors));
        if samples + errors > 0 {
            let kept = match sampling {
                spy::Sampling::Wall if errors > 0 => format!(
                    ", drawn as the frame {}: the harness's stack changed while py-spy read it, so it was running Python, not waiting",
                    spy::UNREADABLE
                ),
                _ => String::new(),
            };
            notes.push(format!(
                "{}: py-spy took {samples} samples and failed {errors} ({:.1}%){kept}",
                sampling.profile_name(),
                100.0 * errors as f64 / (samples + errors) as f64
            ));
        }
    }
}

/// From the harnesses' counters: how busy they were (closed loop only: on a schedule they wait for it) and
/// how many timed calls a publish made.
fn load_notes(stats: &[Stats], open_loop: bool, notes: &mut Vec<String>) {
    let published: u64 = stats.iter().map(|s| s.published).sum();
    let calls: u64 = stats.iter().map(|s| s.stage_calls).sum();
    let (busy, span): (u64, u64) = stats
        .iter()
        .fold((0, 0), |(b, s), x| (b + x.busy_ns, s + x.span_ns));
    if span > 0 && !open_loop {
        notes.push(format!(
            "the harnesses were inside the publish call {:.0}% of the time from their first publish to their last (warm-up included); the rest was waiting for the next command: the pipe round trip and the engine",
            100.0 * busy as f64 / span as f64
        ));
    }
    if published > 0 && calls > 0 {
        notes.push(format!(
            "{:.1} timed calls per publish (warm-up included)",
            calls as f64 / published as f64
        ));
    }
}
