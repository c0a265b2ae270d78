//! The lines under the comparison table that say what each case's processes cost: resident memory at the
//! start, peak and end of the measured phase and its fitted growth per 10,000 publishes, CPU per publish
//! and the busiest thread's share of a core, for taskbench, the Python harnesses (together) and the broker;
//! and which cases were generator-limited.

use crate::human::{human_bytes_signed, human_ns};
use crate::resources::SATURATED;
use crate::summary::ResourcesSummary;
use comfy_table::{CellAlignment, Table, presets};

/// The resources table for `cases` (name, its figures); empty when no case has any.
pub fn resources<'a>(cases: impl Iterator<Item = (&'a str, Option<ResourcesSummary>)>) -> String {
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    table.set_header([
        "case",
        "process",
        "rss start",
        "peak",
        "end",
        "growth/10k",
        "cpu/publish",
        "busiest thread",
    ]);
    let mut limited = Vec::new();
    let mut any = false;
    for (name, r) in cases {
        let Some(r) = r else { continue };
        any = true;
        let bytes = |b: u64| human_bytes_signed(b as f64);
        let growth = |g: Option<f64>| g.map_or("-".into(), human_bytes_signed);
        let cpu = |c: Option<f64>| c.map_or("-".into(), |ns| human_ns(ns.round() as u64));
        let share = |s: f64| format!("{:.0}%", 100.0 * s);
        if let Some(t) = r.taskbench() {
            table.add_row([
                name.to_string(),
                "taskbench".into(),
                bytes(t.rss_start_bytes),
                bytes(t.rss_peak_bytes),
                bytes(t.rss_end_bytes),
                growth(t.rss_growth_per_10k),
                cpu(t.cpu_per_publish_ns),
                share(t.busiest_thread),
            ]);
        }
        let h = r.harnesses();
        if !h.is_empty() {
            let sum =
                |f: fn(&crate::resources::ProcessFigures) -> u64| h.iter().map(f).sum::<u64>();
            table.add_row([
                name.to_string(),
                format!(
                    "{} harness{} (sum, max)",
                    h.len(),
                    if h.len() == 1 { "" } else { "es" }
                ),
                bytes(sum(|p| p.rss_start_bytes)),
                bytes(sum(|p| p.rss_peak_bytes)),
                bytes(sum(|p| p.rss_end_bytes)),
                growth(crate::resources::largest_growth(h)),
                cpu(h.iter().map(|p| p.cpu_per_publish_ns).sum()),
                share(h.iter().map(|p| p.busiest_thread).fold(0.0, f64::max)),
            ]);
        }
        match (&r.broker, &r.broker_unmeasured) {
            (Some(b), _) => {
                table.add_row([
                    name.to_string(),
                    "broker (used_memory)".into(),
                    bytes(b.used_start_bytes),
                    bytes(b.used_peak_bytes),
                    bytes(b.used_end_bytes),
                    growth(b.used_growth_per_10k),
                    "-".into(),
                    "-".into(),
                ]);
            }
            (None, Some(why)) => {
                table.add_row([name.to_string(), format!("broker: {why}")]);
            }
            (None, None) => {}
        }
        if r.generator_limited {
            limited.push(format!(
                "{name}: generator-limited: {} busy {:.0}% of a core or more (its busiest thread, on average): the figures are the generator's limit, not the path's\n",
                r.saturated.join(", "),
                100.0 * SATURATED
            ));
        }
    }
    if !any {
        return String::new();
    }
    for i in 2..8 {
        if let Some(col) = table.column_mut(i) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
    format!(
        "memory and CPU over the measured phase (growth: least-squares fit per 10,000 publishes; busiest thread: share of a core):\n{}\n{}",
        table.trim_fmt(),
        limited.concat()
    )
}
