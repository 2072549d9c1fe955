//! TLS helpers for the tests: certificate/key pairs made with rcgen, a rustls
//! client configuration that trusts exactly one of them, a raw SMTP client over
//! rustls (for the exact-bytes cases), SHA-256 fingerprints, and Python TLS
//! clients.

use std::io::{BufRead as _, BufReader, ErrorKind, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use net_receiver::server::{CertificateSource, TlsHandle};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::support::common::{Client, READ_TIMEOUT, Reply, SERVER_NAME, read_reply};

/// The names every test certificate is made for: the in-process server's name and
/// the loopback address the clients connect to (an IP SAN, so Python's hostname
/// check passes when it connects to `127.0.0.1`).
pub(crate) const CERT_NAMES: [&str; 2] = [crate::support::common::SERVER_NAME, "127.0.0.1"];

/// A self-signed certificate and its key, as PEM files in a temporary directory.
pub(crate) struct Pair {
    /// Keeps the files.
    _dir: tempfile::TempDir,
    /// The certificate file.
    pub(crate) cert: PathBuf,
    /// The private key file.
    pub(crate) key: PathBuf,
    /// The certificate, PEM.
    pub(crate) cert_pem: String,
    /// The private key, PEM.
    pub(crate) key_pem: String,
    /// The certificate, DER.
    pub(crate) der: Vec<u8>,
}

impl Pair {
    /// A fresh pair for [`CERT_NAMES`].
    pub(crate) fn new() -> Self {
        Self::for_names(&CERT_NAMES)
    }

    /// A fresh pair for `names`.
    pub(crate) fn for_names(names: &[&str]) -> Self {
        let made = rcgen::generate_simple_self_signed(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .expect("rcgen");
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let pair = Self {
            cert_pem: made.cert.pem(),
            key_pem: made.signing_key.serialize_pem(),
            der: made.cert.der().to_vec(),
            _dir: dir,
            cert,
            key,
        };
        pair.write_to(&pair.cert, &pair.key);
        pair
    }

    /// Writes this pair's PEM files to `cert` and `key` (replacing them).
    pub(crate) fn write_to(&self, cert: &Path, key: &Path) {
        std::fs::write(cert, &self.cert_pem).expect("write certificate");
        std::fs::write(key, &self.key_pem).expect("write key");
    }

    /// The server's TLS handle for these files.
    pub(crate) fn handle(&self) -> Arc<TlsHandle> {
        Arc::new(
            TlsHandle::new(CertificateSource::Files {
                certificate: self.cert.clone(),
                private_key: self.key.clone(),
            })
            .expect("TLS handle from files"),
        )
    }

    /// The SHA-256 fingerprint of the certificate, `AB:CD:...`.
    pub(crate) fn fingerprint(&self) -> String {
        fingerprint(&self.der)
    }

    /// A rustls client configuration that trusts only this certificate.
    pub(crate) fn client_config(&self) -> Arc<ClientConfig> {
        trusting_only(&self.der)
    }
}

/// A rustls client configuration (ring) that trusts only the certificate `der`.
pub(crate) fn trusting_only(der: &[u8]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(der.to_vec()))
        .expect("root certificate");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// SHA-256 of DER bytes as upper-case hex pairs joined by colons, computed here
/// independently of the crate.
pub(crate) fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The same fingerprint from lower-case hex without separators (Python's output).
pub(crate) fn fingerprint_of_hex_digest(hex: &str) -> String {
    assert_eq!(hex.len(), 64, "{hex:?}");
    hex.as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).to_uppercase())
        .collect::<Vec<_>>()
        .join(":")
}

/// A raw SMTP client inside TLS (rustls over a blocking socket; reads time out).
pub(crate) struct TlsClient {
    reader: BufReader<StreamOwned<ClientConnection, TcpStream>>,
}

impl TlsClient {
    /// Runs the handshake on `socket` for `name` to completion.
    pub(crate) fn handshake(
        mut socket: TcpStream,
        config: Arc<ClientConfig>,
        name: &str,
    ) -> Result<Self, std::io::Error> {
        socket.set_read_timeout(Some(READ_TIMEOUT))?;
        socket.set_write_timeout(Some(READ_TIMEOUT))?;
        let name = ServerName::try_from(name.to_owned()).expect("server name");
        let mut tls = ClientConnection::new(config, name).expect("client connection");
        while tls.is_handshaking() {
            tls.complete_io(&mut socket)?;
        }
        Ok(Self {
            reader: BufReader::new(StreamOwned::new(tls, socket)),
        })
    }

    /// Runs the handshake for [`SERVER_NAME`] on the socket of `client`, whose
    /// STARTTLS was just answered 220.
    pub(crate) fn after_starttls(client: Client, config: Arc<ClientConfig>) -> Self {
        Self::handshake(client.into_stream(), config, SERVER_NAME)
            .expect("TLS handshake after STARTTLS")
    }

    /// Connects to an implicit-TLS port, handshakes and reads the 220 greeting.
    pub(crate) fn implicit(port: u16, config: Arc<ClientConfig>) -> Self {
        let socket = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let mut client = Self::handshake(socket, config, crate::support::common::SERVER_NAME)
            .expect("TLS handshake");
        client.expect(220);
        client
    }

    /// The negotiated protocol version and cipher suite, as rustls names them.
    pub(crate) fn negotiated(&self) -> (String, String) {
        let tls = &self.reader.get_ref().conn;
        let version = tls.protocol_version().and_then(|v| v.as_str());
        let suite = tls.negotiated_cipher_suite().map(|s| s.suite());
        (
            // As the mail structure names it: `TLSv1.3`, not rustls's `TLSv1_3`.
            version.expect("version").replace('_', "."),
            suite.and_then(|s| s.as_str()).expect("cipher").to_owned(),
        )
    }

    /// The DER of the server's leaf certificate.
    pub(crate) fn peer_der(&self) -> Vec<u8> {
        let tls = &self.reader.get_ref().conn;
        let chain = tls.peer_certificates().expect("peer certificates");
        chain.first().expect("leaf").to_vec()
    }

    /// Writes bytes as they are (encrypted).
    pub(crate) fn send(&mut self, bytes: &[u8]) {
        let stream = self.reader.get_mut();
        stream.write_all(bytes).expect("write");
        stream.flush().expect("flush");
    }

    /// Reads one reply.
    pub(crate) fn reply(&mut self) -> Reply {
        read_reply(&mut self.reader)
    }

    /// Reads one reply and asserts its code.
    pub(crate) fn expect(&mut self, code: u16) -> Reply {
        self.reply().assert_code(code)
    }

    /// Reads one reply and asserts its code and enhanced status code.
    pub(crate) fn expect_enhanced(&mut self, code: u16, enhanced: &str) -> Reply {
        self.reply().assert_enhanced(code, enhanced)
    }

    /// Sends `line` + CRLF and expects a reply with `code`.
    pub(crate) fn cmd(&mut self, line: &str, code: u16) -> Reply {
        self.send(format!("{line}\r\n").as_bytes());
        self.expect(code)
    }

    /// Asserts that nothing arrives for `wait` (the read times out).
    pub(crate) fn expect_silence(&mut self, wait: Duration) {
        let socket = &self.reader.get_ref().sock;
        socket.set_read_timeout(Some(wait)).expect("timeout");
        let result = self.reader.fill_buf().map(<[u8]>::to_vec);
        self.reader
            .get_ref()
            .sock
            .set_read_timeout(Some(READ_TIMEOUT))
            .expect("timeout");
        match result {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Ok(bytes) => panic!(
                "expected silence, got {:?}",
                String::from_utf8_lossy(&bytes)
            ),
            Err(e) => panic!("expected silence, got error {e}"),
        }
    }

    /// QUIT: 221, then the server ends TLS and the connection.
    pub(crate) fn quit(mut self) {
        self.send(b"QUIT\r\n");
        let reply = self.expect(221);
        assert!(reply.text().starts_with("2.0.0 "), "{reply:?}");
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest)),
            Err(e) => panic!("expected a clean TLS close after QUIT, got {e}"),
        }
    }
}

