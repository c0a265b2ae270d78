//! What the processes of a case cost the machine, sampled once per timeline interval (never per publish):
//! each process's resident memory and CPU time (user + sys) and its busiest thread's share of a core, read
//! from /proc, and the broker's memory as the broker reports it; then the case's figures from those
//! samples (start, peak and end memory, the growth per 10,000 publishes fitted over the measured phase, CPU
//! per publish) and whether the load generator itself was saturated.

use std::collections::HashMap;
use std::time::Duration;

/// A process busy this share of a core or more is saturated: the case measured the generator (taskbench or
/// a Python harness), not the path. /proc counts CPU in clock ticks (10 ms at the usual 100 Hz), so a 1 s
/// interval reads to 1 %; a thread that never waits still loses a few percent to the scheduler and to the
/// other engineers' work on a shared machine. 90 % leaves room for both and still flags a thread that had
/// no idle time to absorb the next publish.
pub const SATURATED: f64 = 0.9;

/// The broker's memory as the broker reports it (Redis `INFO memory`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerMemory {
    /// What the broker's allocator holds for data (`used_memory`).
    pub used_bytes: u64,
    /// The broker process's resident memory (`used_memory_rss`).
    pub rss_bytes: u64,
}

/// One process as read at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessReading {
    pub rss_bytes: u64,
    /// User plus system CPU time of all its threads so far (ns).
    pub cpu_ns: u64,
    /// The share of a core its busiest thread used since the previous reading (0 at the first).
    pub busiest_thread: f64,
}

/// Every watched process (and the broker) at one instant of a case.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceSample {
    /// Since the measured run started; `None` for a reading taken before it (the warm-up).
    pub at: Option<Duration>,
    /// Measured publishes that had ended (succeeded or failed) by then.
    pub publishes: u64,
    /// One per watched process, in [`ResourceSeries::processes`] order; `None` when it could not be read
    /// (it had exited).
    pub processes: Vec<Option<ProcessReading>>,
    /// The broker's own figure, when it is measured.
    pub broker: Option<BrokerMemory>,
}

/// A watched process: a name for output (`taskbench`, `harness-0`) and its pid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    pub name: String,
    pub pid: u32,
}

/// A case's samples, in time order, of the processes it watched.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResourceSeries {
    pub processes: Vec<Watched>,
    pub samples: Vec<ResourceSample>,
    /// Why the broker's memory is not in the samples (not on this machine, not readable, not measured for
    /// this broker), `None` when it is or the case has no broker.
    pub broker_unmeasured: Option<String>,
}

/// One process's figures over a case's measured phase (as summary.json writes them).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProcessFigures {
    pub name: String,
    pub pid: u32,
    pub rss_start_bytes: u64,
    pub rss_peak_bytes: u64,
    pub rss_end_bytes: u64,
    /// Resident memory growth per 10,000 publishes: the least-squares slope of RSS against publishes
    /// ended, over the measured samples; `None` with fewer than three measured samples.
    pub rss_growth_per_10k: Option<f64>,
    /// CPU time over the measured phase (ns).
    pub cpu_ns: u64,
    /// CPU per measured publish of the case (ns); `None` when nothing was published.
    pub cpu_per_publish_ns: Option<f64>,
    /// The busiest thread's share of a core, averaged over the measured intervals.
    pub busiest_thread: f64,
}

/// Memory figures of the broker over a case's measured phase (as summary.json writes them).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BrokerFigures {
    pub used_start_bytes: u64,
    pub used_peak_bytes: u64,
    pub used_end_bytes: u64,
    pub rss_end_bytes: u64,
    pub used_growth_per_10k: Option<f64>,
}

impl ResourceSeries {
    /// The measured samples (the warm-up's left out).
    fn measured(&self) -> impl Iterator<Item = &ResourceSample> {
        self.samples.iter().filter(|s| s.at.is_some())
    }

    /// Each watched process's figures over the measured phase (a process read at no measured sample is
    /// left out).
    pub fn process_figures(&self) -> Vec<ProcessFigures> {
        let measured: Vec<&ResourceSample> = self.measured().collect();
        let (Some(first), Some(last)) = (measured.first(), measured.last()) else {
            return Vec::new();
        };
        let publishes = last.publishes.saturating_sub(first.publishes);
        self.processes
            .iter()
            .enumerate()
            .filter_map(|(i, w)| {
                let read: Vec<(u64, ProcessReading)> = measured
                    .iter()
                    .filter_map(|s| {
                        s.processes
                            .get(i)
                            .copied()
                            .flatten()
                            .map(|r| (s.publishes, r))
                    })
                    .collect();
                let (start, end) = (read.first()?.1, read.last()?.1);
                let cpu_ns = end.cpu_ns.saturating_sub(start.cpu_ns);
                // The first reading's share is of the time before the measured phase.
                let shares: Vec<f64> = read.iter().skip(1).map(|(_, r)| r.busiest_thread).collect();
                Some(ProcessFigures {
                    name: w.name.clone(),
                    pid: w.pid,
                    rss_start_bytes: start.rss_bytes,
                    rss_peak_bytes: read.iter().map(|(_, r)| r.rss_bytes).max()?,
                    rss_end_bytes: end.rss_bytes,
                    rss_growth_per_10k: growth_per_10k(
                        read.iter().map(|(p, r)| (*p as f64, r.rss_bytes as f64)),
                    ),
                    cpu_ns,
                    cpu_per_publish_ns: (publishes > 0).then(|| cpu_ns as f64 / publishes as f64),
                    busiest_thread: mean(&shares),
                })
            })
            .collect()
    }

