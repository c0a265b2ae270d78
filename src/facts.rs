//! What a case counted besides its latencies — AMQP flow control, the Python harnesses and their samplers,
//! what the queue held before — as typed fields (summary.json's `facts`), with the sentences people read
//! rendered from them here, in one place.
//!
//! A backend fills a [`CaseFacts`] when its case ends; the engine keeps it on the case's result. The
//! sentences that explain a path (what its latency means, how its pool works) are not facts: they stay
//! the backend's notes, the same words for every case on that path, so a run prints each once.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Everything a case's backend counted that is not a publish's latency. Each section is absent when the
/// case's backend has nothing of the kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CaseFacts {
    /// AMQP's connection.blocked and connection.unblocked on the case's watched connections (the
    /// `acquire` and `pooled` paths).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_control: Option<FlowControl>,
    /// The Python harnesses of a `celery` or `kombu` case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<PythonFacts>,
    /// Messages the queue (or Redis lists) held before the case started; they were left in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_held_before: Option<u64>,
}

/// AMQP flow control seen on a case's connections: the broker's memory or disk alarm.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FlowControl {
    /// connection.blocked received.
    pub blocked: u64,
    /// connection.unblocked received (fewer than `blocked`: still blocked when the case ended).
    pub unblocked: u64,
    /// The broker's reason for the first block (e.g. "low on memory").
    pub reason: Option<String>,
    /// Publishing blocked in total, summed over the connections (ns).
    pub blocked_ns: u64,
    /// The longest single block (ns).
    pub longest_blocked_ns: u64,
}

/// The Python harness processes of a `celery` or `kombu` case.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PythonFacts {
    /// `celery` or `kombu`.
    pub client: String,
    /// The interpreter the case asked for.
    pub interpreter: String,
    /// What the harnesses reported when they came up; absent when none did.
    pub versions: Option<PythonVersions>,
    /// One harness process per publisher.
    pub pids: Vec<u32>,
    /// Stage name -> the Celery or kombu functions timed as that stage.
    pub stages: BTreeMap<String, Vec<String>>,
    /// Publishes the harnesses made, warm-up included.
    pub published: u64,
    /// Calls timed as stages, warm-up included.
    pub timed_calls: u64,
    /// Time the harnesses spent inside the publish call, summed (ns, warm-up included).
    pub busy_ns: u64,
    /// From each harness's first publish to its last, summed (ns).
    pub span_ns: u64,
    /// `busy_ns / span_ns`: the share of their time the harnesses spent publishing; the rest waited for
    /// the next command (the pipe round trip and the engine). `null` in an open loop, where waiting for
    /// the schedule is the point.
    pub busy_share: Option<f64>,
    /// `timed_calls / published`.
    pub timed_calls_per_publish: Option<f64>,
    /// py-spy's samplers under `--profile cpu`, one entry per view.
    pub profilers: Vec<ProfilerFacts>,
    /// The queue the harnesses published to, where the delivered count was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Where the user's app routes the task (its `task_routes` or the task's own `queue`); absent when
    /// nothing routes it. Unless the case set `publish_to_routed_queue`, `queue` is taskbench's own
    /// `taskbench.<routed_queue>`, so that the app's workers never get the messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routed_queue: Option<String>,
    /// Harnesses that died during the case: each one's publisher counted one `harness` error and stopped
    /// there, and the case went on with the others.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub died: Vec<HarnessDeath>,
    /// The folder where what the harnesses printed (the app's stdout and stderr) was kept, one
    /// `harness-<worker>.log` each; absent when none printed anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<String>,
}

/// A harness that died in the middle of a case.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HarnessDeath {
    pub pid: u32,
    /// Seconds after the measured publishes began; `None` when it died in the warm-up.
    pub after_s: Option<f64>,
    /// How it ended ("exited in the middle of the case (was killed by signal 9)").
    pub how: String,
    /// The last lines it printed, or "it printed nothing".
    pub last_output: String,
}

impl HarnessDeath {
    /// "harness pid 7 exited in the middle of the case (was killed by signal 9) 1.20 s into the measured
    /// publishes: ...".
    pub fn note(&self) -> String {
        let when = match self.after_s {
            Some(s) => format!("{s:.2} s into the measured publishes"),
            None => "during the warm-up".into(),
        };
        format!(
            "harness pid {} {} {when}: its publisher stopped there (one harness error), the others went on; {}",
            self.pid, self.how, self.last_output
        )
    }
}

