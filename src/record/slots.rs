//! The recorders of one case, one per runtime thread in its own slot, and the newest closed interval a
//! progress view reads while the case runs.

use super::new_histogram;
use super::recorder::Recorder;
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

/// The recorders of one case, shared by its publishers: one per runtime thread, not one per publisher, so a
/// publisher costs what its connection costs and not a set of histograms (a latency histogram alone is
/// ~240 KB; ten thousand publishers each with their own took gigabytes).
///
/// A publisher records into the slot of the thread it runs on. A thread runs one task at a time and records
/// without awaiting, so a slot's lock is only ever contended when two threads share a slot (more threads
/// than slots), and correct either way.
pub struct Recorders {
    slots: Box<[RecorderSlot]>,
    open_loop: bool,
    /// When the measured run started and how long its intervals are: every recorder's timeline starts
    /// there, whichever thread it belongs to and whenever it is first used.
    intervals: OnceLock<(Instant, Duration)>,
    /// The newest closed interval, for a progress view ([`Recorders::keeping_latest`]).
    latest: Option<Arc<LatestSlot>>,
}

/// The newest interval a thread closed with successes in it, merged over the threads that have closed it so
/// far, and which interval each recorder has open: an interval is complete when none has it open any more.
/// A recorder reports here only from its cold `rotate` (when a publish of its own ends past its interval,
/// off the timed part of the loop, like the interval's encode) and once when its intervals start: the lock
/// is taken once per interval per thread, never per publish.
#[derive(Debug)]
pub(super) struct LatestSlot(Mutex<Latest>);

#[derive(Debug)]
struct Latest {
    /// The newest interval offered, merged over the recorders that have closed it.
    held: Option<(u64, Histogram<u64>)>,
    /// Each recorder's open interval (by its slot in [`Recorders`]); `u64::MAX` before its first.
    open: Vec<u64>,
    /// The newest interval found complete: what [`Recorders::latest_interval`] answers.
    shown: Option<LatestInterval>,
    /// Every closed interval of every recorder added up: the measured latencies so far, for a live view
    /// ([`Recorders::closed_latency`]).
    total: Option<Histogram<u64>>,
}

impl LatestSlot {
    fn new(recorders: usize) -> Self {
        LatestSlot(Mutex::new(Latest {
            held: None,
            open: vec![u64::MAX; recorders],
            shown: None,
            total: None,
        }))
    }

    /// Recorder `id` closed interval `closed` (its index and histogram, when it had successes) and opened
    /// `next`. A closed interval newer than the one held replaces it, the same one adds to it, an older one
    /// (a thread that rolled over after another had already closed a later interval) is dropped: the slot
    /// holds the newest interval, not a mix.
    pub(super) fn rolled(&self, id: usize, closed: Option<(u64, &Histogram<u64>)>, next: u64) {
        let mut latest = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((index, interval)) = closed {
            latest
                .total
                .get_or_insert_with(new_histogram)
                .add(interval)
                .expect("same bounds");
            match &mut latest.held {
                Some((i, _)) if *i > index => {}
                Some((i, merged)) => {
                    if *i < index {
                        merged.reset();
                        *i = index;
                    }
                    merged.add(interval).expect("same bounds");
                }
                None => {
                    let mut merged = new_histogram();
                    merged.add(interval).expect("same bounds");
                    latest.held = Some((index, merged));
                }
            }
        }
        if let Some(open) = latest.open.get_mut(id) {
            *open = next;
        }
    }

    /// The held interval once no recorder has it open (then every thread that recorded into it has added its
    /// part), else the newest one that was complete before.
    fn read(&self) -> Option<LatestInterval> {
        let mut guard = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let latest = &mut *guard;
        if let Some((index, h)) = &latest.held
            && !latest.open.contains(index)
            && latest
                .shown
                .is_none_or(|s| s.index < *index || s.ok != h.len())
        {
            latest.shown = Some(LatestInterval {
                index: *index,
                ok: h.len(),
                p99: h.value_at_quantile(0.99),
            });
        }
        latest.shown
    }
}

/// The newest complete interval of a running case with successes in it (see
/// [`Recorders::latest_interval`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatestInterval {
    /// Its number from the start of the measured run: the index of its entry in
    /// [`CaseResult::timeline`](super::CaseResult::timeline).
    pub index: u64,
    /// Successful publishes in it.
    pub ok: u64,
    /// Their p99 latency (ns).
    pub p99: u64,
}

