//! The open loop's schedule: when each publish is due, and when it would have started had nothing started
//! late (Lindley's recursion). Plain arithmetic on instants; it never reads the clock.

use std::time::Duration;
use tokio::time::Instant;

/// When publish `i` of an open loop is due, counted from the schedule's start.
pub fn intended_offset(i: u64, interval_ns: f64) -> Duration {
    Duration::from_nanos((i as f64 * interval_ns) as u64)
}

/// One publisher's view of an open loop: publish `i` (the index claimed from the count every publisher
/// shares) is due `i` intervals after the start, and this publisher would have been free at `free_at` had
/// every one of its publishes started on schedule.
#[derive(Debug, Clone, Copy)]
pub struct OpenLoopSchedule {
    start: Instant,
    /// Nanoseconds between scheduled publishes.
    interval_ns: f64,
    free_at: Instant,
}

/// Where one publish sits on an [`OpenLoopSchedule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduledStart {
    /// When it was due.
    pub intended: Instant,
    /// When it would have started had nothing started late: when it was due, or when the publish before it
    /// would have ended, whichever is later.
    pub virtual_start: Instant,
}

impl ScheduledStart {
    /// How long it waited behind earlier publishes: counted into its latency (no coordinated omission).
    #[inline]
    pub fn queued(&self) -> Duration {
        self.virtual_start - self.intended
    }
}

impl OpenLoopSchedule {
    /// A schedule from `start`, one publish every `interval_ns` nanoseconds; the publisher is free at once.
    pub fn new(start: Instant, interval_ns: f64) -> Self {
        OpenLoopSchedule {
            start,
            interval_ns,
            free_at: start,
        }
    }

    /// When publish `i` is due.
    #[inline]
    pub fn intended(&self, i: u64) -> Instant {
        self.start + intended_offset(i, self.interval_ns)
    }

    /// The publish due at `intended` starts then, or when this publisher would have finished the one
    /// before it had nothing started late.
    #[inline]
    pub fn start_of(&self, intended: Instant) -> ScheduledStart {
        ScheduledStart {
            intended,
            virtual_start: intended.max(self.free_at),
        }
    }

    /// The publish placed at `slot` took `service` (its measured time, from its real start to its end):
    /// the next one may start when it would have ended. Slow publishes delay the ones behind them; the
    /// timer's own lateness delays nothing.
    #[inline]
    pub fn served(&mut self, slot: ScheduledStart, service: Duration) {
        self.free_at = slot.virtual_start + service;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn open_loop_schedule_is_evenly_spaced() {
        let interval = 1e9 / 3000.0;
        assert_eq!(intended_offset(0, interval), Duration::ZERO);
        assert_eq!(intended_offset(3, interval), ms(1));
        assert_eq!(intended_offset(3000, interval), Duration::from_secs(1));
        let start = Instant::now();
        let schedule = OpenLoopSchedule::new(start, interval);
        assert_eq!(schedule.intended(0), start);
        assert_eq!(schedule.intended(3000), start + Duration::from_secs(1));
    }

    #[test]
    fn publishes_that_keep_up_start_when_due() {
        let start = Instant::now();
        let mut schedule = OpenLoopSchedule::new(start, 10e6);
        for i in 0..5 {
            let slot = schedule.start_of(schedule.intended(i));
            assert_eq!(slot.virtual_start, start + ms(10 * i));
            assert_eq!(slot.queued(), Duration::ZERO);
            schedule.served(slot, ms(9));
        }
    }

    #[test]
    fn a_slow_publish_delays_the_ones_behind_it_until_the_queue_drains() {
        // Due every 10 ms; publish 0 takes 25 ms, the others 1 ms.
        let start = Instant::now();
        let mut schedule = OpenLoopSchedule::new(start, 10e6);
        let mut queued = Vec::new();
        for i in 0..4 {
            let slot = schedule.start_of(schedule.intended(i));
            queued.push(slot.queued());
            schedule.served(slot, if i == 0 { ms(25) } else { ms(1) });
        }
        // 1 is due at 10 and starts at 25; 2 is due at 20 and starts when 1 ends, at 26; 3 is on time.
        assert_eq!(queued, [ms(0), ms(15), ms(6), ms(0)]);
    }
}
