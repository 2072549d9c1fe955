//! A private certificate authority for the https tests: a CA certificate made
//! with rcgen, and a server certificate it signs for `127.0.0.1` (an IP SAN)
//! and `localhost`, as PEM files in a temporary directory (the CA file is what
//! a `tls_ca` key names) and as a rustls server configuration (ring) for the
//! test servers.

use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The names the server certificate is made for.
pub(crate) const SERVER_NAMES: [&str; 2] = ["127.0.0.1", "localhost"];

/// A CA and one server certificate it signed.
pub(crate) struct TestCa {
    _dir: tempfile::TempDir,
    /// The CA certificate, PEM (what `tls_ca` names).
    pub(crate) ca_file: PathBuf,
    /// The server certificate, PEM.
    pub(crate) server_cert_file: PathBuf,
    /// The server's private key, PEM (PKCS#8).
    pub(crate) server_key_file: PathBuf,
    server_der: Vec<u8>,
    server_key_der: Vec<u8>,
}

impl TestCa {
    /// A fresh CA and a server certificate for [`SERVER_NAMES`].
    pub(crate) fn new() -> Self {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "net-receiver test CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);
        let server_key = KeyPair::generate().expect("server key");
        let names: Vec<String> = SERVER_NAMES.iter().map(|n| (*n).to_owned()).collect();
        let server_cert = CertificateParams::new(names)
            .expect("server params")
            .signed_by(&server_key, &issuer)
            .expect("server certificate");
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_file = dir.path().join("ca.pem");
        let server_cert_file = dir.path().join("server.pem");
        let server_key_file = dir.path().join("server-key.pem");
        std::fs::write(&ca_file, ca_cert.pem()).expect("write CA");
        std::fs::write(&server_cert_file, server_cert.pem()).expect("write certificate");
        std::fs::write(&server_key_file, server_key.serialize_pem()).expect("write key");
        Self {
            _dir: dir,
            ca_file,
            server_cert_file,
            server_key_file,
            server_der: server_cert.der().to_vec(),
            server_key_der: server_key.serialize_der(),
        }
    }

    /// A rustls server configuration (ring) presenting the server certificate.
    pub(crate) fn server_config(&self) -> Arc<ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key_der.clone()));
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![CertificateDer::from(self.server_der.clone())], key)
            .expect("server certificate and key");
        Arc::new(config)
    }
}
