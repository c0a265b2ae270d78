//! Timed events in a case's measured run (`[[case.fault]]` on the wire, `[[case.event]]` on the broker): the
//! [`CaseEvents`] a target hands over to carry them out, the schedule that calls it at each event's start and
//! end ([`run_schedule`]), and [`EventMarks`], which the publishers read to say how long after an event
//! ended each of them published again. The schedule is shared, not the mechanism: anything that can begin
//! and end an event implements [`CaseEvents`].

use super::control::Stop;
use crate::record::EventResult;
use crate::scenario::CaseEvent;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// What carries out a case's timed events (the wire proxy, for faults on the wire; the broker's administration,
/// for broker-side events).
pub trait CaseEvents: Send + Sync + 'static {
    /// `event` starts now.
    fn begin(&self, event: &CaseEvent);
    /// `event` ends now (called once for every event begun, even when the case ends first).
    fn end(&self, event: &CaseEvent);
}

/// The events of a case as they happen, and each publisher's first successful publish after each ended.
pub(super) struct EventMarks {
    events: Vec<CaseEvent>,
    /// How many events ended so far: a publisher compares it with the count it saw, one atomic read.
    ended_count: AtomicUsize,
    /// (event, when it ended) in the order they ended.
    ended: Mutex<Vec<(usize, Duration)>>,
    /// Per event: when it began and ended, from the start of the measured run.
    times: Mutex<Vec<(Option<Duration>, Option<Duration>)>>,
    /// Per event, per publisher: how long after the event ended its first successful publish ended.
    again: Mutex<Vec<Vec<Option<Duration>>>>,
}

impl EventMarks {
    pub(super) fn new(events: &[CaseEvent], publishers: usize) -> EventMarks {
        EventMarks {
            events: events.to_vec(),
            ended_count: AtomicUsize::new(0),
            ended: Mutex::new(Vec::new()),
            times: Mutex::new(vec![(None, None); events.len()]),
            again: Mutex::new(vec![vec![None; publishers]; events.len()]),
        }
    }

    /// Publisher `worker` published successfully, ending at `end` (from the start of the measured run);
    /// `seen` is how many ended events it has accounted for. Costs one atomic read unless an event ended.
    #[inline]
    pub(super) fn published(&self, worker: usize, seen: &mut usize, end: Duration) {
        let n = self.ended_count.load(Ordering::Acquire);
        if n != *seen {
            self.first_after(worker, seen, n, end);
        }
    }

    #[cold]
    fn first_after(&self, worker: usize, seen: &mut usize, n: usize, end: Duration) {
        let ended = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        let mut again = self.again.lock().unwrap_or_else(|e| e.into_inner());
        for &(event, at) in &ended[*seen..n] {
            again[event][worker].get_or_insert(end.saturating_sub(at));
        }
        *seen = n;
    }

    fn began(&self, event: usize, at: Duration) {
        self.times.lock().unwrap_or_else(|e| e.into_inner())[event].0 = Some(at);
    }

    fn finished(&self, event: usize, at: Duration) {
        self.times.lock().unwrap_or_else(|e| e.into_inner())[event].1 = Some(at);
        let mut ended = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        ended.push((event, at));
        self.ended_count.store(ended.len(), Ordering::Release);
    }

    /// Ends every event that began and has not ended (the case ended first), so nothing stays held.
    pub(super) fn end_unfinished(&self, sink: &dyn CaseEvents) {
        let times = self.times.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for (i, (began, ended)) in times.iter().enumerate() {
            if began.is_some() && ended.is_none() {
                sink.end(&self.events[i]);
            }
        }
    }

    /// What happened, event by event.
    pub(super) fn results(&self) -> Vec<EventResult> {
        let times = self.times.lock().unwrap_or_else(|e| e.into_inner());
        let again = self.again.lock().unwrap_or_else(|e| e.into_inner());
        self.events
            .iter()
            .enumerate()
            .map(|(i, e)| EventResult {
                event: *e,
                began: times[i].0,
                ended: times[i].1,
                published_again: again[i].clone(),
            })
            .collect()
    }
}

/// Waits for the measured run to start (`start` set), then begins and ends each event on time through
/// `sink`, until all ended or `stop`.
pub(super) async fn run_schedule(
    sink: Arc<dyn CaseEvents>,
    marks: Arc<EventMarks>,
    start: Arc<dyn Fn() -> Option<Instant> + Send + Sync>,
    stop: Stop,
) {
    let start = loop {
        if let Some(s) = start() {
            break s;
        }
        if stop.requested() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    // (when, begins?, event), in time order; an end before a begin at the same time. An instant (no `for`, a
    // kill-connections) has no step of its own to end: it ends when its begin returns, which for a broker's
    // administration command may be a second later, and the publishers' reconnect figures count from there.
    let mut steps: Vec<(Duration, bool, usize)> = Vec::new();
    for (i, e) in marks.events.iter().enumerate() {
        steps.push((e.at, true, i));
        if !e.length.is_zero() {
            steps.push((e.at + e.length, false, i));
        }
    }
    steps.sort();
    let since_start = || Instant::now().saturating_duration_since(start);
    for (when, begins, i) in steps {
        tokio::time::sleep_until(start + when).await;
        if stop.requested() {
            return;
        }
        let event = &marks.events[i];
        if begins {
            marks.began(i, since_start());
            sink.begin(event);
            if event.length.is_zero() {
                sink.end(event);
                marks.finished(i, since_start());
            }
        } else {
            sink.end(event);
            marks.finished(i, since_start());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::EventKind;

    /// Records what it was asked, and takes `begin_takes` to begin (a broker's administration command).
    struct Slow {
        calls: Mutex<Vec<(&'static str, EventKind)>>,
        begin_takes: Duration,
    }

    impl CaseEvents for Slow {
        fn begin(&self, event: &CaseEvent) {
            std::thread::sleep(self.begin_takes);
            self.calls.lock().unwrap().push(("begin", event.kind));
        }

        fn end(&self, event: &CaseEvent) {
            self.calls.lock().unwrap().push(("end", event.kind));
        }
    }

    #[tokio::test]
    async fn an_instant_begins_then_ends_when_its_begin_returns_and_a_fault_ends_on_time() {
        let ms = Duration::from_millis;
        let events = [
            CaseEvent {
                at: ms(10),
                length: ms(40),
                kind: EventKind::Blackhole,
            },
            CaseEvent {
                at: ms(50),
                length: Duration::ZERO,
                kind: EventKind::KillConnections,
            },
        ];
        let marks = Arc::new(EventMarks::new(&events, 1));
        let sink = Arc::new(Slow {
            calls: Mutex::default(),
            begin_takes: ms(30),
        });
        let start = Instant::now();
        run_schedule(
            sink.clone(),
            marks.clone(),
            Arc::new(move || Some(start)),
            Stop::default(),
        )
        .await;
        use EventKind::{Blackhole, KillConnections};
        assert_eq!(
            *sink.calls.lock().unwrap(),
            [
                ("begin", Blackhole),
                ("end", Blackhole),
                ("begin", KillConnections),
                ("end", KillConnections)
            ],
            "the fault that ends at 50 ms ends before the instant at 50 ms begins"
        );
        let kill = &marks.results()[1];
        let (began, ended) = (kill.began.unwrap(), kill.ended.unwrap());
        assert!(
            ended >= began + ms(30),
            "the kill ended when its 30 ms command returned: began {began:?}, ended {ended:?}"
        );
    }
}
