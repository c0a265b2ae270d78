//! What a case counted besides its latencies — AMQP flow control, the Python harnesses and their samplers,
//! what the queue held before — as typed fields (summary.json's `facts`), with the sentences people read
//! rendered from them here, in one place.
//!
//! A backend fills a [`CaseFacts`] when its case ends; the engine keeps it on the case's result. The
//! sentences that explain a path (what its latency means, how its pool works) are not facts: they stay
//! the backend's notes, the same words for every case on that path, so a run prints each once.

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

impl CaseFacts {
    /// How long AMQP flow control blocked publishing (ns); `None` on a path that does not watch for it.
    pub fn blocked_ns(&self) -> Option<f64> {
        self.flow_control.as_ref().map(|f| f.blocked_ns as f64)
    }

    /// The Python harnesses' busy share; `None` for other clients and in an open loop.
    pub fn harness_busy(&self) -> Option<f64> {
        self.python.as_ref().and_then(|p| p.busy_share)
    }

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

mod python;

pub use python::{HarnessDeath, ProfilerFacts, PythonFacts, PythonVersions};

#[cfg(test)]
mod tests;
