//! A broker case's `url`, checked as far as it can be without connecting.

use super::locator::CaseLocator;
use crate::catalog::Backend;
use crate::scenario::ScenarioError;
use toml::Spanned;

/// Schemes the redis backend connects with: a host (`redis://`, `valkey://`, with TLS `rediss://`,
/// `valkeys://`) or a socket path.
const REDIS_SCHEMES: &[&str] = &[
    "redis",
    "valkey",
    "rediss",
    "valkeys",
    "redis+unix",
    "valkey+unix",
    "unix",
];
/// Schemes for a socket path rather than a host.
const SOCKET_SCHEMES: &[&str] = &["redis+unix", "valkey+unix", "unix"];

/// Checks a case's broker `url` as far as it can be known without connecting: a scheme the backend uses, a
/// host (or socket path), and whatever else the backend's client library refuses. Messages never repeat
/// the URL (it may hold a password); the error points at it.
pub(super) fn check_url(
    case: &CaseLocator,
    backend: Backend,
    url: &Spanned<String>,
) -> Result<(), ScenarioError> {
    let value = url.get_ref().as_str();
    let (schemes, a_url, example): (&[&str], &str, &str) = match backend {
        Backend::Amqp => (
            &["amqp", "amqps"],
            "an AMQP URL",
            "\"amqp://guest:guest@127.0.0.1:5672/%2f\"",
        ),
        _ => (
            REDIS_SCHEMES,
            "a Redis URL",
            "\"redis://127.0.0.1:6379/0\" or \"redis+unix:///run/redis.sock?db=0\"",
        ),
    };
    let fail = |message: String, hint: String| Err(case.error(url.span(), message, Some(hint)));
    let Some((scheme, rest)) = value.split_once("://") else {
        return fail(
            format!("`url` is not {a_url}: it has no scheme://"),
            format!("write it like {example}"),
        );
    };
    let scheme = scheme.to_ascii_lowercase();
    if value.ends_with("#insecure") {
        // redis-rs's way to turn verification off; taskbench has one: `tls_verify`.
        return fail(
            "`url` ends in #insecure, which taskbench does not read".into(),
            "drop #insecure and set tls_verify = false to connect without checking the server's certificate".into(),
        );
    }
    if !schemes.contains(&scheme.as_str()) {
        return fail(
            format!(
                "`url` has the scheme {scheme:?}, which the {backend} backend cannot use; it takes {}",
                schemes.join(", ")
            ),
            format!("write it like {example}"),
        );
    }
    if SOCKET_SCHEMES.contains(&scheme.as_str()) {
        let path = rest.split(['?', '#']).next().unwrap_or("");
        if !path.starts_with('/') || path.len() < 2 {
            return fail(
                format!("`url` names no socket path: {scheme}:// takes an absolute path"),
                format!("write it like \"{scheme}:///run/redis.sock?db=0\""),
            );
        }
    } else {
        let authority = rest.split('/').next().unwrap_or("");
        let host_port = authority.rsplit('@').next().unwrap_or("");
        let host = if host_port.starts_with('[') {
            host_port
                .split(']')
                .next()
                .unwrap_or("")
                .trim_start_matches('[')
        } else {
            host_port.split([':', '?', '#']).next().unwrap_or("")
        };
        if host.is_empty() {
            return fail(
                "`url` names no host".into(),
                format!("write it like {example}"),
            );
        }
    }
    // Whatever else the client library refuses (a bad port, database number or query value).
    let refused = match backend {
        Backend::Amqp => value.parse::<lapin::uri::AMQPUri>().err(),
        _ => redis::IntoConnectionInfo::into_connection_info(value)
            .err()
            // "Invalid database number - InvalidClientConfig": the kind adds nothing for a user.
            .map(|e| {
                e.to_string()
                    .split(" - ")
                    .next()
                    .unwrap_or_default()
                    .to_string()
            }),
    };
    match refused {
        Some(e) => fail(
            format!(
                "`url` is not valid as {a_url}: {}",
                e.replace(value, "<url>")
            ),
            format!("write it like {example}"),
        ),
        None => Ok(()),
    }
}
