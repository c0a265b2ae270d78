//! TLS against real servers the tests start on free ports, with certificates the tests make (the `openssl`
//! command): a `redis-server` with only a TLS port, and a private RabbitMQ node with an SSL listener. Every
//! path (and its batch/multiplexed variants) and both Python clients publish over TLS, the handshake shows as
//! its own `tls` stage, and every way TLS goes wrong is its own error kind naming the URL, password hidden,
//! within a bounded time. No mock broker.

mod common;

use common::rabbit_node::PrivateNode;
use common::tls::{Certs, TlsRedis, toml_path};
use std::time::{Duration, Instant};
use taskbench::engine::RunControl;
use taskbench::record::CaseResult;
use taskbench::stage::Stage;

/// The test's certificates, or `None` after reporting the skip.
fn certs() -> Option<Certs> {
    match Certs::make() {
        Ok(c) => Some(c),
        Err(why) => {
            common::skip_test(&why);
            None
        }
    }
}

/// A one-case scenario; `keys` adds case keys.
fn scenario(backend: &str, path: &str, url: &str, publishes: u64, keys: &str) -> String {
    format!(
        r#"
            name = "tls"
            publishes = {publishes}
            warmup = 0
            concurrency = 2
            publish_timeout = "4s"

            [task]
            name = "tasks.add"
            args = [2, 2]
            queue = "{queue}"

            [[case]]
            name = "c"
            backend = "{backend}"
            path = "{path}"
            url = "{url}"
            {keys}
        "#,
        queue = common::unique("tb-tls"),
    )
}

/// Runs the case in-process, as `taskbench run` does (the Python check first).
async fn run(toml: &str) -> CaseResult {
    let mut scenario =
        taskbench::scenario::parse(toml, "test.toml").unwrap_or_else(|e| panic!("{e}\n{toml}"));
    taskbench::backend::python::check_interpreters(&mut scenario, false)
        .unwrap_or_else(|e| panic!("{e}\n{toml}"));
    taskbench::backend::run_case(&scenario.cases[0], &RunControl::new()).await
}

/// Every publish arrived, without errors; `tls_stage`: the handshake was timed as its own stage.
fn assert_delivered(r: &CaseResult, n: u64, what: &str, tls_stage: bool) {
    assert_eq!(r.errors.total(), 0, "{what}: {:?}", r.errors.by_kind());
    assert_eq!(r.publishes_ok, n, "{what}");
    assert_eq!(r.delivered, Some(n), "{what}");
    let timed: Vec<Stage> = r.stages.iter().map(|s| s.stage).collect();
    assert_eq!(
        timed.contains(&Stage::Tls),
        tls_stage,
        "{what}: tls stage {timed:?}"
    );
    if tls_stage {
        assert!(timed.contains(&Stage::Connect), "{what}: {timed:?}");
    }
}

/// The case failed with one error of `kind` naming the broker at `port`, its password hidden.
fn assert_error(r: &CaseResult, kind: &str, port: u16, says: &str) {
    let errors = r.errors.by_kind();
    assert_eq!(errors.len(), 1, "one kind of error: {errors:?}");
    let (got, _, message) = errors[0];
    assert_eq!(got.name(), kind, "{message}");
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
    assert!(message.contains(says), "says {says:?}: {message}");
    assert!(!message.contains("s3cret"), "password shown: {message}");
    assert_eq!(r.publishes_ok, 0);
}

/// Celery and kombu publish over TLS with the same keys (Celery's broker_use_ssl, kombu's ssl=): every
/// message arrives, and the handshake is its own stage when the client's connect is on the publish.
async fn python_clients(backend: &str, url: &str, keys: &str) {
    let Some(python) = common::celery_python() else {
        return common::skip_test(
            "no Python with Celery (TASKBENCH_PYTHON) for the Python clients over TLS",
        );
    };
    for (client, path, tls_stage) in [
        ("celery", "fresh", true),
        ("kombu", "fresh", true),
        ("celery", "pooled", false),
        ("kombu", "acquire", false),
    ] {
        let keys = format!(
            "{keys}\nclient = \"{client}\"\npython = {}",
            toml_path(&python)
        );
        let r = run(&scenario(backend, path, url, 6, &keys)).await;
        let what = format!("{client} {path} on {backend}");
        assert_eq!(r.errors.total(), 0, "{what}: {:?}", r.errors.by_kind());
        assert_eq!(r.delivered, Some(6), "{what}");
        let timed: Vec<Stage> = r.stages.iter().map(|s| s.stage).collect();
        if tls_stage {
            assert!(timed.contains(&Stage::Tls), "{what}: {timed:?}");
        }
    }
}

