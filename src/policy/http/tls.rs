//! The TLS side of the HTTP client (hooks and the webhook target): the rustls
//! client configuration an `https://` URL is called with, and the one-off
//! handshake `check-config` makes.
//!
//! - Trust: the system's CA certificates (`rustls-native-certs`: on Debian
//!   `/etc/ssl/certs`, or `SSL_CERT_FILE` / `SSL_CERT_DIR`), read once per
//!   process, plus the PEM certificates of the hook's or target's own `tls_ca`
//!   file (a private CA). The certificate must name the URL's host: a DNS
//!   name, or for an IP literal an IP address SAN (rustls checks both).
//! - Crypto: rustls's `ring` provider, named explicitly (we build no aws-lc),
//!   with its safe default protocol versions (TLS 1.2 and 1.3).
//! - ALPN: `http/1.1` only (the client speaks HTTP/1.1).
//!
//! A `tls_ca` file that cannot be read or holds no certificate, and an
//! `https://` URL with nothing to trust, are errors at start that name the
//! file; a certificate that does not verify fails the call (the hook's
//! `on_error`, the target's retry) with rustls's reason.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hyper::Uri;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

/// The system's CA certificates, read once: the certificates, or why none.
fn system_roots() -> &'static Result<Vec<CertificateDer<'static>>, String> {
    static ROOTS: OnceLock<Result<Vec<CertificateDer<'static>>, String>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let loaded = rustls_native_certs::load_native_certs();
        if loaded.certs.is_empty() {
            let why = loaded
                .errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            Err(if why.is_empty() {
                "no system CA certificates found (install ca-certificates, or set \
                 SSL_CERT_FILE)"
                    .to_owned()
            } else {
                format!("no system CA certificates could be read: {why}")
            })
        } else {
            Ok(loaded.certs)
        }
    })
}

/// The certificates of a PEM file; an error names the file.
fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{shown} is not a PEM file of certificates: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{shown} holds no PEM certificate"));
    }
    Ok(certs)
}

/// The client configuration for `url`: `None` for `http://` (then `tls_ca`
/// is refused: it would do nothing), for `https://` one trusting the system's
/// CAs and those of `tls_ca`. The error says what is wrong, naming the file.
pub(crate) fn client_config(
    url: &Uri,
    tls_ca: Option<&Path>,
) -> Result<Option<Arc<ClientConfig>>, String> {
    if url.scheme_str() != Some("https") {
        return match tls_ca {
            Some(path) => Err(format!(
                "{} is only for an https:// URL, and {url} is not one",
                path.display()
            )),
            None => Ok(None),
        };
    }
    let mut roots = RootCertStore::empty();
    let extra = tls_ca.map(read_ca_file).transpose()?;
    match (system_roots(), &extra) {
        (Ok(system), _) => {
            roots.add_parsable_certificates(system.iter().cloned());
        }
        (Err(why), None) => {
            return Err(format!(
                "{url}: nothing to trust: {why}; name a CA file with tls_ca"
            ));
        }
        (Err(_), Some(_)) => {}
    }
    for cert in extra.into_iter().flatten() {
        roots.add(cert).map_err(|e| {
            format!(
                "{}: a certificate is not a usable CA: {e}",
                tls_ca.map_or_else(String::new, |p| p.display().to_string())
            )
        })?;
    }
    build(roots).map(Some)
}

/// Settings that trust nothing, for an `http://` client's connector (which
/// never uses them).
pub(crate) fn untrusting() -> Result<Arc<ClientConfig>, String> {
    build(RootCertStore::empty())
}

/// The client configuration trusting `roots` (see the module doc).
fn build(roots: RootCertStore) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS settings: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A TCP connection to `url`'s host and port, and with `tls` a TLS handshake
/// that verifies its certificate; then closed at once, nothing sent. The
/// answer says what was done; the error why it failed.
pub(crate) async fn reach(
    url: &Uri,
    tls: Option<&Arc<ClientConfig>>,
    limit: Duration,
) -> Result<String, String> {
    let host = url.host().unwrap_or_default().trim_matches(['[', ']']);
    let default_port = if tls.is_some() { 443 } else { 80 };
    let port = url.port_u16().unwrap_or(default_port);
    let work = async {
        let tcp = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|error| format!("cannot connect to {host}:{port}: {error}"))?;
        let Some(config) = tls else {
            return Ok(format!("TCP connection to {host}:{port} made"));
        };
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| format!("{host:?} is not a TLS server name: {e}"))?;
        let stream = tokio_rustls::TlsConnector::from(Arc::clone(config))
            .connect(name, tcp)
            .await
            .map_err(|error| format!("TLS handshake with {host}:{port} failed: {error}"))?;
        let version = stream
            .get_ref()
            .1
            .protocol_version()
            .map_or_else(|| "TLS".to_owned(), |v| format!("{v:?}"));
        Ok(format!(
            "TCP connection to {host}:{port} made, certificate verified ({version})"
        ))
    };
    match tokio::time::timeout(limit, work).await {
        Ok(result) => result,
        Err(_) => {
            let what = if tls.is_some() { "TLS" } else { "TCP" };
            Err(format!(
                "no {what} connection to {host}:{port} within {limit:?}"
            ))
        }
    }
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
