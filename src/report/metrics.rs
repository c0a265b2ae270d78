//! Live metrics of a run for a scraper (`--metrics-listen`) and its final values for node-exporter's
//! textfile collector (`--metrics-file`): publishes by outcome, the publish, stage and schedule-lag
//! durations as histograms whose buckets are counted from the HDR histograms, the offered rate, the
//! publishes in flight and each process's resident memory, labelled by case, backend, path, client and
//! shard. The engine hands the figures over once per interval ([`LiveView`]), never per publish; a scrape
//! only reads what the last interval left.

use crate::engine::{LiveInterval, LiveView};
use crate::record::CaseResult;
use crate::scenario::{Case, Shard};
use hdrhistogram::Histogram;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::sync::{Arc, Mutex, PoisonError};

/// The buckets' upper bounds in seconds: 1, 2, 5 per decade from 1 µs to 100 s. Fixed, so runs, shards
/// and instances aggregate bucket by bucket; a quantile read from them lies in the bucket that holds it.
pub const BOUNDS_S: [f64; 25] = [
    1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 1e-1,
    2e-1, 5e-1, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0,
];

/// Every metric taskbench exports, by the name a query uses (histograms by their base name): the
/// dashboard's test checks each panel's query against this list.
pub const METRICS: [&str; 9] = [
    "taskbench_publishes_total",
    "taskbench_publish_duration_seconds",
    "taskbench_stage_duration_seconds",
    "taskbench_schedule_lag_seconds",
    "taskbench_offered_rate",
    "taskbench_in_flight",
    "taskbench_resident_memory_bytes",
    "taskbench_broker_memory_bytes",
    "taskbench_case_running",
];

/// A histogram as the encoder takes it: each bucket's own count (values above the bound before it, up to
/// its bound in [`BOUNDS_S`], then `+Inf`), the count and the sum (s). The encoder writes them cumulative,
/// as a scraper reads them.
#[derive(Debug, Clone, PartialEq)]
pub struct Buckets {
    pub sum_s: f64,
    pub count: u64,
    pub buckets: Vec<(f64, u64)>,
}

impl Buckets {
    /// The buckets of `h` (ns); `total_ns` is the exact sum when known, else the histogram's mean times its
    /// count.
    pub fn of(h: &Histogram<u64>, total_ns: Option<u64>) -> Buckets {
        let sum_ns = total_ns.map_or(h.mean() * h.len() as f64, |t| t as f64);
        Buckets {
            sum_s: sum_ns / 1e9,
            count: h.len(),
            buckets: {
                // Each recorded value (HDR's highest equivalent, within its resolution) counts in the first
                // bucket whose bound holds it; the encoder adds them up as a scraper reads them.
                let mut counts = [0u64; BOUNDS_S.len() + 1];
                for v in h.iter_recorded() {
                    let ns = v.value_iterated_to() as f64;
                    let i = BOUNDS_S.partition_point(|b| b * 1e9 < ns);
                    counts[i] += v.count_at_value();
                }
                BOUNDS_S
                    .iter()
                    .copied()
                    .chain([f64::INFINITY])
                    .zip(counts)
                    .collect()
            },
        }
    }
}

/// One case's figures as last handed over.
#[derive(Debug, Clone, Default)]
struct CaseFigures {
    labels: Vec<(String, String)>,
    ok: u64,
    failed: u64,
    in_flight: u64,
    offered_rate: Option<f64>,
    running: bool,
    latency: Option<Buckets>,
    lag: Option<Buckets>,
    stages: Vec<(&'static str, Buckets)>,
    rss: Vec<(String, u64)>,
    broker_bytes: Option<u64>,
}

/// The run's metrics: every case so far, the running one updated once per interval.
#[derive(Debug, Default)]
pub struct LiveMetrics {
    /// This run's share of the load (`--shard`), for the `shard` label (empty for a whole run).
    shard: Option<Shard>,
    cases: Mutex<Vec<CaseFigures>>,
}

impl LiveMetrics {
    pub fn new(shard: Option<Shard>) -> Arc<LiveMetrics> {
        Arc::new(LiveMetrics {
            shard,
            cases: Mutex::default(),
        })
    }

