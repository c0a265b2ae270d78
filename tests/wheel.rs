//! The Python wheel that carries the binary (pyproject.toml, maturin's `bindings = "bin"`), for real: built
//! with `maturin build --release`, installed into fresh virtualenvs, and run from there with no `python` key
//! and no TASKBENCH_PYTHON, so the interpreter beside the installed `taskbench` is the one chosen.
//!
//! maturin comes from the Celery venv tests/run makes (tests/celery/requirements.txt lists it: the one next
//! to TASKBENCH_PYTHON), else PATH. The wheel is built once per run of this file, into the test target dir's
//! release build (CARGO_TARGET_DIR is the one cargo test uses, so a release build already there is reused).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Instant;
use taskbench::summary::Summary;

/// maturin: beside TASKBENCH_PYTHON (tests/run's venv), else on PATH.
fn maturin() -> Option<PathBuf> {
    let beside = common::celery_python()
        .and_then(|python| python.parent().map(|dir| dir.join("maturin")))
        .filter(|m| m.is_file());
    beside.or_else(|| {
        Command::new("maturin")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
            .then(|| PathBuf::from("maturin"))
    })
}

/// The wheel, built once by the first test that asks (the other waits for it).
fn wheel(maturin: &Path) -> &'static Path {
    static WHEEL: OnceLock<PathBuf> = OnceLock::new();
    WHEEL.get_or_init(|| {
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let target_dir = tmp
            .parent()
            .expect("CARGO_TARGET_TMPDIR is <target dir>/tmp");
        let out = tmp.join("wheels");
        let _ = std::fs::remove_dir_all(&out);
        let started = Instant::now();
        let built = Command::new(maturin)
            .args(["build", "--release", "--manifest-path"])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .arg("--out")
            .arg(&out)
            .env("CARGO_TARGET_DIR", target_dir)
            .output()
            .unwrap();
        assert_success("maturin build --release", &built);
        eprintln!("wheel built in {:.1?}", started.elapsed());
        std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "whl"))
            .unwrap_or_else(|| panic!("maturin wrote no .whl into {}", out.display()))
    })
}

/// A fresh virtualenv in `dir` with `packages` pip-installed (the wheel's path among them).
fn venv(dir: &Path, packages: &[&std::ffi::OsStr], pip_args: &[&str]) -> PathBuf {
    let venv = dir.join("venv");
    let started = Instant::now();
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .output()
        .unwrap();
    assert_success("python3 -m venv", &made);
    let installed = Command::new(venv.join("bin/python"))
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(pip_args)
        .args(packages)
        .output()
        .unwrap();
    assert_success("pip install", &installed);
    eprintln!("venv with {packages:?} made in {:.1?}", started.elapsed());
    venv
}

fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what}: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `<venv>/bin/taskbench ARGS`, with no TASKBENCH_PYTHON to fall back on.
fn installed_taskbench(venv: &Path) -> Command {
    let mut command = Command::new(venv.join("bin/taskbench"));
    command.env_remove("TASKBENCH_PYTHON");
    command
}

#[test]
#[ignore = "needs maturin, network access for pip and Redis; tests/run runs it"]
fn the_wheel_in_a_celery_venv_runs_a_celery_case_with_the_venvs_interpreter() {
    let Some(maturin) = maturin() else {
        common::skip_test("no maturin (tests/run installs it into target/celery-venv)");
        return;
    };
    let redis = common::redis_url();
    let addr = redis
        .trim_start_matches("redis://")
        .split(['/', '?'])
        .next()
        .unwrap_or_default()
        .rsplit('@')
        .next()
        .unwrap_or_default()
        .to_string();
    if !common::reachable(&addr) {
        common::skip_test(&format!("no Redis reachable at {addr}"));
        return;
    }
    let wheel = wheel(&maturin);
    let dir = tempfile::tempdir().unwrap();
    let venv = venv(
        dir.path(),
        &[wheel.as_os_str(), "celery[redis]==5.*".as_ref()],
        &[],
    );
    let python = venv.join("bin/python3");

    let version = installed_taskbench(&venv)
        .arg("--version")
        .output()
        .unwrap();
    assert_success("taskbench --version", &version);
    assert!(
        String::from_utf8_lossy(&version.stdout)
            .starts_with(&format!("taskbench {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{version:?}"
    );

    let scenario = dir.path().join("s.toml");
    std::fs::write(
        &scenario,
        format!(
            r#"
                name = "wheel"
                publishes = 20
                warmup = 2
                concurrency = 1

                [task]
                name = "tasks.add"
                args = [2, 2]
                queue = "{}"

                [[case]]
                name = "redis-celery-acquire"
                backend = "redis"
                path = "acquire"
                client = "celery"
                url = "{redis}"
            "#,
            common::unique("tb-wheel")
        ),
    )
    .unwrap();

    let validated = installed_taskbench(&venv)
        .arg("validate")
        .arg(&scenario)
        .output()
        .unwrap();
    assert_success("taskbench validate", &validated);
    let stdout = String::from_utf8_lossy(&validated.stdout);
    let chosen = format!(
        "python for the cases that set no `python`: {} (installed beside taskbench ({}), and it imports Celery)",
        python.display(),
        venv.join("bin/taskbench").display()
    );
    assert!(stdout.contains(&chosen), "no {chosen:?} in:\n{stdout}");

    let out = dir.path().join("run");
    let ran = installed_taskbench(&venv)
        .arg("run")
        .arg(&scenario)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_success("taskbench run", &ran);
    let summary = Summary::read(&out).unwrap();
    let facts = summary.cases[0]
        .facts
        .python
        .as_ref()
        .expect("a celery case has Python facts");
    assert_eq!(Path::new(&facts.interpreter), python);
    let versions = facts.versions.as_ref().expect("the harnesses came up");
    assert!(
        Path::new(&versions.executable).starts_with(&venv),
        "the harness ran {}, not the venv's interpreter",
        versions.executable
    );
    assert!(versions.celery.starts_with("5."), "{versions:?}");
    assert_eq!(
        summary.cases[0].publishes_ok,
        20,
        "{}",
        String::from_utf8_lossy(&ran.stdout)
    );
}

#[test]
#[ignore = "needs maturin; tests/run runs it"]
fn the_wheel_in_a_venv_without_celery_says_how_to_install_it() {
    let Some(maturin) = maturin() else {
        common::skip_test("no maturin (tests/run installs it into target/celery-venv)");
        return;
    };
    let wheel = wheel(&maturin);
    let dir = tempfile::tempdir().unwrap();
    // The wheel has no dependencies: this install needs no index.
    let venv = venv(dir.path(), &[wheel.as_os_str()], &["--no-index"]);
    let scenario = dir.path().join("s.toml");
    std::fs::write(
        &scenario,
        r#"
            name = "wheel"

            [[case]]
            name = "c"
            backend = "redis"
            path = "acquire"
            client = "celery"
        "#,
    )
    .unwrap();
    // No python3 on PATH either, so nothing else can stand in for the venv's interpreter.
    let empty = tempfile::tempdir().unwrap();
    let out = installed_taskbench(&venv)
        .arg("validate")
        .arg(&scenario)
        .env("PATH", empty.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let python = venv.join("bin/python3");
    for expected in [
        format!("{} beside taskbench cannot import Celery", python.display()),
        format!(
            "install Celery there ({} -m pip install 'celery[redis]'), or set `python` in the scenario",
            python.display()
        ),
    ] {
        assert!(stderr.contains(&expected), "no {expected:?} in:\n{stderr}");
    }
    assert_eq!(stderr.lines().count(), 1, "one line:\n{stderr}");
}
