//! No password leaves the process: every URL form the redis and lapin crates read a password from, run
//! against a port nothing listens on, with the most verbose logging, and every byte of output and of the run
//! folder searched for the secret.

mod common;

use common::taskbench;
use std::path::Path;

/// Whether a form gets as far as connecting (TLS ones too), or `validate` refuses it (a password with an
/// unescaped '#', which the URL parser cuts).
#[derive(Clone, Copy, PartialEq, Debug)]
enum Fate {
    Runs,
    Refused,
}

/// Each form with its own secret, so a leak names the form.
fn forms(dead: &str, dir: &Path) -> Vec<(&'static str, String, String, Fate)> {
    use Fate::*;
    let sock = dir.join("none.sock");
    let sock = sock.display();
    [
        ("redis", "redis://:{S}@{DEAD}/0", Runs),
        ("redis", "redis://user:{S}@{DEAD}/0", Runs),
        ("redis", "redis://{S}@{DEAD}/0", Runs),
        ("redis", "redis://{DEAD}/0?password={S}", Runs),
        (
            "redis",
            "redis://{DEAD}/0?db=0&password={S}&protocol=resp2",
            Runs,
        ),
        ("redis", "redis+unix://{SOCK}?db=0&pass={S}", Runs),
        ("redis", "unix://{SOCK}?pass={S}", Runs),
        ("redis", "rediss://:{S}@{DEAD}/0", Runs),
        ("redis", "redis://:se#{S}@{DEAD}/0", Refused),
        ("redis", "redis://:pa/{S}@{DEAD}/0", Refused),
        ("redis", "http://:{S}@{DEAD}/0", Refused),
        ("amqp", "amqp://guest:{S}@{DEAD}/%2f", Runs),
        ("amqp", "amqp://guest:{S}@{DEAD}/%2f?heartbeat=5", Runs),
        ("amqp", "amqps://guest:{S}@{DEAD}/%2f", Runs),
        ("amqp", "amqp://guest:{S}@{DEAD}/%2f?heartbeat=x", Refused),
    ]
    .iter()
    .enumerate()
    .map(|(i, (backend, form, fate))| {
        let secret = format!("Sekr1t{i}Form");
        let url = form
            .replace("{S}", &secret)
            .replace("{DEAD}", dead)
            .replace("{SOCK}", &sock.to_string());
        (*backend, url, secret, *fate)
    })
    .collect()
}

/// A TCP port on loopback that nothing listens on (bound, then released).
fn dead_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr.to_string()
}

fn scenario(forms: &[&(&str, String, String, Fate)]) -> String {
    let mut s = String::from(
        r#"
            name = "secrets"
            publishes = 3
            warmup = 0
            publish_timeout = "300ms"
        "#,
    );
    for (i, (backend, url, _, _)) in forms.iter().enumerate() {
        let path = if i % 2 == 0 { "fresh" } else { "pooled" };
        s.push_str(&format!(
            r#"
                [[case]]
                name = "f{i}"
                backend = "{backend}"
                path = "{path}"
                url = '{url}'
            "#
        ));
    }
    s
}

/// Every byte of every file under `dir`.
fn folder_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(folder_bytes(&path));
        } else {
            files.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
    files
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Runs `taskbench ARGS FILE [--out DIR]` and returns what it printed and wrote, checking the exit code.
fn run_and_collect(
    label: &str,
    args: &[&str],
    file: &Path,
    out_dir: &Path,
    rust_log: Option<&str>,
    expected: i32,
) -> Vec<(String, Vec<u8>)> {
    let mut cmd = taskbench();
    cmd.args(args).arg(file);
    let runs = args.contains(&"run");
    if runs {
        cmd.arg("--out").arg(out_dir);
    }
    cmd.env_remove("RUST_LOG")
        .env_remove("TASKBENCH_REDIS_URL")
        .env_remove("TASKBENCH_AMQP_URL");
    if let Some(level) = rust_log {
        cmd.env("RUST_LOG", level);
    }
    let out = cmd.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(expected),
        "{label}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut outputs = vec![
        (format!("{label}: stdout"), out.stdout),
        (format!("{label}: stderr"), out.stderr),
    ];
    if out_dir.exists() {
        outputs.extend(folder_bytes(out_dir));
    }
    outputs
}

