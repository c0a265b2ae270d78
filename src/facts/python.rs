//! The facts of a `celery` or `kombu` case: its Python harnesses (versions, pids, counters, deaths) and what
//! py-spy recorded of them, with the sentences rendered from them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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
    /// `busy_ns / span_ns`: the share of their time the harnesses spent publishing; the rest was their own
    /// loop between publishes (answers written, the next command read, the scheduler's preemptions there)
    /// and any wait for a command (a closed loop keeps the next ones queued). `null` in an open loop, where
    /// waiting for the schedule is the point.
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
    /// The share of the harnesses' measured time the view sampled (its turns), from which its ns were
    /// scaled up to all of it; absent before the views took turns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampled_share: Option<f64>,
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
                "the harnesses were inside the publish call {:.0}% of the time from their first publish to their last (warm-up included); the rest was the harness's own loop between publishes and any wait for a command",
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
    pub(super) fn add(&mut self, other: &PythonFacts) {
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
        let scaled = self.sampled_share.map_or(String::new(), |share| {
            format!(
                ", in its turns over {:.0}% of the measured publishes' time, its ns scaled up to all of it",
                100.0 * share
            )
        });
        Some(format!(
            "{}: py-spy took {} samples and failed {} ({:.1}%){kept}{scaled}",
            self.title,
            self.samples,
            self.failed,
            100.0 * self.failed as f64 / all as f64
        ))
    }
}
