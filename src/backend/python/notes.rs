//! What a reader of a celery or kombu case's numbers must know: what the path calls and how latency was
//! measured (notes), and the harnesses' figures: versions, pids, busy share, timed calls, py-spy's samples
//! and failures (facts).

use super::protocol::{Ready, Stats};
use super::spy;
use super::target::Shared;
use super::turns;
use crate::catalog::Client;
use crate::facts::{ProfilerFacts, PythonFacts, PythonVersions};

/// What `client` does on `path` for every publish.
pub(super) fn path_note(client: Client, path: &str) -> &'static str {
    match (client, path) {
        (Client::Celery, "fresh") => {
            "celery fresh: task.apply_async with broker_pool_limit = 0, so every call opens a connection and closes it"
        }
        (Client::Celery, "acquire") => {
            "celery acquire: task.apply_async as shipped, a producer checked out of the app's pool and returned on every call (what delay() does)"
        }
        (Client::Celery, _) => {
            "celery pooled: one producer acquired once and passed to every task.apply_async(producer=...)"
        }
        (_, "fresh") => "kombu fresh: a Connection and a Producer per publish, closed after it",
        (_, "acquire") => {
            "kombu acquire: kombu.pools.producers[connection].acquire() around every publish"
        }
        _ => "kombu pooled: one Producer on one connection kept for the whole case",
    }
}

/// The case's notes, after the broker's: what the path calls and how it was measured, the same words for
/// every case of this client on this path (the figures are in [`case_facts`]). `profile`: py-spy sampled
/// the harnesses (`--profile cpu`).
pub(super) fn case_notes(ready: &[Ready], path_note: &str, profile: bool) -> Vec<String> {
    let mut notes = Vec::new();
    if !ready.is_empty() {
        notes.push(path_note.to_string());
        notes.push("latency is measured inside Python (time.perf_counter_ns around the apply_async or publish call) and recorded exactly; in a closed loop the next commands wait in the pipe while the harness publishes, so throughput pays no round trip per publish; an open loop sends each command at its intended start".into());
    }
    if profile {
        notes.push(format!(
            "--profile cpu: two py-spy samplers took turns on each harness over the measured publishes only (from after warm-up), never both at once, {} ms for the first two turns, doubling every two up to {} ms, at {} Hz, {} ns per sample, both pausing the harness for each sample so that every stack is read whole: one leaving idle samples out (the cpu view, Python frames on CPU), one with --idle (the pywall view, Python frames on the wall clock, waiting on the broker included); each view samples only its turns, about half of the measured phase less py-spy's start at each turn, and its ns are scaled up from the time it sampled to the whole phase (the profiler notes give the share sampled); both at nice {} where taskbench may raise their priority; the flamegraphs leave (harness), the time between publishes, out, so their shares are of the publish",
            turns::FIRST_TURN.as_millis(),
            turns::LONGEST_TURN.as_millis(),
            spy::RATE_HZ,
            spy::NS_PER_SAMPLE,
            spy::SAMPLER_NICE
        ));
    }
    notes
}

/// The harnesses' figures: who they were (`ready`: what each said when it started, empty if none did),
/// their counters, and what py-spy recorded of them. `open_loop`: the case ran on a schedule, where the
/// harnesses' waiting is the schedule's, not overhead.
pub(super) fn case_facts(ready: &[Ready], shared: &Shared, open_loop: bool) -> PythonFacts {
    let stats = shared.stats.lock().expect("not poisoned");
    let sum = |f: fn(&Stats) -> u64| stats.iter().map(f).sum::<u64>();
    PythonFacts {
        client: shared.client.to_string(),
        interpreter: shared.python.display().to_string(),
        versions: ready.first().map(|r| PythonVersions {
            celery: r.celery.clone(),
            kombu: r.kombu.clone(),
            python: r.python.clone(),
            executable: r.executable.clone(),
        }),
        pids: ready.iter().map(|r| r.pid).collect(),
        stages: ready.first().map(|r| r.stages.clone()).unwrap_or_default(),
        published: sum(|s| s.published),
        timed_calls: sum(|s| s.stage_calls),
        busy_ns: sum(|s| s.busy_ns),
        span_ns: sum(|s| s.span_ns),
        busy_share: None,
        timed_calls_per_publish: None,
        profilers: profilers(shared),
        queue: Some(shared.queue.clone()),
        routed_queue: shared.routed_queue.clone(),
        died: shared.deaths.lock().expect("not poisoned").clone(),
        logs: None,
    }
    .with_shares(open_loop)
}

/// What each py-spy view recorded, summed over the harnesses, with why a sampler recorded nothing; no
/// entry for a view nothing was asked of.
fn profilers(shared: &Shared) -> Vec<ProfilerFacts> {
    let profiles = shared.profiles.lock().expect("not poisoned");
    let mut out = Vec::new();
    for sampling in [spy::Sampling::Cpu, spy::Sampling::Wall] {
        let mine = || profiles.iter().filter(|(s, _)| *s == sampling);
        if mine().next().is_none() {
            continue;
        }
        let (samples, failed, sampled_ns, phase_ns) = mine()
            .filter_map(|(_, r)| r.as_ref().ok())
            .fold((0, 0, 0, 0), |(n, e, s, p), r| {
                (
                    n + r.samples,
                    e + r.errors,
                    s + if r.phase_ns > 0 { r.sampled_ns } else { 0 },
                    p + r.phase_ns,
                )
            });
        out.push(ProfilerFacts {
            view: sampling.view_name().to_string(),
            title: sampling.profile_name().to_string(),
            samples,
            failed,
            errors: mine()
                .filter_map(|(_, r)| r.as_ref().err().map(ToString::to_string))
                .collect(),
            failed_drawn_as: (sampling == spy::Sampling::Wall).then(|| {
                format!(
                    "drawn as the frame {}, so that the view's total stays the time it sampled",
                    spy::UNREADABLE
                )
            }),
            sampled_share: (phase_ns > 0).then(|| sampled_ns as f64 / phase_ns as f64),
        });
    }
    out
}
