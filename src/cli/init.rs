//! `taskbench init`: load the user's Celery app as the harness does (the probe) and write a commented
//! scenario for its real publish path: its broker, its tasks and routes, its publish settings, and the cases
//! a slow-path hunt needs. The TOML itself is written by a pure function, [`scenario_toml`].

use super::args::InitArgs;
use crate::backend::python::probe::{self, AppDescription};
use crate::catalog::{Backend, Client};
use crate::scenario::{self, PythonClient};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Loads the app, writes the scenario; returns the file written.
pub(super) fn init(args: InitArgs) -> anyhow::Result<PathBuf> {
    let package = package_of(&args.celery_app)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{package}.toml")));
    if out.exists() && !args.force {
        anyhow::bail!(
            "{} exists; pass --force to replace it, or -o to write another file",
            out.display()
        );
    }
    let python = match args.python {
        Some(p) if p.components().count() > 1 => std::path::absolute(&p)?,
        Some(p) => p,
        None => scenario::default_python().path.clone(),
    };
    let pythonpath = args
        .pythonpath
        .as_deref()
        .map(std::path::absolute)
        .transpose()?;
    let client = PythonClient {
        client: Client::Celery,
        python: python.clone(),
        celery_app: Some(args.celery_app.clone()),
        pythonpath: pythonpath.clone(),
        unregistered_task: false,
        publish_to_routed_queue: false,
        route: None,
    };
    // The probe's hints speak of a scenario's keys; here the interpreter is `--python`.
    let (_, app) = probe::describe_app(&client).map_err(|e| {
        anyhow::Error::msg(e.replace(
            "set `python` in the scenario, or TASKBENCH_PYTHON,",
            "pass --python",
        ))
    })?;
    let toml = scenario_toml(&Init {
        name: package,
        celery_app: &args.celery_app,
        python: &python,
        pythonpath: pythonpath.as_deref(),
        selected: &args.tasks,
        app: &app,
    })
    .map_err(anyhow::Error::msg)?;
    std::fs::write(&out, toml)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))?;
    Ok(out)
}

/// `shop` of `shop.celery:app`.
fn package_of(spec: &str) -> anyhow::Result<&str> {
    match spec.split_once(':') {
        Some((module, attr)) if !module.is_empty() && !attr.is_empty() => {
            Ok(module.split('.').next().unwrap_or(module))
        }
        _ => anyhow::bail!(
            "--celery-app {spec:?} is not MODULE:ATTRIBUTE; write it like shop.celery:app"
        ),
    }
}

/// The scenario's inputs: the app as the probe described it, and what the user chose.
pub(super) struct Init<'a> {
    pub(super) name: &'a str,
    pub(super) celery_app: &'a str,
    pub(super) python: &'a Path,
    pub(super) pythonpath: Option<&'a Path>,
    /// `--task` names (empty: every task of the app).
    pub(super) selected: &'a [String],
    pub(super) app: &'a AppDescription,
}

