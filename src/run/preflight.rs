//! What can be known before a run starts: whether this process may open the file descriptors and has the
//! memory its cases need (refused up front, not discovered as errors or an OOM kill), and how long a case
//! bounded only by count will take when that is long.

// The one MemAvailable reader, on the backend layer so that the Python harnesses' check uses it too.
use crate::catalog::{Backend, PathKind};
use crate::host::{BASE_DESCRIPTORS, available_memory};
use crate::human::human_count;
use crate::scenario::{BackendOptions, Case, Scenario};
use std::time::Duration;

/// Memory one local publisher costs: 4.4-4.9 KB each measured with 10,000 (bench/publishers.sh), rounded up.
const LOCAL_PUBLISHER_BYTES: u64 = 8 << 10;
/// Memory one broker publisher is allowed for: a bound for the check, not a measurement (socket buffers
/// and client state, which the broker crates size).
const BROKER_PUBLISHER_BYTES: u64 = 64 << 10;
/// A case expected to run longer than this is announced.
const LONG_CASE: Duration = Duration::from_secs(3600);

/// Why a scenario cannot run in this process: a case needs more than it may have, with the numbers.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PreflightError {
    #[error(
        "case {case:?}: {} publishers need about {} file descriptors, more than this process may open \
         ({}, `ulimit -n`); raise the limit (`ulimit -n`, LimitNOFILE) or lower `concurrency`{}",
        human_count(*publishers),
        human_count(*needed),
        human_count(*limit),
        if *own_sink {
            "; a standalone `taskbench sink` (the case's `address`) halves what this process needs"
        } else {
            ""
        }
    )]
    Descriptors {
        case: String,
        publishers: u64,
        needed: u64,
        limit: u64,
        /// The case's publishers talk to the embedded sink, whose ends count here too.
        own_sink: bool,
    },
    #[error(
        "case {case:?}: {} publishers need about {} MiB, more than the {} MiB of memory available \
         (MemAvailable in /proc/meminfo); lower `concurrency`",
        human_count(*publishers),
        human_count(*needed >> 20),
        human_count(*available >> 20)
    )]
    Memory {
        case: String,
        publishers: u64,
        /// Bytes.
        needed: u64,
        /// Bytes.
        available: u64,
    },
}

/// Checks `scenario` against this process's limits; returns notes for the reader (long cases), or why it
/// cannot run, naming the number that was exceeded.
pub fn check(scenario: &Scenario) -> Result<Vec<String>, PreflightError> {
    check_with(scenario, raise_descriptor_limit(), available_memory())
}

/// [`check`] against a descriptor `limit` and `available` bytes of memory (`None`: unknown, not checked).
fn check_with(
    scenario: &Scenario,
    limit: Option<u64>,
    available: Option<u64>,
) -> Result<Vec<String>, PreflightError> {
    let mut notes = Vec::new();
    for case in &scenario.cases {
        let publishers = case.concurrency as u64;
        let fds = descriptors(case);
        if let Some(limit) = limit
            && fds > limit
        {
            return Err(PreflightError::Descriptors {
                case: case.name.clone(),
                publishers,
                needed: fds,
                limit,
                own_sink: matches!(&case.options, BackendOptions::Local(o) if o.address.is_none()),
            });
        }
        let bytes = memory(case);
        if let Some(available) = available
            && bytes > available
        {
            return Err(PreflightError::Memory {
                case: case.name.clone(),
                publishers,
                needed: bytes,
                available,
            });
        }
        if let Some(note) = long_case(case) {
            notes.push(note);
        }
    }
    Ok(notes)
}

/// File descriptors `case` holds at once, at most.
pub fn descriptors(case: &Case) -> u64 {
    let publishers = case.concurrency as u64;
    let sockets = match (&case.options, case.path) {
        // The embedded sink holds the other end of every stream (one FIFO is shared).
        (BackendOptions::Local(o), _) if o.address.is_none() && case.backend != Backend::Fifo => {
            2 * publishers
        }
        (BackendOptions::Local(_), _) => publishers + 1,
        (BackendOptions::Redis(o), PathKind::Acquire) => o.pool_size as u64,
        (BackendOptions::Redis(o), PathKind::Pooled) if o.multiplexed => 1,
        (BackendOptions::Amqp(o), PathKind::Acquire) => o.pool_size as u64,
        (BackendOptions::Amqp(o), PathKind::Pooled) => o.connections as u64,
        _ => publishers,
    };
    // Broker cases also hold taskbench's own connection for the delivery check.
    sockets + BASE_DESCRIPTORS + 1
}

fn memory(case: &Case) -> u64 {
    let each = match case.options {
        BackendOptions::Local(_) => LOCAL_PUBLISHER_BYTES,
        _ => BROKER_PUBLISHER_BYTES,
    };
    case.concurrency as u64 * each
}