    /// The broker's memory figures over the measured phase, when it was measured.
    pub fn broker_figures(&self) -> Option<BrokerFigures> {
        let read: Vec<(u64, BrokerMemory)> = self
            .measured()
            .filter_map(|s| s.broker.map(|b| (s.publishes, b)))
            .collect();
        let (start, end) = (read.first()?.1, read.last()?.1);
        Some(BrokerFigures {
            used_start_bytes: start.used_bytes,
            used_peak_bytes: read.iter().map(|(_, b)| b.used_bytes).max()?,
            used_end_bytes: end.used_bytes,
            rss_end_bytes: end.rss_bytes,
            used_growth_per_10k: growth_per_10k(
                read.iter().map(|(p, b)| (*p as f64, b.used_bytes as f64)),
            ),
        })
    }
}

/// Which of `figures` were saturated (a busiest thread at [`SATURATED`] of a core or more), by name.
pub fn saturated(figures: &[ProcessFigures]) -> Vec<&str> {
    figures
        .iter()
        .filter(|f| f.busiest_thread >= SATURATED)
        .map(|f| f.name.as_str())
        .collect()
}

/// The largest memory growth per 10,000 publishes among `figures` (bytes): what the `rss_growth_per_10k`
/// threshold bounds; `None` when none was fitted.
pub fn largest_growth(figures: &[ProcessFigures]) -> Option<f64> {
    figures
        .iter()
        .filter_map(|f| f.rss_growth_per_10k)
        .max_by(f64::total_cmp)
}

/// CPU per publish over every process of the case, taskbench's and the harnesses' together (ns): what the
/// `cpu_per_publish` threshold bounds.
pub fn cpu_per_publish(figures: &[ProcessFigures]) -> Option<f64> {
    figures
        .iter()
        .map(|f| f.cpu_per_publish_ns)
        .sum::<Option<f64>>()
        .filter(|_| !figures.is_empty())
}

fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

/// The least-squares slope of `y` against `x` (publishes), times 10,000; `None` with fewer than three
/// points or when `x` does not move.
pub fn growth_per_10k(points: impl Iterator<Item = (f64, f64)>) -> Option<f64> {
    let points: Vec<(f64, f64)> = points.collect();
    if points.len() < 3 {
        return None;
    }
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx * 10_000.0)
}

/// Reads processes from /proc, remembering each thread's CPU time so the next reading can say how busy the
/// busiest one was in between.
#[derive(Debug)]
pub struct Sampler {
    watched: Vec<Watched>,
    /// Per process: each thread's CPU time (ns) at the previous reading, and when that was.
    previous: Vec<Option<(HashMap<u32, u64>, std::time::Instant)>>,
    tick_ns: u64,
    page_bytes: u64,
}

impl Sampler {
    /// A sampler of `watched` processes.
    pub fn new(watched: Vec<Watched>) -> Sampler {
        let sysconf = |var, default: i64| {
            nix::unistd::sysconf(var)
                .ok()
                .flatten()
                .filter(|v| *v > 0)
                .unwrap_or(default) as u64
        };
        Sampler {
            previous: vec![None; watched.len()],
            watched,
            tick_ns: 1_000_000_000 / sysconf(nix::unistd::SysconfVar::CLK_TCK, 100),
            page_bytes: sysconf(nix::unistd::SysconfVar::PAGE_SIZE, 4096),
        }
    }

    pub fn watched(&self) -> &[Watched] {
        &self.watched
    }

    /// Reads every watched process now; `None` for one that cannot be read (gone, or no /proc).
    pub fn read(&mut self) -> Vec<Option<ProcessReading>> {
        let now = std::time::Instant::now();
        (0..self.watched.len())
            .map(|i| {
                let pid = self.watched[i].pid;
                let rss = read_rss(pid, self.page_bytes)?;
                // The process's own count keeps the CPU of threads that have ended; the threads' do not.
                let cpu_ns = read_cpu(format!("/proc/{pid}/stat"), self.tick_ns)?;
                let threads = read_threads(pid, self.tick_ns)?;
                let busiest = match &self.previous[i] {
                    Some((before, then)) => {
                        let wall = now.duration_since(*then).as_nanos() as f64;
                        let most = threads
                            .iter()
                            .map(|(tid, ns)| ns.saturating_sub(*before.get(tid).unwrap_or(&0)))
                            .max()
                            .unwrap_or(0);
                        // A thread runs on one core at most: a clock tick counted into a short wall
                        // time would read as more.
                        if wall > 0.0 {
                            (most as f64 / wall).min(1.0)
                        } else {
                            0.0
                        }
                    }
                    None => 0.0,
                };
                self.previous[i] = Some((threads, now));
                Some(ProcessReading {
                    rss_bytes: rss,
                    cpu_ns,
                    busiest_thread: busiest,
                })
            })
            .collect()
    }
}

