//! A broker URL pointed at the wire proxy: the same URL with its port (and, for a remote host, its host)
//! replaced, and the broker's address it named.

use std::net::{SocketAddr, ToSocketAddrs};

/// A broker URL rewritten to go through the proxy.
#[derive(Debug, Clone, PartialEq)]
pub struct Rewritten {
    /// The broker's address, as the URL named it (resolved).
    pub upstream: SocketAddr,
    /// The URL with the proxy's port in place of the broker's.
    pub url: String,
}

/// The port a scheme connects to when the URL names none.
fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "amqp" => Some(5672),
        "amqps" => Some(5671),
        "redis" | "rediss" | "valkey" | "valkeys" => Some(6379),
        _ => None,
    }
}

/// `url` pointed at the proxy listening on `proxy_port` (on 127.0.0.1), and the broker it named. A loopback
/// host (`127.0.0.1`, `localhost`) is kept as written, so TLS verifies the same name; another host becomes
/// 127.0.0.1. Errors say why a URL cannot go through the proxy (a socket path, no host); they never repeat
/// the URL, which may hold a password.
pub fn through(
    url: &str,
    proxy_port: impl FnOnce(SocketAddr) -> std::io::Result<u16>,
) -> Result<Rewritten, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("the broker URL has no scheme://")?;
    let scheme_lc = scheme.to_ascii_lowercase();
    let port = default_port(&scheme_lc).ok_or_else(|| {
        format!(
            "{scheme}:// names a socket path, not a host: `rtt` and faults go through a TCP proxy, so use the \
             broker's TCP address (e.g. redis://127.0.0.1:6379/0)"
        )
    })?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    // The userinfo ends at the authority's last '@' (a password may hold '/', which redact allows for; here a
    // URL like that fails to resolve, which is an error too).
    let (authority, tail) = rest.split_at(end);
    let (userinfo, host_port) = match authority.rfind('@') {
        Some(at) => (&authority[..=at], &authority[at + 1..]),
        None => ("", authority),
    };
    let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or("the broker URL's IPv6 host has no ']'")?;
        let p = after.strip_prefix(':').map(str::parse).transpose();
        (
            format!("[{h}]"),
            p.map_err(|_| "the broker URL's port is not a number")?
                .unwrap_or(port),
        )
    } else {
        match host_port.rsplit_once(':') {
            Some((h, p)) => (
                h.to_string(),
                p.parse()
                    .map_err(|_| "the broker URL's port is not a number")?,
            ),
            None => (host_port.to_string(), port),
        }
    };
    if host.is_empty() {
        return Err("the broker URL names no host".into());
    }
    let upstream = (host.trim_start_matches('[').trim_end_matches(']'), port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve the broker's host {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("the broker's host {host} resolves to no address"))?;
    let proxy = proxy_port(upstream).map_err(|e| format!("cannot start the wire proxy: {e}"))?;
    let loopback = host == "localhost" || upstream.ip().is_loopback() && !host.starts_with('[');
    let host = if loopback {
        host
    } else {
        "127.0.0.1".to_string()
    };
    Ok(Rewritten {
        upstream,
        url: format!("{scheme}://{userinfo}{host}:{proxy}{tail}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_7000(url: &str) -> Result<Rewritten, String> {
        through(url, |_| Ok(7000))
    }

    #[test]
    fn the_port_is_replaced_and_the_rest_kept() {
        let r = at_7000("amqp://guest:p@ss@127.0.0.1:5672/%2f?heartbeat=0").unwrap();
        assert_eq!(r.url, "amqp://guest:p@ss@127.0.0.1:7000/%2f?heartbeat=0");
        assert_eq!(r.upstream, "127.0.0.1:5672".parse().unwrap());
        let r = at_7000("redis://127.0.0.1/0").unwrap();
        assert_eq!(r.url, "redis://127.0.0.1:7000/0");
        assert_eq!(r.upstream.port(), 6379);
        let r = at_7000("rediss://localhost:6380").unwrap();
        assert_eq!(r.url, "rediss://localhost:7000");
    }

    #[test]
    fn a_socket_url_cannot_go_through_the_proxy() {
        let e = at_7000("redis+unix:///run/redis.sock?db=0").unwrap_err();
        assert!(e.contains("socket path"), "{e}");
    }
}
