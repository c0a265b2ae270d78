//! Opening a connection to RabbitMQ in timed steps: the TCP connect (`connect` stage), the TLS handshake of
//! an `amqps://` URL (`tls` stage, rustls through lapin's own `tcp-stream`), then the AMQP handshake lapin
//! runs on that stream (`connect` again). taskbench opens the stream itself and hands it to lapin's
//! `Connection::connector`, which is what lets the handshake be timed apart from the TCP connect.

use super::error::{Doing, classify};
use super::{FlowStats, Live, Settings};
use crate::backend::tls::{self, HandshakeFailed, TlsClient};
use crate::error::{ErrorKind, PublishError};
use crate::scenario::TlsOptions;
use crate::stage::{Stage, StageClock};
use async_rs::traits::Reactor;
use lapin::tcp::{AsyncTcpStream, RustlsConnector};
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{Connection, ConnectionProperties, Event};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

type Stream = AsyncTcpStream<<async_rs::Tokio as Reactor>::TcpStream>;

/// How a case reaches its broker: the host and port, and the TLS client of an `amqps://` URL.
pub struct Transport {
    host: String,
    port: u16,
    /// The name TLS checks the certificate against: the broker's, also when `host` is the wire proxy.
    server_name: String,
    tls: Option<(RustlsConnector, TlsClient)>,
    /// How long the TLS handshake may take (a plain port never answers a ClientHello).
    handshake_timeout: Duration,
    /// The connections' `connection_name` at the broker.
    connection_name: String,
}

impl Transport {
    /// A transport to `uri`'s host and port whose TLS (for `amqps://`) checks `server_name`.
    pub(super) fn new(
        uri: &AMQPUri,
        server_name: &str,
        o: &TlsOptions,
        url: &str,
        handshake_timeout: Duration,
    ) -> Result<Transport, PublishError> {
        let host = uri.authority.host.clone();
        let tls = match uri.scheme {
            AMQPScheme::AMQPS => {
                let client = TlsClient::new(o, url)?;
                TlsClient::server_name(server_name, url)?;
                Some((RustlsConnector::from(client.config.clone()), client))
            }
            AMQPScheme::AMQP if o.is_set() => {
                return Err(PublishError::new(
                    ErrorKind::Config,
                    format!(
                        "the case sets tls_ keys but connects to {url} without TLS; use an amqps:// URL (TASKBENCH_AMQP_URL or the case's url)"
                    ),
                ));
            }
            AMQPScheme::AMQP => None,
        };
        Ok(Transport {
            host,
            port: uri.authority.port,
            server_name: server_name.to_string(),
            tls,
            handshake_timeout,
            connection_name: String::new(),
        })
    }

    /// The same transport, its connections named `name` at the broker.
    pub(super) fn named(self, name: String) -> Transport {
        Transport {
            connection_name: name,
            ..self
        }
    }

    /// The note of a case whose server certificate is not checked.
    pub(super) fn notes(&self) -> Option<String> {
        self.tls.as_ref().and_then(|(_, client)| client.notes())
    }

    /// Whether the case connects with TLS.
    pub(super) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// A TCP connection to the broker.
    async fn tcp(&self, rt: &async_rs::TokioRuntime) -> std::io::Result<Stream> {
        AsyncTcpStream::connect(rt, rt.to_socket_addrs((self.host.clone(), self.port))).await
    }

    /// The TLS handshake on `stream` (bounded), or `stream` as it is without TLS.
    async fn tls(&self, stream: Stream, url: &str) -> Result<Stream, PublishError> {
        let Some((connector, _)) = &self.tls else {
            return Ok(stream);
        };
        let host = self
            .server_name
            .trim_start_matches('[')
            .trim_end_matches(']');
        match tokio::time::timeout(self.handshake_timeout, stream.into_rustls(connector, host))
            .await
        {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(HandshakeFailed::new(&e, "amqp").to_error(url)),
            Err(_) => Err(HandshakeFailed::timeout("amqp", self.handshake_timeout).to_error(url)),
        }
    }

