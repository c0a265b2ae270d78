//! A broker case's TLS keys (`tls_ca`, `tls_cert`, `tls_key`, `tls_verify`), checked as far as they can be
//! without connecting: they need a TLS URL, a certificate needs its key, and every file must be readable and
//! hold what the TLS stack reads (PEM certificates, a PEM private key), so `validate` catches it.

use super::locator::CaseLocator;
use crate::scenario::raw::RawCase;
use crate::scenario::{ScenarioError, TlsOptions, is_tls_url};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use toml::Spanned;

/// What a TLS file must hold.
#[derive(Clone, Copy)]
enum Holds {
    Certificates,
    Key,
}

/// The case's TLS settings; `tls_scheme` is the scheme a TLS URL of its backend has (for messages).
pub(super) fn tls_options(
    case: &CaseLocator,
    raw: &RawCase,
    tls_scheme: &str,
) -> Result<TlsOptions, ScenarioError> {
    let mut o = TlsOptions::default();
    let set = [
        raw.tls_ca.as_ref().map(|v| ("tls_ca", v.span())),
        raw.tls_cert.as_ref().map(|v| ("tls_cert", v.span())),
        raw.tls_key.as_ref().map(|v| ("tls_key", v.span())),
        raw.tls_verify.as_ref().map(|v| ("tls_verify", v.span())),
    ];
    let Some((key, span)) = set.into_iter().flatten().next() else {
        return Ok(o);
    };
    // Without a `url` in the case, the URL comes from the environment: the backend checks it then.
    if raw.url.as_ref().is_some_and(|u| !is_tls_url(u.get_ref())) {
        return Err(case.error(
            span,
            format!("`{key}` needs a TLS `url` ({tls_scheme}://), and this case's is not one"),
            Some(format!(
                "connect with TLS, like url = \"{tls_scheme}://HOST:PORT/...\", or drop the tls_ keys"
            )),
        ));
    }
    match (&raw.tls_cert, &raw.tls_key) {
        (Some(c), None) => {
            return Err(case.error(
                c.span(),
                "`tls_cert` is set without `tls_key`".into(),
                Some(
                    "give the client certificate's private key too: tls_key = \"client.key\""
                        .into(),
                ),
            ));
        }
        (None, Some(k)) => {
            return Err(case.error(
                k.span(),
                "`tls_key` is set without `tls_cert`".into(),
                Some("give the client certificate too: tls_cert = \"client.pem\"".into()),
            ));
        }
        _ => {}
    }
    o.ca = file(case, "tls_ca", raw.tls_ca.as_ref(), Holds::Certificates)?;
    o.cert = file(case, "tls_cert", raw.tls_cert.as_ref(), Holds::Certificates)?;
    o.key = file(case, "tls_key", raw.tls_key.as_ref(), Holds::Key)?;
    if let Some(v) = &raw.tls_verify {
        o.verify = *v.get_ref();
    }
    Ok(o)
}

/// The file a TLS key names (relative to the scenario file), checked to hold what it must.
fn file(
    case: &CaseLocator,
    key: &str,
    value: Option<&Spanned<String>>,
    holds: Holds,
) -> Result<Option<PathBuf>, ScenarioError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let path = PathBuf::from(value.get_ref());
    let path = match Path::new(case.file.name).parent() {
        Some(dir) if path.is_relative() && !dir.as_os_str().is_empty() => dir.join(path),
        _ => path,
    };
    let what = match holds {
        Holds::Certificates => "PEM certificates (-----BEGIN CERTIFICATE-----)",
        Holds::Key => "a PEM private key (-----BEGIN PRIVATE KEY-----, RSA or EC)",
    };
    let fail = |problem: String| {
        Err(case.error(
            value.span(),
            format!("`{key}` = {:?}: {problem}", path.display()),
            Some(format!(
                "give the path of a file holding {what}; a relative path is relative to the scenario file"
            )),
        ))
    };
    if let Err(e) = std::fs::File::open(&path) {
        return fail(format!("cannot be read: {e}"));
    }
    let found = match holds {
        Holds::Certificates => match CertificateDer::pem_file_iter(&path) {
            Ok(mut certs) => match certs.next() {
                Some(Ok(_)) => certs.all(|c| c.is_ok()),
                _ => false,
            },
            Err(_) => false,
        },
        Holds::Key => PrivateKeyDer::from_pem_file(&path).is_ok(),
    };
    if !found {
        return fail(format!("holds none: it must hold {what}"));
    }
    Ok(Some(path))
}