/// Python: STARTTLS (verifying the certificate against `cafile` and the name
/// `127.0.0.1`), EHLO again, one mail; prints a JSON object with the reply codes,
/// the EHLO keywords before and after TLS, the version, the cipher and the
/// SHA-256 of the server certificate.
pub(crate) const PY_STARTTLS_SEND: &str = r#"
import hashlib, json, smtplib, ssl, sys
port, cafile = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=cafile)
with smtplib.SMTP("127.0.0.1", port, local_hostname="py.test", timeout=10) as s:
    s.ehlo()
    before = sorted(s.esmtp_features)
    code, _ = s.starttls(context=ctx)
    s.ehlo()
    after = sorted(s.esmtp_features)
    msg = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: tls\r\n\r\nover TLS\r\n"
    out = {
        "starttls": code,
        "before": before,
        "after": after,
        "mail": s.mail("a@example.com")[0],
        "rcpt": s.rcpt("b@example.com")[0],
        "data": s.data(msg)[0],
        "version": s.sock.version(),
        "cipher": s.sock.cipher()[0],
        "sha256": hashlib.sha256(s.sock.getpeercert(binary_form=True)).hexdigest(),
    }
print(json.dumps(out))
"#;

/// Python: implicit TLS by wrapping a plain socket (`ssl.wrap_socket` style),
/// optionally capped at TLS 1.2 (`argv[3] == "1.2"`), no certificate check when
/// `argv[2]` is `-`; reads the greeting, EHLO, one mail, QUIT. Prints a JSON object
/// like [`PY_STARTTLS_SEND`] plus the greeting code and EHLO keywords.
pub(crate) const PY_WRAPPED_SEND: &str = r#"
import hashlib, json, socket, ssl, sys
port, cafile, cap = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
if cafile == "-":
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
else:
    ctx.load_verify_locations(cafile)
