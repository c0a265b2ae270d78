//! TLS for the broker backends (`amqps://`, `rediss://`): the rustls client configuration a case's `tls_*`
//! keys ask for, shared by the amqp and redis paths, and the error kind and message a failed handshake
//! becomes. The crypto is rustls's (with ring); taskbench only configures it.

use crate::error::{ErrorKind, PublishError};
use crate::scenario::TlsOptions;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};
use std::io;
use std::path::Path;
use std::sync::Arc;

/// A case's TLS client: the configuration every connection of the case handshakes with.
#[derive(Clone)]
pub struct TlsClient {
    pub config: Arc<ClientConfig>,
    /// Whether the server's certificate is checked (`tls_verify`).
    pub verify: bool,
}

impl TlsClient {
    /// The client `o` asks for, for the broker at `url` (password hidden): its CA bundle (else the system's
    /// certificates), its client certificate, and verification on unless turned off.
    pub fn new(o: &TlsOptions, url: &str) -> Result<TlsClient, PublishError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config_error = |what: String| {
            PublishError::new(
                ErrorKind::Config,
                format!("TLS to {url}: {what}; check the case's tls_ keys (taskbench validate)"),
            )
        };
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| config_error(e.to_string()))?;
        let builder = if o.verify {
            let mut roots = rustls::RootCertStore::empty();
            match &o.ca {
                Some(ca) => {
                    for cert in read_certs(ca).map_err(config_error)? {
                        roots
                            .add(cert)
                            .map_err(|e| config_error(format!("{}: {e}", ca.display())))?;
                    }
                }
                None => {
                    // The system's trust store, as Python's ssl module and openssl use.
                    let native = rustls_native_certs::load_native_certs();
                    roots.add_parsable_certificates(native.certs);
                }
            }
            builder.with_root_certificates(roots)
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(
                    provider.signature_verification_algorithms,
                )))
        };
        let config = match (&o.cert, &o.key) {
            (Some(cert), Some(key)) => {
                let chain = read_certs(cert).map_err(config_error)?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| config_error(format!("{}: {e}", key.display())))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| config_error(format!("the client certificate and key: {e}")))?
            }
            _ => builder.with_no_client_auth(),
        };
        Ok(TlsClient {
            config: Arc::new(config),
            verify: o.verify,
        })
    }

    /// The name the server's certificate must be for.
    pub fn server_name(host: &str, url: &str) -> Result<ServerName<'static>, PublishError> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(host.to_string()).map_err(|e| {
            PublishError::new(
                ErrorKind::Config,
                format!("TLS to {url}: {host:?} is not a host name TLS can check: {e}"),
            )
        })
    }

    /// A note for the case when the server's certificate is not checked.
    pub fn notes(&self) -> Option<String> {
        (!self.verify).then(|| {
            "tls_verify = false: the server's TLS certificate is NOT checked (any server can answer); \
             the handshake is otherwise the same"
                .to_string()
        })
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// A failed TLS handshake: its kind and why, without the URL, so that it can travel inside an `io::Error`
/// through a client library's error type and be found again ([`find`]).
#[derive(Debug, Clone)]
pub struct HandshakeFailed {
    kind: ErrorKind,
    why: String,
    /// A plain connection closed before any answer ([`HandshakeFailed::plain_to_tls`]): a TLS port, or a
    /// server that went away; [`speaks_tls`] tells which.
    pub unconfirmed: bool,
}

impl std::fmt::Display for HandshakeFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.why)
    }
}

impl std::error::Error for HandshakeFailed {}

impl HandshakeFailed {
    /// What the failed handshake `e` means; `plain` is the scheme without TLS (`amqp`, `redis`), for the
    /// hint when the port does not speak TLS.
    pub fn new(e: &io::Error, plain: &str) -> HandshakeFailed {
        let not_tls =
            format!("is this port a plain one? use {plain}:// for it, or the server's TLS port");
        match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(e) => HandshakeFailed::from_rustls(e, &not_tls),
            None => HandshakeFailed {
                kind: ErrorKind::TlsHandshake,
                why: format!("the connection ended during the handshake ({e}); {not_tls}"),
                unconfirmed: false,
            },
        }
    }

    fn from_rustls(e: &rustls::Error, not_tls: &str) -> HandshakeFailed {
        let (kind, why) = match e {
            rustls::Error::InvalidCertificate(cert) => {
                let trust = "give the CA that signed it with tls_ca = \"ca.pem\"";
                let (why, what_to_do) = match cert {
                    CertificateError::UnknownIssuer => ("is not signed by a CA taskbench trusts (self-signed, or signed by a CA not in tls_ca)".to_string(), trust),
                    CertificateError::Expired | CertificateError::ExpiredContext { .. } => (
                        "has expired".to_string(),
                        "renew the server's certificate",
                    ),
                    CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => (
                        "is not valid yet".to_string(),
                        "check the clocks of this machine and the server, or the certificate's start date",
                    ),
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. } => (
                        "is not for the host in the URL".to_string(),
                        "connect by a name or address the certificate lists",
                    ),
                    other => (format!("was refused ({other:?})"), trust),
                };
                (
                    ErrorKind::TlsCertificate,
                    format!(
                        "the server's certificate {why}; {what_to_do} (or set tls_verify = false to measure \
                         without checking it)"
                    ),
                )
            }
            rustls::Error::AlertReceived(alert) => (
                ErrorKind::TlsHandshake,
                format!(
                    "the server refused the handshake ({alert:?}); if it asks for a client certificate, give \
                     tls_cert and tls_key, and check it trusts the CA that signed them"
                ),
            ),
            rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => (
                ErrorKind::TlsMismatch,
                format!("the server answered something that is not TLS; {not_tls}"),
            ),
            other => (ErrorKind::TlsHandshake, other.to_string()),
        };
        HandshakeFailed {
            kind,
            why,
            unconfirmed: false,
        }
    }

    /// A handshake that got no answer within `limit`.
    pub fn timeout(plain: &str, limit: std::time::Duration) -> HandshakeFailed {
        HandshakeFailed {
            kind: ErrorKind::TlsMismatch,
            why: format!(
                "no TLS answer within {}: the server is not speaking TLS on this port (or is hung); use \
                 {plain}:// for a plain port, or the server's TLS port",
                humantime::format_duration(limit)
            ),
            unconfirmed: false,
        }
    }

    /// A plain connection the server closed before answering anything: what a TLS port does with
    /// plain text; `tls` is the scheme with TLS.
    pub fn plain_to_tls(tls: &str) -> HandshakeFailed {
        HandshakeFailed {
            kind: ErrorKind::TlsMismatch,
            why: format!(
                "the server closed the connection before answering anything, as a TLS port does with plain \
                 text; if this port speaks TLS, use {tls}:// (with tls_ca for its CA)"
            ),
            unconfirmed: true,
        }
    }

    /// The error for the broker at `url` (password hidden).
    pub fn to_error(&self, url: &str) -> PublishError {
        let during = if self.kind == ErrorKind::TlsMismatch {
            "connecting to"
        } else {
            "the TLS handshake with"
        };
        PublishError::new(self.kind, format!("{during} {url} failed: {}", self.why))
    }
}

