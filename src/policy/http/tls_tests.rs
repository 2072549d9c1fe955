//! The TLS settings against a real TLS server on loopback (tokio-rustls, a
//! certificate of a CA made here with rcgen): trust comes from `tls_ca`, the
//! certificate must name the host (an IP SAN for `127.0.0.1`), and a
//! `tls_ca` that cannot be used is an error naming the file.

use super::*;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::ServerConfig;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// The PEM of a CA called `ca_name`, and a server configuration with a
/// certificate it signed for `names`.
fn ca_and_server(ca_name: &str, names: &[&str]) -> (String, Arc<ServerConfig>) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, ca_name);
    let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let cert = CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    (ca_pem, Arc::new(server))
}

/// A TLS server on 127.0.0.1 completing up to `handshakes` handshakes; its port.
async fn serve(config: Arc<ServerConfig>, handshakes: usize) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        for _ in 0..handshakes {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let _ = acceptor.accept(tcp).await;
        }
    });
    port
}

fn url(text: &str) -> Uri {
    text.parse().unwrap()
}

#[tokio::test]
async fn the_certificate_is_verified_against_tls_ca_and_the_host() {
    let (ca_pem, server) = ca_and_server("hook CA", &["127.0.0.1"]);
    let (other_ca_pem, _) = ca_and_server("another CA", &["127.0.0.1"]);
    let dir = tempfile::tempdir().unwrap();
    let (ca, other_ca) = (dir.path().join("ca.pem"), dir.path().join("other.pem"));
    std::fs::write(&ca, ca_pem).unwrap();
    std::fs::write(&other_ca, other_ca_pem).unwrap();
    let port = serve(server, 3).await;
    let limit = Duration::from_secs(10);

    let by_ip = url(&format!("https://127.0.0.1:{port}/"));
    let trusting = client_config(&by_ip, Some(&ca)).unwrap();
    let text = reach(&by_ip, trusting.as_ref(), limit).await.unwrap();
    assert_eq!(
        text,
        format!("TCP connection to 127.0.0.1:{port} made, certificate verified (TLSv1_3)")
    );
    assert_eq!(trusting.unwrap().alpn_protocols, vec![b"http/1.1".to_vec()]);

    let untrusting = client_config(&by_ip, Some(&other_ca)).unwrap();
    let error = reach(&by_ip, untrusting.as_ref(), limit).await.unwrap_err();
    assert!(
        error.ends_with("invalid peer certificate: UnknownIssuer"),
        "{error}"
    );

    // The certificate names 127.0.0.1 only, not localhost.
    let by_name = url(&format!("https://localhost:{port}/"));
    let trusting = client_config(&by_name, Some(&ca)).unwrap();
    let error = reach(&by_name, trusting.as_ref(), limit).await.unwrap_err();
    assert!(
        error.contains("certificate not valid for name \"localhost\""),
        "{error}"
    );
}

#[test]
fn a_tls_ca_that_cannot_be_used_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_pem, _) = ca_and_server("hook CA", &["127.0.0.1"]);
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "no PEM here\n").unwrap();
    let missing = dir.path().join("missing.pem");
    let https = url("https://127.0.0.1/");
    for (file, want) in [
        (&missing, "cannot read"),
        (&empty, "holds no PEM certificate"),
    ] {
        let error = client_config(&https, Some(file)).unwrap_err();
        assert!(error.contains(&file.display().to_string()), "{error}");
        assert!(error.contains(want), "{error}");
    }
    let plain = url("http://127.0.0.1/");
    let error = client_config(&plain, Some(&ca)).unwrap_err();
    assert!(error.contains("only for an https:// URL"), "{error}");
    assert!(client_config(&plain, None).unwrap().is_none());
}
