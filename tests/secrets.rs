//! No password leaves the process: every URL form the redis and lapin crates read a password from, run
//! against a port nothing listens on, with the most verbose logging, and every byte of output and of the run
//! folder searched for the secret.

use std::path::Path;

/// Each form with its own secret, so a leak names the form.
fn forms(dead: &str, dir: &Path) -> Vec<(&'static str, String, String)> {
    let sock = dir.join("none.sock");
    let sock = sock.display();
    [
        ("redis", "redis://:{S}@{DEAD}/0"),
        ("redis", "redis://user:{S}@{DEAD}/0"),
        ("redis", "redis://{S}@{DEAD}/0"),
        ("redis", "redis://{DEAD}/0?password={S}"),
        ("redis", "redis://{DEAD}/0?db=0&password={S}&protocol=resp2"),
        ("redis", "rediss://:{S}@{DEAD}/0"),
        ("redis", "redis+unix://{SOCK}?db=0&pass={S}"),
        ("redis", "unix://{SOCK}?pass={S}"),
        ("redis", "redis://:se#{S}@{DEAD}/0"),
        ("amqp", "amqp://guest:{S}@{DEAD}/%2f"),
        ("amqp", "amqps://guest:{S}@{DEAD}/%2f"),
        ("amqp", "amqp://guest:{S}@{DEAD}/%2f?heartbeat=5"),
    ]
    .iter()
    .enumerate()
    .map(|(i, (backend, form))| {
        let secret = format!("Sekr1t{i}Form");
        let url = form
            .replace("{S}", &secret)
            .replace("{DEAD}", dead)
            .replace("{SOCK}", &sock.to_string());
        (*backend, url, secret)
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

fn scenario(forms: &[(&str, String, String)]) -> String {
    let mut s = String::from(
        "name = \"secrets\"\npublishes = 3\nwarmup = 0\npublish_timeout = \"300ms\"\n",
    );
    for (i, (backend, url, _)) in forms.iter().enumerate() {
        let path = if i % 2 == 0 { "fresh" } else { "pooled" };
        s.push_str(&format!(
            "[[case]]\nname = \"f{i}\"\nbackend = \"{backend}\"\npath = \"{path}\"\nurl = '{url}'\n"
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

#[test]
fn no_url_form_leaks_its_password_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let forms = forms(&dead_port(), dir.path());
    let file = dir.path().join("secrets.toml");
    std::fs::write(&file, scenario(&forms)).unwrap();
    let runs: [(&str, &[&str], Option<&str>); 4] = [
        ("validate", &["validate"], None),
        ("-vv", &["-vv", "run"], None),
        ("RUST_LOG=trace", &["run"], Some("trace")),
        ("--format json", &["run", "--format", "json"], Some("trace")),
    ];
    for (n, (label, args, rust_log)) in runs.iter().enumerate() {
        let out_dir = dir.path().join(format!("run{n}"));
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("taskbench"));
        cmd.args(*args).arg(&file);
        if args.contains(&"run") {
            cmd.arg("--out").arg(&out_dir);
        }
        cmd.env_remove("RUST_LOG");
        if let Some(level) = rust_log {
            cmd.env("RUST_LOG", level);
        }
        let out = cmd.output().unwrap();
        let code = out.status.code();
        let expected = if args.contains(&"run") { 1 } else { 0 };
        assert_eq!(
            code,
            Some(expected),
            "{label}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut outputs = vec![
            (format!("{label}: stdout"), out.stdout),
            (format!("{label}: stderr"), out.stderr),
        ];
        if out_dir.exists() {
            outputs.extend(folder_bytes(&out_dir));
        }
        for (what, bytes) in &outputs {
            for (_, url, secret) in &forms {
                assert!(
                    !contains(bytes, secret),
                    "{what} shows the password of {url}:\n{}",
                    String::from_utf8_lossy(bytes)
                );
            }
        }
        if args.contains(&"run") {
            let stdout = String::from_utf8_lossy(&outputs[0].1);
            assert!(
                stdout.contains("***"),
                "{label}: URLs are shown, redacted: {stdout}"
            );
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
        "name = \"env\"\npublishes = 2\nwarmup = 0\npublish_timeout = \"300ms\"\n[[case]]\nname = \"r\"\nbackend = \"redis\"\npath = \"pooled\"\n[[case]]\nname = \"a\"\nbackend = \"amqp\"\npath = \"fresh\"\n",
    )
    .unwrap();
    let out_dir = dir.path().join("run");
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("taskbench"))
        .args(["-vv", "run"])
        .arg(&file)
        .arg("--out")
        .arg(&out_dir)
        .env(
            "TASKBENCH_REDIS_URL",
            format!("redis://{dead}/0?password=EnvRedisSecret"),
        )
        .env(
            "TASKBENCH_AMQP_URL",
            format!("amqp://guest:EnvAmqpSecret@{dead}/%2f"),
        )
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let mut outputs = vec![
        ("stdout".to_string(), out.stdout),
        ("stderr".to_string(), out.stderr),
    ];
    outputs.extend(folder_bytes(&out_dir));
    for (what, bytes) in &outputs {
        for secret in ["EnvRedisSecret", "EnvAmqpSecret"] {
            assert!(!contains(bytes, secret), "{what} shows {secret}");
        }
    }
}
