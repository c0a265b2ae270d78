//! Reconnect backoff, shared by every path that keeps a connection (Redis `pooled` and `acquire`, AMQP
//! `pooled`): after a failed connect the next attempt waits, 10 ms doubling to at most 1 s, each wait
//! scattered by ±20 % so publishers that lost the same broker do not reconnect in step (what kombu's retry
//! policy, `interval_start`/`interval_step`/`interval_max`, and redis-rs's `ConnectionManager`, exponential
//! with jitter, do). The first reconnect after a working connection broke is immediate; a successful
//! publish resets it. A wait ends early when the run is interrupted.

use crate::engine::Stop;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::Duration;
use tokio::time::Instant;

/// How the waits between reconnect attempts grow.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Policy {
    /// The wait after the first failure.
    pub initial: Duration,
    /// Each further failure multiplies the wait by 2, up to this.
    pub max: Duration,
    /// Each wait is scattered uniformly within ± this share of itself.
    pub jitter: f64,
}

/// What every reconnecting path uses.
pub const RECONNECT: Policy = Policy {
    initial: Duration::from_millis(10),
    max: Duration::from_secs(1),
    jitter: 0.2,
};

impl Policy {
    /// The wait after `failures` consecutive failed attempts (1 or more), before jitter.
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        self.initial.saturating_mul(1u32 << doublings).min(self.max)
    }
}

/// Consecutive failures and when the next attempt may start; shared by whoever connects (a publisher, or
/// all users of one shared connection or pool).
pub struct Backoff {
    policy: Policy,
    /// Consecutive failures; read without the lock on every success.
    failures: AtomicU32,
    state: Mutex<State>,
    /// The run's interrupt: a wait ends at once.
    stop: Stop,
}

struct State {
    next_attempt: Option<Instant>,
    /// xorshift64 state for the jitter.
    rng: u64,
}

impl Backoff {
    pub fn new(policy: Policy, stop: Stop) -> Backoff {
        // Each backoff scatters differently: seeded from the process's random hasher keys.
        let seed = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(0x9e37_79b9_7f4a_7c15);
            h.finish() | 1
        };
        Backoff {
            policy,
            failures: AtomicU32::new(0),
            state: Mutex::new(State {
                next_attempt: None,
                rng: seed,
            }),
            stop,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until the next attempt may start: at once unless the last attempt failed. Returns false, early,
    /// when the run was interrupted (the caller should not attempt).
    pub async fn wait(&self) -> bool {
        let Some(at) = self.state().next_attempt else {
            return !self.stop.requested();
        };
        tokio::select! {
            biased;
            () = self.stop.wait() => false,
            () = tokio::time::sleep_until(at) => !self.stop.requested(),
        }
    }

    /// Records a failed attempt and schedules the next one; returns the wait until then.
    pub fn failed(&self) -> Duration {
        let mut s = self.state();
        let failures = self.failures.load(Relaxed).saturating_add(1);
        self.failures.store(failures, Relaxed);
        let base = self.policy.delay(failures);
        // Uniform in [1 - jitter, 1 + jitter).
        s.rng ^= s.rng << 13;
        s.rng ^= s.rng >> 7;
        s.rng ^= s.rng << 17;
        let unit = (s.rng >> 11) as f64 / (1u64 << 53) as f64;
        let wait = base.mul_f64(1.0 + self.policy.jitter * (2.0 * unit - 1.0));
        s.next_attempt = Some(Instant::now() + wait);
        wait
    }

    /// Records a success: the next failure starts from the initial wait again. Costs one atomic load
    /// when nothing failed (it is called after every publish).
    #[inline]
    pub fn succeeded(&self) {
        if self.failures.load(Relaxed) > 0 {
            let mut s = self.state();
            self.failures.store(0, Relaxed);
            s.next_attempt = None;
        }
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff() -> (Backoff, Stop) {
        let stop = Stop::default();
        (Backoff::new(RECONNECT, stop.clone()), stop)
    }

    #[test]
    fn waits_double_from_10ms_to_a_1s_cap() {
        let ms = |n| RECONNECT.delay(n).as_millis();
        assert_eq!(
            (1..=9).map(ms).collect::<Vec<_>>(),
            [10, 20, 40, 80, 160, 320, 640, 1000, 1000]
        );
        assert_eq!(ms(u32::MAX), 1000, "no overflow");
    }

    #[test]
    fn jitter_stays_within_20_percent_and_scatters() {
        let (b, _) = backoff();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            b.succeeded();
            for _ in 0..7 {
                b.failed();
            }
            let wait = b.failed().as_secs_f64();
            assert!((0.8..1.2).contains(&wait), "{wait}");
            seen.insert((wait * 1e6) as u64);
        }
        assert!(seen.len() > 150, "waits differ: {}", seen.len());
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_attempt_and_one_after_success_are_immediate() {
        let (b, _) = backoff();
        let t = Instant::now();
        assert!(b.wait().await);
        assert_eq!(t.elapsed(), Duration::ZERO);
        b.failed();
        b.succeeded();
        assert!(b.wait().await);
        assert_eq!(t.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dead_server_gets_few_attempts() {
        // Attempt, fail, wait, for 10 s of (paused) time: 10, 20, ... 640 ms, then one a second.
        let (b, _) = backoff();
        let t = Instant::now();
        let mut attempts = 0;
        while t.elapsed() < Duration::from_secs(10) {
            assert!(b.wait().await);
            attempts += 1;
            b.failed();
        }
        // 7 attempts in the first 1.27 s (±20 %), then about one per second.
        assert!((14..=20).contains(&attempts), "{attempts} attempts in 10 s");
        assert_eq!(b.failures(), attempts);
    }

    #[tokio::test(start_paused = true)]
    async fn an_interrupt_ends_the_wait_early() {
        let (b, stop) = backoff();
        for _ in 0..10 {
            b.failed();
        }
        let t = Instant::now();
        let flag = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            flag.request();
        });
        assert!(!b.wait().await, "an interrupted wait says not to attempt");
        let waited = t.elapsed();
        assert!(
            waited >= Duration::from_millis(100) && waited <= Duration::from_millis(101),
            "{waited:?}"
        );
        assert!(!b.wait().await);
    }
}
