//! summary.json's resource figures: what a case's processes (taskbench, its Python harnesses) and its
//! broker held and used, from the samples taken once per interval — per case, and per timeline interval.

use crate::resources::{self, BrokerFigures, ProcessFigures, ResourceSeries};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A case's resources over its measured phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourcesSummary {
    /// taskbench first, then each harness (`harness-<worker>`).
    pub processes: Vec<ProcessFigures>,
    /// The broker's own memory figures (Redis `INFO memory`); `null` when not measured.
    pub broker: Option<BrokerFigures>,
    /// Why the broker's memory is not measured; `null` when it is or the case has no broker.
    pub broker_unmeasured: Option<String>,
    /// A process's busiest thread used this share of a core or more on average: the generator, not the
    /// path, set the pace.
    pub saturated_at: f64,
    /// The processes that reached `saturated_at`, by name.
    pub saturated: Vec<String>,
    /// Some process (taskbench or a harness) was saturated.
    pub generator_limited: bool,
}

impl ResourcesSummary {
    /// The case's figures from its samples; `None` when nothing was sampled in the measured phase.
    pub fn of(series: &ResourceSeries) -> Option<ResourcesSummary> {
        let processes = series.process_figures();
        if processes.is_empty() {
            return None;
        }
        let saturated: Vec<String> = resources::saturated(&processes)
            .into_iter()
            .map(String::from)
            .collect();
        Some(ResourcesSummary {
            broker: series.broker_figures(),
            broker_unmeasured: series.broker_unmeasured.clone(),
            saturated_at: resources::SATURATED,
            generator_limited: !saturated.is_empty(),
            saturated,
            processes,
        })
    }

    /// The `rss_growth_per_10k` figure: the largest growth among the processes (bytes).
    pub fn rss_growth_per_10k(&self) -> Option<f64> {
        resources::largest_growth(&self.processes)
    }

    /// The `cpu_per_publish` figure: every process's CPU per publish added up (ns).
    pub fn cpu_per_publish_ns(&self) -> Option<f64> {
        resources::cpu_per_publish(&self.processes)
    }

    /// taskbench's own figures (the first process).
    pub fn taskbench(&self) -> Option<&ProcessFigures> {
        self.processes.first()
    }

    /// The harnesses' figures.
    pub fn harnesses(&self) -> &[ProcessFigures] {
        self.processes.get(1..).unwrap_or_default()
    }
}

/// The processes at the end of one timeline interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntervalResources {
    /// Process name -> resident memory (bytes).
    pub rss_bytes: IndexMap<String, u64>,
    /// Process name -> its busiest thread's share of a core over the interval.
    pub busiest_thread: IndexMap<String, f64>,
    /// The broker's `used_memory` (bytes), when measured.
    pub broker_used_bytes: Option<u64>,
}

impl IntervalResources {
    /// The reading nearest the end of the interval `start`..`start + length`, within half an interval
    /// (the sampler reads at each interval's end, and once more when the case ends).
    pub fn at(series: &ResourceSeries, start: Duration, length: Duration) -> Option<Self> {
        let end = start + length;
        let sample = series
            .samples
            .iter()
            .filter_map(|s| s.at.map(|at| (at.abs_diff(end), s)))
            .filter(|(off, _)| *off <= length / 2)
            .min_by_key(|(off, _)| *off)?
            .1;
        let mut rss_bytes = IndexMap::new();
        let mut busiest_thread = IndexMap::new();
        for (w, r) in series.processes.iter().zip(&sample.processes) {
            if let Some(r) = r {
                rss_bytes.insert(w.name.clone(), r.rss_bytes);
                busiest_thread.insert(w.name.clone(), (r.busiest_thread * 1e3).round() / 1e3);
            }
        }
        Some(IntervalResources {
            rss_bytes,
            busiest_thread,
            broker_used_bytes: sample.broker.map(|b| b.used_bytes),
        })
    }
}