fn assert_hidden(outputs: &[(String, Vec<u8>)], forms: &[&(&str, String, String, Fate)]) {
    for (what, bytes) in outputs {
        for (_, url, secret, _) in forms {
            assert!(
                !contains(bytes, secret),
                "{what} shows the password of {url}:\n{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
}

#[test]
fn no_url_form_leaks_its_password_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let all = forms(&dead_port(), dir.path());
    let running: Vec<_> = all.iter().filter(|f| f.3 == Fate::Runs).collect();
    let file = dir.path().join("secrets.toml");
    std::fs::write(&file, scenario(&running)).unwrap();
    let runs: [(&str, &[&str], Option<&str>, i32); 4] = [
        ("validate", &["validate"], None, 0),
        ("-vv", &["-vv", "run"], None, 1),
        ("RUST_LOG=trace", &["run"], Some("trace"), 1),
        (
            "--format json",
            &["run", "--format", "json"],
            Some("trace"),
            1,
        ),
    ];
    for (n, (label, args, rust_log, expected)) in runs.iter().enumerate() {
        let out_dir = dir.path().join(format!("run{n}"));
        let outputs = run_and_collect(label, args, &file, &out_dir, *rust_log, *expected);
        assert_hidden(&outputs, &running);
        if args.contains(&"run") {
            let stdout = String::from_utf8_lossy(&outputs[0].1);
            assert!(
                stdout.contains("***"),
                "{label}: URLs are shown, redacted: {stdout}"
            );
        }
    }
    // The forms validate refuses: the error points at the key and never repeats the URL.
    for (i, form) in all.iter().filter(|f| f.3 == Fate::Refused).enumerate() {
        let file = dir.path().join(format!("refused{i}.toml"));
        std::fs::write(&file, scenario(&[form])).unwrap();
        for (args, rust_log) in [
            (&["validate"][..], None),
            (&["-vv", "run"][..], Some("trace")),
        ] {
            let out_dir = dir.path().join(format!("refused{i}"));
            let label = format!("{} {args:?}", form.1);
            let outputs = run_and_collect(&label, args, &file, &out_dir, rust_log, 2);
            assert!(
                String::from_utf8_lossy(&outputs[1].1).contains("refused"),
                "{label}: the error names the file"
            );
            assert_hidden(&outputs, &[form]);
        }
    }
}

#[test]
fn a_password_from_the_environment_is_hidden_too() {
    let dir = tempfile::tempdir().unwrap();
    let dead = dead_port();
    let file = dir.path().join("env.toml");
    std::fs::write(
        &file,
        r#"
            name = "env"
            publishes = 2
            warmup = 0
            publish_timeout = "300ms"

            [[case]]
            name = "r"
            backend = "redis"
            path = "pooled"

            [[case]]
            name = "a"
            backend = "amqp"
            path = "fresh"
        "#,
    )
    .unwrap();
    // The environment's URLs are only read when a case runs, so TLS forms get that far too.
    for (n, (redis, amqp)) in [
        (
            format!("redis://{dead}/0?password=EnvRedisSecret"),
            format!("amqp://guest:EnvAmqpSecret@{dead}/%2f"),
        ),
        (
            format!("rediss://:EnvRedisSecret@{dead}/0"),
            format!("amqps://guest:EnvAmqpSecret@{dead}/%2f"),
        ),
        (
            format!("redis://:pa/EnvRedisSecret@{dead}/0"),
            format!("amqp://guest:a/EnvAmqpSecret@{dead}/%2f"),
        ),
    ]
    .iter()
    .enumerate()
    {
        let out_dir = dir.path().join(format!("run{n}"));
        let out = taskbench()
            .args(["-vv", "run"])
            .arg(&file)
            .arg("--out")
            .arg(&out_dir)
            .env("TASKBENCH_REDIS_URL", redis)
            .env("TASKBENCH_AMQP_URL", amqp)
            .env("RUST_LOG", "trace")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{redis} {amqp}");
        let mut outputs = vec![
            ("stdout".to_string(), out.stdout),
            ("stderr".to_string(), out.stderr),
        ];
        outputs.extend(folder_bytes(&out_dir));
        for (what, bytes) in &outputs {
            for secret in ["EnvRedisSecret", "EnvAmqpSecret"] {
                assert!(
                    !contains(bytes, secret),
                    "{what} shows {secret}: {}",
                    String::from_utf8_lossy(bytes)
                );
            }
        }
    }
}

#[test]
fn the_scenario_copy_hides_every_url_not_only_the_cases_run() {
    let dir = tempfile::tempdir().unwrap();
    let dead = dead_port();
    let file = dir.path().join("copy.toml");
    // The case not run (--case), an escaped URL and a commented-out one all keep their secret in the file.
    std::fs::write(
        &file,
        format!(
            r#"
                name = "copy"
                publishes = 2
                warmup = 0
                publish_timeout = "300ms"
                # url = "redis://:CommentSecret@{dead}/0"

                [[case]]
                name = "run"
                backend = "redis"
                path = "pooled"
                url = "redis://:Escaped\u0053ecret@{dead}/0"

                [[case]]
                name = "skipped"
                backend = "amqp"
                path = "fresh"
                url = "amqp://guest:SkippedSecret@{dead}/%2f"
            "#
        ),
    )
    .unwrap();
    let out_dir = dir.path().join("run");
    let outputs = run_and_collect(
        "--case run",
        &["run", "--case", "run"],
        &file,
        &out_dir,
        None,
        1,
    );
    let copy = std::fs::read_to_string(out_dir.join("scenario.toml")).unwrap();
    assert!(
        copy.contains(r#"name = "skipped""#),
        "the copy is the whole file: {copy}"
    );
    for (what, bytes) in &outputs {
        for secret in [
            "CommentSecret",
            "EscapedSecret",
            "Escaped\\u0053ecret",
            "SkippedSecret",
        ] {
            assert!(
                !contains(bytes, secret),
                "{what} shows {secret}: {}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
}