    /// The error of a failed AMQP handshake; a plain connection cut during it (or answered with bytes that are
    /// not AMQP) is checked for a TLS port.
    async fn connect_error(&self, e: &lapin::Error, url: &str) -> PublishError {
        // A TLS port answers the AMQP header with an alert and closes: lapin sees a reset, or an alert it
        // cannot parse.
        let cut = matches!(
            e.kind(),
            lapin::ErrorKind::IOError(_) | lapin::ErrorKind::ParsingError(_)
        );
        if cut && self.tls.is_none() && tls::speaks_tls(&self.host, self.port).await {
            return HandshakeFailed::plain_to_tls("amqps").to_error(url);
        }
        classify(e, Doing::Connect, url)
    }

    /// TCP and TLS in one, untimed (lapin asking for a stream again).
    async fn open(&self, rt: &async_rs::TokioRuntime, url: &str) -> lapin::Result<Stream> {
        let stream = self.tcp(rt).await?;
        self.tls(stream, url)
            .await
            .map_err(|e| lapin::Error::from(std::io::Error::other(e.message)))
    }
}

/// Opens a connection through `transport` (the publishers' or taskbench's own): TCP (`connect`), TLS
/// (`tls`), AMQP (`connect`). `watch` follows connection.blocked/unblocked (for connections that live across
/// publishes).
pub(super) async fn connect(
    s: &Settings,
    transport: &Arc<Transport>,
    watch: bool,
    clock: &mut StageClock,
) -> Result<Live, PublishError> {
    let rt = async_rs::Runtime::tokio_current();
    tracing::debug!(url = %s.url, tls = s.transport.is_tls(), "amqp: connecting");
    let stream = clock
        .time(Stage::Connect, transport.tcp(&rt))
        .await
        .map_err(|e| classify(&lapin::Error::from(e), Doing::Connect, &s.url))?;
    let stream = if transport.is_tls() {
        clock
            .time(Stage::Tls, Box::pin(transport.tls(stream, &s.url)))
            .await?
    } else {
        stream
    };
    // (The handshakes are boxed: their futures are large, and a pool's checkout nests them deep.)
    // lapin asks the closure for its stream; the first time it gets this one. It asks again only to retry
    // a first connection the server half-closed: that one is opened afresh.
    let handed = Arc::new(Mutex::new(Some(stream)));
    let (opening, url) = (transport.clone(), s.url.clone());
    let opener = async move |_: AMQPUri, rt: async_rs::TokioRuntime| {
        let ready = handed.lock().unwrap_or_else(|e| e.into_inner()).take();
        match ready {
            Some(stream) => Ok(stream),
            None => opening.open(&rt, &url).await,
        }
    };
    let properties = ConnectionProperties::default()
        .with_connection_name(transport.connection_name.as_str().into());
    let connection = clock
        .time(
            Stage::Connect,
            Box::pin(Connection::connector(s.uri.clone(), rt, opener, properties)),
        )
        .await;
    let connection = match connection {
        Ok(connection) => connection,
        Err(e) => return Err(transport.connect_error(&e, &s.url).await),
    };
    let blocked = Arc::new(AtomicBool::new(false));
    if watch {
        watch_flow(&connection, blocked.clone(), s.flow.clone());
    }
    Ok(Live {
        connection,
        blocked,
        declared: tokio::sync::OnceCell::new(),
    })
}

/// Follows `connection`'s connection.blocked/unblocked into `flag` and `flow`.
fn watch_flow(connection: &Connection, flag: Arc<AtomicBool>, flow: Arc<FlowStats>) {
    let mut events = Box::pin(connection.events_listener());
    tokio::spawn(async move {
        use futures_core::Stream;
        let mut since = None;
        while let Some(event) = std::future::poll_fn(|cx| events.as_mut().poll_next(cx)).await {
            match event {
                Event::ConnectionBlocked(reason) => {
                    flag.store(true, Relaxed);
                    if since.is_none() {
                        since = Some(Instant::now());
                        flow.block(&reason);
                    }
                }
                Event::ConnectionUnblocked => {
                    flag.store(false, Relaxed);
                    if let Some(at) = since.take() {
                        flow.unblock(at, true);
                    }
                }
                _ => {}
            }
        }
        if let Some(at) = since {
            flow.unblock(at, false);
        }
    });
}