/// A TOML basic string.
fn q(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// The backend for kombu's `transport`, or an error naming it.
fn backend_of(transport: &str) -> Result<Backend, String> {
    match transport {
        "amqp" | "pyamqp" | "librabbitmq" => Ok(Backend::Amqp),
        "redis" => Ok(Backend::Redis),
        other => Err(format!(
            "the app's broker uses kombu's {other:?} transport, which taskbench cannot measure; it measures \
             RabbitMQ (amqp://, pyamqp://) and Redis (redis://)"
        )),
    }
}

/// The broker URL without its password, and the environment variable that gives it instead.
fn broker_url(app: &AppDescription, backend: Backend) -> (String, &'static str) {
    let host = app.hostname.as_deref().unwrap_or("localhost");
    let user = app.userid.as_deref().unwrap_or("");
    let password = if app.has_password { ":PASSWORD" } else { "" };
    let auth = if user.is_empty() && password.is_empty() {
        String::new()
    } else {
        format!("{user}{password}@")
    };
    match backend {
        Backend::Amqp => {
            let vhost = app
                .virtual_host
                .as_deref()
                .unwrap_or("/")
                .replace('/', "%2f");
            let port = app.port.unwrap_or(5672);
            (
                format!("amqp://{auth}{host}:{port}/{vhost}"),
                "TASKBENCH_AMQP_URL",
            )
        }
        _ => {
            let db = app.virtual_host.as_deref().unwrap_or("0");
            let db = if db.is_empty() || db == "/" { "0" } else { db };
            let port = app.port.unwrap_or(6379);
            (
                format!("redis://{auth}{host}:{port}/{db}"),
                "TASKBENCH_REDIS_URL",
            )
        }
    }
}

/// A `[tasks.KEY]` key for a task name: its last dotted part, made a bare TOML key, unique.
fn task_key(name: &str, taken: &[String]) -> String {
    let last = name.rsplit('.').next().unwrap_or(name);
    let mut key: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if key.is_empty() {
        key = "task".into();
    }
    let base = key.clone();
    let mut n = 2;
    while taken.contains(&key) {
        key = format!("{base}_{n}");
        n += 1;
    }
    key
}

/// The app's task names `init.selected` asks for (all of them when it names none); an error for a name the
/// app does not have (with its tasks), or an app without tasks of its own.
fn chosen_tasks<'a>(init: &Init<'a>) -> Result<Vec<&'a str>, String> {
    let all: Vec<&str> = init.app.routes.keys().map(String::as_str).collect();
    if all.is_empty() {
        return Err(format!(
            "the app {} has no tasks of its own (after its loader imported its include, imports and \
             autodiscovered modules); define one, or publish by name with unregistered_task = true",
            init.celery_app
        ));
    }
    if init.selected.is_empty() {
        return Ok(all);
    }
    init.selected
        .iter()
        .map(|wanted| {
            all.iter().find(|n| **n == wanted).copied().ok_or_else(|| {
                format!(
                    "the app {} has no task {wanted:?}; its tasks: {}",
                    init.celery_app,
                    all.join(", ")
                )
            })
        })
        .collect()
}

/// The top of the file: what wrote it, the settings every case shares, the app's publish settings as
/// comments, and where the broker's password goes when it has one.
fn head(init: &Init, url: &str, env: &str) -> String {
    let app = init.app;
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "none".into());
    let mut w = format!(
        "# Written by `taskbench init --celery-app {app_spec}` from the app's own configuration.\n\
         # Check it with `taskbench validate FILE`, run it with `taskbench run FILE` (docs/scenario.md).\n\
         name = {name}\n\
         publishes = 5000\n\
         python = {python}  # for every celery and kombu case\n\
         celery_app = {spec}  # for every celery case: your app, its tasks, signals and routers\n",
        app_spec = init.celery_app,
        name = q(init.name),
        python = q(&init.python.display().to_string()),
        spec = q(init.celery_app),
    );
    if let Some(p) = init.pythonpath {
        let _ = writeln!(
            w,
            "pythonpath = {}  # where the app's package is",
            q(&p.display().to_string())
        );
    }
    let _ = write!(
        w,
        "\n# The app's settings that change a publish; the celery cases run with them as they are:\n\
         #   task_serializer = {}\n\
         #   task_compression = {}\n\
         #   broker_pool_limit = {}\n\
         #   confirm_publish (broker_transport_options) = {}\n\
         #   broker_transport_options = {}\n\
         #   task_publish_retry = {}\n",
        opt(&app.serializer),
        opt(&app.compression),
        app.broker_pool_limit
            .map_or("none (no limit)".to_string(), |n| n.to_string()),
        app.confirm_publish,
        app.transport_options,
        app.publish_retry,
    );
    if app.has_password {
        let _ = write!(
            w,
            "\n# The app's broker has a password, which is not written here: set it in the environment before\n\
             # running, with your password in place of PASSWORD (the cases set no url, so they read it):\n\
             #   export {env}='{url}'\n"
        );
    }
    w
}

