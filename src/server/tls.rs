//! TLS for the listeners: the certificate and key (PEM files, or a self-signed
//! certificate generated at start-up for `server_name` — never a key shipped in the
//! repository), the rustls server configuration, and reloading it on SIGHUP
//! without dropping connections.
//!
//! Handshakes and the STARTTLS sequencing live in `server::conn`; this module only
//! says which configuration a new handshake uses.

use std::io;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

/// File names used when a generated certificate is kept across restarts.
pub const GENERATED_CERTIFICATE: &str = "net-receiver-cert.pem";
/// See [`GENERATED_CERTIFICATE`].
pub const GENERATED_KEY: &str = "net-receiver-key.pem";

/// TLS could not be set up; the message names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("cannot load {what} from {path}: {reason}")]
    Load {
        /// "certificate" or "private key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The key does not match the certificate, or rustls refused them.
    #[error("invalid certificate/key pair: {0}")]
    Invalid(#[from] rustls::Error),
    /// Generating a certificate failed.
    #[error("cannot generate a certificate: {0}")]
    Generate(String),
    /// Writing a generated certificate to disk failed.
    #[error("cannot write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// Where the certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateSource {
    /// PEM files (`certificate` / `private_key`); re-read on reload.
    Files {
        /// Certificate chain, leaf first.
        certificate: PathBuf,
        /// The private key (PKCS#8, PKCS#1 or SEC1).
        private_key: PathBuf,
    },
    /// Self-signed for the server name, generated at start-up; kept in `keep_in`
    /// (and reused from there) when set.
    Generated {
        /// Subject alternative name of the certificate.
        server_name: String,
        /// Directory for [`GENERATED_CERTIFICATE`] and [`GENERATED_KEY`].
        keep_in: Option<PathBuf>,
    },
}

/// The TLS server configuration in force; cheap to share, swapped on reload.
#[derive(Debug)]
pub struct TlsHandle {
    source: CertificateSource,
    current: RwLock<Arc<ServerConfig>>,
    fingerprint: RwLock<String>,
}

impl TlsHandle {
    /// Loads or generates the certificate.
    pub fn new(source: CertificateSource) -> Result<Self, TlsError> {
        let (config, fingerprint) = build(&source)?;
        Ok(Self {
            source,
            current: RwLock::new(config),
            fingerprint: RwLock::new(fingerprint),
        })
    }

    /// An acceptor for one handshake with the current configuration.
    pub fn acceptor(&self) -> TlsAcceptor {
        let config = match self.current.read() {
            Ok(config) => Arc::clone(&config),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        };
        TlsAcceptor::from(config)
    }

    /// SHA-256 fingerprint of the leaf certificate, `AB:CD:…`.
    pub fn fingerprint(&self) -> String {
        match self.fingerprint.read() {
            Ok(f) => f.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Where the certificate comes from.
    pub fn source(&self) -> &CertificateSource {
        &self.source
    }

    /// Re-reads the certificate files; new handshakes use them, open connections
    /// keep theirs. On error the old configuration stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        if matches!(self.source, CertificateSource::Generated { .. }) {
            return Ok(());
        }
        let (config, fingerprint) = build(&self.source)?;
        if let Ok(mut current) = self.current.write() {
            *current = config;
        }
        if let Ok(mut f) = self.fingerprint.write() {
            *f = fingerprint;
        }
        Ok(())
    }
}

fn build(source: &CertificateSource) -> Result<(Arc<ServerConfig>, String), TlsError> {
    let (chain, key) = match source {
        CertificateSource::Files {
            certificate,
            private_key,
        } => load_files(certificate, private_key)?,
        CertificateSource::Generated {
            server_name,
            keep_in,
        } => generated(server_name, keep_in.as_deref())?,
    };
    let fingerprint = chain.first().map(|c| fingerprint(c)).unwrap_or_default();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok((Arc::new(config), fingerprint))
}

fn load_files(
    certificate: &Path,
    private_key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let load_error = |what, path: &Path, reason: String| TlsError::Load {
        what,
        path: path.to_owned(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(certificate)
        .map_err(|e| load_error("certificate", certificate, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| load_error("certificate", certificate, e.to_string()))?;
    if chain.is_empty() {
        return Err(load_error(
            "certificate",
            certificate,
            "no CERTIFICATE block in the file".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(private_key)
        .map_err(|e| load_error("private key", private_key, e.to_string()))?;
    Ok((chain, key))
}

fn generated(
    server_name: &str,
    keep_in: Option<&Path>,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    if let Some(dir) = keep_in {
        let (cert, key) = (dir.join(GENERATED_CERTIFICATE), dir.join(GENERATED_KEY));
        if cert.exists() && key.exists() {
            return load_files(&cert, &key);
        }
    }
    let generate = |e: rcgen::Error| TlsError::Generate(e.to_string());
    // Subject CN and SAN are both the server name (rcgen's default subject is
    // "rcgen self signed cert", which a client's certificate view then shows).
    let mut params =
        rcgen::CertificateParams::new(vec![server_name.to_owned()]).map_err(generate)?;
    let mut subject = rcgen::DistinguishedName::new();
    subject.push(rcgen::DnType::CommonName, server_name);
    params.distinguished_name = subject;
    let signing_key = rcgen::KeyPair::generate().map_err(generate)?;
    let cert = params.self_signed(&signing_key).map_err(generate)?;
    if let Some(dir) = keep_in {
        write_private(&dir.join(GENERATED_KEY), &signing_key.serialize_pem())?;
        write_private(&dir.join(GENERATED_CERTIFICATE), &cert.pem())?;
    }
    let key = PrivatePkcs8KeyDer::from(signing_key.serialize_der());
    Ok((vec![cert.der().clone()], key.into()))
}

/// A TLS version as OpenSSL and Postfix write it (`TLSv1.3`, `TLSv1.2`), for
/// the mail structure's `tls_version`; rustls's own names (`TLSv1_3`) otherwise.
pub(crate) fn version_name(version: rustls::ProtocolVersion) -> Option<&'static str> {
    match version {
        rustls::ProtocolVersion::TLSv1_3 => Some("TLSv1.3"),
        rustls::ProtocolVersion::TLSv1_2 => Some("TLSv1.2"),
        rustls::ProtocolVersion::TLSv1_1 => Some("TLSv1.1"),
        rustls::ProtocolVersion::TLSv1_0 => Some("TLSv1"),
        other => other.as_str(),
    }
}

/// The one log line of a failed TLS handshake, after STARTTLS or on an
/// implicit-TLS port alike: `TLS handshake failed: <why> remote=<ip>`.
pub(crate) fn log_handshake_failure(
    remote_ip: &dyn std::fmt::Display,
    why: &dyn std::fmt::Display,
) {
    tracing::info!(name: "tls_failed", remote = %remote_ip, "TLS handshake failed: {why}");
}

fn write_private(path: &Path, text: &str) -> Result<(), TlsError> {
    use std::io::Write as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|source| TlsError::Write {
            path: path.to_owned(),
            source,
        })
}

/// SHA-256 of a DER certificate as colon-separated upper-case hex.
pub fn fingerprint(certificate: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, certificate);
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// True if `der` holds `needle` as bytes.
    fn holds(der: &[u8], needle: &[u8]) -> bool {
        der.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn issue12_generated_certificate_names_the_server() {
        let (chain, _) = generated("mx.name.test", None).unwrap();
        let der: &[u8] = chain[0].as_ref();
        let name = b"mx.name.test";
        let len = u8::try_from(name.len()).unwrap();
        // Subject commonName (OID 2.5.4.3), a UTF8String.
        let common_name = [&[0x55, 0x04, 0x03, 0x0c, len][..], name].concat();
        assert!(holds(der, &common_name), "no CN=mx.name.test");
        // subjectAltName dNSName ([2] IMPLICIT IA5String).
        let dns_name = [&[0x82, len][..], name].concat();
        assert!(holds(der, &dns_name), "no SAN DNS:mx.name.test");
        assert!(!holds(der, b"rcgen"), "rcgen's default subject");
    }

    #[test]
    fn versions_are_named_as_openssl_names_them() {
        use rustls::ProtocolVersion;
        assert_eq!(version_name(ProtocolVersion::TLSv1_3), Some("TLSv1.3"));
        assert_eq!(version_name(ProtocolVersion::TLSv1_2), Some("TLSv1.2"));
    }

    #[test]
    fn generates_and_keeps_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let source = CertificateSource::Generated {
            server_name: "mx.test".into(),
            keep_in: Some(dir.path().to_owned()),
        };
        let first = TlsHandle::new(source.clone()).unwrap();
        assert_eq!(first.fingerprint().len(), 32 * 3 - 1);
        let second = TlsHandle::new(source).unwrap();
        assert_eq!(
            first.fingerprint(),
            second.fingerprint(),
            "kept across restarts"
        );
        let mode = std::fs::metadata(dir.path().join(GENERATED_KEY))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        let fresh = TlsHandle::new(CertificateSource::Generated {
            server_name: "mx.test".into(),
            keep_in: None,
        })
        .unwrap();
        assert_ne!(first.fingerprint(), fresh.fingerprint());
    }

    #[test]
    fn files_load_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let write_pair = |name: &str| {
            let c = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
            std::fs::write(dir.path().join("c.pem"), c.cert.pem()).unwrap();
            std::fs::write(dir.path().join("k.pem"), c.signing_key.serialize_pem()).unwrap();
        };
        write_pair("one.test");
        let handle = TlsHandle::new(CertificateSource::Files {
            certificate: dir.path().join("c.pem"),
            private_key: dir.path().join("k.pem"),
        })
        .unwrap();
        let before = handle.fingerprint();
        write_pair("two.test");
        handle.reload().unwrap();
        assert_ne!(before, handle.fingerprint());
        std::fs::write(dir.path().join("c.pem"), "garbage").unwrap();
        let error = handle.reload().unwrap_err().to_string();
        assert!(error.contains("c.pem"), "{error}");
        assert_ne!(
            before,
            handle.fingerprint(),
            "the old config stays on error"
        );
    }

    #[test]
    fn missing_files_name_the_path() {
        let error = TlsHandle::new(CertificateSource::Files {
            certificate: "/nonexistent/cert.pem".into(),
            private_key: "/nonexistent/key.pem".into(),
        })
        .unwrap_err()
        .to_string();
        assert!(error.contains("/nonexistent/cert.pem"), "{error}");
    }
}
