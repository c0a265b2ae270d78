//! Shared by the integration tests: the taskbench command, broker URLs, skip-or-fail when a broker is
//! missing, unique names, a real Celery worker to prove that what taskbench publishes runs, and a proxy
//! that plays a dead broker.
#![allow(dead_code)]

pub mod rabbit_node;
pub mod redis_server;
pub mod svg;
pub mod tls;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The taskbench binary under test, ready for arguments: run it with `.output()` or `.spawn()`, or with
/// `assert_cmd::prelude::*` in scope, `.assert()`.
pub fn taskbench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_taskbench"))
}

/// Whether a missing broker fails the test (CI) instead of skipping it.
pub fn brokers_required() -> bool {
    std::env::var("TASKBENCH_REQUIRE_BROKERS").is_ok_and(|v| v == "1")
}

/// The running test's name: libtest runs each test on a thread named after it (`module::name`; the last
/// part is the function's name). Call it on the test's own thread, not from a spawned task.
pub fn test_name() -> String {
    let thread = std::thread::current();
    let name = thread.name().unwrap_or_default();
    assert!(
        !name.is_empty() && name != "main" && !name.starts_with("tokio-"),
        "test_name() called off the test's own thread (on {name:?})"
    );
    name.rsplit("::").next().unwrap_or(name).to_string()
}

/// Reports that the running test (see [`test_name`]) lacks what it needs: see [`skip`].
pub fn skip_test(why: &str) {
    skip(&test_name(), why);
}

/// Reports a missing dependency: panics under TASKBENCH_REQUIRE_BROKERS=1, otherwise prints why the test
/// is skipped and records it in the skip log (see [`skip_log`]). Returns so the caller can `return`.
/// Tests that need a broker or the venv are also `#[ignore = "needs ...; tests/run runs it"]`, so that a
/// plain `cargo test` lists them as ignored rather than passing them unrun; tests/run includes them.
/// [`skip_test`] finds the test's name itself.
pub fn skip(test: &str, why: &str) {
    if brokers_required() {
        panic!("{test}: {why} (TASKBENCH_REQUIRE_BROKERS=1, so this fails instead of skipping)");
    }
    eprintln!("SKIPPED {test}: {why}; set TASKBENCH_REQUIRE_BROKERS=1 to make this a failure");
    // cargo test hides a passing test's output, so the line above is seen only with --nocapture; the log
    // is what tests/run counts and reports after the run.
    let log = skip_log();
    let line = format!("{test}\t{}\n", why.replace(['\t', '\n'], " "));
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .and_then(|mut file| std::io::Write::write_all(&mut file, line.as_bytes()));
    if let Err(e) = written {
        eprintln!("cannot record the skip in {}: {e}", log.display());
    }
}

