//! Checking, before anything runs, that a celery or kombu case's interpreter can run the harness: it
//! starts, has Celery and kombu, and can load the case's `celery_app` as Celery's worker does; and asking
//! that app which tasks it has and where it routes the tasks the cases publish. `taskbench validate` and
//! `taskbench run` both do this once per distinct interpreter and app, through the harness's own `--probe`
//! (so the app is loaded and its routes computed by the very code that publishes); `taskbench init` asks
//! it, through the same probe, for the app's broker, publish settings, tasks and routes ([`describe_app`]).

use super::harness::HARNESS;
use crate::scenario::PythonClient;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::process::{Command, Stdio};

/// What an interpreter has, and what its `celery_app` answered.
#[derive(Debug, Clone, Deserialize)]
pub struct Found {
    pub python: String,
    pub executable: String,
    pub celery: Option<String>,
    pub kombu: Option<String>,
    /// Why `celery_app` could not be loaded.
    #[serde(default)]
    pub app_error: Option<String>,
    /// The app's own task names (not `celery.*`), sorted.
    #[serde(default)]
    pub tasks: Vec<String>,
    /// For each task asked about, in the order asked.
    #[serde(default)]
    pub routes: Vec<ProbedTask>,
    /// The probe's resident memory once the app (or Celery's own, without `celery_app`) and the broker
    /// transports were loaded, in bytes (`None` where it cannot be read): about what each harness holds.
    #[serde(default)]
    pub rss: Option<u64>,
    /// The app's broker, publish settings and routes, when asked for (`taskbench init`: [`describe_app`]).
    #[serde(default)]
    pub app: Option<AppDescription>,
}

/// What `taskbench init` needs of an app: its broker (never its password: only whether it has one), the
/// settings that change a publish, and where its routing sends each of its tasks.
#[derive(Debug, Clone, Deserialize)]
pub struct AppDescription {
    /// kombu's transport name: `amqp`, `pyamqp`, `redis`, `sqs`...
    pub transport: String,
    pub hostname: Option<String>,
    pub port: Option<u16>,
    pub userid: Option<String>,
    pub has_password: bool,
    pub virtual_host: Option<String>,
    pub serializer: Option<String>,
    pub compression: Option<String>,
    pub broker_pool_limit: Option<u64>,
    pub confirm_publish: bool,
    /// `broker_transport_options`, as Python's repr.
    pub transport_options: String,
    pub publish_retry: bool,
    /// Each of the app's tasks (not `celery.*`) and the queue its routing sends it to (args and kwargs empty).
    pub routes: std::collections::BTreeMap<String, Option<String>>,
    /// Each task's required parameters, which Celery checks on `apply_async`.
    #[serde(default)]
    pub params: std::collections::BTreeMap<String, TaskParams>,
}

/// The parameters a call of a task must give: positional ones by name, and keyword-only ones.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TaskParams {
    pub args: Vec<String>,
    pub kwargs: Vec<String>,
}

/// A task a case publishes, as the probe asks the app about it (routers may look at the arguments).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskQuery {
    pub name: String,
    pub args: serde_json::Value,
    pub kwargs: serde_json::Value,
}

/// What the app said about one task.
#[derive(Debug, Clone, Deserialize)]
pub struct ProbedTask {
    /// The app has a task of that name.
    pub registered: bool,
    /// Where its routing sends the task; `None` when nothing routes it.
    #[serde(default)]
    pub routed_queue: Option<String>,
    /// Why the app's router could not say (it raised, or named a queue it does not declare).
    #[serde(default)]
    pub error: Option<String>,
}

impl Found {
    /// `Python 3.11.7 (/path/python): celery 5.7.0, kombu 5.7.0`.
    pub fn describe(&self) -> String {
        let v = |v: &Option<String>| v.clone().unwrap_or_else(|| "missing".into());
        format!(
            "Python {} ({}): celery {}, kombu {}",
            self.python,
            self.executable,
            v(&self.celery),
            v(&self.kombu)
        )
    }
}

/// Runs `client`'s interpreter once, asking its app (if any) about `tasks`; an error says what is missing
/// and how to install it, or why the app cannot be loaded.
pub fn probe(client: &PythonClient, tasks: &[TaskQuery]) -> Result<Found, String> {
    run_probe(client, tasks, false)
}

/// Runs `client`'s interpreter once and describes its `celery_app` (which it must have): broker, publish
/// settings, tasks and routes (`taskbench init`).
pub fn describe_app(client: &PythonClient) -> Result<(Found, AppDescription), String> {
    let mut found = run_probe(client, &[], true)?;
    let app = found.app.take().ok_or_else(|| {
        format!(
            "{} did not describe the app {:?}",
            client.python.display(),
            client.celery_app
        )
    })?;
    Ok((found, app))
}

