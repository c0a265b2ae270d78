//! The line protocol between a publisher and its harness (`harness.py`), one line each way at a time: the
//! config line taskbench writes first; the harness's ready line (`r {json}`) or failure (`f {json}`); the
//! commands `p` (publish one) and `q` (quit); the answers to `p`, `o <latency ns> <stage>=<ns>...` or
//! `e <kind> <message>`; and the counters (`s {json}`) a harness sends before it exits.

use crate::catalog::Backend;
use crate::error::ErrorKind;
use crate::scenario::{BackendOptions, Case, PythonClient, is_tls_url};
use crate::stage::Stage;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The command to publish one message.
pub(super) const PUBLISH: &[u8] = b"p\n";
/// The command to close the connections, send the counters and exit.
pub(super) const QUIT: &[u8] = b"q\n";

/// What a harness said when it was ready.
#[derive(Debug, Clone, Deserialize)]
pub struct Ready {
    pub pid: u32,
    pub python: String,
    pub executable: String,
    pub celery: String,
    pub kombu: String,
    /// Stage name -> the functions timed as that stage.
    #[serde(default)]
    pub stages: BTreeMap<String, Vec<String>>,
}

/// A harness's counters after "q".
#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct Stats {
    pub(super) published: u64,
    #[serde(default)]
    pub(super) stage_calls: u64,
    /// Time spent inside publish calls, warm-up included.
    #[serde(default)]
    pub(super) busy_ns: u64,
    /// From the start of the first publish to the end of the last.
    #[serde(default)]
    pub(super) span_ns: u64,
}

/// A harness's own failure report ("f {json}").
#[derive(Deserialize)]
struct Failure {
    kind: String,
    message: String,
}

/// The harness configuration: the first line on its stdin.
pub(super) fn config_line(case: &Case, client: &PythonClient, url: &str) -> String {
    let spec = case.task.spec();
    let (args, kwargs) = published_args(case);
    let config = serde_json::json!({
        "client": client.client.name(),
        "path": case.path.name(),
        "url": url,
        "queue": spec.queue,
        "task": spec.name,
        "args": args,
        "kwargs": kwargs,
        "priority": spec.priority,
        "stage_timing": case.stage_timing,
        "celery_app": client.celery_app,
        "pythonpath": client.pythonpath,
        "unregistered_task": client.unregistered_task,
        "publish_to_routed_queue": client.publish_to_routed_queue,
        // Where the app routes the task, as taskbench planned the queue on (null: never asked).
        "route": client.route.as_ref().map(|r| serde_json::json!({"routed_queue": r.routed_queue})),
        // The case's TLS keys, for an amqps:// or rediss:// URL (null otherwise): see harness.py's tls_options.
        "tls": tls_config(case, url),
        // On RabbitMQ, the name the harness's connections carry (as taskbench's own do): null elsewhere.
        "connection_name": (case.backend == Backend::Amqp).then(|| case.connection_name()),
    });
    let mut line = config.to_string();
    line.push('\n');
    line
}

/// The TLS keys the harness passes to Celery (`broker_use_ssl`) or kombu (`ssl=`), for a TLS URL.
fn tls_config(case: &Case, url: &str) -> serde_json::Value {
    let tls = match &case.options {
        BackendOptions::Amqp(o) => &o.tls,
        BackendOptions::Redis(o) => &o.tls,
        BackendOptions::Local(_) => return serde_json::Value::Null,
    };
    if !is_tls_url(url) {
        return serde_json::Value::Null;
    }
    serde_json::json!({
        "ca": tls.ca,
        "cert": tls.cert,
        "key": tls.key,
        "verify": tls.verify,
    })
}

/// The case's task arguments as published: those of the body taskbench sends (payload padding included).
pub(super) fn published_args(case: &Case) -> (serde_json::Value, serde_json::Value) {
    let spec = case.task.spec();
    match serde_json::from_slice::<serde_json::Value>(case.task.body()) {
        Ok(serde_json::Value::Array(parts)) if parts.len() == 3 => {
            (parts[0].clone(), parts[1].clone())
        }
        _ => (serde_json::json!(spec.args), serde_json::json!(spec.kwargs)),
    }
}

/// A harness's first line, once its config was written.
#[derive(Debug)]
pub(super) enum ReadyLine {
    /// `r {json}`: ready, with what it runs.
    Ready(Ready),
    /// `r ...` that taskbench cannot read.
    Unreadable(serde_json::Error),
    /// `f {json}`: the harness could not get ready; `kind` is `None` if taskbench does not know it.
    Failed {
        kind: Option<ErrorKind>,
        message: String,
    },
    /// Anything else (nothing: the harness died).
    Other,
}