/// The TLS handshake failure somewhere in `e`'s chain of causes: one of taskbench's ([`HandshakeFailed`]
/// in an `io::Error`), or one rustls reported inside a client library (redis-rs's own connections).
pub fn find(e: &(dyn std::error::Error + 'static), plain: &str) -> Option<HandshakeFailed> {
    type Shared = Arc<dyn std::error::Error + Send + Sync>;
    let mut next = Some(e);
    while let Some(e) = next {
        // redis-rs keeps its cause as an Arc<dyn Error>; an io::Error keeps its own inside.
        let shared = e
            .downcast_ref::<Shared>()
            .map(|a| &**a as &(dyn std::error::Error + 'static));
        let mut candidates = vec![e];
        candidates.extend(shared);
        for layer in candidates.clone() {
            let io = layer
                .downcast_ref::<io::Error>()
                .or_else(|| layer.downcast_ref::<Arc<io::Error>>().map(|a| &**a));
            candidates.extend(
                io.and_then(|io| io.get_ref())
                    .map(|i| i as &(dyn std::error::Error + 'static)),
            );
        }
        for candidate in candidates {
            if let Some(found) = candidate.downcast_ref::<HandshakeFailed>() {
                return Some(found.clone());
            }
            if let Some(r) = candidate.downcast_ref::<rustls::Error>() {
                let not_tls = format!(
                    "is this port a plain one? use {plain}:// for it, or the server's TLS port"
                );
                return Some(HandshakeFailed::from_rustls(r, &not_tls));
            }
        }
        next = e.source();
    }
    None
}

/// `tls_verify = false`: accepts any certificate, still checking the handshake's signatures.
#[derive(Debug)]
struct NoVerify(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// The TLS side of a tokio TCP stream (the redis backend's own connections): the case's client, the name
/// the server's certificate must be for, and how long a handshake may take.
pub struct TokioTls {
    connector: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
    timeout: std::time::Duration,
}

impl TokioTls {
    pub fn new(
        client: &TlsClient,
        host: &str,
        url: &str,
        timeout: std::time::Duration,
    ) -> Result<TokioTls, PublishError> {
        Ok(TokioTls {
            connector: tokio_rustls::TlsConnector::from(client.config.clone()),
            name: TlsClient::server_name(host, url)?,
            timeout,
        })
    }

    /// The handshake on `tcp`; a failure is an `io::Error` holding a [`HandshakeFailed`] ([`find`] reads
    /// it back); `plain` is the scheme without TLS, for the hint.
    pub async fn handshake(
        &self,
        tcp: tokio::net::TcpStream,
        plain: &str,
    ) -> io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let handshake = self.connector.connect(self.name.clone(), tcp);
        match tokio::time::timeout(self.timeout, handshake).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(io::Error::other(HandshakeFailed::new(&e, plain))),
            Err(_) => Err(io::Error::other(HandshakeFailed::timeout(
                plain,
                self.timeout,
            ))),
        }
    }
}

/// Whether the server at `host:port` answers a TLS handshake (checking nothing of its certificate), within
/// a second: asked only after a plain connection failed, to tell a TLS port from a broken server.
pub async fn speaks_tls(host: &str, port: u16) -> bool {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let Ok(builder) =
        ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()
    else {
        return false;
    };
    let config = builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify(
            provider.signature_verification_algorithms,
        )))
        .with_no_client_auth();
    let Ok(name) = ServerName::try_from(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
    ) else {
        return false;
    };
    let attempt = async {
        let tcp = tokio::net::TcpStream::connect((host, port)).await?;
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
    };
    match tokio::time::timeout(std::time::Duration::from_secs(1), attempt).await {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => matches!(
            e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()),
            Some(rustls::Error::AlertReceived(_))
        ),
        Err(_) => false,
    }
}
