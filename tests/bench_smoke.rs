//! Smoke runs of the bench/ scripts: each runs once in its smoke mode (BENCH_SMOKE=1: tiny counts, one
//! round) on this build's binary, and must exit 0 and print its result lines. This checks that a script
//! still runs (its flags, the scenarios and summary.json fields it reads), never what it measures. A script
//! that needs a broker, a binary or the Celery venv skips without it, as the broker tests do.

mod common;

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The scripts measure CPU and share brokers and fixed queue names: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A script that runs longer than this is stuck: it is stopped with everything it started.
const HANG: Duration = Duration::from_secs(600);

/// What a script needs besides this build's binary.
enum Need {
    /// The RabbitMQ of the tests (TASKBENCH_AMQP_URL) and `rabbitmqctl` allowed to reach it.
    RabbitMq,
    /// The Redis of the tests (TASKBENCH_REDIS_URL).
    Redis,
    /// A program on PATH (or at this absolute path).
    Program(&'static str),
    /// The Celery venv (TASKBENCH_PYTHON) with py-spy next to its python.
    PySpy,
}

/// Why `need` is missing, or `None` when it is there.
fn missing(need: &Need) -> Option<String> {
    match need {
        Need::RabbitMq => {
            let url = common::amqp_url();
            let parsed: lapin::uri::AMQPUri = url.parse().expect("TASKBENCH_AMQP_URL parses");
            let addr = format!("{}:{}", parsed.authority.host, parsed.authority.port);
            let ctl_ok = Command::new("rabbitmqctl")
                .args(["-q", "status"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !common::reachable(&addr) {
                Some(format!("no RabbitMQ reachable at {addr}"))
            } else if !ctl_ok {
                Some("rabbitmqctl cannot reach the RabbitMQ node".into())
            } else {
                None
            }
        }
        Need::Redis => {
            let url = common::redis_url();
            let info = redis::IntoConnectionInfo::into_connection_info(url.as_str()).ok();
            let up = info.is_some_and(|info| match info.addr() {
                redis::ConnectionAddr::Tcp(host, port) => {
                    common::reachable(&format!("{host}:{port}"))
                }
                _ => false,
            });
            (!up).then(|| format!("no Redis reachable at {url}"))
        }
        Need::Program(name) => {
            (!on_path(name)).then(|| format!("{name} is not installed (not on PATH)"))
        }
        Need::PySpy => match common::celery_python() {
            None => Some("TASKBENCH_PYTHON is not set (run the tests with tests/run)".into()),
            Some(python) => {
                let py_spy = python.with_file_name("py-spy");
                (!py_spy.exists()).then(|| format!("no py-spy at {}", py_spy.display()))
            }
        },
    }
}

fn on_path(program: &str) -> bool {
    if Path::new(program).is_absolute() {
        return Path::new(program).exists();
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// Runs `bench/<script> ARGS` in smoke mode with `env`, after checking `needs` (skipping the test when one
/// is missing: `None`); asserts it exits 0 and returns its output (stdout, then stderr: `/usr/bin/time` and
/// progress write there).
fn smoke(script: &str, args: &[&str], env: &[(&str, &str)], needs: &[Need]) -> Option<String> {
    if let Some(why) = needs.iter().find_map(missing) {
        common::skip_test(&why);
        return None;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // Run folders the scripts keep (and mktemp's) go to a folder of the test's own, removed after.
    let tmp = tempfile::tempdir().unwrap();
    // Output goes to files, not pipes: a daemon the script starts (epmd) may keep a pipe open for good.
    let (stdout_file, stderr_file) = (tmp.path().join("stdout"), tmp.path().join("stderr"));
    let mut command = Command::new(root.join("bench").join(script));
    command
        .args(args)
        .env("BENCH_SMOKE", "1")
        .env("TASKBENCH_BIN", env!("CARGO_BIN_EXE_taskbench"))
        .env("TMPDIR", tmp.path())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(File::create(&stdout_file).unwrap())
        .stderr(File::create(&stderr_file).unwrap())
        // A group of its own, so that a hung script is stopped with the servers it started.
        .process_group(0);
    let started = Instant::now();
    let mut child = command.spawn().expect("start the bench script");
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > HANG {
            let group = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
            panic!("bench/{script} still ran after {HANG:?}: stopped");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = std::fs::read_to_string(&stdout_file).unwrap();
    let stderr = std::fs::read_to_string(&stderr_file).unwrap();
    eprintln!(
        "bench/{script} ({:.1?}):\n{stdout}{stderr}",
        started.elapsed()
    );
    assert!(
        status.success(),
        "bench/{script} failed ({status}):\n--- stdout\n{stdout}--- stderr\n{stderr}"
    );
    Some(stdout + &stderr)
}

/// Asserts that `output` has a line containing every one of `parts`.
#[track_caller]
fn assert_line(output: &str, parts: &[&str]) {
    assert!(
        output
            .lines()
            .any(|line| parts.iter().all(|p| line.contains(p))),
        "no line with {parts:?} in:\n{output}"
    );
}

#[test]
fn raw() {
    let Some(out) = smoke("raw.sh", &[], &[], &[Need::Program("/usr/bin/time")]) else {
        return;
    };
    for case in ["unix-raw-stages-on", "unix-raw-stages-off"] {
        assert_line(&out, &[case, "/s", "ns/publish", "errors 0"]);
    }
    assert_line(&out, &["2000 publishes: max RSS", "KiB"]);
}

#[test]
fn floor_raw() {
    let Some(out) = smoke("floor-raw.sh", &[], &[], &[Need::Program("cc")]) else {
        return;
    };
    // The frame's size moves with the publisher's pid, which Celery's `origin` header carries.
    assert_line(
        &out,
        &["against a bare write loop of the same ", "-byte frame"],
    );
    assert_line(
        &out,
        &["round 1: bare", "frames/s", "errors 0", "taskbench/bare"],
    );
    assert_line(&out, &["median taskbench/bare over 1 rounds: "]);
}

#[test]
fn floor() {
    let Some(out) = smoke("floor.sh", &[], &[], &[]) else {
        return;
    };
    assert_line(
        &out,
        &[
            "round 1: unix-raw:",
            "errors 0",
            "floor",
            "p50/floor",
            "throughput/floor",
        ],
    );
    assert_line(&out, &["median of 1: unix-raw: p50/floor"]);
}

#[test]
fn profile() {
    // Redis is optional: without it the script prints the raw rows and says it skipped the Redis ones.
    let Some(out) = smoke("profile.sh", &[], &[], &[]) else {
        return;
    };
    assert_line(
        &out,
        &["--profile cpu", "unix-raw-trace-all", "/s", "errors 0"],
    );
    if missing(&Need::Redis).is_none() {
        assert_line(
            &out,
            &["--profile cpu", "redis-pooled-trace-all", "errors 0"],
        );
    }
}

#[test]
fn publishers() {
    let Some(out) = smoke("publishers.sh", &[], &[], &[Need::Program("/usr/bin/time")]) else {
        return;
    };
    assert_line(&out, &["100 publishers: max RSS", "MiB", "0 errors"]);
}

#[test]
#[ignore = "needs redis-server; tests/run runs it"]
fn interrupt() {
    let Some(out) = smoke("interrupt.sh", &[], &[], &[Need::Program("redis-server")]) else {
        return;
    };
    assert_line(&out, &["redis SIGSTOPped: exit", "ms after SIGINT"]);
    assert_line(&out, &["open loop at 0.1/s: exit", "ms after SIGINT"]);
}

#[test]
#[ignore = "needs RabbitMQ and Redis; tests/run runs it"]
fn broker_cpu() {
    let needs = [Need::RabbitMq, Need::Redis];
    let Some(out) = smoke("broker-cpu.sh", &[], &[], &needs) else {
        return;
    };
    for case in ["amqp-taskbench-pooled", "redis-taskbench-acquire"] {
        assert_line(&out, &[case, "/s", "broker CPU"]);
    }
}

#[test]
#[ignore = "needs Redis and redis-server; tests/run runs it"]
fn redis() {
    let needs = [
        Need::Redis,
        Need::Program("redis-cli"),
        Need::Program("redis-benchmark"),
    ];
    let url = common::redis_url();
    let Some(out) = smoke("redis.sh", &[&url], &[], &needs) else {
        return;
    };
    assert_line(&out, &["pooled batch=32 c=50", "-c 50 -P 32"]);
    assert_line(&out, &["pooled c=50 multiplexed", "tasks/s"]);
    if common::celery_python().is_some() {
        assert_line(&out, &["Celery apply_async as shipped"]);
    }
}

#[test]
#[ignore = "needs RabbitMQ; tests/run runs it"]
fn amqp() {
    let Some(out) = smoke("amqp.sh", &[], &[], &[Need::RabbitMq]) else {
        return;
    };
    assert_line(&out, &["pooled-off", "/s", "p50"]);
    assert_line(&out, &["pooled-x4-4conn-b64", "/s"]);
    assert_line(&out, &["best one-publisher case", "broker ceiling"]);
}

#[test]
#[ignore = "needs RabbitMQ; tests/run runs it"]
fn amqp_cost() {
    let needs = [Need::RabbitMq, Need::Program("strace")];
    let Some(out) = smoke("amqp-cost.sh", &[], &[], &needs) else {
        return;
    };
    assert_line(&out, &["CPU PER PUBLISH:", "µs"]);
    assert_line(&out, &["SYSCALLS PER PUBLISH (strace):"]);
}

#[test]
#[ignore = "needs RabbitMQ and the Celery venv; tests/run runs it"]
fn pywall() {
    let needs = [Need::RabbitMq, Need::Redis, Need::PySpy];
    let Some(out) = smoke("pywall.sh", &[], &[], &needs) else {
        return;
    };
    for mode in ["none", "cpu", "both"] {
        assert_line(&out, &[mode, "amqp-celery-acquire", "us"]);
    }
    assert_line(&out, &["medians:"]);
}

#[test]
#[ignore = "needs rabbitmq-server; tests/run runs it"]
fn cluster() {
    // One node of its own (not the shared broker): starting three would take minutes on a small machine.
    let needs = [Need::Program("/usr/lib/rabbitmq/bin/rabbitmq-server")];
    let Some(out) = smoke("cluster.sh", &[], &[("NODES", "1")], &needs) else {
        return;
    };
    assert_line(&out, &["running nodes:", "tb-a@localhost"]);
    for case in ["classic-each", "quorum-window-64"] {
        assert_line(&out, &[case, "%"]);
    }
    assert_line(&out, &["stopped by PID: VMs"]);
}

#[test]
#[ignore = "needs RabbitMQ, Redis and the Celery venv; tests/run runs it"]
fn limits() {
    let needs = [
        Need::RabbitMq,
        Need::Redis,
        Need::Program("cc"),
        Need::PySpy,
    ];
    let Some(out) = smoke("limits.sh", &[], &[], &needs) else {
        return;
    };
    assert_line(
        &out,
        &[
            "raw unix / bare C write loop, throughput: ",
            "(goal >= 0.85)",
        ],
    );
    assert_line(&out, &["redis-pooled / its floor: p50/floor "]);
    for case in ["redis-celery-acquire", "amqp-kombu-pooled"] {
        assert_line(&out, &[case, " busy share: ", "errors 0", "(goal >= 0.95)"]);
    }
    assert_line(
        &out,
        &[
            "AMQP pooled taskbench CPU / RabbitMQ CPU: ",
            "(goal: clearly below 1)",
        ],
    );
}
