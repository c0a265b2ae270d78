//! Checking, before anything runs, that a celery or kombu case's interpreter can run the harness: it
//! starts, has Celery and kombu, and can import the case's `celery_app`. `taskbench validate` and
//! `taskbench run` both do this once per distinct interpreter and app.

use crate::scenario::PythonClient;
use serde::Deserialize;
use std::process::Command;

/// What an interpreter has.
#[derive(Debug, Clone, Deserialize)]
pub struct Found {
    pub python: String,
    pub executable: String,
    pub celery: Option<String>,
    pub kombu: Option<String>,
    /// Why `celery_app` could not be imported.
    #[serde(default)]
    pub app_error: Option<String>,
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

const PROBE: &str = r#"
import json, sys
out = {"python": sys.version.split()[0], "executable": sys.executable}
for name in ("celery", "kombu"):
    try:
        out[name] = __import__(name).__version__
    except Exception:
        out[name] = None
app = sys.argv[1] if len(sys.argv) > 1 else ""
if app and out["celery"]:
    if len(sys.argv) > 2 and sys.argv[2]:
        sys.path.insert(0, sys.argv[2])
    try:
        import importlib
        module, _, attr = app.partition(":")
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
        import celery
        if not isinstance(obj, celery.Celery):
            out["app_error"] = f"{app} is a {type(obj).__name__}, not a Celery app"
    except Exception as exc:
        out["app_error"] = f"{type(exc).__name__}: {exc}"
print("taskbench-probe " + json.dumps(out))
"#;

/// Runs `client`'s interpreter once; an error says what is missing and how to install it.
pub fn probe(client: &PythonClient) -> Result<Found, String> {
    let python = client.python.display().to_string();
    let mut command = Command::new(&client.python);
    command.args(["-c", PROBE]);
    if let Some(app) = &client.celery_app {
        command.arg(app);
        command.arg(client.pythonpath.as_deref().unwrap_or("".as_ref()));
    }
    let out = command.output().map_err(|e| {
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
            let stderr = String::from_utf8_lossy(&out.stderr);
            format!(
                "{python:?} did not run taskbench's check ({}); is it a Python 3 interpreter? {}",
                out.status,
                stderr.trim().lines().last().unwrap_or("")
            )
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
    Ok(found)
}