if cap == "1.2":
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
raw = socket.create_connection(("127.0.0.1", port), timeout=10)
s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
f = s.makefile("rb")
def reply():
    lines = []
    while True:
        line = f.readline()
        assert line.endswith(b"\r\n"), line
        lines.append(line[4:-2].decode())
        if line[3:4] == b" ":
            return int(line[:3]), lines
def cmd(line):
    s.sendall(line.encode() + b"\r\n")
    return reply()
out = {"greeting": reply()[0]}
code, lines = cmd("EHLO wrapped.test")
out["ehlo"] = code
out["keywords"] = [l.split(" ")[0] for l in lines[1:]]
out["mail"] = cmd("MAIL FROM:<a@example.com>")[0]
out["rcpt"] = cmd("RCPT TO:<b@example.com>")[0]
out["data"] = cmd("DATA")[0]
s.sendall(b"Subject: wrapped\r\n\r\nimplicit TLS\r\n.\r\n")
out["end"] = reply()[0]
out["quit"] = cmd("QUIT")[0]
out["version"] = s.version()
out["cipher"] = s.cipher()[0]
out["sha256"] = hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest()
print(json.dumps(out))
"#;

/// Python: implicit TLS without any certificate check; prints only the
/// SHA-256 (hex) of the certificate the server presented.
pub(crate) const PY_PEER_SHA256: &str = r#"
import hashlib, socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
raw = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
    print(hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest())
"#;

/// The rustls name of the cipher suite Python (OpenSSL) reports, for the suites
/// a rustls server with ring offers.
pub(crate) fn rustls_cipher_name(openssl: &str) -> String {
    if let Some(rest) = openssl.strip_prefix("TLS_") {
        // TLS 1.3: OpenSSL says TLS_AES_128_GCM_SHA256, rustls TLS13_AES_128_GCM_SHA256.
        return format!("TLS13_{rest}");
    }
    let (kx, rest) = openssl.split_at(openssl.find('-').expect("OpenSSL cipher name"));
    let rest = &rest[1..];
    let (auth, bulk) = rest.split_at(rest.find('-').expect("OpenSSL cipher name"));
    let bulk = match &bulk[1..] {
        "AES128-GCM-SHA256" => "AES_128_GCM_SHA256",
        "AES256-GCM-SHA384" => "AES_256_GCM_SHA384",
        "CHACHA20-POLY1305" => "CHACHA20_POLY1305_SHA256",
        other => panic!("unexpected OpenSSL cipher {other}"),
    };
    format!("TLS_{kx}_{auth}_WITH_{bulk}")
}
