//! Real TLS clients against an in-process server with smtp, smtps and submission
//! listeners: Python's smtplib (STARTTLS, SMTP_SSL) and a wrapped socket, swaks
//! (`--tls`, `--tlsc`) and lettre over rustls, against a certificate made in the
//! test and against the generated default certificate. Every mail must be stored,
//! marked encrypted with the TLS version and cipher the client saw, and traced
//! `with ESMTPS`.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use lettre::transport::smtp::client::{
    Certificate, CertificateStore, SmtpConnection, Tls, TlsParameters,
};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Message, SmtpTransport, Transport as _};
use net_receiver::config::ListenerMode;
use net_receiver::server::{CertificateSource, TlsHandle};
use net_receiver::{Config, Mail};
use serde_json::Value;

use crate::support::common::{
    Recorder, SERVER_NAME, TestServer, config, python, run_bounded, split_stored, swaks_path,
};
use crate::support::tls::{
    PY_PEER_SHA256, PY_STARTTLS_SEND, PY_WRAPPED_SEND, Pair, TlsClient, fingerprint,
    fingerprint_of_hex_digest, rustls_cipher_name, trusting_only,
};

const LISTENERS: [(ListenerMode, bool); 3] = [
    (ListenerMode::Smtp, false),
    (ListenerMode::Smtps, false),
    (ListenerMode::Submission, false),
];

/// A server with smtp (`ports[0]`), smtps (`ports[1]`) and submission
/// (`ports[2]`) listeners using `tls`, recording each delivered mail.
pub(crate) fn tls_server(tls: Arc<TlsHandle>, config: Config) -> (TestServer, Recorder) {
    let recorder = Recorder::default();
    let server = TestServer::start_listeners(config, recorder.clone(), &LISTENERS, Some(tls));
    (server, recorder)
}

fn json(text: &str) -> Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Python names the version `TLSv1.3`, as OpenSSL, Postfix and the mail
/// structure do (issue 12 item 11; rustls says `TLSv1_3`).
fn mail_version_name(python: &Value) -> String {
    python.as_str().expect("version").to_owned()
}

/// The mail is encrypted with what the client negotiated, and its JSON says so.
fn assert_encrypted(mail: &Mail, version: &str, cipher: &str) {
    assert!(mail.encrypted, "{mail:?}");
    assert_eq!(mail.tls_version.as_deref(), Some(version), "{mail:?}");
    assert_eq!(mail.tls_cipher.as_deref(), Some(cipher), "{mail:?}");
    let json = json(&mail.to_json());
    assert_eq!(json["encrypted"], true, "{json}");
    assert_eq!(json["tls_version"], version, "{json}");
    assert_eq!(json["tls_cipher"], cipher, "{json}");
}

/// Every stored file's Received header says ESMTPS.
fn assert_all_esmtps(server: &TestServer, n: usize) {
    for file in server.expect_messages(n) {
        let stored = split_stored(&file);
        assert!(
            stored
                .received
                .contains(&format!("by {SERVER_NAME} (net-receiver) with ESMTPS id ")),
            "{}",
            stored.received
        );
    }
}

#[test]
fn smtplib_starttls_mail_is_stored_encrypted() {
    let pair = Pair::new();
    let (server, recorder) = tls_server(pair.handle(), config());
    let port = server.ports[0].to_string();
    let out = json(&python(
        PY_STARTTLS_SEND,
        &[&port, pair.cert.to_str().unwrap()],
    ));
    assert_eq!(out["starttls"], 220, "{out}");
    let before = out["before"].as_array().expect("keywords");
    assert!(before.contains(&Value::from("starttls")), "{out}");
    let after = out["after"].as_array().expect("keywords");
    assert!(!after.contains(&Value::from("starttls")), "{out}");
    assert!(after.contains(&Value::from("pipelining")), "{out}");
    for step in ["mail", "rcpt", "data"] {
        assert_eq!(out[step], 250, "{step}: {out}");
    }
    let sha = out["sha256"].as_str().expect("sha256");
    assert_eq!(fingerprint_of_hex_digest(sha), pair.fingerprint());

    let mail = recorder.only();
    let cipher = rustls_cipher_name(out["cipher"].as_str().expect("cipher"));
    assert_encrypted(&mail, &mail_version_name(&out["version"]), &cipher);
    assert_eq!(mail.tls_version.as_deref(), Some("TLSv1.3"));
    assert_eq!(mail.ehlo.as_ref().expect("ehlo").value, "py.test");
    let files = server.expect_messages(1);
    let stored = split_stored(&files[0]);
    assert!(stored.received.starts_with("Received: from py.test "));
    assert!(
        stored.received.contains(" with ESMTPS id "),
        "{}",
        stored.received
    );
    assert_eq!(
        stored.body,
        b"From: a@example.com\r\nTo: b@example.com\r\nSubject: tls\r\n\r\nover TLS\r\n"
    );
}

