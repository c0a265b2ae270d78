//! How hard and how long a case runs: its publishes, warm-up, publishers, rate, duration, publish timeout,
//! profile sampling and timeline interval, and a shard's share of them.

use super::locator::{CaseLocator, ScenarioFile};
use super::value::{parse_duration, positive};
use crate::catalog::{Backend, PathKind};
use crate::scenario::raw::{RawCase, Settings};
use crate::scenario::{
    DEFAULT_INTERVAL, DEFAULT_PUBLISH_TIMEOUT, DEFAULT_PUBLISHES, DEFAULT_WARMUP, MIN_INTERVAL,
    Overrides, ScenarioError, Shard,
};
use std::time::Duration;

/// How hard and how long a case runs, from its settings (or the scenario's).
pub(super) struct Load {
    pub(super) publishes: Option<u64>,
    pub(super) warmup: u64,
    pub(super) concurrency: usize,
    pub(super) rate: Option<f64>,
    pub(super) duration: Option<Duration>,
    pub(super) publish_timeout: Duration,
    pub(super) stage_timing: bool,
    pub(super) profile_sample: f64,
    pub(super) interval: Duration,
}

/// The case's settings, else the scenario's, else the defaults, with the command line's `overrides` over all.
/// A file's values are checked even when overridden, so a scenario that runs with overrides also runs
/// without them.
pub(super) fn load(
    file: &ScenarioFile,
    s: Settings,
    backend: Backend,
    path: PathKind,
    overrides: &Overrides,
) -> Result<Load, ScenarioError> {
    let duration = s
        .duration
        .map(|d| parse_duration(file, "duration", d))
        .transpose()?;
    let duration = overrides.duration.or(duration);
    let publishes = s
        .publishes
        .map(|p| positive(file, "publishes", p, 1))
        .transpose()?;
    let publishes = match (overrides.publishes, publishes) {
        (Some(n), _) | (None, Some(n)) => Some(n),
        (None, None) if duration.is_some() => None,
        (None, None) => Some(DEFAULT_PUBLISHES),
    };
    let warmup = s
        .warmup
        .map(|w| positive(file, "warmup", w, 0))
        .transpose()?;
    let warmup = overrides.warmup.or(warmup).unwrap_or(DEFAULT_WARMUP);
    let concurrency = s
        .concurrency
        .map(|c| positive(file, "concurrency", c, 1))
        .transpose()?
        .map(|c| c as usize);
    let concurrency = overrides.concurrency.or(concurrency).unwrap_or(1);
    let rate = match s.rate {
        Some(r) if !(r.get_ref().is_finite() && *r.get_ref() > 0.0) => {
            return Err(file.error(
                r.span(),
                format!(
                    "`rate` must be more than 0 publishes per second, not {}",
                    r.get_ref()
                ),
                None,
            ));
        }
        r => overrides.rate.or(r.map(|r| *r.get_ref())),
    };
    let profile_sample = match s.profile_sample {
        Some(p) if !(*p.get_ref() > 0.0 && *p.get_ref() <= 1.0) => {
            return Err(file.error(
                p.span(),
                format!(
                    "`profile_sample` must be more than 0 and at most 1, not {}",
                    p.get_ref()
                ),
                Some("it is the share of publishes traced, e.g. 0.01 for one in a hundred".into()),
            ));
        }
        Some(p) => *p.get_ref(),
        None => default_profile_sample(backend, path),
    };
    let publish_timeout = s
        .publish_timeout
        .map(|d| parse_duration(file, "publish_timeout", d))
        .transpose()?
        .unwrap_or(DEFAULT_PUBLISH_TIMEOUT);
    let interval = s
        .interval
        .map(|d| parse_duration(file, "interval", d))
        .transpose()?
        .unwrap_or(DEFAULT_INTERVAL);
    if interval < MIN_INTERVAL {
        let d = s.interval.expect("only a set interval can be this short");
        return Err(file.error(
            d.span(),
            format!(
                "`interval` must be at least {}",
                humantime::format_duration(MIN_INTERVAL)
            ),
            Some("it is the length of one point of the timeline, e.g. \"1s\" or \"250ms\"".into()),
        ));
    }
    Ok(Load {
        publishes,
        interval,
        warmup,
        concurrency,
        rate,
        duration,
        publish_timeout,
        stage_timing: s.stage_timing.unwrap_or(true),
        profile_sample,
    })
}

/// `load`'s share for `shard`: publishes, warm-up and publishers split so the shards add up exactly, the
/// rate divided; every shard needs a publisher and a publish of its own.
pub(super) fn sharded(
    case: &CaseLocator,
    raw: &RawCase,
    mut load: Load,
    shard: Shard,
) -> Result<Load, ScenarioError> {
    let count = shard.count as u64;
    let too_few = |what: &str, n: u64| {
        case.error(
            raw.name.span(),
            format!("{n} {what} cannot be split over {count} shards (--shard {shard})"),
            Some(format!(
                "give the case at least {count} {what}, or run fewer shards"
            )),
        )
    };
    if (load.concurrency as u64) < count {
        return Err(too_few(
            "publishers (`concurrency`)",
            load.concurrency as u64,
        ));
    }
    if let Some(p) = load.publishes {
        if p < count {
            return Err(too_few("publishes", p));
        }
        load.publishes = Some(shard.share(p));
    }
    load.concurrency = shard.share(load.concurrency as u64) as usize;
    load.warmup = shard.share(load.warmup);
    load.rate = load.rate.map(|r| r / shard.count as f64);
    Ok(load)
}

/// Share of publishes traced for `--profile cpu` when the scenario does not say. Tracing one publish costs
/// about 8 µs here (bench/profile.sh), under 5% only of a broker's `fresh` path (milliseconds per publish);
/// elsewhere one publish in a hundred is traced and the profile scaled up.
fn default_profile_sample(backend: Backend, path: PathKind) -> f64 {
    if path == PathKind::Fresh && !backend.spec().local {
        1.0
    } else {
        0.01
    }
}