/// One slot, on its own cache line so threads never share one by accident.
#[repr(align(128))]
struct RecorderSlot(Mutex<Option<Recorder>>);

static NEXT_THREAD_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's slot number, handed out in order the first time a thread records.
    static THREAD_SLOT: usize = NEXT_THREAD_SLOT.fetch_add(1, Relaxed);
}

impl Recorders {
    /// Recorders for publishers on up to `threads` threads (more still work, sharing slots).
    pub fn new(threads: usize, open_loop: bool) -> Self {
        Recorders {
            slots: (0..threads.max(1) * 2)
                .map(|_| RecorderSlot(Mutex::new(None)))
                .collect(),
            open_loop,
            intervals: OnceLock::new(),
            latest: None,
        }
    }

    /// Also keeps the newest closed interval for [`Recorders::latest_interval`] (a progress view reads it):
    /// at each interval's close a thread then takes one more lock and adds the interval to it. Without this,
    /// closing an interval costs what it did before.
    pub fn keeping_latest(mut self) -> Self {
        self.latest = Some(Arc::new(LatestSlot::new(self.slots.len())));
        self
    }

    /// The newest interval with successes in it that every thread has closed, merged over them; `None` until
    /// one is (and always without [`Recorders::keeping_latest`]). The warm-up is never in it, nor the last
    /// interval (it closes with the case).
    ///
    /// A thread closes an interval when one of its own publishes ends past it. At an interval's turn this
    /// answers the interval before until the last thread holding publishes of the new one has rolled over;
    /// a thread that does not (its publishers moved to another thread, or stalled) holds back that one
    /// interval only: the next one every thread has closed is answered instead. When nothing ends at all (a
    /// stall), the answer stays the interval before the stall.
    pub fn latest_interval(&self) -> Option<LatestInterval> {
        self.latest.as_ref()?.read()
    }

    /// Every successful measured publish of the intervals the threads have closed so far (a copy, taken once
    /// per interval by a live view); `None` before the first and always without
    /// [`Recorders::keeping_latest`]. The case's last, open intervals are not in it: the final figures come
    /// with the case's result.
    pub fn closed_latency(&self) -> Option<Histogram<u64>> {
        let latest = self.latest.as_ref()?;
        let guard = latest.0.lock().unwrap_or_else(PoisonError::into_inner);
        guard.total.clone()
    }

    /// Starts every recorder's intervals at `start` (the measured run's start), each `length` long; the
    /// first call counts.
    pub fn start_intervals(&self, start: Instant, length: Duration) {
        let _ = self.intervals.set((start, length));
    }

    /// Runs `f` on the recorder of the calling thread (made on first use). `f` must not block.
    #[inline]
    pub fn with<R>(&self, f: impl FnOnce(&mut Recorder) -> R) -> R {
        let id = THREAD_SLOT.with(|s| *s) % self.slots.len();
        let mut guard = self.slots[id]
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let rec =
            guard.get_or_insert_with(|| Recorder::in_slot(self.open_loop, self.latest.clone(), id));
        if rec.wall_start.is_none()
            && let Some(&(start, length)) = self.intervals.get()
        {
            rec.start_intervals(start, length);
        }
        f(rec)
    }

    /// Takes every recorder that was used, leaving the slots empty.
    pub fn take_all(&self) -> Vec<Recorder> {
        self.slots
            .iter()
            .filter_map(|s| s.0.lock().unwrap_or_else(PoisonError::into_inner).take())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ErrorKind, PublishError};

    /// Two threads' recorders (slots 0 and 1 of `recorders`), their intervals 100 ms long from `t0`.
    fn two(recorders: &Recorders, t0: Instant) -> (Recorder, Recorder) {
        let make = |id| {
            let mut r = Recorder::in_slot(false, recorders.latest.clone(), id);
            r.start_intervals(t0, Duration::from_millis(100));
            r
        };
        (make(0), make(1))
    }

    fn publish(rec: &mut Recorder, at: Instant, ns: u64) {
        rec.roll(at);
        rec.record_latency(ns);
    }

    fn latest(recorders: &Recorders) -> Option<(u64, u64)> {
        recorders.latest_interval().map(|l| (l.index, l.ok))
    }