#[test]
fn wrapped_socket_on_smtps_with_tls12_and_smtp_ssl_with_tls13() {
    let pair = Pair::new();
    let (server, recorder) = tls_server(pair.handle(), config());
    let port = server.ports[1].to_string();
    let cafile = pair.cert.to_str().unwrap();
    let out = json(&python(PY_WRAPPED_SEND, &[&port, cafile, "1.2"]));
    for (step, code) in [
        ("greeting", 220),
        ("ehlo", 250),
        ("mail", 250),
        ("rcpt", 250),
        ("data", 354),
        ("end", 250),
        ("quit", 221),
    ] {
        assert_eq!(out[step], code, "{step}: {out}");
    }
    let keywords = out["keywords"].as_array().expect("keywords");
    assert!(!keywords.contains(&Value::from("STARTTLS")), "{out}");
    assert!(keywords.contains(&Value::from("PIPELINING")), "{out}");
    assert_eq!(out["version"], "TLSv1.2", "{out}");
    let sha = out["sha256"].as_str().expect("sha256");
    assert_eq!(fingerprint_of_hex_digest(sha), pair.fingerprint());
    let mail = recorder.only();
    let cipher = rustls_cipher_name(out["cipher"].as_str().expect("cipher"));
    assert_encrypted(&mail, "TLSv1.2", &cipher);

    let smtp_ssl = r#"
import smtplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
with smtplib.SMTP_SSL("127.0.0.1", int(sys.argv[1]), local_hostname="ssl.test",
                      context=ctx, timeout=10) as s:
    code, _ = s.ehlo()
    assert code == 250 and not s.has_extn("starttls"), s.esmtp_features
    assert s.sendmail("a@example.com", ["b@example.com"], "Subject: ssl\r\n\r\nx\r\n") == {}
    print(s.sock.version(), s.sock.cipher()[0])
"#;
    let out = python(smtp_ssl, &[&port, cafile]);
    let (version, cipher) = out.trim().split_once(' ').expect("version cipher");
    assert_eq!(version, "TLSv1.3");
    let mails = recorder.mails();
    assert_eq!(mails.len(), 2);
    assert_encrypted(&mails[1], "TLSv1.3", &rustls_cipher_name(cipher));
    assert_eq!(mails[1].ehlo.as_ref().expect("ehlo").value, "ssl.test");
    assert_all_esmtps(&server, 2);
}

