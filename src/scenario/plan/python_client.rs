//! A broker case published by real Celery or kombu (`client`): the client, its interpreter, app and
//! `pythonpath` (the case's own, else the scenario's, set once at the top of the file), which keys such a
//! case may set, and the one rule for the interpreter of a case that names none ([`default_python`]).

use super::locator::{CaseLocator, ScenarioFile};
use crate::catalog::Client;
use crate::scenario::raw::RawCase;
use crate::scenario::{Case, DEFAULT_PYTHON, PythonClient, ScenarioError};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use toml::Spanned;

/// What the top of the scenario file sets for every celery or kombu case (each case may override it).
#[derive(Clone, Copy, Default)]
pub(super) struct ScenarioPython<'a> {
    pub(super) python: Option<&'a Spanned<String>>,
    /// For celery cases only; kombu cases have no app.
    pub(super) celery_app: Option<&'a Spanned<String>>,
    pub(super) pythonpath: Option<&'a Spanned<String>>,
}

impl ScenarioPython<'_> {
    /// Checks the values on their own, before any case uses them: `celery_app` is `module:attribute`,
    /// `pythonpath` is not empty.
    pub(super) fn check(&self, file: &ScenarioFile) -> Result<(), ScenarioError> {
        if let Some(a) = self.celery_app {
            check_app(a).map_err(|(m, h)| file.error(a.span(), m, Some(h)))?;
        }
        if let Some(p) = self.pythonpath.filter(|p| p.get_ref().is_empty()) {
            return Err(file.error(p.span(), "`pythonpath` is empty".into(), None));
        }
        Ok(())
    }

    /// Refuses a `celery_app` or `pythonpath` at the top of the file that no case uses: without a celery (or
    /// kombu) case it would be ignored, and the run would measure taskbench's own publishers instead.
    pub(super) fn check_used(
        &self,
        file: &ScenarioFile,
        cases: &[Case],
    ) -> Result<(), ScenarioError> {
        let clients: Vec<Client> = cases.iter().map(|c| c.options.client()).collect();
        let unused = |key: &str, span: Range<usize>, needs: &[Client]| {
            let client = needs
                .iter()
                .map(|c| format!("client = \"{c}\""))
                .collect::<Vec<_>>();
            file.error(
                span,
                format!(
                    "`{key}` is set for the whole scenario, but no case has {}",
                    client.join(" or ")
                ),
                Some(format!(
                    "add {} to the cases that should publish through it, or remove `{key}`",
                    client.join(" or ")
                )),
            )
        };
        if let Some(a) = self.celery_app
            && !clients.contains(&Client::Celery)
        {
            return Err(unused("celery_app", a.span(), &[Client::Celery]));
        }
        if let Some(p) = self.pythonpath
            && clients.iter().all(|c| *c == Client::Taskbench)
        {
            return Err(unused(
                "pythonpath",
                p.span(),
                &[Client::Celery, Client::Kombu],
            ));
        }
        Ok(())
    }
}

/// Whether `app` is `module:attribute`; else the message and hint to show.
fn check_app(app: &Spanned<String>) -> Result<(), (String, String)> {
    let ok = app
        .get_ref()
        .split_once(':')
        .is_some_and(|(m, attr)| !m.is_empty() && !attr.is_empty());
    if ok {
        return Ok(());
    }
    Err((
        format!("celery_app {:?} is not `module:attribute`", app.get_ref()),
        "e.g. celery_app = \"proj.celery:app\" (with pythonpath = the directory proj is in)".into(),
    ))
}

