//! Waiting for a backend's count of arrived messages to settle after a case: messages written just before
//! the end may still be on their way (in a socket buffer, or into a broker's queue).

use std::time::Duration;
use tokio::time::Instant;

/// When to stop reading a count: it reached what was published, or stopped moving, or time ran out.
#[derive(Debug, Clone, Copy)]
pub struct SettleRules {
    /// How often to read the count.
    pub poll: Duration,
    /// Stop once the count has not moved for this long.
    pub quiet: Duration,
    /// Stop after this long whatever happens.
    pub limit: Duration,
}

/// Decides, count by count, whether to keep waiting. The caller reads the count (however its backend does)
/// and sleeps `rules.poll` between reads while [`Settle::done`] says no.
#[derive(Debug)]
pub struct Settle {
    pub rules: SettleRules,
    start: Instant,
    last: Option<u64>,
    last_change: Instant,
}

impl Settle {
    pub fn new(rules: SettleRules) -> Self {
        let now = Instant::now();
        Settle {
            rules,
            start: now,
            last: None,
            last_change: now,
        }
    }

    /// Whether `count` is final: at least `expected` (more will not make it add up), unchanged for
    /// `quiet`, or `limit` reached.
    pub fn done(&mut self, count: u64, expected: u64) -> bool {
        let now = Instant::now();
        if count >= expected || now - self.start >= self.rules.limit {
            return true;
        }
        if self.last != Some(count) {
            self.last = Some(count);
            self.last_change = now;
            return false;
        }
        now - self.last_change >= self.rules.quiet
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: SettleRules = SettleRules {
        poll: Duration::from_millis(10),
        quiet: Duration::from_millis(100),
        limit: Duration::from_secs(1),
    };

    #[tokio::test(start_paused = true)]
    async fn stops_at_the_count_or_when_it_stops_moving() {
        let mut s = Settle::new(RULES);
        assert!(!s.done(3, 10));
        assert!(s.done(10, 10), "reached");
        let mut s = Settle::new(RULES);
        assert!(!s.done(3, 10));
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(!s.done(3, 10), "still within the quiet time");
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(s.done(3, 10), "quiet for 120 ms");
    }

    #[tokio::test(start_paused = true)]
    async fn a_moving_count_is_cut_at_the_limit() {
        let mut s = Settle::new(RULES);
        let mut n = 0;
        while !s.done(n, u64::MAX) {
            n += 1;
            tokio::time::sleep(RULES.poll).await;
        }
        assert_eq!(n, 100, "1 s of 10 ms polls");
    }
}