fn run_probe(client: &PythonClient, tasks: &[TaskQuery], describe: bool) -> Result<Found, String> {
    let python = client.python.display().to_string();
    let request = serde_json::json!({
        "celery_app": client.celery_app,
        "pythonpath": client.pythonpath,
        "tasks": tasks,
        "describe": describe,
    });
    let out = Command::new(&client.python)
        .args(["-c", HARNESS, "--probe"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            if let Some(mut stdin) = child.stdin.take() {
                // An interpreter that exits at once closes the pipe: its output says why.
                let _ = stdin.write_all(request.to_string().as_bytes());
            }
            child.wait_with_output()
        })
        .map_err(|e| {
            format!(
                "cannot run python {python:?}: {e}; set `python` in the scenario, or TASKBENCH_PYTHON, to an interpreter with Celery installed (e.g. target/celery-venv/bin/python, which tests/run creates)"
            )
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let found = stdout
        .lines()
        .find_map(|l| l.strip_prefix("taskbench-probe "))
        .and_then(|json| serde_json::from_str::<Found>(json).ok())
        .ok_or_else(|| {
            // What it (or the app it imported) printed last says why; with nothing printed, the
            // interpreter itself is the likely cause.
            let stderr = String::from_utf8_lossy(&out.stderr);
            let printed: Vec<&str> = stdout
                .lines()
                .chain(stderr.lines())
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            match printed.len() {
                0 => format!(
                    "{python:?} did not run taskbench's check ({}) and printed nothing; is it a Python 3 interpreter?",
                    out.status
                ),
                n => format!(
                    "{python:?} did not finish taskbench's check ({}); its output ends: {}",
                    out.status,
                    printed[n.saturating_sub(3)..].join(" | ")
                ),
            }
        })?;
    let missing: Vec<&str> = [("celery", &found.celery), ("kombu", &found.kombu)]
        .into_iter()
        .filter(|(_, v)| v.is_none())
        .map(|(name, _)| name)
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "{python} has no {} (found {}); install Celery into it: {python} -m pip install 'celery[redis]'",
            missing.join(" and "),
            found.describe()
        ));
    }
    if let (Some(app), Some(why)) = (&client.celery_app, &found.app_error) {
        return Err(format!(
            "celery_app {app:?} cannot be imported by {python}: {why}{}",
            match &client.pythonpath {
                Some(p) => format!(" (pythonpath {})", p.display()),
                None => "; set pythonpath to the directory its package is in".into(),
            }
        ));
    }
    if client.celery_app.is_some() && found.routes.len() != tasks.len() {
        return Err(format!(
            "{python} answered taskbench's check about {} of {} tasks",
            found.routes.len(),
            tasks.len()
        ));
    }
    Ok(found)
}

/// Why `concurrency` harnesses of `rss` bytes each (one per publisher, as the probe measured one) cannot
/// run in `available` bytes, with the figures; `None` when they fit. `app`: the case's `celery_app`.
pub fn too_big_for_memory(
    case: &str,
    concurrency: usize,
    rss: u64,
    available: u64,
    app: Option<&str>,
) -> Option<String> {
    let needed = rss.saturating_mul(concurrency as u64);
    if needed <= available {
        return None;
    }
    let fits = (available / rss.max(1)).max(1);
    Some(format!(
        "case {case:?}: concurrency {concurrency} needs about {concurrency} Python processes of {} each ({}, \
         measured {}) but {} is available (MemAvailable in /proc/meminfo); lower concurrency (about {fits} \
         fit), or split the case across machines with --shard",
        human_bytes(rss),
        human_bytes(needed),
        match app {
            Some(app) => format!("on the app {app} once loaded"),
            None => "on Celery's own app once loaded".to_string(),
        },
        human_bytes(available),
    ))
}

/// `39.2 MiB`, `78.4 GiB`.
fn human_bytes(bytes: u64) -> String {
    const MIB: f64 = (1u64 << 20) as f64;
    let mib = bytes as f64 / MIB;
    if mib >= 1024.0 {
        format!("{:.1} GiB", mib / 1024.0)
    } else {
        format!("{mib:.1} MiB")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harnesses_that_cannot_fit_are_refused_with_the_figures() {
        let rss = 39_200 * 1024 * 1024 / 1000; // 39.2 MiB
        let available = 22_900 * 1024 * 1024 * 1024 / 1000; // 22.9 GiB
        assert_eq!(
            too_big_for_memory("c", 2000, rss, available, Some("shop.celery:app")).as_deref(),
            Some(
                "case \"c\": concurrency 2000 needs about 2000 Python processes of 39.2 MiB each (76.6 GiB, \
                 measured on the app shop.celery:app once loaded) but 22.9 GiB is available (MemAvailable in \
                 /proc/meminfo); lower concurrency (about 598 fit), or split the case across machines with --shard"
            )
        );
        assert_eq!(too_big_for_memory("c", 500, rss, available, None), None);
        let e = too_big_for_memory("k", 10, rss, rss, None).unwrap();
        assert!(
            e.contains("of 39.2 MiB each (392.0 MiB, measured on Celery's own app once loaded) but 39.2 MiB is available"),
            "{e}"
        );
        assert!(e.contains("(about 1 fit)"), "{e}");
    }
}