/// Resident memory of `pid` from /proc/PID/statm (its second field, in pages).
fn read_rss(pid: u32, page_bytes: u64) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_bytes)
}

/// Each thread of `pid` and its user + system CPU time so far (ns), from /proc/PID/task/TID/stat.
fn read_threads(pid: u32, tick_ns: u64) -> Option<HashMap<u32, u64>> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut threads = HashMap::new();
    for entry in dir.flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        // A thread that ended since the directory was read is skipped.
        if let Some(ns) = read_cpu(entry.path().join("stat"), tick_ns) {
            threads.insert(tid, ns);
        }
    }
    Some(threads)
}

/// User + system CPU time (ns) from a /proc stat file; `None` when it cannot be read.
fn read_cpu(path: impl AsRef<std::path::Path>, tick_ns: u64) -> Option<u64> {
    let stat = std::fs::read_to_string(path).ok()?;
    Some(cpu_ticks(&stat)? * tick_ns)
}

/// utime + stime (clock ticks) from a /proc stat line: fields 14 and 15, counted after the command name's
/// closing parenthesis (the name may hold spaces and parentheses itself).
fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `used_memory` and `used_memory_rss` from the text of Redis's `INFO memory`.
pub fn parse_redis_info(text: &str) -> Option<BrokerMemory> {
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse().ok())
    };
    Some(BrokerMemory {
        used_bytes: field("used_memory")?,
        rss_bytes: field("used_memory_rss")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: Option<u64>, publishes: u64, rss: u64, cpu_ms: u64, busy: f64) -> ResourceSample {
        ResourceSample {
            at: at.map(Duration::from_secs),
            publishes,
            processes: vec![Some(ProcessReading {
                rss_bytes: rss,
                cpu_ns: cpu_ms * 1_000_000,
                busiest_thread: busy,
            })],
            broker: None,
        }
    }

    #[test]
    fn figures_fit_the_measured_phase_only() {
        let series = ResourceSeries {
            processes: vec![Watched {
                name: "taskbench".into(),
                pid: 1,
            }],
            // The warm-up's reading (1 GB) is left out of start, peak and the fit.
            samples: vec![
                sample(None, 0, 1 << 30, 0, 1.0),
                sample(Some(0), 0, 1000, 100, 0.5),
                sample(Some(1), 10_000, 2000, 200, 0.9),
                sample(Some(2), 20_000, 3500, 300, 0.96),
                sample(Some(3), 30_000, 4000, 400, 0.96),
            ],
            broker_unmeasured: None,
        };
        let f = &series.process_figures()[0];
        assert_eq!(
            (f.rss_start_bytes, f.rss_peak_bytes, f.rss_end_bytes),
            (1000, 4000, 4000)
        );
        // Slope of (0,1000) (1,2000) (2,3500) (3,4000) per 10k: 1050.
        assert!((f.rss_growth_per_10k.unwrap() - 1050.0).abs() < 1e-6);
        assert_eq!(f.cpu_ns, 300_000_000);
        assert_eq!(f.cpu_per_publish_ns, Some(10_000.0));
        assert!(
            (f.busiest_thread - 0.94).abs() < 1e-9,
            "{}",
            f.busiest_thread
        );
        assert_eq!(saturated(&series.process_figures()), ["taskbench"]);
    }

    #[test]
    fn too_few_points_have_no_slope() {
        assert_eq!(growth_per_10k([(0.0, 1.0), (1.0, 2.0)].into_iter()), None);
        assert_eq!(
            growth_per_10k([(5.0, 1.0), (5.0, 2.0), (5.0, 3.0)].into_iter()),
            None
        );
    }

    #[test]
    fn proc_stat_fields_count_from_the_last_parenthesis() {
        let line = "17902 (a (b) c) R 1 1 1 0 -1 4194304 101 0 0 0 7 3 0 0 20 0 1 0";
        assert_eq!(cpu_ticks(line), Some(10));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn this_process_reads_and_a_gone_one_does_not() {
        let mut sampler = Sampler::new(vec![
            Watched {
                name: "me".into(),
                pid: std::process::id(),
            },
            Watched {
                name: "gone".into(),
                pid: u32::MAX,
            },
        ]);
        let first = sampler.read();
        let me = first[0].expect("own /proc");
        assert!(me.rss_bytes > 0);
        assert_eq!(first[1], None);
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(50) {
            std::hint::black_box(0u64);
        }
        let second = sampler.read()[0].unwrap();
        assert!(second.cpu_ns >= me.cpu_ns);
        assert!((0.0..=1.5).contains(&second.busiest_thread));
    }

    #[test]
    fn redis_info_memory_is_read() {
        let text = "# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\nused_memory_rss:4194304\r\n";
        assert_eq!(
            parse_redis_info(text),
            Some(BrokerMemory {
                used_bytes: 1 << 20,
                rss_bytes: 4 << 20
            })
        );
        assert_eq!(parse_redis_info("nothing"), None);
    }
}
