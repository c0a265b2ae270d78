//! `<case>.hlog`: a case's timeline as an HdrHistogram interval log (tagged with the case name,
//! V2-deflate histograms of latencies in ns), which HdrHistogram's own log readers and processors read.

use crate::record::CaseResult;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use std::time::UNIX_EPOCH;

/// The interval log of `result`'s timeline; StartTime and BaseTime are the measured run's start, so each
/// interval's timestamp is its offset in seconds.
pub fn interval_log(result: &CaseResult) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    let start = result.wall_start.unwrap_or(UNIX_EPOCH);
    let mut log = IntervalLogWriterBuilder::new()
        .add_comment("[Histogram log format version 1.3]")
        .add_comment(&format!(
            "taskbench {}, case {}: latency (ns) of the publishes that ended in each interval; Interval_Max in ms",
            env!("CARGO_PKG_VERSION"),
            result.name
        ))
        .with_start_time(start)
        .with_base_time(start)
        .with_max_value_divisor(1e6)
        .begin_log_with(&mut out, &mut serializer)?;
    // Case names are letters, digits, '-', '_' and '.', all allowed in a tag.
    let tag = Tag::new(&result.name);
    for interval in &result.timeline {
        log.write_histogram(&interval.decode(), interval.start, interval.length, tag)
            .map_err(|e| anyhow::anyhow!("cannot write {}.hlog: {e}", result.name))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fake::{FakeTarget, Script};
    use crate::engine::{RunControl, run_case};
    use crate::stage::Stage;
    use hdrhistogram::serialization::Deserializer;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn the_log_reads_back_interval_by_interval() {
        let case = crate::scenario::parse(
            "name = \"t\"\nwarmup = 0\npublishes = 99\ninterval = \"100ms\"\n\
             [[case]]\nname = \"c.1\"\nbackend = \"unix\"\npath = \"raw\"\n",
            "t.toml",
        )
        .unwrap()
        .cases
        .remove(0);
        let script = Script {
            stages: vec![(Stage::Send, Duration::from_millis(7))],
            ..Script::default()
        };
        let r = run_case(FakeTarget::new(script), &case, &RunControl::new()).await;
        assert_eq!(r.timeline.len(), 7, "693 ms in 100 ms intervals");
        let text = interval_log(&r).unwrap();
        let mut counts = Vec::new();
        for entry in IntervalLogIterator::new(&text) {
            if let LogEntry::Interval(h) = entry.unwrap() {
                assert_eq!(h.tag().map(|t| t.as_str().to_string()), Some("c.1".into()));
                let decoded: hdrhistogram::Histogram<u64> = Deserializer::new()
                    .deserialize(
                        &mut base64::Engine::decode(
                            &base64::engine::general_purpose::STANDARD,
                            h.encoded_histogram(),
                        )
                        .unwrap()
                        .as_slice(),
                    )
                    .unwrap();
                counts.push((h.start_timestamp().as_millis(), decoded.len()));
            }
        }
        assert_eq!(
            counts,
            [
                (0, 14),
                (100, 14),
                (200, 14),
                (300, 15),
                (400, 14),
                (500, 14),
                (600, 14)
            ]
        );
    }
}