/// A port that accepts connections (the kernel's backlog) and never answers.
fn silent_port() -> (std::net::TcpListener, u16) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server built with TLS and openssl; tests/run runs it"]
async fn rediss_on_every_path_with_its_tls_stage_and_every_tls_error() {
    let Some(certs) = certs() else { return };
    let server = match TlsRedis::start(&certs, "server", "optional", "s3cret") {
        Ok(s) => s,
        Err(why) => return common::skip_test(&why),
    };
    let url = format!("rediss://:s3cret@127.0.0.1:{}/0", server.port);
    let ca = format!("tls_ca = {}", toml_path(&certs.file("ca.pem")));
    let client = format!(
        "{ca}\ntls_cert = {}\ntls_key = {}",
        toml_path(&certs.file("client.pem")),
        toml_path(&certs.file("client.key"))
    );
    // acquire connects inside the pool's checkout (the acquire stage), and a multiplexed connection is
    // redis-rs's, which does TCP and TLS in one call: neither has a tls stage of its own.
    for (path, keys, tls_stage) in [
        ("fresh", ca.clone(), true),
        ("fresh", client.clone(), true),
        ("acquire", ca.clone(), false),
        ("pooled", ca.clone(), true),
        ("pooled", format!("{ca}\nbatch = 5"), true),
        ("pooled", format!("{ca}\nmultiplexed = true"), false),
    ] {
        let r = run(&scenario("redis", path, &url, 20, &keys)).await;
        assert_delivered(&r, 20, &format!("{path} {keys}"), tls_stage);
    }

    python_clients("redis", &url, &ca).await;

    // Verification off: a self-signed server is accepted, and the notes say it was not checked.
    let self_signed = TlsRedis::start(&certs, "self-signed", "optional", "s3cret").unwrap();
    let ss_url = format!("rediss://:s3cret@127.0.0.1:{}/0", self_signed.port);
    let r = run(&scenario(
        "redis",
        "fresh",
        &ss_url,
        5,
        "tls_verify = false",
    ))
    .await;
    assert_delivered(&r, 5, "tls_verify = false", true);
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("certificate is NOT checked")),
        "{:?}",
        r.notes
    );

    let other_ca = format!("tls_ca = {}", toml_path(&certs.file("other-ca.pem")));
    let expired = TlsRedis::start(&certs, "expired", "optional", "s3cret").unwrap();
    let expired_url = format!("rediss://:s3cret@127.0.0.1:{}/0", expired.port);
    let started = Instant::now();
    for (url, port, keys, kind, says) in [
        (
            &url,
            server.port,
            other_ca.as_str(),
            "tls_certificate",
            "not signed by a CA taskbench trusts",
        ),
        (
            &expired_url,
            expired.port,
            ca.as_str(),
            "tls_certificate",
            "the server's certificate has expired; renew the server's certificate",
        ),
        (
            &ss_url,
            self_signed.port,
            ca.as_str(),
            "tls_certificate",
            "not signed by a CA taskbench trusts",
        ),
        (
            &url.replace("rediss", "redis"),
            server.port,
            "",
            "tls_mismatch",
            "use rediss://",
        ),
    ] {
        let r = run(&scenario("redis", "fresh", url, 5, keys)).await;
        assert_error(&r, kind, port, says);
    }
    // A TLS URL to a port that never answers TLS: bounded by half the publish_timeout.
    let (_silent, port) = silent_port();
    let r = run(&scenario(
        "redis",
        "fresh",
        &format!("rediss://:s3cret@127.0.0.1:{port}/0"),
        5,
        &ca,
    ))
    .await;
    assert_error(&r, "tls_mismatch", port, "no TLS answer within 2s");
    // A server that requires a client certificate refuses a client without one.
    let mtls = TlsRedis::start(&certs, "server", "yes", "s3cret").unwrap();
    let mtls_url = format!("rediss://:s3cret@127.0.0.1:{}/0", mtls.port);
    let r = run(&scenario("redis", "fresh", &mtls_url, 5, &ca)).await;
    assert_error(&r, "tls_handshake", mtls.port, "give tls_cert and tls_key");
    let r = run(&scenario("redis", "fresh", &mtls_url, 5, &client)).await;
    assert_delivered(&r, 5, "with a client certificate", true);
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "every error came within its bounds: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs rabbitmq-server for a private node and openssl; tests/run runs it"]
async fn amqps_on_every_path_with_its_tls_stage_and_every_tls_error() {
    let Some(certs) = certs() else { return };
    let node = match PrivateNode::start_tls(
        &certs.file("ca.pem"),
        &certs.file("server.pem"),
        &certs.file("server.key"),
    ) {
        Ok(node) => node,
        Err(why) => return common::skip_test(&why),
    };
    let url = node.tls_url();
    let port = node.tls_port.expect("a TLS node");
    let ca = format!("tls_ca = {}", toml_path(&certs.file("ca.pem")));
    let client = format!(
        "{ca}\ntls_cert = {}\ntls_key = {}",
        toml_path(&certs.file("client.pem")),
        toml_path(&certs.file("client.key"))
    );
    for (path, keys, tls_stage) in [
        ("fresh", format!("{ca}\nconfirm = \"each\""), true),
        ("fresh", client.clone(), true),
        ("acquire", format!("{ca}\nconfirm = \"batch\""), false),
        ("pooled", format!("{ca}\nconfirm = \"each\""), true),
        ("pooled", format!("{ca}\nbatch = 5"), true),
    ] {
        let r = run(&scenario("amqp", path, &url, 20, &keys)).await;
        assert_delivered(&r, 20, &format!("{path} {keys}"), tls_stage);
    }
    python_clients("amqp", &url, &ca).await;
    let r = run(&scenario(
        "amqp",
        "fresh",
        &url.replace("127.0.0.1", "localhost"),
        5,
        "tls_verify = false\nconfirm = \"each\"",
    ))
    .await;
    assert_delivered(&r, 5, "tls_verify = false", true);
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("certificate is NOT checked")),
        "{:?}",
        r.notes
    );

    let other_ca = format!("tls_ca = {}", toml_path(&certs.file("other-ca.pem")));
    let r = run(&scenario("amqp", "fresh", &url, 5, &other_ca)).await;
    assert_error(
        &r,
        "tls_certificate",
        port,
        "not signed by a CA taskbench trusts",
    );
    // The plain listener answers a ClientHello with its AMQP header: not TLS.
    let plain_port = url::plain_port(&node.url());
    let r = run(&scenario(
        "amqp",
        "fresh",
        &node.url().replace("amqp://", "amqps://"),
        5,
        &ca,
    ))
    .await;
    assert_error(&r, "tls_mismatch", plain_port, "not TLS");
    let r = run(&scenario(
        "amqp",
        "fresh",
        &url.replace("amqps://", "amqp://"),
        5,
        "",
    ))
    .await;
    assert_error(&r, "tls_mismatch", port, "use amqps://");
}