/// The case's `client` and, for celery or kombu, its interpreter and app (its own, else `scenario`'s); checks
/// that the case sets only keys its client takes. `None` for taskbench's own publishers (and for local
/// backends, which have no client).
pub(super) fn python_client(
    case: &CaseLocator,
    raw: &RawCase,
    scenario: ScenarioPython,
) -> Result<Option<PythonClient>, ScenarioError> {
    use crate::catalog::{PYTHON_CLIENT_KEYS, PYTHON_ONLY_KEYS};
    let client = match &raw.client {
        None => Client::Taskbench,
        Some(c) => Client::from_name(c.get_ref()).ok_or_else(|| {
            case.error(
                c.span(),
                format!("unknown client {:?}", c.get_ref()),
                Some(format!("client is one of {}", Client::NAMES.join(", "))),
            )
        })?,
    };
    let keys = raw.backend_keys();
    if client == Client::Taskbench {
        if let Some((key, span)) = keys.iter().find(|(k, _)| PYTHON_ONLY_KEYS.contains(k)) {
            return Err(case.error(
                span.clone(),
                format!("`{key}` applies only to a celery or kombu client"),
                Some("add client = \"celery\" or client = \"kombu\" to the case".into()),
            ));
        }
        return Ok(None);
    }
    if let Some((key, span)) = keys.iter().find(|(k, _)| !PYTHON_CLIENT_KEYS.contains(k)) {
        return Err(case.error(
            span.clone(),
            format!(
                "`{key}` tunes taskbench's own publishers and does not apply to client `{client}`"
            ),
            Some(format!(
                "a {client} case takes {}; configure Celery itself through celery_app",
                PYTHON_CLIENT_KEYS.join(", ")
            )),
        ));
    }
    let celery_app = match &raw.celery_app {
        Some(a) if client != Client::Celery => {
            return Err(case.error(
                a.span(),
                format!("`celery_app` applies only to client `celery`, not `{client}`"),
                None,
            ));
        }
        Some(a) => {
            check_app(a).map_err(|(m, h)| case.error(a.span(), m, Some(h)))?;
            Some(a.get_ref().clone())
        }
        // The scenario's app is for its celery cases; it was checked on its own.
        None if client == Client::Celery => scenario.celery_app.map(|a| a.get_ref().clone()),
        None => None,
    };
    let unregistered_task = app_flag(
        case,
        &raw.unregistered_task,
        "unregistered_task",
        &celery_app,
    )?;
    let publish_to_routed_queue = app_flag(
        case,
        &raw.publish_to_routed_queue,
        "publish_to_routed_queue",
        &celery_app,
    )?;
    if publish_to_routed_queue && let Some(keep) = raw.keep.as_ref().filter(|k| !*k.get_ref()) {
        return Err(case.error(
            keep.span(),
            "`keep = false` with `publish_to_routed_queue = true` would purge the app's own queue".into(),
            Some("the app's queue holds other publishers' messages too: taskbench leaves it as it is (remove keep)".into()),
        ));
    }
    let nonempty = |v: &Spanned<String>, key: &str| {
        if v.get_ref().is_empty() {
            Err(case.error(v.span(), format!("`{key}` is empty"), None))
        } else {
            Ok(v.get_ref().clone())
        }
    };
    let python = match raw.python.as_ref().or(scenario.python) {
        Some(p) => nonempty(p, "python")?,
        None => default_python().path.display().to_string(),
    };
    // A relative pythonpath is relative to the scenario file, so a scenario and its app can move together.
    let pythonpath = raw
        .pythonpath
        .as_ref()
        .or(scenario.pythonpath)
        .map(|p| nonempty(p, "pythonpath"))
        .transpose()?
        .map(|p| {
            let p = PathBuf::from(p);
            match Path::new(case.file.name).parent() {
                Some(dir) if p.is_relative() && !dir.as_os_str().is_empty() => dir.join(p),
                _ => p,
            }
        });
    Ok(Some(PythonClient {
        client,
        python: PathBuf::from(python),
        celery_app,
        pythonpath,
        unregistered_task,
        publish_to_routed_queue,
        route: None,
    }))
}

/// A celery case's flag about its app's tasks and routes (`key`): it needs a `celery_app` to mean something.
fn app_flag(
    case: &CaseLocator,
    flag: &Option<Spanned<bool>>,
    key: &str,
    celery_app: &Option<String>,
) -> Result<bool, ScenarioError> {
    match flag {
        Some(f) if celery_app.is_none() => Err(case.error(
            f.span(),
            format!("`{key}` applies only to a celery case with a `celery_app`"),
            Some(
                "the minimal app taskbench builds without celery_app has no tasks and no routes"
                    .into(),
            ),
        )),
        Some(f) => Ok(*f.get_ref()),
        None => Ok(false),
    }
}

/// The interpreter of a celery or kombu case that sets no `python` (neither the case nor the scenario), and
/// why it was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultPython {
    /// The interpreter.
    pub path: PathBuf,
    /// Why this one, in words: `installed beside taskbench (/venv/bin/taskbench)`.
    pub why: String,
    /// Whether it could import Celery when it was chosen.
    pub has_celery: bool,
    /// An interpreter beside the taskbench executable that could not import Celery (it was passed over).
    pub beside_without_celery: Option<PathBuf>,
}

impl DefaultPython {
    /// The one-line fix when [`DefaultPython::has_celery`] is false: install Celery into the interpreter
    /// beside taskbench if there is one (it is then chosen), else into the chosen one; or set `python`.
    pub fn fix(&self) -> String {
        let target = self.beside_without_celery.as_ref().unwrap_or(&self.path);
        format!(
            "install Celery there ({} -m pip install 'celery[redis]'), or set `python` in the scenario to an interpreter that has it",
            target.display()
        )
    }
}

