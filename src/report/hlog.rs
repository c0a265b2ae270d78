//! `<case>.hlog`: a case's timeline as an HdrHistogram interval log (tagged with the case name,
//! V2-deflate histograms of latencies in ns), which HdrHistogram's own log readers and processors read;
//! and the reading back that `taskbench merge` does to add the shards' intervals exactly.

use crate::record::CaseResult;
use base64::Engine;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriter, IntervalLogWriterBuilder, LogEntry, LogIteratorError,
    Tag,
};
use hdrhistogram::serialization::{DeserializeError, Deserializer, V2DeflateSerializer};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The interval log of `result`'s timeline; StartTime and BaseTime are the measured run's start, so each
/// interval's timestamp is its offset in seconds.
pub fn interval_log(result: &CaseResult) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    let start = result.wall_start.unwrap_or(UNIX_EPOCH);
    let mut log = begin(&result.name, start, &mut out, &mut serializer)?;
    for interval in &result.timeline {
        write(
            &mut log,
            &result.name,
            &interval.decode(),
            interval.start,
            interval.length,
        )?;
    }
    Ok(out)
}

/// The header of case `name`'s interval log, whose StartTime and BaseTime are `start` (so each interval's
/// timestamp is its offset from it), written into `out`; [`write`] adds the intervals.
pub fn begin<'a, 'b>(
    name: &str,
    start: SystemTime,
    out: &'a mut Vec<u8>,
    serializer: &'b mut V2DeflateSerializer,
) -> anyhow::Result<IntervalLogWriter<'a, 'b, Vec<u8>, V2DeflateSerializer>> {
    Ok(IntervalLogWriterBuilder::new()
        .add_comment("[Histogram log format version 1.3]")
        .add_comment(&format!(
            "taskbench {}, case {name}: latency (ns) of the publishes that ended in each interval; Interval_Max in ms",
            env!("CARGO_PKG_VERSION"),
        ))
        .with_start_time(start)
        .with_base_time(start)
        .with_max_value_divisor(1e6)
        .begin_log_with(out, serializer)?)
}

/// Adds one interval of case `name` to `log`: `histogram` from `start` (an offset from the log's BaseTime)
/// for `length`.
pub fn write(
    log: &mut IntervalLogWriter<'_, '_, Vec<u8>, V2DeflateSerializer>,
    name: &str,
    histogram: &Histogram<u64>,
    start: Duration,
    length: Duration,
) -> anyhow::Result<()> {
    // Case names are letters, digits, '-', '_' and '.', all allowed in a tag.
    log.write_histogram(histogram, start, length, Tag::new(name))
        .map_err(|e| anyhow::anyhow!("cannot write {name}.hlog: {e}"))
}

/// One interval read back from an interval log.
#[derive(Debug, Clone)]
pub struct LoggedInterval {
    /// The interval's timestamp as written: with a BaseTime (as taskbench writes), its offset from it.
    pub start: Duration,
    pub length: Duration,
    pub tag: Option<String>,
    /// The interval's histogram, V2 (deflate) encoded as in the log; it decoded once when read.
    pub encoded: Vec<u8>,
    /// How many values the histogram holds.
    pub count: u64,
}

/// Why bytes are not an interval log [`read`] takes, and where: a line that does not parse, or an
/// interval (numbered from 1) whose histogram is not base64 or does not decode.
#[derive(Debug, thiserror::Error)]
pub enum HlogError {
    #[error("not an interval log at byte {offset}")]
    NotALog { offset: usize },
    #[error("interval {interval}: the histogram is not base64 ({error})")]
    NotBase64 {
        interval: usize,
        error: base64::DecodeError,
    },
    #[error("interval {interval}: the histogram does not decode ({error})")]
    DoesNotDecode {
        interval: usize,
        error: DeserializeError,
    },
}

/// Every interval of the interval log `bytes`, in the order written, each histogram decoded once to check
/// it; an error says where it is not one.
pub fn read(bytes: &[u8]) -> Result<Vec<LoggedInterval>, HlogError> {
    let mut out = Vec::new();
    for entry in IntervalLogIterator::new(bytes) {
        let entry = entry.map_err(|e| match e {
            LogIteratorError::ParseError { offset } => HlogError::NotALog { offset },
        })?;
        let LogEntry::Interval(i) = entry else {
            continue;
        };
        let interval = out.len() + 1;
        let encoded = base64::engine::general_purpose::STANDARD
            .decode(i.encoded_histogram())
            .map_err(|error| HlogError::NotBase64 { interval, error })?;
        let histogram: Histogram<u64> = Deserializer::new()
            .deserialize(&mut encoded.as_slice())
            .map_err(|error| HlogError::DoesNotDecode { interval, error })?;
        out.push(LoggedInterval {
            start: i.start_timestamp(),
            length: i.duration(),
            tag: i.tag().map(|t| t.as_str().to_string()),
            encoded,
            count: histogram.len(),
        });
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
        // What `taskbench merge` reads back: the same intervals, each checked to decode.
        let read = read(&text).unwrap();
        let ours: Vec<(u128, u64, u128)> = read
            .iter()
            .map(|i| (i.start.as_millis(), i.count, i.length.as_millis()))
            .collect();
        let timeline: Vec<(u128, u64, u128)> = r
            .timeline
            .iter()
            .map(|i| (i.start.as_millis(), i.ok, i.length.as_millis()))
            .collect();
        assert_eq!(ours, timeline);
        assert!(read.iter().all(|i| i.tag.as_deref() == Some("c.1")));
        assert_eq!(read[3].encoded, r.timeline[3].histogram);
    }

    #[test]
    fn a_log_that_does_not_read_is_an_error_not_a_panic() {
        assert!(read(b"").unwrap().is_empty());
        let e = read(b"not an interval log\n").unwrap_err().to_string();
        assert!(e.contains("not an interval log at byte 0"), "{e}");
        let e = read(b"Tag=a,0.000,1.000,2.000,%%%\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("interval 1: the histogram is not base64"), "{e}");
        let e = read(b"Tag=a,0.000,1.000,2.000,AAAA\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("interval 1: the histogram does not decode"),
            "{e}"
        );
    }
}