    #[test]
    fn an_interval_is_answered_once_every_thread_has_closed_it() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let recorders = Recorders::new(1, false).keeping_latest();
        let (mut a, mut b) = two(&recorders, t0);
        // Interval 0: a 99 publishes of 1 ms, b one of 50 ms.
        for i in 0..99 {
            publish(&mut a, t0 + ms(i / 2), 1_000_000);
        }
        publish(&mut b, t0 + ms(60), 50_000_000);
        assert_eq!(latest(&recorders), None, "nothing closed yet");

        // a's first publish of interval 1 closes its interval 0; b still holds its part of it.
        publish(&mut a, t0 + ms(101), 3_000_000);
        assert_eq!(latest(&recorders), None, "b has not rolled over");
        publish(&mut b, t0 + ms(102), 3_000_000);
        let l = recorders.latest_interval().unwrap();
        assert_eq!((l.index, l.ok), (0, 100), "both parts");
        assert!(l.p99 < 1_010_000, "99 of 100 took 1 ms: {l:?}");

        // a goes on into interval 2, b stalls in interval 1: interval 1 is held back, interval 0 answered.
        publish(&mut a, t0 + ms(150), 4_000_000);
        publish(&mut a, t0 + ms(201), 1_000_000);
        assert_eq!(
            latest(&recorders),
            Some((0, 100)),
            "b still has interval 1 open"
        );
        // a closes interval 2, which b never had open: answered, and b's interval 1 is skipped.
        publish(&mut a, t0 + ms(301), 1_000_000);
        assert_eq!(latest(&recorders), Some((2, 1)));
        // b's stalled publish ends in interval 3: its interval 1 is older than the one held, and dropped.
        publish(&mut b, t0 + ms(310), 200_000_000);
        assert_eq!(latest(&recorders), Some((2, 1)));

        // finish() closes the last intervals with the case, not past them: not offered.
        a.finish();
        b.finish();
        assert_eq!(latest(&recorders), Some((2, 1)));
        // Everything still reached the case's own histograms.
        assert_eq!(a.latency.len() + b.latency.len(), 106);
    }

    #[test]
    fn a_thread_that_never_started_or_stopped_early_holds_nothing_back() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let recorders = Recorders::new(2, false).keeping_latest();
        let (mut a, mut b) = two(&recorders, t0);
        // b's publishers are done after interval 0 (a case split unevenly): it stays at 0 for good.
        publish(&mut b, t0 + ms(10), 1_000_000);
        for at in [20, 120, 220] {
            publish(&mut a, t0 + ms(at), 2_000_000);
        }
        assert_eq!(
            latest(&recorders),
            Some((1, 1)),
            "interval 0 waits for b, 1 does not"
        );
        // Slots 2 and 3, whose threads never recorded, are not waited for.
        assert_eq!(recorders.slots.len(), 4);
    }

    #[test]
    fn an_interval_with_failures_only_is_not_offered_and_nothing_is_kept_unless_asked() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let recorders = Recorders::new(1, false).keeping_latest();
        let (mut a, _) = two(&recorders, t0);
        publish(&mut a, t0 + ms(10), 1_000_000);
        let e = PublishError::new(ErrorKind::Send, "x");
        a.record_failure(&e, 1, ms(1), t0 + ms(110));
        a.record_failure(&e, 1, ms(1), t0 + ms(210));
        assert_eq!(
            latest(&recorders),
            None,
            "the other recorder has interval 0 open"
        );

        let plain = Recorders::new(1, false);
        plain.start_intervals(t0, ms(100));
        plain.with(|rec| publish(rec, t0 + ms(10), 1_000_000));
        plain.with(|rec| publish(rec, t0 + ms(110), 1_000_000));
        assert_eq!(latest(&plain), None);
        let kept = Recorders::new(1, false).keeping_latest();
        kept.start_intervals(t0, ms(100));
        kept.with(|rec| publish(rec, t0 + ms(10), 1_000_000));
        kept.with(|rec| rec.record_failure(&e, 1, ms(1), t0 + ms(110)));
        kept.with(|rec| rec.record_failure(&e, 1, ms(1), t0 + ms(210)));
        assert_eq!(
            latest(&kept),
            Some((0, 1)),
            "via with(); interval 1 had no success"
        );
    }
}
