//! The shape of a scenario file as serde reads it: every key with its place in the file (for errors), nothing
//! checked yet. The run-wide settings a case may override, and a case's backend-specific keys, are each
//! declared once, in a macro that also lists them.

use super::threshold::Metric;
use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::ops::Range;
use toml::Spanned;

/// Fields a scenario sets as defaults and a case may override, declared once for both tables.
macro_rules! with_settings {
    ($(#[$meta:meta])* struct $name:ident { $($field:ident : $ty:ty,)* }) => {
        $(#[$meta])*
        pub(super) struct $name {
            $(pub(super) $field: $ty,)*
            pub(super) publishes: Option<Spanned<i64>>,
            pub(super) warmup: Option<Spanned<i64>>,
            pub(super) concurrency: Option<Spanned<i64>>,
            pub(super) rate: Option<Spanned<f64>>,
            pub(super) duration: Option<Spanned<String>>,
            pub(super) publish_timeout: Option<Spanned<String>>,
            pub(super) stage_timing: Option<bool>,
            pub(super) profile_sample: Option<Spanned<f64>>,
            pub(super) interval: Option<Spanned<String>>,
            pub(super) rtt: Option<Spanned<String>>,
            pub(super) jitter: Option<Spanned<String>>,
        }
        impl $name {
            pub(super) fn settings(&self) -> Settings<'_> {
                Settings {
                    publishes: self.publishes.as_ref(),
                    warmup: self.warmup.as_ref(),
                    concurrency: self.concurrency.as_ref(),
                    rate: self.rate.as_ref(),
                    duration: self.duration.as_ref(),
                    publish_timeout: self.publish_timeout.as_ref(),
                    stage_timing: self.stage_timing,
                    profile_sample: self.profile_sample.as_ref(),
                    interval: self.interval.as_ref(),
                    rtt: self.rtt.as_ref(),
                    jitter: self.jitter.as_ref(),
                }
            }
        }
    };
}

/// A case's fields: `common` ones, and `backend` ones, which only some backends (and paths) take, as the
/// catalog says. Declaring the backend keys here is what lists them in [`RawCase::BACKEND_KEYS`] and
/// [`RawCase::backend_keys`], so a new key cannot skip the check of where it applies.
macro_rules! raw_case {
    (common { $($c:ident : $ct:ty,)* } backend { $($k:ident : $kt:ty,)* }) => {
        with_settings! {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct RawCase {
                $($c: $ct,)*
                $($k: Option<Spanned<$kt>>,)*
            }
        }
        impl RawCase {
            /// Every backend-specific key a case may have.
            #[cfg(test)]
            pub(super) const BACKEND_KEYS: &'static [&'static str] = &[$(stringify!($k)),*];

            /// The backend-specific keys this case sets, with where they are.
            pub(super) fn backend_keys(&self) -> Vec<(&'static str, Range<usize>)> {
                [$(self.$k.as_ref().map(|v| (stringify!($k), v.span()))),*]
                    .into_iter()
                    .flatten()
                    .collect()
            }
        }
    };
}

/// The run-wide settings of a scenario or a case; a case's override the scenario's.
#[derive(Clone, Copy, Default)]
pub(super) struct Settings<'a> {
    pub(super) publishes: Option<&'a Spanned<i64>>,
    pub(super) warmup: Option<&'a Spanned<i64>>,
    pub(super) concurrency: Option<&'a Spanned<i64>>,
    pub(super) rate: Option<&'a Spanned<f64>>,
    pub(super) duration: Option<&'a Spanned<String>>,
    pub(super) publish_timeout: Option<&'a Spanned<String>>,
    pub(super) stage_timing: Option<bool>,
    pub(super) profile_sample: Option<&'a Spanned<f64>>,
    pub(super) interval: Option<&'a Spanned<String>>,
    pub(super) rtt: Option<&'a Spanned<String>>,
    pub(super) jitter: Option<&'a Spanned<String>>,
}

impl<'a> Settings<'a> {
    /// `self` where set, else `defaults`.
    pub(super) fn over(self, defaults: Settings<'a>) -> Settings<'a> {
        Settings {
            publishes: self.publishes.or(defaults.publishes),
            warmup: self.warmup.or(defaults.warmup),
            concurrency: self.concurrency.or(defaults.concurrency),
            rate: self.rate.or(defaults.rate),
            duration: self.duration.or(defaults.duration),
            publish_timeout: self.publish_timeout.or(defaults.publish_timeout),
            stage_timing: self.stage_timing.or(defaults.stage_timing),
            profile_sample: self.profile_sample.or(defaults.profile_sample),
            interval: self.interval.or(defaults.interval),
            rtt: self.rtt.or(defaults.rtt),
            jitter: self.jitter.or(defaults.jitter),
        }
    }
}

with_settings! {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawScenario {
        name: Spanned<String>,
        python: Option<Spanned<String>>,
        celery_app: Option<Spanned<String>>,
        pythonpath: Option<Spanned<String>>,
        task: Option<RawTask>,
        tasks: Option<RawTasks>,
        thresholds: Option<RawThresholds>,
        floor: Option<bool>,
        case: Option<Vec<Spanned<RawCase>>>,
    }
}

/// A `[thresholds]` table (run-wide) or a case's `thresholds`: metric -> `"OP VALUE"`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawThresholds {
    p50: Option<Spanned<String>>,
    p90: Option<Spanned<String>>,
    p99: Option<Spanned<String>>,
    p999: Option<Spanned<String>>,
    max: Option<Spanned<String>>,
    throughput: Option<Spanned<String>>,
    errors: Option<Spanned<String>>,
    blocked: Option<Spanned<String>>,
    harness_busy: Option<Spanned<String>>,
    rss_growth_per_10k: Option<Spanned<String>>,
    cpu_per_publish: Option<Spanned<String>>,
}