/// Runs swaks with `args`, asserting it exits 0.
fn swaks(args: &[&str]) {
    let swaks = swaks_path();
    let support = run_bounded(
        Command::new(&swaks).arg("--support"),
        Duration::from_secs(20),
    );
    let support = String::from_utf8_lossy(&support.stdout).into_owned()
        + &String::from_utf8_lossy(&support.stderr);
    assert!(
        support.contains("TLS supported"),
        "this swaks cannot do TLS ({}): install the Perl module Net::SSLeay \
         (Debian: apt-get install libnet-ssleay-perl)",
        support.trim()
    );
    let output = run_bounded(
        Command::new(swaks)
            .args(["--from", "a@example.com", "--to", "b@example.com"])
            .args(["--helo", "swaks.test", "--timeout", "10", "--hide-all"])
            .args(args),
        Duration::from_secs(20),
    );
    assert!(
        output.status.success(),
        "swaks {args:?} failed ({}): {} {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn swaks_starttls_and_implicit_tls() {
    let (server, recorder) = tls_server(Pair::new().handle(), config());
    let smtp = format!("127.0.0.1:{}", server.ports[0]);
    swaks(&["--server", &smtp, "--tls", "--body", "via STARTTLS"]);
    let smtps = format!("127.0.0.1:{}", server.ports[1]);
    swaks(&["--server", &smtps, "--tlsc", "--body", "via implicit TLS"]);
    let mails = recorder.mails();
    assert_eq!(mails.len(), 2, "{mails:?}");
    for mail in &mails {
        assert!(mail.encrypted, "{mail:?}");
        assert!(mail.tls_version.is_some() && mail.tls_cipher.is_some());
        assert_eq!(mail.ehlo.as_ref().expect("ehlo").value, "swaks.test");
        assert_eq!(mail.mailfrom.as_ref().expect("from").url, "a@example.com");
    }
    assert_eq!(mails[0].local_port, server.ports[0].to_string());
    assert_eq!(mails[1].local_port, server.ports[1].to_string());
    assert_all_esmtps(&server, 2);
}

fn email(subject: &str) -> Message {
    Message::builder()
        .from("Alice <alice@example.com>".parse().unwrap())
        .to("Bob <bob@example.com>".parse().unwrap())
        .subject(subject)
        .body(format!("{subject}\r\n"))
        .unwrap()
}

/// TLS parameters for `name` that trust only `pem`.
fn trusting(name: &str, pem: &str) -> TlsParameters {
    TlsParameters::builder(name.to_owned())
        .certificate_store(CertificateStore::None)
        .add_root_certificate(Certificate::from_pem(pem.as_bytes()).unwrap())
        .build_rustls()
        .unwrap()
}

fn lettre(port: u16, tls: Tls) -> SmtpTransport {
    SmtpTransport::builder_dangerous("127.0.0.1")
        .port(port)
        .tls(tls)
        .timeout(Some(Duration::from_secs(10)))
        .build()
}

#[test]
fn lettre_rustls_trusts_a_certificate_made_in_the_test() {
    let pair = Pair::new();
    let (server, recorder) = tls_server(pair.handle(), config());
    let params = trusting(SERVER_NAME, &pair.cert_pem);
    for (port, tls) in [
        (server.ports[0], Tls::Required(params.clone())),
        (server.ports[1], Tls::Wrapper(params)),
    ] {
        let response = lettre(port, tls).send(&email("lettre")).unwrap();
        assert_eq!(u16::from(response.code()), 250, "{response:?}");
    }
    assert_all_esmtps(&server, 2);
    assert!(recorder.mails().iter().all(|m| m.encrypted));

    // The checks are real: another root, or another name, and nothing is sent.
    let stranger = Pair::new();
    for (port, params) in [
        (server.ports[0], trusting(SERVER_NAME, &stranger.cert_pem)),
        (server.ports[0], trusting("other.test", &pair.cert_pem)),
    ] {
        let error = lettre(port, Tls::Required(params))
            .send(&email("refused"))
            .unwrap_err();
        assert!(
            error.to_string().to_lowercase().contains("certificate"),
            "{error}"
        );
    }
    let error = lettre(
        server.ports[1],
        Tls::Wrapper(trusting(SERVER_NAME, &stranger.cert_pem)),
    )
    .send(&email("refused"))
    .unwrap_err();
    assert!(
        error.to_string().to_lowercase().contains("certificate"),
        "{error}"
    );
    assert_eq!(server.messages_count(), 2);
}

#[test]
fn generated_certificate_matches_its_reported_fingerprint() {
    let handle = Arc::new(
        TlsHandle::new(CertificateSource::Generated {
            server_name: SERVER_NAME.to_owned(),
            keep_in: None,
        })
        .unwrap(),
    );
    let expected = handle.fingerprint();
    assert_eq!(expected.len(), 32 * 3 - 1, "{expected}");
    let (server, recorder) = tls_server(Arc::clone(&handle), config());
    let dangerous = TlsParameters::builder(SERVER_NAME.to_owned())
        .dangerous_accept_invalid_certs(true)
        .build_rustls()
        .unwrap();
    let hello = ClientId::Domain("lettre.test".to_owned());
    let timeout = Some(Duration::from_secs(10));

    // STARTTLS on the smtp listener.
    let mut connection =
        SmtpConnection::connect(("127.0.0.1", server.ports[0]), timeout, &hello, None, None)
            .unwrap();
    assert!(connection.can_starttls());
    connection.starttls(&dangerous, &hello).unwrap();
    assert!(!connection.can_starttls(), "STARTTLS offered inside TLS");
    let der = connection.peer_certificate().unwrap();
    assert_eq!(fingerprint(&der), expected);
    let envelope = email("generated").envelope().clone();
    let response = connection
        .send(&envelope, &email("generated").formatted())
        .unwrap();
    assert_eq!(u16::from(response.code()), 250, "{response:?}");
    connection.quit().unwrap();

    // Implicit TLS on the smtps listener: the same certificate.
    let implicit = SmtpConnection::connect(
        ("127.0.0.1", server.ports[1]),
        timeout,
        &hello,
        Some(&dangerous),
        None,
    )
    .unwrap();
    assert_eq!(fingerprint(&implicit.peer_certificate().unwrap()), expected);
    drop(implicit);

    // Python sees it too, and the certificate is valid for the server name when
    // trusted: a verifying rustls client accepts it for mx.test.
    let sha = python(PY_PEER_SHA256, &[&server.ports[1].to_string()]);
    assert_eq!(fingerprint_of_hex_digest(sha.trim()), expected);
    let mut client = TlsClient::implicit(server.ports[1], trusting_only(&der));
    client.cmd("EHLO strict.test", 250);
    client.quit();

    // Without a root for it, a verifying lettre refuses the self-signed certificate.
    let strict_lettre = TlsParameters::builder(SERVER_NAME.to_owned())
        .certificate_store(CertificateStore::None)
        .build_rustls()
        .unwrap();
    let error = lettre(server.ports[0], Tls::Required(strict_lettre))
        .send(&email("refused"))
        .unwrap_err();
    assert!(
        error.to_string().to_lowercase().contains("certificate"),
        "{error}"
    );

    let mail = recorder.only();
    assert!(mail.encrypted);
    assert_eq!(mail.ehlo.as_ref().expect("ehlo").value, "lettre.test");
    assert_all_esmtps(&server, 1);
}

/// Runs `openssl` with `args` in `dir`, asserting success; returns stdout + stderr.
fn openssl(dir: &std::path::Path, args: &[&str]) -> String {
    let output = run_bounded(
        Command::new("openssl").current_dir(dir).args(args),
        Duration::from_secs(30),
    );
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "openssl {args:?} failed ({}): {text}",
        output.status
    );
    text
}