/// A note when `case` is bounded by count alone and that count will take longer than [`LONG_CASE`]: exactly
/// for an open loop, and for a closed loop at a rate as fast as taskbench publishes anywhere.
fn long_case(case: &Case) -> Option<String> {
    let publishes = case.publishes?;
    let bound = |secs: f64| case.duration.map_or(secs, |d| secs.min(d.as_secs_f64()));
    let (secs, how) = match case.rate {
        Some(rate) => (bound(publishes as f64 / rate), format!("at {rate}/s")),
        // A closed loop's speed is unknown before it runs; a million per second is faster than any path
        // measured here, so this is a lower bound.
        None => (
            bound(publishes as f64 / 1e6),
            "even at 1,000,000/s".to_string(),
        ),
    };
    (secs > LONG_CASE.as_secs_f64()).then(|| {
        format!(
            "case {:?}: {} publishes {how} take {}; set `duration` (or --duration) to bound it",
            case.name,
            human_count(publishes),
            humantime::format_duration(Duration::from_secs(secs as u64))
        )
    })
}

/// Raises this process's soft descriptor limit to its hard limit, as load generators do; returns the limit
/// now in force (`None` if it cannot be read).
fn raise_descriptor_limit() -> Option<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return Some(hard);
    }
    Some(soft)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(text: &str) -> Scenario {
        crate::scenario::parse(
            &format!("name = \"p\"\n[[case]]\nname = \"c\"\n{text}"),
            "p.toml",
        )
        .unwrap()
    }

    #[test]
    fn too_many_publishers_for_the_descriptor_limit_are_refused_with_the_numbers() {
        let s = case("backend = \"unix\"\npath = \"raw\"\nconcurrency = 100000\n");
        // Fixed limits, so the test means the same on a machine allowing more descriptors than this one.
        let e = check_with(&s, Some(20_000), Some(8 << 30)).unwrap_err();
        assert!(
            matches!(
                e,
                PreflightError::Descriptors {
                    needed: 200_065,
                    limit: 20_000,
                    ..
                }
            ),
            "{e:?}"
        );
        let e = e.to_string();
        assert!(
            e.contains("100,000 publishers need about 200,065 file descriptors"),
            "{e}"
        );
        assert!(e.contains("halves"), "{e}");
        assert!(
            check(&case(
                "backend = \"unix\"\npath = \"raw\"\nconcurrency = 100\n"
            ))
            .is_ok()
        );
    }

    #[test]
    fn too_many_publishers_for_the_memory_are_refused_with_the_numbers() {
        let s = case("backend = \"unix\"\npath = \"raw\"\nconcurrency = 100000\n");
        let e = check_with(&s, None, Some(512 << 20)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "case \"c\": 100,000 publishers need about 781 MiB, more than the 512 MiB of memory available \
             (MemAvailable in /proc/meminfo); lower `concurrency`"
        );
    }

    #[test]
    fn descriptors_follow_what_the_path_holds() {
        let d = |t: &str| descriptors(&case(t).cases[0]) - BASE_DESCRIPTORS - 1;
        assert_eq!(
            d("backend = \"tcp\"\npath = \"fresh\"\nconcurrency = 10\n"),
            20
        );
        assert_eq!(
            d("backend = \"fifo\"\npath = \"raw\"\nconcurrency = 10\n"),
            11
        );
        assert_eq!(
            d("backend = \"unix\"\npath = \"raw\"\nconcurrency = 10\naddress = \"/x\"\n"),
            11
        );
        assert_eq!(
            d("backend = \"amqp\"\npath = \"pooled\"\nconcurrency = 50\nconnections = 4\n"),
            4
        );
        assert_eq!(
            d("backend = \"redis\"\npath = \"acquire\"\nconcurrency = 50\npool_size = 5\n"),
            5
        );
        assert_eq!(
            d("backend = \"redis\"\npath = \"pooled\"\nconcurrency = 50\n"),
            50
        );
    }

    #[test]
    fn a_case_that_runs_for_days_is_announced() {
        let s = case("backend = \"unix\"\npath = \"raw\"\npublishes = 1000000000000\n");
        let notes = check(&s).unwrap();
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].contains("1,000,000,000,000 publishes even at 1,000,000/s take 11days"),
            "{notes:?}"
        );
        let s = case("backend = \"unix\"\npath = \"raw\"\npublishes = 36000\nrate = 5.0\n");
        assert!(check(&s).unwrap()[0].contains("at 5/s take 2h"));
        let s = case(
            "backend = \"unix\"\npath = \"raw\"\npublishes = 1000000000000\nduration = \"10m\"\n",
        );
        assert!(check(&s).unwrap().is_empty(), "bounded by its duration");
    }
}
