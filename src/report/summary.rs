//! summary.json: the machine-readable record of a run. Keys listed in DESIGN.md are a stable interface.

use crate::record::CaseResult;
use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Serializer as _, V2DeflateSerializer};
use serde_json::{Map, Value, json};

/// Identifies the run in summary.json.
pub struct RunInfo<'a> {
    pub scenario: &'a str,
    pub scenario_file: &'a str,
    pub started_at: &'a str,
    pub interrupted: bool,
}

/// The whole summary for the cases run so far.
pub fn summary(info: &RunInfo, cases: &[CaseResult]) -> Value {
    json!({
        "scenario": info.scenario,
        "scenario_file": info.scenario_file,
        "started_at": info.started_at,
        "taskbench_version": env!("CARGO_PKG_VERSION"),
        "interrupted": info.interrupted,
        "cases": cases.iter().map(case_summary).collect::<Vec<_>>(),
    })
}

/// min, p50, p90, p99, p99.9, max and mean of `h`, in ns.
pub fn latency_summary(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!({"min": null, "p50": null, "p90": null, "p99": null, "p999": null, "max": null, "mean": null});
    }
    json!({
        "min": h.min(),
        "p50": h.value_at_quantile(0.5),
        "p90": h.value_at_quantile(0.9),
        "p99": h.value_at_quantile(0.99),
        "p999": h.value_at_quantile(0.999),
        "max": h.max(),
        "mean": h.mean().round() as u64,
    })
}

/// An HDR histogram as base64 of its V2-deflate encoding (lossless; merge runs by decoding and adding).
pub fn encode_histogram(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut bytes)
        .expect("serialising into memory cannot fail");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn case_summary(r: &CaseResult) -> Value {
    let mut errors = Map::new();
    let mut error_messages = Map::new();
    for (kind, n, message) in r.errors.by_kind() {
        errors.insert(kind.to_string(), json!(n));
        error_messages.insert(kind.to_string(), json!(message));
    }
    let mut stages = Map::new();
    for s in &r.stages {
        stages.insert(
            s.stage.name().to_string(),
            json!({
                "count": s.histogram.len(),
                "total_ns": s.total_ns,
                "p50": s.histogram.value_at_quantile(0.5),
                "p99": s.histogram.value_at_quantile(0.99),
            }),
        );
    }
    json!({
        "name": r.name,
        "backend": r.backend,
        "path": r.path,
        "mode": if r.rate.is_some() { "open" } else { "closed" },
        "concurrency": r.concurrency,
        "rate": r.rate,
        "publishes_ok": r.publishes_ok,
        "warmup_ok": r.warmup_ok,
        "errors": errors,
        "error_messages": error_messages,
        "delivered": r.delivered,
        "elapsed_s": r.elapsed.as_secs_f64(),
        "throughput_per_s": r.throughput(),
        "latency_ns": latency_summary(&r.latency),
        "latency_total_ns": r.latency_total_ns,
        "stages": stages,
        "breakdown": super::breakdown::rows(r),
        "schedule_lag_ns": r.schedule_lag.as_ref().map(latency_summary),
        "histogram": encode_histogram(&r.latency),
        "interrupted": r.interrupted,
        "notes": r.notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::serialization::Deserializer;

    #[test]
    fn histogram_round_trips_through_base64() {
        let mut h = crate::record::new_histogram();
        for v in [1_000u64, 2_000, 3_000_000] {
            h.record(v).unwrap();
        }
        let text = encode_histogram(&h);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap();
        let back: Histogram<u64> = Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .unwrap();
        assert_eq!(back, h);
    }
}
