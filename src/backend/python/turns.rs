//! The two py-spy views of one harness taken in turns (`--profile cpu`): a blocking sampler for the cpu view,
//! then a blocking `--idle` one for the pywall view, alternating over the measured publishes and never both
//! at once; the turns start at [`FIRST_TURN`] and double every pair up to [`LONGEST_TURN`].
//!
//! Why turns: two blocking samplers cannot share a process (each ptrace-stops it for every sample, and a
//! second tracer's attach fails while the first holds it), and a `--nonblocking` sampler beside a blocking
//! one failed 0-58% of its reads (often 5-30%), because the blocking one's stops stretched its read window
//! (docs/python-clients.md). One sampler at a time, each blocking, reads every stack whole. The price: each
//! view samples about half of the measured phase, in alternating turns, less py-spy's start at each turn
//! (about 25 ms at load 5 on 2 cores). Both views are of the same publishes' mix, so their shares hold, and
//! each view's ns are scaled from the time it sampled to the harness's whole measured phase, so that its
//! totals (and `flame --diff`'s ns per publish) read as the run's. Publishers with an odd worker index
//! start with the pywall view, so that with two or more harnesses both views are sampled at every moment.

use super::spy::{self, Recorded, Sampler, Sampling, SpyError};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long the first turns sample (from py-spy's first sample), so that a short case has both views.
pub const FIRST_TURN: Duration = Duration::from_millis(100);
/// How long a turn samples at most: each pair of turns samples twice as long as the pair before, up to
/// this, because each turn starts a py-spy (its start took about 15 ms of CPU here, and with 200 ms turns
/// a profiled harness published 21-46% fewer per second than with 1 s ones; docs/measurements.md).
pub const LONGEST_TURN: Duration = Duration::from_secs(1);

/// How long turn `turn` (from 0) samples: [`FIRST_TURN`] for the first pair, doubling every pair, at most
/// [`LONGEST_TURN`].
fn turn_length(turn: usize) -> Duration {
    let pair = (turn / 2).min(16) as u32;
    (FIRST_TURN * 2u32.pow(pair)).min(LONGEST_TURN)
}

/// What each turn recorded, in the order taken.
type Slices = Vec<(Sampling, Result<Recorded, SpyError>)>;

/// The samplers of one harness, taking turns until [`Turns::stop`].
pub struct Turns {
    end: oneshot::Sender<()>,
    task: JoinHandle<Slices>,
    /// When the first turn began: the harness's measured phase, for the views' scale.
    began: Instant,
}

impl Turns {
    /// Starts the turns on harness process `pid`, py-spy writing into `dir`; `worker` is the publisher's
    /// index (which view goes first).
    pub fn start(spy: PathBuf, pid: u32, dir: PathBuf, worker: usize) -> Turns {
        let (end, ended) = oneshot::channel();
        let task = tokio::spawn(take_turns(spy, pid, dir, worker, ended));
        Turns {
            end,
            task,
            began: Instant::now(),
        }
    }

    /// Ends the turn under way and returns one result per view: its turns' samples summed and scaled from
    /// the time they sampled to the whole measured phase, or why it has none.
    pub async fn stop(self) -> Vec<(Sampling, Result<Recorded, SpyError>)> {
        let phase_ns = self.began.elapsed().as_nanos() as u64;
        let _ = self.end.send(());
        match self.task.await {
            Ok(slices) => combine(slices)
                .into_iter()
                .map(|(s, r)| (s, r.map(|r| r.scaled_to(phase_ns))))
                .collect(),
            Err(e) => [Sampling::Cpu, Sampling::Wall]
                .into_iter()
                .map(|s| {
                    (
                        s,
                        Err(SpyError::NoTurn(format!("the samplers' task ended: {e}"))),
                    )
                })
                .collect(),
        }
    }
}

/// The view of turn `turn` (from 0) of publisher `worker`.
fn view(worker: usize, turn: usize) -> Sampling {
    if (worker + turn).is_multiple_of(2) {
        Sampling::Cpu
    } else {
        Sampling::Wall
    }
}

/// Alternates the views until `ended` fires (the turn under way then stops at once), or until a turn fails
/// (py-spy ended on its own: it may not attach, or the harness is gone; every later turn would most likely
/// fail the same way, and py-spy would be started over and over).
async fn take_turns(
    spy: PathBuf,
    pid: u32,
    dir: PathBuf,
    worker: usize,
    mut ended: oneshot::Receiver<()>,
) -> Slices {
    let mut slices: Slices = Vec::new();
    for turn in 0usize.. {
        let sampling = view(worker, turn);
        let out = dir.join(format!(
            "py-spy-{}-{worker}-{turn}.txt",
            sampling.view_name()
        ));
        let mut sampler = match Sampler::attach(&spy, pid, out, sampling) {
            Ok(sampler) => sampler,
            Err(e) => {
                slices.push((sampling, Err(e)));
                break;
            }
        };
        // The turn's time counts from py-spy's first sample: its start takes 2-40 ms on an idle machine and
        // more under load, and a SIGINT before it is sampling ends it without output.
        let started = tokio::select! {
            started = sampler.started() => Some(started),
            _ = &mut ended => None,
        };
        let last = match started {
            None => true,
            Some(false) => false,
            Some(true) => tokio::select! {
                _ = tokio::time::sleep(turn_length(turn)) => false,
                _ = &mut ended => true,
            },
        };
        let recorded = sampler.stop().await;
        let failed = recorded.is_err();
        slices.push((sampling, recorded));
        if last || failed {
            break;
        }
    }
    slices
}

/// One result per view from the turns' results, in turn order: the samples of the turns that recorded
/// something, summed (a failed turn, which ended the turns, is logged: the view keeps what it sampled
/// before, and its share sampled says how much), else the first turn's reason, else (the view never had
/// a turn) why not.
fn combine(slices: Slices) -> Vec<(Sampling, Result<Recorded, SpyError>)> {
    let turns = slices.len();
    let first_failure = slices
        .iter()
        .find_map(|(s, r)| r.as_ref().err().map(|e| (*s, e.to_string())));
    let mut out = Vec::new();
    for sampling in [Sampling::Cpu, Sampling::Wall] {
        let mut recorded: Option<Recorded> = None;
        let mut failures = Vec::new();
        for (i, (_, r)) in slices
            .iter()
            .enumerate()
            .filter(|(_, (s, _))| *s == sampling)
        {
            match r {
                Ok(r) => {
                    recorded = Some(match recorded.take() {
                        None => r.clone(),
                        Some(sum) => Recorded {
                            folded: spy::merge(&[sum.folded, r.folded.clone()]),
                            samples: sum.samples + r.samples,
                            errors: sum.errors + r.errors,
                            sampled_ns: sum.sampled_ns + r.sampled_ns,
                            phase_ns: 0,
                        },
                    });
                }
                Err(e) => failures.push((i, e.to_string())),
            }
        }
        let result = match (recorded, failures.first()) {
            // Every turn ran and found nothing to sample: the CPU view of a harness that was never on a
            // CPU when py-spy looked.
            (Some(sum), None) if sum.folded.trim().is_empty() => Err(SpyError::NoTurn(format!(
                "py-spy took no samples in the view's {} turns ({} ms): the harness was never on a CPU when it looked",
                slices.iter().filter(|(s, _)| *s == sampling).count(),
                sum.sampled_ns / 1_000_000
            ))),
            (Some(sum), _) => {
                for (i, why) in &failures {
                    // The last turn, cut short by the case's end, may stop py-spy before it sampled.
                    if i + 1 < turns {
                        tracing::warn!(
                            "a {} turn recorded nothing ({why}); the harness's samplers stopped taking turns after it",
                            sampling.profile_name()
                        );
                    }
                }
                Ok(sum)
            }
            (None, Some((_, why))) => Err(SpyError::NoTurn(why.clone())),
            (None, None) => Err(SpyError::NoTurn(match &first_failure {
                Some((other, why)) => format!(
                    "not sampled: the {} sampler, which went first, failed ({why})",
                    other.view_name()
                ),
                None => format!(
                    "not sampled: the measured publishes ended within the first {} ms turn, the other view's",
                    FIRST_TURN.as_millis()
                ),
            })),
        };
        out.push((sampling, result));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(folded: &str, samples: u64, errors: u64) -> Result<Recorded, SpyError> {
        Ok(Recorded {
            folded: folded.into(),
            samples,
            errors,
            sampled_ns: 100,
            phase_ns: 0,
        })
    }

    #[test]
    fn the_views_alternate_and_odd_publishers_start_with_the_wall_view() {
        let turns = |worker| (0..4).map(|t| view(worker, t)).collect::<Vec<_>>();
        use Sampling::{Cpu, Wall};
        assert_eq!(turns(0), [Cpu, Wall, Cpu, Wall]);
        assert_eq!(turns(1), [Wall, Cpu, Wall, Cpu]);
        assert_eq!(turns(2), turns(0));
    }

    #[test]
    fn turns_start_short_and_double_every_pair_up_to_a_second() {
        let ms: Vec<u128> = (0..12).map(|t| turn_length(t).as_millis()).collect();
        assert_eq!(
            ms,
            [
                100, 100, 200, 200, 400, 400, 800, 800, 1000, 1000, 1000, 1000
            ]
        );
        assert_eq!(turn_length(usize::MAX), LONGEST_TURN);
    }

    #[test]
    fn each_views_turns_add_up_and_a_failed_turn_adds_nothing() {
        let slices = vec![
            (Sampling::Cpu, rec("a 2\nb 4\n", 3, 0)),
            (Sampling::Wall, rec("a 6\n", 3, 1)),
            (
                Sampling::Cpu,
                Err(SpyError::RecordedNothing(
                    "py-spy recorded no samples".into(),
                )),
            ),
            (Sampling::Wall, rec("a 2\nc 2\n", 2, 0)),
            (Sampling::Cpu, rec("b 2\n", 1, 0)),
        ];
        let views = combine(slices);
        assert_eq!(views.len(), 2);
        let (cpu, wall) = (&views[0], &views[1]);
        assert_eq!(cpu.0, Sampling::Cpu);
        let cpu = cpu.1.as_ref().unwrap();
        assert_eq!(
            (cpu.folded.as_str(), cpu.samples, cpu.errors, cpu.sampled_ns),
            ("a 2\nb 6\n", 4, 0, 200)
        );
        let wall = wall.1.as_ref().unwrap();
        assert_eq!(
            (wall.folded.as_str(), wall.samples, wall.errors),
            ("a 8\nc 2\n", 5, 1)
        );
    }

    #[test]
    fn a_turn_with_no_samples_adds_nothing_and_a_view_with_none_says_why() {
        let slices = || {
            vec![
                (Sampling::Cpu, rec("", 0, 0)),
                (Sampling::Wall, rec("a 6\n", 3, 0)),
                (Sampling::Cpu, rec("", 0, 0)),
                (Sampling::Wall, rec("a 2\n", 1, 0)),
            ]
        };
        let views = combine(slices());
        let why = views[0].1.as_ref().unwrap_err().to_string();
        assert_eq!(
            why,
            "py-spy took no samples in the view's 2 turns (0 ms): the harness was never on a CPU when it looked"
        );
        let wall = views[1].1.as_ref().unwrap();
        assert_eq!((wall.folded.as_str(), wall.samples), ("a 8\n", 4));
        let mut some = slices();
        some.push((Sampling::Cpu, rec("b 2\n", 1, 0)));
        let cpu = combine(some).remove(0).1.unwrap();
        assert_eq!(
            (cpu.folded.as_str(), cpu.samples, cpu.sampled_ns),
            ("b 2\n", 1, 300)
        );
    }

    #[test]
    fn a_view_without_a_turn_says_why() {
        // The case ended during the first turn.
        let views = combine(vec![(Sampling::Wall, rec("a 2\n", 1, 0))]);
        assert!(views[1].1.is_ok());
        let why = views[0].1.as_ref().unwrap_err().to_string();
        assert!(why.contains("ended within the first 100 ms turn"), "{why}");
        // py-spy could not attach: the view that went first says why, the other names it.
        let views = combine(vec![(
            Sampling::Cpu,
            Err(SpyError::RecordedNothing("ptrace is not permitted".into())),
        )]);
        assert_eq!(
            views[0].1.as_ref().unwrap_err().to_string(),
            "ptrace is not permitted"
        );
        let why = views[1].1.as_ref().unwrap_err().to_string();
        assert!(
            why.contains("the cpu sampler, which went first, failed (ptrace is not permitted)"),
            "{why}"
        );
    }
}