    /// A registry that encodes these metrics on every scrape.
    pub fn registry(self: &Arc<Self>) -> Registry {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self.clone()));
        registry
    }

    /// The metrics as OpenMetrics text (what `/metrics` serves).
    pub fn openmetrics(self: &Arc<Self>) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry())
            .expect("writing to a String cannot fail");
        out
    }

    /// The metrics in the Prometheus text format node-exporter's textfile collector reads.
    pub fn prometheus_text(self: &Arc<Self>) -> String {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry())
            .expect("writing to a String cannot fail");
        out
    }

    fn update(&self, case: &Case, f: impl FnOnce(&mut CaseFigures)) {
        let labels = labels(case, self.shard);
        let mut cases = self.cases.lock().unwrap_or_else(PoisonError::into_inner);
        let i = match cases.iter().position(|c| c.labels == labels) {
            Some(i) => i,
            None => {
                cases.push(CaseFigures {
                    labels,
                    offered_rate: case.rate,
                    ..CaseFigures::default()
                });
                cases.len() - 1
            }
        };
        f(&mut cases[i]);
    }
}

/// The labels of a case's series.
fn labels(case: &Case, shard: Option<Shard>) -> Vec<(String, String)> {
    [
        ("case", case.name.clone()),
        ("backend", case.backend.to_string()),
        ("path", case.path.to_string()),
        ("client", case.options.client().to_string()),
        ("shard", shard.map_or(String::new(), |s| s.to_string())),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

impl LiveView for LiveMetrics {
    fn start(&self, case: &Case) {
        self.update(case, |c| c.running = true);
    }

    fn interval(&self, case: &Case, live: &LiveInterval<'_>) {
        self.update(case, |c| {
            c.ok = live.ok;
            c.failed = live.failed;
            c.in_flight = live.in_flight;
            if let Some(h) = live.latency {
                c.latency = Some(Buckets::of(h, None));
            }
            c.rss = live
                .processes
                .iter()
                .zip(&live.sample.processes)
                .filter_map(|(w, r)| Some((w.name.clone(), r.as_ref()?.rss_bytes)))
                .collect();
            c.broker_bytes = live.sample.broker.map(|b| b.used_bytes);
        });
    }

    fn finish(&self, r: &CaseResult) {
        self.update(&r.case, |c| {
            c.running = false;
            c.ok = r.publishes_ok;
            c.failed = r.errors.total();
            c.in_flight = 0;
            c.latency = Some(Buckets::of(&r.latency, Some(r.latency_total_ns)));
            c.lag = r.schedule_lag.as_ref().map(|h| Buckets::of(h, None));
            c.stages = r
                .stages
                .iter()
                .map(|s| (s.stage.name(), Buckets::of(&s.histogram, Some(s.total_ns))))
                .collect();
            let last = r.resources.samples.last();
            c.rss = r
                .resources
                .processes
                .iter()
                .zip(last.map(|s| s.processes.as_slice()).unwrap_or_default())
                .filter_map(|(w, p)| Some((w.name.clone(), p.as_ref()?.rss_bytes)))
                .collect();
            c.broker_bytes = last.and_then(|s| s.broker).map(|b| b.used_bytes);
        });
    }
}

/// One series of a family: its labels and value.
type Series<V> = Vec<(Vec<(String, String)>, V)>;

fn with(base: &[(String, String)], k: &str, v: &str) -> Vec<(String, String)> {
    let mut l = base.to_vec();
    l.push((k.to_string(), v.to_string()));
    l
}

impl Collector for LiveMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let cases = self
            .cases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut publishes: Series<u64> = Vec::new();
        let mut running: Series<i64> = Vec::new();
        let mut in_flight: Series<i64> = Vec::new();
        let mut rate: Series<f64> = Vec::new();
        let mut rss: Series<i64> = Vec::new();
        let mut broker: Series<i64> = Vec::new();
        let mut latency: Series<&Buckets> = Vec::new();
        let mut lag: Series<&Buckets> = Vec::new();
        let mut stages: Series<&Buckets> = Vec::new();
        for c in &cases {
            let l = &c.labels;
            publishes.push((with(l, "outcome", "ok"), c.ok));
            publishes.push((with(l, "outcome", "failed"), c.failed));
            running.push((l.clone(), c.running as i64));
            in_flight.push((l.clone(), c.in_flight as i64));
            if let Some(r) = c.offered_rate {
                rate.push((l.clone(), r));
            }
            for (process, bytes) in &c.rss {
                rss.push((with(l, "process", process), *bytes as i64));
            }
            if let Some(b) = c.broker_bytes {
                broker.push((l.clone(), b as i64));
            }
            if let Some(b) = &c.latency {
                latency.push((l.clone(), b));
            }
            if let Some(b) = &c.lag {
                lag.push((l.clone(), b));
            }
            for (stage, b) in &c.stages {
                stages.push((with(l, "stage", stage), b));
            }
        }
        let help = |name: &str| -> &'static str {
            match name {
                "taskbench_publishes" => "Measured publishes by outcome (ok, failed).",
                "taskbench_case_running" => "1 while the case runs, 0 once it ended.",
                "taskbench_in_flight" => "Publishes claimed and not yet ended.",
                "taskbench_offered_rate" => "Open loop: the publishes per second scheduled.",
                "taskbench_resident_memory_bytes" => {
                    "Resident memory of taskbench and each harness."
                }
                "taskbench_broker_memory_bytes" => {
                    "The broker's own used_memory (Redis INFO memory)."
                }
                "taskbench_publish_duration_seconds" => {
                    "Publish latency; while a case runs, of the intervals every thread has closed."
                }
                "taskbench_stage_duration_seconds" => "Wall time per stage, once the case ended.",
                _ => "How late open-loop publishes started, once the case ended.",
            }
        };
        type Fill<'f> = &'f dyn Fn(&mut MetricEncoder) -> Result<(), std::fmt::Error>;
        let mut family =
            |name: &'static str, kind: MetricType, f: Fill| -> Result<(), std::fmt::Error> {
                let mut m = encoder.encode_descriptor(name, help(name), None, kind)?;
                f(&mut m)
            };
        family("taskbench_publishes", MetricType::Counter, &|m| {
            for (l, v) in &publishes {
                m.encode_family(l)?
                    .encode_counter::<NoLabelSet, _, u64>(v, None)?;
            }
            Ok(())
        })?;
        for (name, series) in [
            ("taskbench_case_running", &running),
            ("taskbench_in_flight", &in_flight),
            ("taskbench_resident_memory_bytes", &rss),
            ("taskbench_broker_memory_bytes", &broker),
        ] {
            family(name, MetricType::Gauge, &|m| {
                for (l, v) in series {
                    m.encode_family(l)?.encode_gauge(v)?;
                }
                Ok(())
            })?;
        }
        family("taskbench_offered_rate", MetricType::Gauge, &|m| {
            for (l, v) in &rate {
                m.encode_family(l)?.encode_gauge(v)?;
            }
            Ok(())
        })?;
        for (name, series) in [
            ("taskbench_publish_duration_seconds", &latency),
            ("taskbench_stage_duration_seconds", &stages),
            ("taskbench_schedule_lag_seconds", &lag),
        ] {
            family(name, MetricType::Histogram, &|m| {
                for (l, b) in series {
                    m.encode_family(l)?
                        .encode_histogram::<NoLabelSet>(b.sum_s, b.count, &b.buckets, None)?;
                }
                Ok(())
            })?;
        }
        Ok(())
    }
}

