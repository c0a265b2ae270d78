//! A concurrency sweep's results (`run --sweep concurrency=...`): each case's throughput and latency per
//! level, the Universal Scalability Law fitted to them (`usl`), `sweep.json` in the run folder and the table
//! on the terminal.

use super::usl::{self, UslFit};
use crate::human::{human_ns, human_rate};
use crate::record::CaseResult;
use comfy_table::{Table, presets};
use serde::{Deserialize, Serialize};
use std::fmt::Write;

/// The sweep's file in a run folder.
pub const SWEEP_JSON: &str = "sweep.json";

/// The name of `case` run at concurrency `n` in a sweep (its files and its row in summary.json).
pub fn level_name(case: &str, n: usize) -> String {
    format!("{case}-c{n}")
}

/// One run of the sweep: which case, at which concurrency (in the order they run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepSlot {
    pub case: String,
    pub concurrency: usize,
}

/// sweep.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepFile {
    /// What was swept: `concurrency`.
    pub parameter: String,
    /// The levels, as given.
    pub levels: Vec<usize>,
    /// The run was interrupted: later levels are missing.
    pub interrupted: bool,
    pub cases: Vec<SweepCase>,
}

/// One case's sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepCase {
    /// The case's name in the scenario.
    pub name: String,
    pub points: Vec<SweepPoint>,
    /// The law fitted to the points' throughputs; `None` with fewer than three measured levels.
    pub fit: Option<UslFit>,
    /// Why the fit should not be trusted, if it should not.
    pub warning: Option<String>,
}

/// One level of a case's sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepPoint {
    pub concurrency: usize,
    /// The name the level ran under (its row in summary.json, its files).
    pub run_case: String,
    /// Measured publishes per second.
    pub throughput_per_s: f64,
    /// What the fitted law predicts at this concurrency.
    pub fitted_per_s: Option<f64>,
    pub p50_ns: Option<u64>,
    pub p99_ns: Option<u64>,
    pub max_ns: Option<u64>,
    pub publishes_ok: u64,
    pub errors: u64,
}

fn quantile(r: &CaseResult, q: f64) -> Option<u64> {
    (!r.latency.is_empty()).then(|| r.latency.value_at_quantile(q))
}

impl SweepFile {
    /// The sweep of `levels` so far: `results` are the runs of the first `results.len()` slots of `plan`.
    pub fn of(
        levels: &[usize],
        plan: &[SweepSlot],
        results: &[CaseResult],
        interrupted: bool,
    ) -> SweepFile {
        let mut cases: Vec<SweepCase> = Vec::new();
        for (slot, r) in plan.iter().zip(results) {
            let point = SweepPoint {
                concurrency: slot.concurrency,
                run_case: r.name.clone(),
                throughput_per_s: r.throughput(),
                fitted_per_s: None,
                p50_ns: quantile(r, 0.5),
                p99_ns: quantile(r, 0.99),
                max_ns: (!r.latency.is_empty()).then(|| r.latency.max()),
                publishes_ok: r.publishes_ok,
                errors: r.errors.total(),
            };
            match cases.last_mut() {
                Some(c) if c.name == slot.case => c.points.push(point),
                _ => cases.push(SweepCase {
                    name: slot.case.clone(),
                    points: vec![point],
                    fit: None,
                    warning: None,
                }),
            }
        }
        for c in &mut cases {
            c.fit_law();
        }
        SweepFile {
            parameter: "concurrency".into(),
            levels: levels.to_vec(),
            interrupted,
            cases,
        }
    }

    /// sweep.json's text.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("sweep.json serialises");
        text.push('\n');
        text
    }

    /// The table on the terminal: each case's levels, then its fit and any warning.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for c in &self.cases {
            let _ = writeln!(out, "\nconcurrency sweep of {}:", c.name);
            out.push_str(&c.table());
            out.push_str(&c.fit_line());
        }
        out
    }
}

impl SweepCase {
    fn fit_law(&mut self) {
        let points: Vec<(f64, f64)> = self
            .points
            .iter()
            .map(|p| (p.concurrency as f64, p.throughput_per_s))
            .collect();
        self.fit = usl::fit(&points);
        let failed: Vec<String> = self
            .points
            .iter()
            .filter(|p| p.errors > 0)
            .map(|p| format!("c={} ({} errors)", p.concurrency, p.errors))
            .collect();
        let mut warnings = Vec::new();
        match &self.fit {
            Some(fit) => {
                for p in &mut self.points {
                    p.fitted_per_s = Some(fit.throughput(p.concurrency as f64));
                }
                warnings.extend(fit.warning(self.points.len()));
            }
            None => warnings.push(format!(
                "no fit: it takes three levels with a throughput above 0, and {} were measured",
                self.points.len()
            )),
        }
        if !failed.is_empty() {
            warnings.push(format!("levels with errors: {}", failed.join(", ")));
        }
        self.warning = (!warnings.is_empty()).then(|| warnings.join("; "));
    }

    fn table(&self) -> String {
        let mut t = Table::new();
        t.load_style(presets::NOTHING);
        t.set_header([
            "concurrency",
            "throughput/s",
            "USL fit/s",
            "p50",
            "p99",
            "max",
            "errors",
        ]);
        let ns = |v: Option<u64>| v.map_or("-".into(), human_ns);
        for p in &self.points {
            t.add_row([
                p.concurrency.to_string(),
                human_rate(p.throughput_per_s),
                p.fitted_per_s.map_or("-".into(), human_rate),
                ns(p.p50_ns),
                ns(p.p99_ns),
                ns(p.max_ns),
                p.errors.to_string(),
            ]);
        }
        format!("{t}\n")
    }

    /// The fit's line and any warning (`USL: σ ...`, `warning: ...`), each ending in a newline.
    pub fn fit_line(&self) -> String {
        let mut out = String::new();
        if let Some(f) = &self.fit {
            let peak = match (f.peak_concurrency, f.peak_throughput) {
                (Some(n), Some(x)) => {
                    format!("peak at concurrency {n:.1}: {}/s", human_rate(x))
                }
                _ if f.kappa == 0.0 => {
                    "no peak (κ = 0: throughput does not fall as concurrency grows)".into()
                }
                _ => "no peak above one publisher (σ = 1: each added publisher only waits)".into(),
            };
            let _ = writeln!(
                out,
                "USL: σ (contention) {:.4}, κ (coherency) {:.6}, λ {}/s per publisher; {peak}; R² {:.3}",
                f.sigma,
                f.kappa,
                human_rate(f.lambda),
                f.r_squared
            );
        }
        if let Some(w) = &self.warning {
            let _ = writeln!(out, "warning: {w}");
        }
        out
    }
}
