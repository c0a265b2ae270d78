//! A broker case's TLS keys: every error `validate` catches before anything connects, with what it says.

use super::*;

#[test]
fn tls_keys_are_checked_before_running() {
    let dir = tls_files();
    let ca = dir.join("ca.pem").display().to_string();
    let key = dir.join("key.pem").display().to_string();
    let missing = dir.join("nowhere.pem").display().to_string();
    let case = |keys: &str| {
        parse(
            &one_case(&format!("backend = \"redis\"\npath = \"fresh\"\n{keys}")),
            "s.toml",
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
    };
    let tls_url = "url = \"rediss://127.0.0.1:6380/0\"\n";
    assert_eq!(
        case(&format!("{tls_url}tls_ca = {ca:?}")),
        "",
        "a readable CA bundle passes"
    );
    for (keys, says) in [
        (
            format!("url = \"redis://127.0.0.1:6379/0\"\ntls_ca = {ca:?}"),
            "`tls_ca` needs a TLS `url` (rediss://), and this case's is not one".to_string(),
        ),
        (
            format!("{tls_url}tls_ca = {missing:?}"),
            format!("`tls_ca` = {missing:?}: cannot be read: No such file or directory"),
        ),
        (
            format!("{tls_url}tls_cert = {ca:?}\ntls_key = {missing:?}"),
            format!("`tls_key` = {missing:?}: cannot be read"),
        ),
        (
            format!("{tls_url}tls_ca = {key:?}"),
            format!("`tls_ca` = {key:?}: holds none: it must hold PEM certificates"),
        ),
        (
            format!("{tls_url}tls_cert = {ca:?}\ntls_key = {ca:?}"),
            format!("`tls_key` = {ca:?}: holds none: it must hold a PEM private key"),
        ),
        (
            format!("{tls_url}tls_cert = {ca:?}"),
            "`tls_cert` is set without `tls_key`".to_string(),
        ),
        (
            format!("{tls_url}tls_key = {key:?}"),
            "`tls_key` is set without `tls_cert`".to_string(),
        ),
    ] {
        let error = case(&keys);
        assert!(error.contains(&says), "{keys}: {error}");
        assert!(error.contains("hint: "), "{keys}: says what to do: {error}");
    }
}