impl RawThresholds {
    /// The value set for `metric`, with where it is.
    pub(super) fn get(&self, metric: Metric) -> Option<&Spanned<String>> {
        match metric {
            Metric::P50 => self.p50.as_ref(),
            Metric::P90 => self.p90.as_ref(),
            Metric::P99 => self.p99.as_ref(),
            Metric::P999 => self.p999.as_ref(),
            Metric::Max => self.max.as_ref(),
            Metric::Throughput => self.throughput.as_ref(),
            Metric::Errors => self.errors.as_ref(),
            Metric::Blocked => self.blocked.as_ref(),
            Metric::HarnessBusy => self.harness_busy.as_ref(),
            Metric::RssGrowthPer10k => self.rss_growth_per_10k.as_ref(),
            Metric::CpuPerPublish => self.cpu_per_publish.as_ref(),
            // What a search finds, not a budget a run can be held to.
            Metric::MaxRate => None,
        }
    }
}

/// The `[task]` table, or one named task of `[tasks]`.
#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table of task keys (name, args, kwargs, queue, priority, payload_bytes): [task] for the task every case publishes, [tasks.KEY] for a named one"
)]
pub(super) struct RawTask {
    pub(super) name: Option<Spanned<String>>,
    pub(super) args: Option<Spanned<Vec<Value>>>,
    pub(super) kwargs: Option<Map<String, Value>>,
    pub(super) queue: Option<Spanned<String>>,
    pub(super) payload_bytes: Option<Spanned<i64>>,
    pub(super) priority: Option<Spanned<i64>>,
}

/// The `[tasks]` table: named tasks (`[tasks.send_email]`), in file order, each a task table of its own that a
/// case picks with `task = "send_email"`.
pub(super) struct RawTasks(pub(super) IndexMap<String, Spanned<RawTask>>);

impl<'de> Deserialize<'de> for RawTasks {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Tables;
        impl<'de> serde::de::Visitor<'de> for Tables {
            type Value = RawTasks;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("named task tables, like [tasks.send_email] with name = \"shop.tasks.send_email\"")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RawTasks, A::Error> {
                let mut tasks = IndexMap::new();
                while let Some((key, task)) = map.next_entry::<String, Spanned<RawTask>>()? {
                    tasks.insert(key, task);
                }
                Ok(RawTasks(tasks))
            }
        }
        d.deserialize_map(Tables)
    }
}

/// A case's `task`: the KEY of one of the scenario's `[tasks.KEY]` tables.
pub(super) struct TaskKey(pub(super) String);

impl<'de> Deserialize<'de> for TaskKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Key;
        impl serde::de::Visitor<'_> for Key {
            type Value = TaskKey;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("the key of a named task, like task = \"send_email\" for a [tasks.send_email] table")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<TaskKey, E> {
                Ok(TaskKey(v.to_string()))
            }
        }
        d.deserialize_str(Key)
    }
}

raw_case! {
    common {
        name: Spanned<String>,
        backend: Spanned<String>,
        path: Spanned<String>,
        task: Option<Spanned<TaskKey>>,
        queue: Option<Spanned<String>>,
        priority: Option<Spanned<i64>>,
        payload_bytes: Option<Spanned<i64>>,
        thresholds: Option<RawThresholds>,
        fault: Option<Vec<Spanned<RawFault>>>,
        event: Option<Vec<Spanned<RawFault>>>,
    }
    backend {
        address: String,
        url: String,
        keep: bool,
        confirm: String,
        confirm_batch: i64,
        confirm_window: i64,
        queue_type: String,
        pool_size: i64,
        connections: i64,
        batch: i64,
        multiplexed: bool,
        kombu_handshake: bool,
        client: String,
        python: String,
        celery_app: String,
        pythonpath: String,
        unregistered_task: bool,
        publish_to_routed_queue: bool,
        // TLS (amqps://, rediss://): see scenario/plan/tls.rs.
        tls_ca: String,
        tls_cert: String,
        tls_key: String,
        tls_verify: bool,
    }
}

/// A `[[case.fault]]` or a `[[case.event]]`: `kind` at `at` for `for`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFault {
    pub(super) at: Spanned<String>,
    pub(super) kind: Spanned<String>,
    #[serde(rename = "for")]
    pub(super) length: Option<Spanned<String>>,
}
