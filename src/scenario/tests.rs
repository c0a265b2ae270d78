//! Every scenario error a user can hit, with the exact message they see.

use super::*;

const HEAD: &str = "name = \"t\"\n";

fn err(text: &str) -> String {
    parse(text, "s.toml").unwrap_err().to_string()
}

fn one_case(case_body: &str) -> String {
    format!("{HEAD}[[case]]\nname = \"c\"\n{case_body}\n")
}

#[test]
fn a_good_scenario_fills_defaults_and_lets_cases_override() {
    let s = parse(
        r#"
name = "demo"
publishes = 500
concurrency = 2
[task]
name = "tasks.mul"
args = [3, 4]
kwargs = { z = 1, a = 2 }
[[case]]
name = "a"
backend = "unix"
path = "raw"
[[case]]
name = "b"
backend = "redis"
path = "pooled"
concurrency = 8
duration = "2s"
batch = 16
priority = 6
"#,
        "s.toml",
    )
    .unwrap();
    assert_eq!(s.name, "demo");
    let a = &s.cases[0];
    assert_eq!(
        (a.backend, a.path, a.publishes, a.concurrency),
        (Backend::Unix, PathKind::Raw, Some(500), 2)
    );
    assert_eq!(a.warmup, DEFAULT_WARMUP);
    assert!(a.stage_timing && !a.open_loop());
    assert_eq!(a.task.spec().name, "tasks.mul");
    assert_eq!(a.task.body(), br#"[[3, 4], {"z": 1, "a": 2}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]"#);
    let b = &s.cases[1];
    assert_eq!(
        (b.concurrency, b.rate, b.duration),
        (8, None, Some(Duration::from_secs(2)))
    );
    assert_eq!(
        b.publishes,
        Some(500),
        "a scenario-wide count still bounds a timed case"
    );
    assert_eq!((b.options.batch(), b.task.spec().priority), (16, 6));
    assert_eq!(
        a.task.spec().priority,
        0,
        "a case override stays in its case"
    );
}

#[test]
fn duration_alone_means_no_publish_count() {
    let s = parse(
        &one_case("backend = \"tcp\"\npath = \"raw\"\nduration = \"1s\""),
        "s.toml",
    )
    .unwrap();
    assert_eq!(s.cases[0].publishes, None);
    let s = parse(&one_case("backend = \"tcp\"\npath = \"raw\""), "s.toml").unwrap();
    assert_eq!(s.cases[0].publishes, Some(DEFAULT_PUBLISHES));
}

#[test]
fn toml_syntax_error_names_line() {
    assert_eq!(
        err("name = \"t\"\npublishes = = 3\n"),
        "s.toml:2:13: extra `=`, expected nothing"
    );
}

#[test]
fn unknown_top_level_key() {
    let e = err("name = \"t\"\npublish = 3\n");
    assert!(
        e.starts_with("s.toml:2:1: unknown field `publish`, expected one of"),
        "{e}"
    );
}

#[test]
fn unknown_case_key_names_its_line() {
    let e = err(&one_case(
        "backend = \"unix\"\npath = \"raw\"\nconfirm_mode = \"x\"",
    ));
    assert!(
        e.starts_with("s.toml:6:1: unknown field `confirm_mode`"),
        "{e}"
    );
}

#[test]
fn missing_name() {
    assert_eq!(err("publishes = 3\n"), "s.toml:1:1: missing field `name`");
}

#[test]
fn missing_case_backend() {
    // A missing key is reported at its table's header.
    let e = err(&one_case("path = \"raw\""));
    assert_eq!(e, "s.toml:2:1: missing field `backend`");
}

#[test]
fn bad_scenario_name() {
    assert_eq!(
        err("name = \"a/b\"\n"),
        "s.toml:1:8: scenario name \"a/b\" cannot name a file\n  hint: use letters, digits, '-', '_' and '.' (it names files in the run folder)"
    );
}

#[test]
fn no_cases() {
    assert_eq!(
        err(HEAD),
        "s.toml:1:1: the scenario has no cases\n  hint: add at least one [[case]] with name, backend and path"
    );
}

#[test]
fn unknown_backend() {
    assert_eq!(
        err(&one_case("backend = \"kafka\"\npath = \"raw\"")),
        "s.toml:4:11: case \"c\": unknown backend \"kafka\"\n  hint: backends: amqp, redis, unix, fifo, tcp"
    );
}

#[test]
fn unknown_path() {
    assert_eq!(
        err(&one_case("backend = \"unix\"\npath = \"pool\"")),
        "s.toml:5:8: case \"c\": unknown path \"pool\"\n  hint: paths on unix: fresh, raw"
    );
}

#[test]
fn raw_path_on_amqp_is_impossible() {
    assert_eq!(
        err(&one_case("backend = \"amqp\"\npath = \"raw\"")),
        "s.toml:5:8: case \"c\": path `raw` is not supported on backend `amqp`\n  hint: paths on amqp: fresh, acquire, pooled"
    );
}

#[test]
fn option_of_another_backend() {
    assert_eq!(
        err(&one_case(
            "backend = \"redis\"\npath = \"pooled\"\nconfirm = \"each\""
        )),
        "s.toml:6:11: case \"c\": `confirm` does not apply to backend `redis`\n  hint: `confirm` is for backend amqp"
    );
}

#[test]
fn option_of_another_path() {
    assert_eq!(
        err(&one_case(
            "backend = \"redis\"\npath = \"pooled\"\npool_size = 4"
        )),
        "s.toml:6:13: case \"c\": `pool_size` does not apply to path `pooled`\n  hint: `pool_size` is for path acquire"
    );
}

#[test]
fn zero_and_negative_counts() {
    assert_eq!(
        err(
            "name = \"t\"\npublishes = 0\n[[case]]\nname = \"c\"\nbackend = \"unix\"\npath = \"raw\"\n"
        ),
        "s.toml:2:13: `publishes` must be 1 or more, not 0"
    );
    assert_eq!(
        err(&one_case("backend = \"unix\"\npath = \"raw\"\nwarmup = -1")),
        "s.toml:6:10: `warmup` must be zero or more, not -1"
    );
    assert_eq!(
        err(&one_case(
            "backend = \"unix\"\npath = \"raw\"\nconcurrency = 0"
        )),
        "s.toml:6:15: `concurrency` must be 1 or more, not 0"
    );
    assert_eq!(
        err(&one_case(
            "backend = \"amqp\"\npath = \"pooled\"\nconfirm_batch = 0"
        )),
        "s.toml:6:17: `confirm_batch` must be 1 or more, not 0"
    );
}

#[test]
fn zero_rate() {
    assert_eq!(
        err(&one_case("backend = \"unix\"\npath = \"raw\"\nrate = 0")),
        "s.toml:6:8: `rate` must be more than 0 publishes per second, not 0"
    );
}

#[test]
fn bad_duration() {
    assert_eq!(
        err(&one_case(
            "backend = \"unix\"\npath = \"raw\"\nduration = \"soon\""
        )),
        "s.toml:6:12: `duration` = \"soon\" is not a duration: expected number at 0\n  hint: write it like \"30s\", \"500ms\" or \"2m\""
    );
    assert_eq!(
        err(&one_case(
            "backend = \"unix\"\npath = \"raw\"\npublish_timeout = \"0s\""
        )),
        "s.toml:6:19: `publish_timeout` must be longer than zero"
    );
}

#[test]
fn duplicate_case_name() {
    let text = format!(
        "{HEAD}[[case]]\nname = \"c\"\nbackend = \"unix\"\npath = \"raw\"\n[[case]]\nname = \"c\"\nbackend = \"tcp\"\npath = \"raw\"\n"
    );
    assert_eq!(
        err(&text),
        "s.toml:7:8: case name \"c\" is used twice\n  hint: give every case its own name"
    );
}

#[test]
fn unknown_confirm_mode() {
    assert_eq!(
        err(&one_case(
            "backend = \"amqp\"\npath = \"pooled\"\nconfirm = \"always\""
        )),
        "s.toml:6:11: case \"c\": unknown confirm mode \"always\"\n  hint: confirm is one of off, each, batch, window"
    );
}

#[test]
fn priority_out_of_range() {
    assert_eq!(
        err(
            "name = \"t\"\n[task]\npriority = 10\n[[case]]\nname = \"c\"\nbackend = \"unix\"\npath = \"raw\"\n"
        ),
        "s.toml:3:12: `priority` must be 0 to 9, not 10"
    );
}

#[test]
fn payload_too_small() {
    assert_eq!(
        err(&one_case(
            "backend = \"unix\"\npath = \"raw\"\npayload_bytes = 20"
        )),
        "s.toml:6:17: case \"c\": payload_bytes = 20 is smaller than the unpadded body (85 bytes); use at least 85"
    );
}

#[test]
fn bad_tcp_address() {
    assert_eq!(
        err(&one_case(
            "backend = \"tcp\"\npath = \"raw\"\naddress = \"localhost\""
        )),
        "s.toml:6:11: case \"c\": address \"localhost\" is not valid for backend `tcp`\n  hint: a tcp address is HOST:PORT with an IP, e.g. \"127.0.0.1:7878\""
    );
}

#[test]
fn fifo_frames_must_fit_a_pipe_write_with_several_publishers() {
    let e = err(&one_case(
        "backend = \"fifo\"\npath = \"raw\"\nconcurrency = 2\npayload_bytes = 5000",
    ));
    assert!(e.starts_with("s.toml:4:11: case \"c\": a "), "{e}");
    assert!(e.contains("publishers would interleave on the FIFO"), "{e}");
    parse(
        &one_case("backend = \"fifo\"\npath = \"raw\"\nconcurrency = 1\npayload_bytes = 5000"),
        "s.toml",
    )
    .unwrap();
}

#[test]
fn unreadable_file() {
    let e = load(Path::new("/nonexistent/x.toml"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "/nonexistent/x.toml: cannot read the scenario: No such file or directory (os error 2)\n  hint: pass the path of a scenario TOML file, e.g. scenarios/quickstart.toml"
    );
}

#[test]
fn confirm_window_is_pooled_and_closed_loop_only() {
    let s = parse(
        &one_case(
            "backend = \"amqp\"\npath = \"pooled\"\nconfirm = \"window\"\nconfirm_window = 16",
        ),
        "s.toml",
    )
    .unwrap();
    let BackendOptions::Amqp(o) = &s.cases[0].options else {
        panic!("an amqp case has amqp options")
    };
    assert_eq!((o.confirm, o.confirm_window), (Confirm::Window, 16));
    let hint = "\n  hint: a confirm window keeps one channel's unconfirmed messages across back-to-back publishes; use it on pooled with a closed loop";
    assert_eq!(
        err(&one_case(
            "backend = \"amqp\"\npath = \"acquire\"\nconfirm = \"window\""
        )),
        format!(
            "s.toml:6:11: case \"c\": `confirm = \"window\"` needs path = \"pooled\", not acquire{hint}"
        )
    );
    assert_eq!(
        err(&one_case(
            "backend = \"amqp\"\npath = \"pooled\"\nrate = 100\nconfirm = \"window\""
        )),
        format!(
            "s.toml:7:11: case \"c\": `confirm = \"window\"` cannot be combined with `rate` (100){hint}"
        )
    );
    assert_eq!(
        err(&one_case(
            "backend = \"amqp\"\npath = \"pooled\"\nconfirm_window = 0"
        )),
        "s.toml:6:18: `confirm_window` must be 1 or more, not 0"
    );
}

#[test]
fn batch_cannot_be_scheduled_at_a_rate() {
    assert_eq!(
        err(&one_case(
            "backend = \"redis\"\npath = \"pooled\"\nrate = 100\nbatch = 8"
        )),
        "s.toml:7:9: case \"c\": `batch = 8` cannot be combined with `rate` (100)\n  hint: a batch pipelines back-to-back publishes; use batch with a closed loop (no rate)"
    );
}

#[test]
fn profile_sample_is_a_share() {
    assert_eq!(
        err(&one_case(
            "backend = \"unix\"\npath = \"raw\"\nprofile_sample = 2.0"
        )),
        "s.toml:6:18: `profile_sample` must be more than 0 and at most 1, not 2\n  hint: it is the share of publishes traced, e.g. 0.01 for one in a hundred"
    );
    let s = parse(
        &one_case("backend = \"unix\"\npath = \"raw\"\nprofile_sample = 0.25"),
        "s.toml",
    )
    .unwrap();
    assert_eq!(s.cases[0].sample_interval(), 4);
}

#[test]
fn the_catalog_and_the_case_keys_agree() {
    // Every key the catalog gives a backend is a key a case can have, and the reverse: a key added to one
    // list and not the other fails here.
    let mut in_catalog: Vec<&str> = crate::catalog::BACKENDS
        .iter()
        .flat_map(|b| b.options.iter().map(|(k, _)| *k))
        .collect();
    in_catalog.sort();
    in_catalog.dedup();
    let mut in_cases = super::raw::RawCase::BACKEND_KEYS.to_vec();
    in_cases.sort();
    assert_eq!(in_catalog, in_cases);
}

/// A folder with a PEM certificate (`ca.pem`) and key (`key.pem`) as the planner reads them (PEM blocks;
/// what is inside is the TLS stack's business, at run time).
pub(super) fn tls_files() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("taskbench-tls-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("ca.pem"),
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("key.pem"),
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    dir
}

#[test]
fn every_key_the_catalog_allows_changes_what_is_planned() {
    // A key that is accepted but never read would be silently ignored: each one, set to a value other than
    // its default, must change the planned options of a case of every backend and path it applies to.
    fn value(key: &str, backend: &str) -> &'static str {
        let pem = |name: &str| {
            let file = tls_files().join(name).display().to_string();
            &*Box::leak(format!("{file:?}").into_boxed_str())
        };
        match (key, backend) {
            ("tls_ca", _) => pem("ca.pem"),
            // A certificate needs its key, and the reverse.
            ("tls_cert", _) => &*Box::leak(
                format!("{}\ntls_key = {}", pem("ca.pem"), pem("key.pem")).into_boxed_str(),
            ),
            ("tls_key", _) => &*Box::leak(
                format!("{}\ntls_cert = {}", pem("key.pem"), pem("ca.pem")).into_boxed_str(),
            ),
            ("tls_verify", _) => "false",
            ("address", "tcp") => "\"127.0.0.1:1\"",
            ("address", _) => "\"/tmp/taskbench-nowhere\"",
            ("url", "amqp") => "\"amqp://u:p@127.0.0.1:1/%2f\"",
            ("url", _) => "\"redis://127.0.0.1:1/0\"",
            ("keep" | "multiplexed" | "unregistered_task" | "publish_to_routed_queue", _) => "true",
            ("kombu_handshake", _) => "false",
            ("confirm", _) => "\"each\"",
            ("queue_type", _) => "\"quorum\"",
            ("client", _) => "\"celery\"",
            ("python", _) => "\"/opt/python3\"",
            ("celery_app", _) => "\"proj:app\"",
            ("pythonpath", _) => "\"/opt/proj\"",
            _ => "7",
        }
    }
    let plan = |backend: &str, path: &str, extra: &str| {
        let text = format!(
            "name = \"k\"\n[[case]]\nname = \"c\"\nbackend = \"{backend}\"\npath = \"{path}\"\n{extra}"
        );
        parse(&text, "k.toml")
            .unwrap_or_else(|e| panic!("{e}\n{text}"))
            .cases
            .remove(0)
            .options
    };
    let mut checked = 0;
    for spec in crate::catalog::BACKENDS {
        for path in spec.paths {
            for (key, paths) in spec.options {
                if !paths.is_empty() && !paths.contains(path) {
                    continue;
                }
                // Keys that only a Python client takes are compared on a celery case.
                let base = if ["unregistered_task", "publish_to_routed_queue"].contains(key) {
                    // They mean something only with an app.
                    "client = \"celery\"\ncelery_app = \"proj:app\"\n"
                } else if crate::catalog::PYTHON_ONLY_KEYS.contains(key) {
                    "client = \"celery\"\n"
                } else {
                    ""
                };
                let plain = plan(spec.name(), path.name(), base);
                let set = plan(
                    spec.name(),
                    path.name(),
                    &format!("{base}{key} = {}\n", value(key, spec.name())),
                );
                assert_ne!(
                    set,
                    plain,
                    "{key} on {} {path} changes nothing",
                    spec.name()
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 30, "{checked} keys checked");
}

#[test]
fn shards_split_every_case_exactly_and_publish_to_their_own_queue() {
    let text = "name = \"s\"\npublishes = 1000\nwarmup = 10\nconcurrency = 4\nrate = 300.0\n\
                [[case]]\nname = \"c\"\nbackend = \"redis\"\npath = \"pooled\"\n";
    let mut publishes = 0;
    let mut publishers = 0;
    let mut warmup = 0;
    let mut queues = Vec::new();
    for index in 0..3 {
        let overrides = Overrides {
            shard: Some(Shard { index, count: 3 }),
            ..Overrides::default()
        };
        let s = plan::scenario(text, "s.toml", &overrides).unwrap();
        let c = &s.cases[0];
        assert_eq!(s.shard, overrides.shard);
        assert_eq!(c.rate, Some(100.0));
        publishes += c.publishes.unwrap();
        publishers += c.concurrency;
        warmup += c.warmup;
        queues.push(c.task.spec().queue.clone());
    }
    assert_eq!((publishes, publishers, warmup), (1000, 4, 10));
    assert_eq!(
        queues,
        [
            "taskbench-shard-0",
            "taskbench-shard-1",
            "taskbench-shard-2"
        ]
    );
}

#[test]
fn a_case_too_small_to_shard_is_refused() {
    let overrides = Overrides {
        shard: Some("1/3".parse().unwrap()),
        ..Overrides::default()
    };
    let e = plan::scenario(
        &one_case("backend = \"unix\"\npath = \"raw\"\nconcurrency = 2"),
        "s.toml",
        &overrides,
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "s.toml:3:8: case \"c\": 2 publishers (`concurrency`) cannot be split over 3 shards (--shard 1/3)\n  hint: give the case at least 3 publishers (`concurrency`), or run fewer shards"
    );
    for bad in ["3/3", "1", "a/b", "-1/2"] {
        assert!(bad.parse::<Shard>().is_err(), "{bad}");
    }
    assert_eq!(
        (0..7)
            .map(|i| Shard { index: i, count: 7 }.share(1_000_003))
            .sum::<u64>(),
        1_000_003
    );
}

fn url_err(backend: &str, url: &str) -> String {
    err(&one_case(&format!(
        "backend = \"{backend}\"\npath = \"pooled\"\nurl = '{url}'"
    )))
}

#[test]
fn a_url_the_backend_cannot_use_is_refused() {
    let redis_hint = "\n  hint: write it like \"redis://127.0.0.1:6379/0\" or \"redis+unix:///run/redis.sock?db=0\"";
    let amqp_hint = "\n  hint: write it like \"amqp://guest:guest@127.0.0.1:5672/%2f\"";
    for (backend, url, message) in [
        (
            "redis",
            "http://127.0.0.1:6379/0",
            format!("`url` has the scheme \"http\", which the redis backend cannot use; it takes redis, valkey, rediss, valkeys, redis+unix, valkey+unix, unix{redis_hint}"),
        ),
        (
            "amqp",
            "redis://127.0.0.1:6379/0",
            format!("`url` has the scheme \"redis\", which the amqp backend cannot use; it takes amqp, amqps{amqp_hint}"),
        ),
        (
            "redis",
            "not a url",
            format!("`url` is not a Redis URL: it has no scheme://{redis_hint}"),
        ),
        (
            "amqp",
            "guest:guest@127.0.0.1",
            format!("`url` is not an AMQP URL: it has no scheme://{amqp_hint}"),
        ),
        ("redis", "redis:///0", format!("`url` names no host{redis_hint}")),
        ("redis", "redis://:secret@/0", format!("`url` names no host{redis_hint}")),
        ("amqp", "amqp:///%2f", format!("`url` names no host{amqp_hint}")),
        ("amqp", "amqp://guest:guest@:5672/%2f", format!("`url` names no host{amqp_hint}")),
        (
            "redis",
            "unix://?pass=secret",
            "`url` names no socket path: unix:// takes an absolute path\n  hint: write it like \"unix:///run/redis.sock?db=0\"".to_string(),
        ),
        (
            "redis",
            "rediss://:secret@cache:6380/0#insecure",
            "`url` ends in #insecure, which taskbench does not read\n  hint: drop #insecure and set tls_verify = false to connect without checking the server's certificate".to_string(),
        ),
        (
            "redis",
            "redis://127.0.0.1:6379/zero",
            format!("`url` is not valid as a Redis URL: Invalid database number{redis_hint}"),
        ),
        (
            "amqp",
            "amqp://127.0.0.1:5672/%2f?heartbeat=often",
            format!("`url` is not valid as an AMQP URL: invalid digit found in string{amqp_hint}"),
        ),
    ] {
        assert_eq!(
            url_err(backend, url),
            format!("s.toml:6:7: case \"c\": {message}"),
            "{url}"
        );
    }
}

#[test]
fn urls_the_backends_take_pass() {
    for (backend, url) in [
        ("redis", "redis://127.0.0.1:6379/0"),
        ("redis", "redis://:pw@cache.internal:6380/3?protocol=resp3"),
        ("redis", "valkey://[::1]:6379"),
        ("redis", "redis+unix:///run/redis.sock?db=1&pass=pw"),
        ("redis", "unix:///tmp/r.sock"),
        ("amqp", "amqp://guest:guest@127.0.0.1:5672/%2f"),
        ("amqp", "amqp://broker/vhost?heartbeat=10"),
        ("redis", "rediss://:pw@cache.example:6380/0"),
        ("amqp", "amqps://guest:guest@broker:5671/%2f"),
    ] {
        let s = parse(
            &one_case(&format!(
                "backend = \"{backend}\"\npath = \"pooled\"\nurl = '{url}'"
            )),
            "s.toml",
        );
        assert!(s.is_ok(), "{url}: {}", s.err().unwrap());
    }
}

#[test]
fn an_amqp_queue_name_longer_than_255_bytes() {
    let long = "q".repeat(256);
    assert_eq!(
        err(&one_case(&format!(
            "backend = \"amqp\"\npath = \"fresh\"\nqueue = \"{long}\""
        ))),
        "s.toml:6:9: case \"c\": the queue name is 256 bytes long; AMQP allows at most 255\n  hint: an AMQP queue name (and routing key) is a short string: use a shorter `queue`"
    );
    // Set for the whole scenario, the error points at the [task] key.
    assert_eq!(
        err(&format!(
            "{HEAD}[task]\nqueue = \"{long}\"\n[[case]]\nname = \"c\"\nbackend = \"amqp\"\npath = \"fresh\"\n"
        )),
        "s.toml:3:9: case \"c\": the queue name is 256 bytes long; AMQP allows at most 255\n  hint: an AMQP queue name (and routing key) is a short string: use a shorter `queue`"
    );
    // 255 bytes is fine, and Redis takes any length.
    let ok = "q".repeat(255);
    assert!(
        parse(
            &one_case(&format!(
                "backend = \"amqp\"\npath = \"fresh\"\nqueue = \"{ok}\""
            )),
            "s.toml"
        )
        .is_ok()
    );
    assert!(
        parse(
            &one_case(&format!(
                "backend = \"redis\"\npath = \"fresh\"\nqueue = \"{long}\""
            )),
            "s.toml"
        )
        .is_ok()
    );
}

#[test]
fn payload_over_the_bound() {
    assert_eq!(
        err(&one_case(
            "backend = \"unix\"\npath = \"raw\"\npayload_bytes = 50000000"
        )),
        "s.toml:6:17: `payload_bytes` = 50000000 is over the limit of 16777216 bytes (16 MiB)\n  hint: 16 MiB is RabbitMQ's default max_message_size: a default broker refuses larger messages"
    );
    let s = parse(
        &one_case(&format!(
            "backend = \"unix\"\npath = \"raw\"\npayload_bytes = {MAX_PAYLOAD_BYTES}"
        )),
        "s.toml",
    )
    .unwrap();
    assert_eq!(s.cases[0].task.body().len(), MAX_PAYLOAD_BYTES);
}

#[test]
fn thresholds_are_run_wide_and_a_case_overrides_them_key_by_key() {
    let s = parse(
        r#"
name = "t"
[thresholds]
p99 = "< 2ms"
errors = "== 0"
[[case]]
name = "a"
backend = "unix"
path = "raw"
thresholds = { p99 = "< 5ms", throughput = "> 10_000" }
[[case]]
name = "b"
backend = "tcp"
path = "raw"
[case.thresholds]
max = "<= 1s"
"#,
        "s.toml",
    )
    .unwrap();
    let listed = |c: &Case| -> Vec<(&str, String)> {
        c.thresholds
            .iter()
            .map(|t| (t.metric.name(), format!("{} {}", t.op, t.value)))
            .collect()
    };
    assert_eq!(
        listed(&s.cases[0]),
        [
            ("p99", "< 5000000".to_string()),
            ("throughput", "> 10000".to_string()),
            ("errors", "== 0".to_string())
        ]
    );
    assert_eq!(
        listed(&s.cases[1]),
        [
            ("p99", "< 2000000".to_string()),
            ("max", "<= 1000000000".to_string()),
            ("errors", "== 0".to_string())
        ]
    );
}

#[test]
fn bad_thresholds_name_their_line_and_column() {
    assert_eq!(
        err(
            "name = \"t\"\n[thresholds]\np99 = \"2ms\"\n[[case]]\nname = \"c\"\nbackend = \"unix\"\npath = \"raw\"\n"
        ),
        "s.toml:3:7: threshold `p99` = \"2ms\" has no comparison operator\n  hint: write it like p99 = \"< 2ms\" (OP is <, <=, >, >=, ==; units ns, us, ms, s)"
    );
    assert_eq!(
        err(&one_case(
            "backend = \"unix\"\npath = \"raw\"\nthresholds = { errors = \"< none\" }"
        )),
        "s.toml:6:25: case \"c\": threshold `errors` = \"< none\": \"none\" is not a number\n  hint: write it like errors = \"== 0\" (OP is <, <=, >, >=, ==)"
    );
    let e = err(&one_case(
        "backend = \"unix\"\npath = \"raw\"\nthresholds = { p98 = \"< 1ms\" }",
    ));
    assert!(e.starts_with("s.toml:6:16: unknown field `p98`"), "{e}");
    let e = err(&one_case(
        "backend = \"unix\"\npath = \"raw\"\n[case.thresholds]\np99 = \"< +10%\"",
    ));
    assert!(
        e.starts_with("s.toml:7:7: case \"c\": threshold `p99` = \"< +10%\" is relative"),
        "{e}"
    );
}

#[test]
fn interval_is_a_duration_of_at_least_10ms() {
    let s = parse(
        &one_case("backend = \"tcp\"\npath = \"raw\"\ninterval = \"250ms\""),
        "s.toml",
    )
    .unwrap();
    assert_eq!(s.cases[0].interval, Duration::from_millis(250));
    let s = parse(&one_case("backend = \"tcp\"\npath = \"raw\""), "s.toml").unwrap();
    assert_eq!(s.cases[0].interval, DEFAULT_INTERVAL);
    assert_eq!(
        err(&one_case(
            "backend = \"tcp\"\npath = \"raw\"\ninterval = \"1ms\""
        )),
        "s.toml:6:12: `interval` must be at least 10ms\n  hint: it is the length of one point of the timeline, e.g. \"1s\" or \"250ms\""
    );
}

#[test]
fn a_celery_case_plans_its_interpreter_app_and_pythonpath() {
    let s = parse(
        r#"
name = "py"
python = "/opt/venv/bin/python"
[[case]]
name = "c"
backend = "amqp"
path = "acquire"
client = "celery"
celery_app = "proj.celery:app"
pythonpath = "apps"
[[case]]
name = "k"
backend = "redis"
path = "pooled"
client = "kombu"
python = "/usr/bin/python3"
[[case]]
name = "t"
backend = "redis"
path = "pooled"
"#,
        "dir/py.toml",
    )
    .unwrap();
    let c = s.cases[0].options.python().unwrap();
    assert_eq!(c.client, crate::catalog::Client::Celery);
    assert_eq!(c.python, PathBuf::from("/opt/venv/bin/python"));
    assert_eq!(c.celery_app.as_deref(), Some("proj.celery:app"));
    assert_eq!(c.pythonpath, Some(PathBuf::from("dir/apps")));
    let k = s.cases[1].options.python().unwrap();
    assert_eq!(k.client, crate::catalog::Client::Kombu);
    assert_eq!(k.python, PathBuf::from("/usr/bin/python3"));
    assert_eq!(
        s.cases[2].options.client(),
        crate::catalog::Client::Taskbench
    );
    assert!(s.cases[2].options.python().is_none());
}

#[test]
fn client_errors_name_the_key_and_what_is_allowed() {
    let e = err(&one_case(
        "backend = \"amqp\"\npath = \"pooled\"\nclient = \"rust\"",
    ));
    assert!(e.contains("unknown client \"rust\""), "{e}");
    assert!(
        e.contains("client is one of taskbench, celery, kombu"),
        "{e}"
    );

    let e = err(&one_case(
        "backend = \"redis\"\npath = \"pooled\"\nclient = \"celery\"\nbatch = 4",
    ));
    assert!(
        e.contains(
            "`batch` tunes taskbench's own publishers and does not apply to client `celery`"
        ),
        "{e}"
    );

    let e = err(&one_case(
        "backend = \"redis\"\npath = \"pooled\"\npython = \"python3\"",
    ));
    assert!(
        e.contains("`python` applies only to a celery or kombu client"),
        "{e}"
    );

    let e = err(&one_case(
        "backend = \"redis\"\npath = \"pooled\"\nclient = \"kombu\"\ncelery_app = \"a:b\"",
    ));
    assert!(
        e.contains("`celery_app` applies only to client `celery`"),
        "{e}"
    );

    let e = err(&one_case(
        "backend = \"amqp\"\npath = \"pooled\"\nclient = \"celery\"\ncelery_app = \"proj\"",
    ));
    assert!(e.contains("is not `module:attribute`"), "{e}");

    let e = err(&one_case(
        "backend = \"unix\"\npath = \"raw\"\nclient = \"celery\"",
    ));
    assert!(
        e.contains("`client` does not apply to backend `unix`"),
        "{e}"
    );
}

#[test]
fn the_app_flags_need_an_app_and_the_routed_queue_is_never_purged() {
    let e = err(&one_case(
        "backend = \"redis\"\npath = \"pooled\"\nclient = \"celery\"\nunregistered_task = true",
    ));
    assert!(
        e.contains("`unregistered_task` applies only to a celery case with a `celery_app`"),
        "{e}"
    );
    let e = err(&one_case(
        "backend = \"amqp\"\npath = \"pooled\"\nclient = \"celery\"\ncelery_app = \"a:b\"\npublish_to_routed_queue = true\nkeep = false",
    ));
    assert!(
        e.contains(
            "`keep = false` with `publish_to_routed_queue = true` would purge the app's own queue"
        ),
        "{e}"
    );
    let s = parse(
        &one_case(
            "backend = \"amqp\"\npath = \"pooled\"\nclient = \"celery\"\ncelery_app = \"a:b\"\npublish_to_routed_queue = true",
        ),
        "s.toml",
    )
    .unwrap();
    let BackendOptions::Amqp(o) = &s.cases[0].options else {
        panic!("an amqp case")
    };
    assert!(
        o.keep,
        "messages published into the app's queue are left there"
    );
    let p = o.python.as_ref().unwrap();
    assert!(p.publish_to_routed_queue && !p.unregistered_task);
    assert_eq!(p.route, None, "the app is asked only by check_interpreters");
}

#[test]
fn a_confirm_window_refuses_a_batch() {
    let e = err(&one_case(
        "backend = \"amqp\"\npath = \"pooled\"\nconfirm = \"window\"\nbatch = 4",
    ));
    assert!(
        e.contains("`batch = 4` cannot be combined with `confirm = \"window\"`"),
        "{e}"
    );
}

#[test]
fn option_names_are_what_serde_writes() {
    for c in Confirm::ALL {
        assert_eq!(serde_json::to_value(c).unwrap(), c.name());
    }
    for q in QueueType::ALL {
        assert_eq!(serde_json::to_value(q).unwrap(), q.name());
    }
}

mod tasks_and_shared_settings;
mod tls;
mod wire;
