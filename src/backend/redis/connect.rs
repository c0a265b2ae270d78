//! How a Redis case connects: the URL's address and client (no `CLIENT SETINFO`, `TCP_NODELAY`), and the TLS
//! of a `rediss://` URL, for the publishers (perhaps through the wire proxy) and for taskbench's own checks.

use crate::backend::tls::{TlsClient, TokioTls};
use crate::error::{ErrorKind, PublishError};
use crate::scenario::TlsOptions;
use redis::{
    Client, ClientTlsConfig, ConnectionAddr, IntoConnectionInfo, RedisError, TlsCertificates,
};
use std::time::Duration;

/// How taskbench connects to a URL: its address, the client, and the TLS of a `rediss://` URL.
pub(super) struct Connecting {
    pub(super) info: redis::ConnectionInfo,
    pub(super) client: Client,
    /// The TLS side of a `rediss://` URL's plain connections (redis-rs does its own for the others).
    pub(super) tls: Option<TokioTls>,
    /// `tls_verify = false`: said in the notes.
    pub(super) tls_note: Option<String>,
}

/// How taskbench connects to `url` (shown as `shown`): no `CLIENT SETINFO`, `TCP_NODELAY`, and TLS as `o`
/// says for a `rediss://` URL, checking `server_name` (default: the URL's host) on plain connections.
pub(super) fn connection(
    url: &str,
    shown: &str,
    o: &TlsOptions,
    handshake: Duration,
    server_name: Option<&str>,
) -> Result<Connecting, PublishError> {
    let invalid = |e: RedisError| {
        PublishError::new(
            ErrorKind::Config,
            format!("the redis URL {shown} is not valid: {e}"),
        )
    };
    let info = url.into_connection_info().map_err(invalid)?;
    let settings = info.redis_settings().clone().set_skip_set_lib_name();
    let info = info.set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
    let info = info.set_redis_settings(settings);
    let (info, tls) = tls_setup(info, o, shown, handshake, server_name)?;
    let client = match &tls {
        Some((_, _, certificates)) => {
            Client::build_with_tls(info.clone(), certificates.clone()).map_err(invalid)?
        }
        None => Client::open(info.clone()).map_err(invalid)?,
    };
    let (tls, tls_note) = match tls {
        Some((tls, note, _)) => (Some(tls), note),
        None => (None, None),
    };
    Ok(Connecting {
        info,
        client,
        tls,
        tls_note,
    })
}

/// The host of a TLS address, the name its certificate is checked against.
pub(super) fn host_of(info: &redis::ConnectionInfo) -> Option<String> {
    match info.addr() {
        ConnectionAddr::TcpTls { host, .. } => Some(host.clone()),
        _ => None,
    }
}

/// What a `rediss://` URL needs: `info` with verification as `o` says, the TLS side of the plain
/// connections, the note of a case that does not verify, and the certificates redis-rs's own connections
/// (multiplexed, and taskbench's checks) use. TLS keys with a plain URL are refused.
#[allow(clippy::type_complexity)]
fn tls_setup(
    info: redis::ConnectionInfo,
    o: &TlsOptions,
    shown: &str,
    timeout: Duration,
    server_name: Option<&str>,
) -> Result<
    (
        redis::ConnectionInfo,
        Option<(TokioTls, Option<String>, TlsCertificates)>,
    ),
    PublishError,
> {
    let ConnectionAddr::TcpTls {
        host,
        port,
        tls_params,
        ..
    } = info.addr().clone()
    else {
        if o.is_set() {
            return Err(PublishError::new(
                ErrorKind::Config,
                format!(
                    "the case sets tls_ keys but connects to {shown} without TLS; use a rediss:// URL (TASKBENCH_REDIS_URL or the case's url)"
                ),
            ));
        }
        return Ok((info, None));
    };
    let client = TlsClient::new(o, shown)?;
    let plain_side = TokioTls::new(&client, server_name.unwrap_or(&host), shown, timeout)?;
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| {
            PublishError::new(
                ErrorKind::Config,
                format!("TLS to {shown}: cannot read {}: {e}", path.display()),
            )
        })
    };
    let client_tls = match (&o.cert, &o.key) {
        (Some(cert), Some(key)) => Some(ClientTlsConfig {
            client_cert: read(cert)?,
            client_key: read(key)?,
        }),
        _ => None,
    };
    let certificates = TlsCertificates {
        client_tls,
        root_cert: o.ca.as_deref().map(read).transpose()?,
    };
    let info = info.set_addr(ConnectionAddr::TcpTls {
        host,
        port,
        insecure: !o.verify,
        tls_params,
    });
    Ok((info, Some((plain_side, client.notes(), certificates))))
}