/// The file skipped tests are appended to, one `<test>\t<reason>` line each: `TASKBENCH_SKIP_LOG`, else
/// `target/tmp/taskbench-skipped.log`. tests/run empties it before `cargo test` and reports it after; a
/// plain `cargo test` only appends to it.
pub fn skip_log() -> PathBuf {
    std::env::var_os("TASKBENCH_SKIP_LOG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("taskbench-skipped.log"))
}

pub fn amqp_url() -> String {
    std::env::var("TASKBENCH_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

pub fn redis_url() -> String {
    std::env::var("TASKBENCH_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

/// Whether something accepts TCP connections at `host:port`.
pub fn reachable(addr: &str) -> bool {
    use std::net::ToSocketAddrs;
    addr.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(1)).is_ok())
}

/// A name no other test (or earlier run) uses: `prefix-<pid>-<nanos>`.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000_000
    )
}

/// The Python with Celery installed by `tests/run` (TASKBENCH_PYTHON), if any.
pub fn celery_python() -> Option<PathBuf> {
    std::env::var_os("TASKBENCH_PYTHON")
        .map(PathBuf::from)
        .filter(|p| p.exists())
}

/// A Celery worker process running tests/celery/tasks.py; stopped (by its PID) when dropped.
pub struct CeleryWorker {
    child: Child,
    /// Where it records executions, and the key: deleted when the worker is dropped.
    record_redis: String,
    record_key: String,
}

impl CeleryWorker {
    /// Starts `celery worker` on `broker` consuming `queue`, recording executions in Redis at `record_redis`.
    pub fn start(python: &PathBuf, broker: &str, queue: &str, record_redis: &str) -> CeleryWorker {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/celery");
        let child = Command::new(python)
            .args([
                "-m",
                "celery",
                "-A",
                "tasks",
                "worker",
                "--pool",
                "solo",
                "--loglevel",
                "WARNING",
                "-Q",
                queue,
            ])
            .args([
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ])
            // A node name of its own: two workers named celery@<host> on one RabbitMQ (another test, or
            // another checkout's suite) fight over the exclusive pidbox queue and one exits.
            .args(["--hostname", &format!("{queue}@%h")])
            .env("CELERY_BROKER_URL", broker)
            .env("TASKBENCH_RECORD_REDIS", record_redis)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .spawn()
            .expect("start the celery worker");
        CeleryWorker {
            child,
            record_redis: record_redis.to_string(),
            record_key: format!("taskbench-executed:{queue}"),
        }
    }

    /// Waits until `n` executions were recorded for `queue` (or `timeout` passes); returns the records.
    pub fn wait_for_executions(
        &mut self,
        record_redis: &str,
        queue: &str,
        n: usize,
        timeout: Duration,
    ) -> Vec<serde_json::Value> {
        let key = format!("taskbench-executed:{queue}");
        let deadline = Instant::now() + timeout;
        let python = std::env::var("TASKBENCH_PYTHON").unwrap();
        loop {
            let out = Command::new(&python)
                .args(["-c", "import redis,sys,json; r=redis.Redis.from_url(sys.argv[1]); print(json.dumps([json.loads(x) for x in r.lrange(sys.argv[2],0,-1)]))", record_redis, &key])
                .output()
                .expect("read records");
            let records: Vec<serde_json::Value> =
                serde_json::from_slice(&out.stdout).unwrap_or_default();
            if records.len() >= n || Instant::now() > deadline {
                return records;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the celery worker exited early: {status}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for CeleryWorker {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && !matches!(self.child.try_wait(), Ok(Some(_))) {
            std::thread::sleep(Duration::from_millis(100));
        }
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // The record list is the test's own: once the worker is gone, leave nothing on the shared Redis.
        let _ = redis::Client::open(self.record_redis.as_str())
            .and_then(|c| c.get_connection())
            .and_then(|mut c| redis::cmd("DEL").arg(&self.record_key).query::<()>(&mut c));
    }
}

/// `<file>.hlog` read back by the Python `hdrhistogram` package's `HistogramLogReader` (from the venv
/// `tests/run` installs), as JSON: `start_time_sec` and `intervals` [{tag, start_ms, end_ms, count, p50,
/// p99, max}]. `None` (after skipping the test) when there is no venv or it lacks the package.
pub fn read_hlog_with_python(file: &std::path::Path) -> Option<serde_json::Value> {
    let Some(python) = celery_python() else {
        skip_test("TASKBENCH_PYTHON is not set (run the tests with tests/run)");
        return None;
    };
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/common/read_hlog.py");
    let out = Command::new(&python)
        .arg(script)
        .arg(file)
        .output()
        .unwrap();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("No module named 'hdrh'") {
            skip_test(
                "the venv has no hdrhistogram package (tests/run installs tests/celery/requirements.txt)",
            );
            return None;
        }
        panic!("read_hlog.py failed on {}: {stderr}", file.display());
    }
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

/// Runs `scenarios/quickstart.toml` with only `cases`, `publishes` each, into `out`; panics if it fails.
pub fn quickstart_run(out: &std::path::Path, publishes: u64, cases: &[&str]) {
    let mut cmd = taskbench();
    cmd.current_dir(env!("CARGO_MANIFEST_DIR")).args([
        "run",
        "scenarios/quickstart.toml",
        "--publishes",
        &publishes.to_string(),
    ]);
    for c in cases {
        cmd.args(["--case", c]);
    }
    let done = cmd.arg("--out").arg(out).output().expect("run taskbench");
    assert!(
        done.status.success(),
        "the quickstart run failed: {}",
        String::from_utf8_lossy(&done.stderr)
    );
}

/// A TCP proxy to a broker that can play dead: while dead it cuts every connection it forwarded and
/// accepts and drops every new one, counting them (each is a connect attempt that failed).
pub struct DeadlyProxy {
    /// The loopback port it listens on.
    pub port: u16,
    dead: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub attempts_while_dead: std::sync::Arc<std::sync::atomic::AtomicU64>,
    pub forwards: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl DeadlyProxy {
    /// Listens on a free loopback port and, while alive, forwards each connection to `broker` (host:port).
    pub async fn start(broker: String) -> DeadlyProxy {
        use std::sync::atomic::Ordering::Relaxed;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = DeadlyProxy {
            port: listener.local_addr().unwrap().port(),
            dead: Default::default(),
            attempts_while_dead: Default::default(),
            forwards: Default::default(),
        };
        let (dead, attempts, forwards) = (
            proxy.dead.clone(),
            proxy.attempts_while_dead.clone(),
            proxy.forwards.clone(),
        );
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if dead.load(Relaxed) {
                    attempts.fetch_add(1, Relaxed);
                    drop(client);
                    continue;
                }
                let broker = broker.clone();
                forwards.lock().unwrap().push(tokio::spawn(async move {
                    let Ok(mut upstream) = tokio::net::TcpStream::connect(&broker).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }));
            }
        });
        proxy
    }

    /// Plays dead: cuts every forwarded connection, and drops every new one until [`Self::revive`].
    pub fn kill(&self) {
        self.dead.store(true, std::sync::atomic::Ordering::Relaxed);
        for f in self.forwards.lock().unwrap().drain(..) {
            f.abort();
        }
    }

    /// Forwards new connections again.
    pub fn revive(&self) {
        self.dead.store(false, std::sync::atomic::Ordering::Relaxed);
    }
}