/// The versions a harness reported.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PythonVersions {
    pub celery: String,
    pub kombu: String,
    pub python: String,
    /// The interpreter's own path (`sys.executable`).
    pub executable: String,
}

/// What py-spy recorded for one view of a case, summed over its harnesses.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProfilerFacts {
    /// `cpu` or `pywall`.
    pub view: String,
    /// The view's name in sentences ("Python CPU profile").
    pub title: String,
    /// Samples taken.
    pub samples: u64,
    /// Samples py-spy could not read.
    pub failed: u64,
    /// Why a harness's sampler recorded nothing, one entry per such sampler.
    pub errors: Vec<String>,
    /// What the view does with the samples it could not read, when it keeps them.
    pub failed_drawn_as: Option<String>,
}

impl CaseFacts {
    /// True when there is nothing to say.
    pub fn is_empty(&self) -> bool {
        *self == CaseFacts::default()
    }

    /// The facts of one case run as shards, added up: counts and times summed, the longest block the
    /// longest of all, pids and sampler failures listed from every shard, the shares taken from the sums.
    /// A queue's count before the case is the largest any shard saw (shards share their queue).
    pub fn merged<'a>(
        parts: impl IntoIterator<Item = &'a CaseFacts>,
        open_loop: bool,
    ) -> CaseFacts {
        let mut out = CaseFacts::default();
        for part in parts {
            // Every field named: a section added later fails to compile here until merge decides.
            let CaseFacts {
                flow_control,
                python,
                queue_held_before,
            } = part;
            if let Some(f) = flow_control {
                let m = out.flow_control.get_or_insert_with(FlowControl::default);
                m.blocked += f.blocked;
                m.unblocked += f.unblocked;
                m.reason = m.reason.take().or_else(|| f.reason.clone());
                m.blocked_ns += f.blocked_ns;
                m.longest_blocked_ns = m.longest_blocked_ns.max(f.longest_blocked_ns);
            }
            if let Some(p) = python {
                match &mut out.python {
                    None => out.python = Some(p.clone()),
                    Some(m) => m.add(p),
                }
            }
            out.queue_held_before = out.queue_held_before.max(*queue_held_before);
        }
        out.python = out.python.map(|p| p.with_shares(open_loop));
        out
    }

    /// The sentences for people: what the harnesses were, flow control and what the queue held, then the
    /// harnesses' own figures.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = self.described();
        if let Some(p) = &self.python {
            notes.extend(p.figures());
        }
        notes
    }

    /// The sentences of [`CaseFacts::notes`] without the Python harnesses' own figures, which a table
    /// shows better when there are many cases (what happened to the harnesses stays: it is no figure).
    pub fn described(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if let Some(p) = &self.python {
            notes.extend(p.described());
        }
        if let Some(f) = &self.flow_control {
            notes.push(f.note());
        }
        if let Some(n) = self.queue_held_before {
            notes.push(format!(
                "the queue held {n} messages before the case; they were left in place"
            ));
        }
        if let Some(p) = &self.python {
            notes.extend(p.events());
        }
        notes
    }
}

impl FlowControl {
    /// Always said on watched paths, so "no block" is stated, not implied.
    pub fn note(&self) -> String {
        if self.blocked == 0 {
            return "flow control: connection.blocked 0 times (no memory or disk alarm during the case); \
                    credit-flow throttling sends no event, see docs/amqp.md"
                .into();
        }
        let ms = |ns: u64| humantime::format_duration(Duration::from_millis(ns / 1_000_000));
        let mut note = format!(
            "flow control: connection.blocked {} times ({:?}), connection.unblocked {} times; \
             publishing blocked {} in total, longest {}",
            self.blocked,
            self.reason.as_deref().unwrap_or_default(),
            self.unblocked,
            ms(self.blocked_ns),
            ms(self.longest_blocked_ns)
        );
        if self.unblocked < self.blocked {
            note.push_str("; still blocked when the case ended (its time counted until the connection closed)");
        }
        note
    }
}

impl PythonFacts {
    /// Fills the shares from the counts (`open_loop`: the busy share means nothing there).
    pub fn with_shares(mut self, open_loop: bool) -> Self {
        self.busy_share =
            (self.span_ns > 0 && !open_loop).then(|| self.busy_ns as f64 / self.span_ns as f64);
        self.timed_calls_per_publish = (self.published > 0 && self.timed_calls > 0)
            .then(|| self.timed_calls as f64 / self.published as f64);
        self
    }