/// `[tasks.KEY]` for the app's task `name`: its routed queue in a comment, placeholders for its required
/// parameters.
fn task_table(app: &AppDescription, name: &str, key: &str) -> String {
    let route = match app.routes.get(name).cloned().flatten() {
        Some(queue) => format!(
            "# The app routes it to queue {queue:?}; the celery cases run its router and publish to \
             taskbench's own \"taskbench.{queue}\" (publish_to_routed_queue = true in a case: into {queue:?})."
        ),
        None => "# The app does not route it: it goes to the queue below (default \"taskbench\")."
            .into(),
    };
    let params = app.params.get(name).cloned().unwrap_or_default();
    let args: Vec<String> = params.args.iter().map(|p| q(&format!("<{p}>"))).collect();
    let kwargs: Vec<String> = params
        .kwargs
        .iter()
        .map(|p| format!("{p} = {}", q(&format!("<{p}>"))))
        .collect();
    format!(
        "\n[tasks.{key}]\nname = {}\n{route}\n\
         # What to publish it with: placeholders for the parameters it requires (Celery checks them); put\n\
         # real values, since the message's size and a router that looks at them change the publish.\n\
         args = [{}]\nkwargs = {{ {} }}\n",
        q(name),
        args.join(", "),
        kwargs.join(", ")
    )
}