mod url {
    /// The port of an `amqp://…:PORT/…` URL.
    pub fn plain_port(url: &str) -> u16 {
        let parsed: lapin::uri::AMQPUri = url.parse().unwrap();
        parsed.authority.port
    }
}

#[test]
fn tls_keys_with_a_plain_url_from_the_environment_are_a_config_error() {
    // The case has no `url`, so only the running case can see that the environment's URL is plain.
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    for (backend, env, url) in [
        (
            "redis",
            "TASKBENCH_REDIS_URL",
            "redis://:s3cret@127.0.0.1:1/0",
        ),
        (
            "amqp",
            "TASKBENCH_AMQP_URL",
            "amqp://guest:s3cret@127.0.0.1:1/%2f",
        ),
    ] {
        let file = dir.path().join(format!("{backend}.toml"));
        std::fs::write(
            &file,
            format!(
                "name = \"t\"\npublishes = 1\n[[case]]\nname = \"c\"\nbackend = \"{backend}\"\npath = \"fresh\"\ntls_ca = \"ca.pem\"\n"
            ),
        )
        .unwrap();
        let out = common::taskbench()
            .args(["run"])
            .arg(&file)
            .arg("--out")
            .arg(dir.path().join(format!("out-{backend}")))
            .env(env, url)
            .output()
            .unwrap();
        let all = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{all}");
        assert!(all.contains("1 config error"), "{all}");
        assert!(all.contains("sets tls_ key"), "{all}");
        assert!(all.contains("127.0.0.1:1"), "names the URL: {all}");
        assert!(!all.contains("s3cret"), "password shown: {all}");
    }
}