/// The default interpreter, chosen once per process: the `python3` (or `python`) installed beside the
/// taskbench executable (`pip install taskbench` into a virtualenv puts both in its `bin/`) if it can
/// import Celery, else `TASKBENCH_PYTHON`, else `python3` from PATH.
pub fn default_python() -> &'static DefaultPython {
    static CHOSEN: OnceLock<DefaultPython> = OnceLock::new();
    CHOSEN.get_or_init(|| {
        let exe = std::env::current_exe().ok();
        let beside = exe.as_deref().and_then(Path::parent).and_then(|dir| {
            ["python3", "python"]
                .iter()
                .map(|name| dir.join(name))
                .find(|p| p.is_file())
        });
        let env = std::env::var("TASKBENCH_PYTHON")
            .ok()
            .filter(|p| !p.is_empty());
        choose_python(exe.as_deref(), beside, env, imports_celery)
    })
}

/// [`default_python`]'s rule, given the executable, the interpreter beside it, `TASKBENCH_PYTHON`, and
/// how to tell whether an interpreter can import Celery.
fn choose_python(
    exe: Option<&Path>,
    beside: Option<PathBuf>,
    env: Option<String>,
    imports_celery: impl Fn(&Path) -> bool,
) -> DefaultPython {
    let exe = exe.map_or_else(|| "?".into(), |e| e.display().to_string());
    let mut passed_over = None;
    if let Some(beside) = beside {
        if imports_celery(&beside) {
            return DefaultPython {
                path: beside,
                why: format!("installed beside taskbench ({exe}), and it imports Celery"),
                has_celery: true,
                beside_without_celery: None,
            };
        }
        passed_over = Some(beside);
    }
    let skipped = passed_over.as_ref().map_or_else(String::new, |p| {
        format!("; {} beside taskbench cannot import Celery", p.display())
    });
    let (path, why) = match env {
        Some(p) => (PathBuf::from(p), format!("TASKBENCH_PYTHON{skipped}")),
        None => (
            PathBuf::from(DEFAULT_PYTHON),
            format!("{DEFAULT_PYTHON} from PATH: TASKBENCH_PYTHON is unset{skipped}"),
        ),
    };
    DefaultPython {
        has_celery: imports_celery(&path),
        path,
        why,
        beside_without_celery: passed_over,
    }
}

/// Whether `python -c "import celery"` succeeds.
fn imports_celery(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import celery"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_celery(these: &'static [&'static str]) -> impl Fn(&Path) -> bool {
        move |p| these.iter().any(|t| p == Path::new(t))
    }

    #[test]
    fn the_interpreter_beside_taskbench_comes_first_when_it_has_celery() {
        let exe = Path::new("/v/bin/taskbench");
        let chosen = choose_python(
            Some(exe),
            Some("/v/bin/python3".into()),
            Some("/other/python".into()),
            with_celery(&["/v/bin/python3", "/other/python"]),
        );
        assert_eq!(chosen.path, Path::new("/v/bin/python3"));
        assert!(chosen.has_celery);
        assert_eq!(
            chosen.why,
            "installed beside taskbench (/v/bin/taskbench), and it imports Celery"
        );
    }

    #[test]
    fn without_celery_beside_it_taskbench_python_then_python3_and_the_fix_names_the_venv() {
        let exe = Path::new("/v/bin/taskbench");
        let chosen = choose_python(
            Some(exe),
            Some("/v/bin/python3".into()),
            Some("/other/python".into()),
            with_celery(&["/other/python"]),
        );
        assert_eq!(chosen.path, Path::new("/other/python"));
        assert!(chosen.has_celery);
        assert_eq!(
            chosen.why,
            "TASKBENCH_PYTHON; /v/bin/python3 beside taskbench cannot import Celery"
        );

        let chosen = choose_python(
            Some(exe),
            Some("/v/bin/python3".into()),
            None,
            with_celery(&[]),
        );
        assert_eq!(chosen.path, Path::new("python3"));
        assert!(!chosen.has_celery);
        assert!(
            chosen
                .fix()
                .contains("/v/bin/python3 -m pip install 'celery[redis]'")
        );
        assert!(chosen.fix().contains("or set `python`"));
    }

    #[test]
    fn with_nothing_beside_taskbench_its_python_is_taskbench_python_else_python3() {
        let chosen = choose_python(None, None, Some("/e/python".into()), with_celery(&[]));
        assert_eq!(
            (chosen.path.as_path(), chosen.why.as_str()),
            (Path::new("/e/python"), "TASKBENCH_PYTHON")
        );
        assert!(chosen.fix().contains("/e/python -m pip install"));
        let chosen = choose_python(None, None, None, with_celery(&["python3"]));
        assert_eq!(chosen.path, Path::new("python3"));
        assert!(chosen.has_celery);
        assert_eq!(chosen.why, "python3 from PATH: TASKBENCH_PYTHON is unset");
    }
}