/// The commented scenario for the app's publish path; an error for an unsupported transport, a `--task`
/// the app does not have (with its tasks), or an app without tasks of its own.
pub(super) fn scenario_toml(init: &Init) -> Result<String, String> {
    let app = init.app;
    let backend = backend_of(&app.transport)?;
    let names = chosen_tasks(init)?;
    let mut keys: Vec<String> = Vec::new();
    for name in &names {
        let key = task_key(name, &keys);
        keys.push(key);
    }
    let (url, env) = broker_url(app, backend);
    let mut w = head(init, &url, env);
    for (name, key) in names.iter().zip(&keys) {
        w.push_str(&task_table(app, name, key));
    }
    if keys.len() > 1 {
        let _ = write!(
            w,
            "\n# The slow-path cases for the first task, {:?}; the others get Celery as shipped only (copy the\n\
             # cases and change `task` to hunt in another).\n",
            names[0]
        );
    }
    let url_line =
        (!app.has_password).then(|| format!("url = {}  # the app's broker_url\n", q(&url)));
    let case = |w: &mut String, name: String, comment: &str, key: &str, body: &str| {
        let _ = write!(
            w,
            "\n# {comment}\n[[case]]\nname = {}\nbackend = {}\n{body}task = {}\n{}",
            q(&name),
            q(&backend.to_string()),
            q(key),
            url_line.as_deref().unwrap_or("")
        );
    };
    let first = keys[0].as_str();
    let celery = "client = \"celery\"\n";
    case(
        &mut w,
        format!("{first}-celery"),
        "Celery as shipped: delay() through the app's own producer pool, as your code calls it.",
        first,
        &format!("path = \"acquire\"\n{celery}"),
    );
    case(
        &mut w,
        format!("{first}-celery-kept-producer"),
        "Celery with one producer kept for the whole case: what the pool costs is the difference.",
        first,
        &format!("path = \"pooled\"\n{celery}"),
    );
    if app.broker_pool_limit == Some(0) {
        case(
            &mut w,
            format!("{first}-celery-fresh"),
            "The app's broker_pool_limit is 0: every delay() opens and closes a connection, as here.",
            first,
            &format!("path = \"fresh\"\n{celery}"),
        );
    }
    case(
        &mut w,
        format!("{first}-kombu"),
        "kombu's floor: one kombu Producer kept, no Celery in between (not your app: its task name only).",
        first,
        "path = \"pooled\"\nclient = \"kombu\"\n",
    );
    case(
        &mut w,
        format!("{first}-taskbench"),
        "The broker's floor: taskbench's own pooled publisher, no Python at all.",
        first,
        "path = \"pooled\"\n",
    );
    for key in &keys[1..] {
        let body = format!("path = \"acquire\"\n{celery}");
        case(
            &mut w,
            format!("{key}-celery"),
            "Celery as shipped: delay().",
            key,
            &body,
        );
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shop(transport: &str, password: bool, pool_limit: Option<u64>) -> AppDescription {
        AppDescription {
            transport: transport.into(),
            hostname: Some("127.0.0.1".into()),
            port: Some(6379),
            userid: None,
            has_password: password,
            virtual_host: Some("0".into()),
            serializer: Some("json".into()),
            compression: Some("gzip".into()),
            broker_pool_limit: pool_limit,
            confirm_publish: false,
            transport_options: "{}".into(),
            publish_retry: true,
            routes: [
                ("shop.tasks.refund".to_string(), None),
                ("shop.tasks.send_email".to_string(), Some("emails".into())),
            ]
            .into_iter()
            .collect(),
            params: [(
                "shop.tasks.send_email".to_string(),
                probe::TaskParams {
                    args: vec!["to".into()],
                    kwargs: vec!["lang".into()],
                },
            )]
            .into_iter()
            .collect(),
        }
    }

    fn write(app: &AppDescription, selected: &[String]) -> Result<String, String> {
        scenario_toml(&Init {
            name: "shop",
            celery_app: "shop.celery:app",
            python: Path::new("/venv/bin/python"),
            pythonpath: Some(Path::new("/src")),
            selected,
            app,
        })
    }

    #[test]
    fn the_scenario_has_the_apps_tasks_routes_settings_and_the_hunts_cases() {
        let toml = write(&shop("redis", false, Some(10)), &[]).unwrap();
        let parsed: toml::Table = toml.parse().expect(&toml);
        assert_eq!(parsed["celery_app"].as_str(), Some("shop.celery:app"));
        assert_eq!(parsed["pythonpath"].as_str(), Some("/src"));
        assert_eq!(
            parsed["tasks"]["send_email"]["name"].as_str(),
            Some("shop.tasks.send_email")
        );
        assert!(toml.contains("routes it to queue \"emails\""), "{toml}");
        assert!(toml.contains("#   task_compression = gzip"), "{toml}");
        assert!(
            toml.contains("args = [\"<to>\"]\nkwargs = { lang = \"<lang>\" }"),
            "{toml}"
        );
        let cases: Vec<(&str, &str, &str)> = parsed["case"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap(),
                    c["path"].as_str().unwrap(),
                    c["task"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            cases,
            [
                ("refund-celery", "acquire", "refund"),
                ("refund-celery-kept-producer", "pooled", "refund"),
                ("refund-kombu", "pooled", "refund"),
                ("refund-taskbench", "pooled", "refund"),
                ("send_email-celery", "acquire", "send_email"),
            ]
        );
        assert_eq!(
            parsed["case"][0]["url"].as_str(),
            Some("redis://127.0.0.1:6379/0")
        );
    }

    #[test]
    fn a_password_is_never_written_and_a_pool_limit_of_0_adds_a_fresh_case() {
        let toml = write(
            &shop("redis", true, Some(0)),
            &["shop.tasks.send_email".into()],
        )
        .unwrap();
        let parsed: toml::Table = toml.parse().unwrap();
        assert!(
            toml.contains("export TASKBENCH_REDIS_URL='redis://:PASSWORD@127.0.0.1:6379/0'"),
            "{toml}"
        );
        assert!(!toml.contains("\nurl ="), "{toml}");
        let names: Vec<&str> = parsed["case"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"send_email-celery-fresh"), "{names:?}");
        assert!(!toml.contains("refund"), "{toml}");
    }

    #[test]
    fn bad_input_says_what_is_wrong() {
        let e = write(
            &shop("redis", false, None),
            &["shop.tasks.send_emial".into()],
        )
        .unwrap_err();
        assert_eq!(
            e,
            "the app shop.celery:app has no task \"shop.tasks.send_emial\"; its tasks: shop.tasks.refund, shop.tasks.send_email"
        );
        let e = write(&shop("sqs", false, None), &[]).unwrap_err();
        assert!(e.contains("kombu's \"sqs\" transport"), "{e}");
        let mut amqp = shop("pyamqp", false, None);
        amqp.virtual_host = Some("/".into());
        amqp.port = Some(5672);
        amqp.userid = Some("guest".into());
        let toml = write(&amqp, &[]).unwrap();
        assert!(
            toml.contains("url = \"amqp://guest@127.0.0.1:5672/%2f\""),
            "{toml}"
        );
    }
}