#[test]
fn openssl_keys_in_each_pem_format_and_s_client() {
    let dir = tempfile::tempdir().unwrap();
    let keys: [(&str, &[&str], &str); 3] = [
        (
            "PKCS#8 RSA",
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ],
            "-----BEGIN PRIVATE KEY-----",
        ),
        (
            "PKCS#1 RSA",
            &["genrsa", "-traditional", "2048"],
            "-----BEGIN RSA PRIVATE KEY-----",
        ),
        (
            "SEC1 EC",
            &["ecparam", "-name", "prime256v1", "-genkey", "-noout"],
            "-----BEGIN EC PRIVATE KEY-----",
        ),
    ];
    for (what, generate, header) in keys {
        // `-out` right after the command: genrsa wants the key size last.
        let mut args = vec![generate[0], "-out", "key.pem"];
        args.extend(&generate[1..]);
        openssl(dir.path(), &args);
        let key = std::fs::read_to_string(dir.path().join("key.pem")).unwrap();
        assert!(key.starts_with(header), "{what}: {key}");
        openssl(
            dir.path(),
            &[
                "req",
                "-new",
                "-x509",
                "-key",
                "key.pem",
                "-out",
                "cert.pem",
                "-days",
                "2",
                "-subj",
                "/CN=mx.test",
                "-addext",
                "subjectAltName=DNS:mx.test,IP:127.0.0.1",
            ],
        );
        let handle = Arc::new(
            TlsHandle::new(CertificateSource::Files {
                certificate: dir.path().join("cert.pem"),
                private_key: dir.path().join("key.pem"),
            })
            .unwrap_or_else(|e| panic!("{what}: {e}")),
        );
        let printed = openssl(
            dir.path(),
            &[
                "x509",
                "-in",
                "cert.pem",
                "-noout",
                "-fingerprint",
                "-sha256",
            ],
        );
        let (_, expected) = printed.trim().split_once('=').expect("fingerprint");
        assert_eq!(handle.fingerprint(), expected, "{what}");

        let (server, recorder) = tls_server(handle, config());
        let smtp = format!("127.0.0.1:{}", server.ports[0]);
        let smtps = format!("127.0.0.1:{}", server.ports[1]);
        let verify = ["-CAfile", "cert.pem", "-verify_return_error", "-brief"];
        for (connect, extra) in [
            (&smtp, &["-starttls", "smtp", "-tls1_2"][..]),
            (&smtps, &["-tls1_3"][..]),
        ] {
            let mut args = vec!["s_client", "-connect", connect, "-servername", "mx.test"];
            args.extend(verify);
            args.extend(extra);
            let out = openssl(dir.path(), &args);
            assert!(out.contains("Verification: OK"), "{what}: {out}");
        }
        assert!(recorder.mails().is_empty());
    }
}