/// Reads a harness's first line (`text`, without its newline).
pub(super) fn ready_line(text: &str) -> ReadyLine {
    if let Some(json) = text.strip_prefix("r ") {
        return match serde_json::from_str::<Ready>(json) {
            Ok(ready) => ReadyLine::Ready(ready),
            Err(e) => ReadyLine::Unreadable(e),
        };
    }
    if let Some(json) = text.strip_prefix("f ")
        && let Ok(f) = serde_json::from_str::<Failure>(json)
    {
        return ReadyLine::Failed {
            kind: ErrorKind::from_name(&f.kind),
            message: f.message,
        };
    }
    ReadyLine::Other
}

/// A harness's answer to `p`.
pub(super) enum Answer<'a> {
    /// `o`: published, with the latency and the stage times measured in Python.
    Published {
        latency_ns: u64,
        stages: StageTimes<'a>,
    },
    /// `e`: the publish failed (an unknown kind is a `send` error).
    Failed { kind: ErrorKind, message: String },
    /// Anything else.
    Garbled,
}

/// The `<stage>=<ns>` words of an `o` answer; words naming no stage, or with no number, are skipped.
pub(super) struct StageTimes<'a>(std::str::Split<'a, char>);

impl Iterator for StageTimes<'_> {
    type Item = (Stage, u64);

    fn next(&mut self) -> Option<(Stage, u64)> {
        self.0.by_ref().find_map(|w| {
            let (name, ns) = w.split_once('=')?;
            let stage = Stage::from_name(name)?;
            Some((stage, ns.parse::<u64>().ok()?))
        })
    }
}

/// Reads an answer to `p` (`text`, without its newline).
pub(super) fn answer(text: &str) -> Answer<'_> {
    let mut words = text.split(' ');
    match words.next() {
        Some("o") => match words.next().and_then(|w| w.parse::<u64>().ok()) {
            Some(latency_ns) => Answer::Published {
                latency_ns,
                stages: StageTimes(words),
            },
            None => Answer::Garbled,
        },
        Some("e") => {
            let kind = words
                .next()
                .and_then(ErrorKind::from_name)
                .unwrap_or(ErrorKind::Send);
            let rest: Vec<&str> = words.collect();
            Answer::Failed {
                kind,
                message: rest.join(" "),
            }
        }
        _ => Answer::Garbled,
    }
}

/// The counters in a line a harness sent after `q`: `None` if it is not the counters' line, else what they
/// read as.
pub(super) fn stats_line(line: &[u8]) -> Option<Result<Stats, serde_json::Error>> {
    line.strip_prefix(b"s ")
        .map(serde_json::from_slice::<Stats>)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_o_answer_carries_the_latency_and_the_stages_it_names() {
        let Answer::Published { latency_ns, stages } =
            answer("o 1500 encode=200 nosuchstage=5 send=900 send=x")
        else {
            panic!("not read as published");
        };
        assert_eq!(latency_ns, 1500);
        assert_eq!(
            stages.collect::<Vec<_>>(),
            [(Stage::Encode, 200), (Stage::Send, 900)]
        );
    }

    #[test]
    fn an_e_answer_carries_its_kind_and_message() {
        let Answer::Failed { kind, message } = answer("e timeout no answer in 5 s") else {
            panic!("not read as failed");
        };
        assert_eq!(kind, ErrorKind::Timeout);
        assert_eq!(message, "no answer in 5 s");
    }

    #[test]
    fn anything_else_is_garbled() {
        for text in ["", "o", "o soon", "x 1", "ok 1"] {
            assert!(matches!(answer(text), Answer::Garbled), "{text:?}");
        }
    }

    #[test]
    fn the_first_line_is_ready_failed_or_neither() {
        let ready =
            r#"r {"pid": 7, "python": "3.12", "executable": "/p", "celery": "5", "kombu": "5"}"#;
        assert!(
            matches!(ready_line(ready), ReadyLine::Ready(r) if r.pid == 7 && r.stages.is_empty())
        );
        assert!(matches!(ready_line("r {"), ReadyLine::Unreadable(_)));
        let failed = r#"f {"kind": "unreachable", "message": "no broker"}"#;
        assert!(matches!(
            ready_line(failed),
            ReadyLine::Failed { kind: Some(ErrorKind::Unreachable), message } if message == "no broker"
        ));
        assert!(matches!(ready_line("f {"), ReadyLine::Other));
        assert!(matches!(ready_line(""), ReadyLine::Other));
    }

    #[test]
    fn only_an_s_line_holds_the_counters() {
        assert!(stats_line(b"o 1").is_none());
        let stats = stats_line(br#"s {"published": 3}"#).unwrap().unwrap();
        assert_eq!((stats.published, stats.stage_calls), (3, 0));
    }
}