    /// The harnesses' sentences: those of [`PythonFacts::described`], then one per figure particular to
    /// this case ([`PythonFacts::figures`]), so that the first kind groups across cases, then what
    /// happened to them ([`PythonFacts::events`]).
    pub fn notes(&self) -> Vec<String> {
        let mut notes = self.described();
        notes.extend(self.figures());
        notes.extend(self.events());
        notes
    }

    /// What the harnesses were and what they timed: the same words for every case of one client on one
    /// installation.
    pub fn described(&self) -> Vec<String> {
        let mut notes = Vec::new();
        match &self.versions {
            Some(v) => notes.push(format!(
                "client {}: Celery {}, kombu {}, Python {} ({}); one harness process per publisher",
                self.client, v.celery, v.kombu, v.python, v.executable
            )),
            None => notes.push(format!("client {} ({})", self.client, self.interpreter)),
        }
        if !self.stages.is_empty() {
            let map: Vec<String> = self
                .stages
                .iter()
                .map(|(stage, fns)| format!("{stage} = {}", fns.join(" + ")))
                .collect();
            notes.push(format!(
                "stages timed in Python (exclusive: a timed call inside another counts only in its own stage): {}",
                map.join("; ")
            ));
        }
        notes.extend(self.routing_note());
        for p in &self.profilers {
            notes.extend(p.errors.iter().map(|why| format!("no {}: {why}", p.title)));
        }
        notes
    }

    /// Where the app routes the task and where the harnesses published it; `None` when nothing routes it.
    pub fn routing_note(&self) -> Option<String> {
        let routed = self.routed_queue.as_deref()?;
        let queue = self.queue.as_deref().unwrap_or(routed);
        Some(if queue == routed {
            format!(
                "routing: the app routes the task to queue {routed:?}; published into it (publish_to_routed_queue = true) and counted there; the messages were left in it"
            )
        } else {
            format!(
                "routing: the app routes the task to queue {routed:?}; its router ran on every publish, then taskbench published to its own queue {queue:?} instead, so that the app's workers get nothing, and counted there (publish_to_routed_queue = true publishes into {routed:?})"
            )
        })
    }

    /// This case's own figures, a sentence each: which processes, how busy they were, how many calls
    /// were timed, how many samples py-spy took.
    pub fn figures(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if !self.pids.is_empty() {
            notes.push(self.pids_note());
        }
        notes.extend(self.profilers.iter().filter_map(ProfilerFacts::note));
        if let Some(share) = self.busy_share {
            notes.push(format!(
                "the harnesses were inside the publish call {:.0}% of the time from their first publish to their last (warm-up included); the rest was waiting for the next command: the pipe round trip and the engine",
                100.0 * share
            ));
        }
        if let Some(calls) = self.timed_calls_per_publish {
            notes.push(format!(
                "{calls:.1} timed calls per publish (warm-up included)"
            ));
        }
        notes
    }

    /// What happened to the harnesses, a sentence each, shown in full (not a table's column): how many
    /// died and when, and where what they printed was kept.
    pub fn events(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if !self.died.is_empty() {
            notes.push(format!(
                "{} of {} harnesses died during the case",
                self.died.len(),
                self.pids.len().max(self.died.len())
            ));
            notes.extend(self.died.iter().map(HarnessDeath::note));
        }
        if let Some(dir) = &self.logs {
            notes.push(format!(
                "what the harnesses printed (the app's stdout and stderr) is kept in {dir}"
            ));
        }
        notes
    }

    /// Adds another shard's harnesses of the same case.
    fn add(&mut self, other: &PythonFacts) {
        // Every field named: a field added later fails to compile here until merge decides.
        let PythonFacts {
            client: _,
            interpreter: _,
            versions,
            queue,
            routed_queue,
            pids,
            stages: _,
            published,
            timed_calls,
            busy_ns,
            span_ns,
            busy_share: _,
            timed_calls_per_publish: _,
            profilers,
            died,
            logs,
        } = other;
        self.versions = self.versions.take().or_else(|| versions.clone());
        self.queue = self.queue.take().or_else(|| queue.clone());
        self.routed_queue = self.routed_queue.take().or_else(|| routed_queue.clone());
        self.pids.extend(pids);
        self.published += published;
        self.timed_calls += timed_calls;
        self.busy_ns += busy_ns;
        self.span_ns += span_ns;
        self.died.extend(died.iter().cloned());
        self.logs = self.logs.take().or_else(|| logs.clone());
        for p in profilers {
            match self.profilers.iter_mut().find(|m| m.view == p.view) {
                Some(m) => {
                    m.samples += p.samples;
                    m.failed += p.failed;
                    m.errors.extend(p.errors.iter().cloned());
                }
                None => self.profilers.push(p.clone()),
            }
        }
    }