/// How long a scraper may take to send its request before the connection is dropped.
const REQUEST_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Listens on `addr` (`--metrics-listen`) and serves `metrics` as OpenMetrics text at `/metrics` from a
/// thread of its own (off the run's runtime, so a scrape never takes a publisher's thread) until the
/// process exits; answers the address it listens on (the port picked, for port 0).
pub fn serve(addr: &str, metrics: Arc<LiveMetrics>) -> anyhow::Result<std::net::SocketAddr> {
    use anyhow::Context as _;
    let bad = || {
        format!(
            "--metrics-listen {addr}: cannot listen there (write HOST:PORT on a free port, e.g. 127.0.0.1:9464)"
        )
    };
    let listener = std::net::TcpListener::bind(addr).with_context(bad)?;
    listener.set_nonblocking(true).with_context(bad)?;
    let local = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the metrics endpoint's runtime")?;
    std::thread::Builder::new()
        .name("taskbench-metrics".into())
        .spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                while let Ok((stream, _)) = listener.accept().await {
                    let metrics = metrics.clone();
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(REQUEST_WAIT, answer(stream, &metrics)).await;
                    });
                }
            })
        })
        .context("cannot start the metrics endpoint's thread")?;
    Ok(local)
}

/// Reads one HTTP request and answers it: the metrics for `GET /metrics`, 404 for anything else.
async fn answer(
    mut stream: tokio::net::TcpStream,
    metrics: &Arc<LiveMetrics>,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut request = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let line = request.split(|b| *b == b'\r').next().unwrap_or_default();
    let mut words = line.split(|b| *b == b' ');
    let (method, target) = (words.next(), words.next());
    let path = target.map(|t| t.split(|b| *b == b'?').next().unwrap_or_default());
    let (status, kind, body) = match (method, path) {
        (Some(b"GET"), Some(b"/metrics")) => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.openmetrics(),
        ),
        _ => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "taskbench serves its metrics at /metrics\n".to_string(),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// Writes the final values to `path` for node-exporter's textfile collector: to a file beside it first,
/// then renamed over it, so the collector never reads half a file.
pub fn write_file(path: &std::path::Path, metrics: &Arc<LiveMetrics>) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, metrics.prometheus_text())
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| format!("--metrics-file {}: cannot write it", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_count_the_hdr_histogram_at_fixed_bounds() {
        let mut h = crate::record::new_histogram();
        for ns in [500, 1_500, 1_500, 3_000_000, 70_000_000_000] {
            h.record(ns).unwrap();
        }
        let b = Buckets::of(&h, Some(70_003_003_500));
        assert_eq!(b.count, 5);
        assert!((b.sum_s - 70.0030035).abs() < 1e-9);
        // Up to each bound, as the encoder writes them.
        let at = |bound: f64| {
            b.buckets
                .iter()
                .take_while(|(u, _)| *u <= bound)
                .map(|(_, n)| n)
                .sum::<u64>()
        };
        assert_eq!(at(1e-6), 1);
        assert_eq!(at(2e-6), 3);
        assert_eq!(at(5e-3), 4);
        assert_eq!(at(50.0), 4);
        assert_eq!(at(100.0), 5);
        assert_eq!(at(f64::INFINITY), 5);
        assert_eq!(b.buckets.last(), Some(&(f64::INFINITY, 0)));
    }

    #[test]
    fn a_case_is_exported_with_its_labels() {
        let case = crate::scenario::test_case("c1");
        let metrics = LiveMetrics::new(None);
        metrics.start(&case);
        let mut r = CaseResult::empty(&case);
        r.publishes_ok = 7;
        r.latency.record(2_000).unwrap();
        metrics.finish(&r);
        let text = metrics.openmetrics();
        assert!(
            text.contains(r#"taskbench_publishes_total{case="c1",backend="unix",path="raw",client="taskbench",shard="",outcome="ok"} 7"#),
            "{text}"
        );
        assert!(text.contains("# TYPE taskbench_publish_duration_seconds histogram"));
        assert!(text.ends_with("# EOF\n"));
        for name in METRICS {
            let base = name.strip_suffix("_total").unwrap_or(name);
            assert!(text.contains(&format!("# TYPE {base} ")), "{name}");
        }
        assert!(!metrics.prometheus_text().contains("# EOF"));
    }
}