    /// Which processes published, for a reader matching them to py-spy's output or `ps`.
    pub fn pids_note(&self) -> String {
        let pids: Vec<String> = self.pids.iter().map(u32::to_string).collect();
        format!("harness pid {}", pids.join(", "))
    }
}

impl ProfilerFacts {
    /// How many samples the view took and could not read; `None` when it took none.
    pub fn note(&self) -> Option<String> {
        let all = self.samples + self.failed;
        if all == 0 {
            return None;
        }
        let kept = match (&self.failed_drawn_as, self.failed) {
            (Some(how), 1..) => format!(", {how}"),
            _ => String::new(),
        };
        Some(format!(
            "{}: py-spy took {} samples and failed {} ({:.1}%){kept}",
            self.title,
            self.samples,
            self.failed,
            100.0 * self.failed as f64 / all as f64
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn celery() -> PythonFacts {
        PythonFacts {
            client: "celery".into(),
            interpreter: "python3".into(),
            versions: Some(PythonVersions {
                celery: "5.7.0".into(),
                kombu: "5.7.0".into(),
                python: "3.11.7".into(),
                executable: "/venv/bin/python".into(),
            }),
            pids: vec![41, 42],
            stages: BTreeMap::from([("send".into(), vec!["Producer.publish".into()])]),
            published: 100,
            timed_calls: 900,
            busy_ns: 934,
            span_ns: 1000,
            busy_share: None,
            timed_calls_per_publish: None,
            profilers: vec![],
            queue: Some("taskbench".into()),
            routed_queue: None,
            died: vec![],
            logs: None,
        }
        .with_shares(false)
    }

    #[test]
    fn a_harness_that_died_is_named_with_when_and_what_it_printed_last() {
        let p = PythonFacts {
            died: vec![HarnessDeath {
                pid: 42,
                after_s: Some(1.25),
                how: "exited in the middle of the case (was killed by signal 9)".into(),
                last_output: "its output (/tmp/x/harness-1.log) ends: publishing".into(),
            }],
            ..celery()
        };
        let figures = p.events();
        assert!(
            figures.contains(&"1 of 2 harnesses died during the case".to_string()),
            "{figures:?}"
        );
        assert!(figures.contains(&"harness pid 42 exited in the middle of the case (was killed by signal 9) 1.25 s into the measured publishes: its publisher stopped there (one harness error), the others went on; its output (/tmp/x/harness-1.log) ends: publishing".to_string()), "{figures:?}");
        // Shards list the deaths of each.
        let merged = CaseFacts::merged(
            [
                &CaseFacts {
                    python: Some(p.clone()),
                    ..CaseFacts::default()
                },
                &CaseFacts {
                    python: Some(p.clone()),
                    ..CaseFacts::default()
                },
            ],
            false,
        );
        assert_eq!(merged.python.unwrap().died.len(), 2);
        // A case where none died says nothing of it, in its notes or its JSON.
        assert!(celery().events().is_empty());
        assert!(p.notes().ends_with(&figures));
        assert!(!serde_json::to_string(&celery()).unwrap().contains("died"));
    }

    #[test]
    fn two_cases_of_one_client_share_every_sentence_but_their_figures() {
        let a = celery();
        let b = PythonFacts {
            pids: vec![77],
            busy_ns: 500,
            ..celery()
        }
        .with_shares(false);
        let (na, nb) = (a.notes(), b.notes());
        let shared: Vec<&String> = na.iter().filter(|n| nb.contains(n)).collect();
        assert_eq!(
            shared,
            [&na[0], &na[1], &na[4]],
            "the version line, the stage map and the timed calls are the same words for both"
        );
        assert_eq!(a.described(), b.described());
        assert_eq!(na[2], "harness pid 41, 42");
        assert!(na[3].contains("inside the publish call 93% of the time"));
        assert!(nb[3].contains("inside the publish call 50% of the time"));
    }

    #[test]
    fn a_routed_task_says_where_the_app_sends_it_and_where_it_went() {
        assert_eq!(celery().routing_note(), None, "nothing routes the task");
        let derived = PythonFacts {
            queue: Some("taskbench.emails".into()),
            routed_queue: Some("emails".into()),
            ..celery()
        };
        let note = derived.routing_note().unwrap();
        assert!(
            note.starts_with("routing: the app routes the task to queue \"emails\";")
                && note.contains("its own queue \"taskbench.emails\" instead"),
            "{note}"
        );
        assert!(derived.described().contains(&note));
        let into_app = PythonFacts {
            queue: Some("emails".into()),
            ..derived.clone()
        };
        assert!(
            into_app
                .routing_note()
                .unwrap()
                .contains("published into it (publish_to_routed_queue = true)")
        );
        let json = serde_json::to_value(&derived).unwrap();
        assert_eq!(
            (&json["queue"], &json["routed_queue"]),
            (&"taskbench.emails".into(), &"emails".into())
        );
        let back: PythonFacts = serde_json::from_value(json).unwrap();
        assert_eq!(back, derived);
    }

    #[test]
    fn a_harness_that_never_came_up_is_named_by_its_interpreter() {
        let p = PythonFacts {
            versions: None,
            pids: vec![],
            ..celery()
        };
        assert_eq!(p.notes()[0], "client celery (python3)");
    }

    #[test]
    fn an_open_loop_has_no_busy_share() {
        let p = celery().with_shares(true);
        assert_eq!(p.busy_share, None);
        assert!(
            !p.notes()
                .iter()
                .any(|n| n.contains("inside the publish call"))
        );
    }

    #[test]
    fn shards_add_up_to_the_shares_of_their_sums() {
        let a = CaseFacts {
            python: Some(celery()),
            flow_control: Some(FlowControl {
                blocked: 1,
                unblocked: 1,
                reason: Some("low on memory".into()),
                blocked_ns: 10,
                longest_blocked_ns: 10,
            }),
            queue_held_before: Some(4),
        };
        let b = CaseFacts {
            python: Some(PythonFacts {
                pids: vec![77],
                busy_ns: 66,
                span_ns: 1000,
                ..celery()
            }),
            flow_control: Some(FlowControl {
                blocked: 2,
                unblocked: 1,
                reason: None,
                blocked_ns: 30,
                longest_blocked_ns: 25,
            }),
            queue_held_before: Some(3),
        };
        let m = CaseFacts::merged([&a, &b], false);
        let p = m.python.unwrap();
        assert_eq!(p.pids, [41, 42, 77]);
        assert_eq!(p.busy_share, Some(0.5), "(934 + 66) / (1000 + 1000)");
        assert_eq!(p.timed_calls_per_publish, Some(9.0));
        let f = m.flow_control.unwrap();
        assert_eq!(
            (f.blocked, f.unblocked, f.blocked_ns, f.longest_blocked_ns),
            (3, 2, 40, 25)
        );
        assert_eq!(f.reason.as_deref(), Some("low on memory"));
        assert_eq!(m.queue_held_before, Some(4));
    }

    #[test]
    fn flow_control_says_no_block_and_how_long_a_block_lasted() {
        let none = FlowControl::default();
        assert!(
            none.note()
                .starts_with("flow control: connection.blocked 0 times")
        );
        let blocked = FlowControl {
            blocked: 2,
            unblocked: 1,
            reason: Some("low on memory".into()),
            blocked_ns: 1_500_000_000,
            longest_blocked_ns: 1_000_000_000,
        };
        assert_eq!(
            blocked.note(),
            "flow control: connection.blocked 2 times (\"low on memory\"), connection.unblocked 1 times; \
             publishing blocked 1s 500ms in total, longest 1s; still blocked when the case ended (its time \
             counted until the connection closed)"
        );
    }

    #[test]
    fn a_profiler_says_its_failures_and_how_they_are_drawn() {
        let p = ProfilerFacts {
            view: "pywall".into(),
            title: "Python wall-clock (pywall) profile".into(),
            samples: 90,
            failed: 10,
            errors: vec![],
            failed_drawn_as: Some("drawn as the frame (unreadable)".into()),
        };
        assert_eq!(
            p.note().unwrap(),
            "Python wall-clock (pywall) profile: py-spy took 90 samples and failed 10 (10.0%), drawn as the frame (unreadable)"
        );
        let quiet = ProfilerFacts {
            samples: 0,
            failed: 0,
            ..p
        };
        assert_eq!(quiet.note(), None);
    }

    #[test]
    fn empty_sections_are_left_out_of_the_json() {
        let facts = CaseFacts {
            queue_held_before: Some(3),
            ..CaseFacts::default()
        };
        let json = serde_json::to_string(&facts).unwrap();
        assert_eq!(json, r#"{"queue_held_before":3}"#);
        assert_eq!(serde_json::from_str::<CaseFacts>(&json).unwrap(), facts);
        assert!(serde_json::from_str::<CaseFacts>("{}").unwrap().is_empty());
    }
}
