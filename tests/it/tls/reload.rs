//! The real binary with `--cert/--key`: it logs the certificate's fingerprint,
//! serves it on STARTTLS and implicit TLS, and on SIGHUP re-reads the files — new
//! connections get the new certificate, open ones keep working, and unreadable
//! files keep the old one. Without `--cert` it generates one and logs its
//! fingerprint, which is what clients see.

use nix::sys::signal::Signal;

use crate::support::common::{Client, expect_messages, python};
use crate::support::running::{Binary, command};
use crate::support::tls::{PY_PEER_SHA256, Pair, TlsClient, fingerprint_of_hex_digest};

/// The fingerprint in the newest stderr line containing `needle`.
fn logged_fingerprint(binary: &mut Binary, needle: &str, count: usize) -> String {
    let lines = binary.wait_for_lines(needle, count);
    let line = lines.last().expect("line");
    let (_, fingerprint) = line
        .split_once("SHA-256 ")
        .unwrap_or_else(|| panic!("no fingerprint in {line:?}"));
    fingerprint.trim_end_matches(')').to_owned()
}

/// What Python sees on the implicit-TLS port.
fn seen_by_python(port: u16) -> String {
    fingerprint_of_hex_digest(python(PY_PEER_SHA256, &[&port.to_string()]).trim())
}

fn start(args: &[&std::ffi::OsStr], maildir: &std::path::Path) -> Binary {
    Binary::spawn(
        command()
            .args(["--listen", "127.0.0.1:0", "--tls-listen", "127.0.0.1:0"])
            .args(["--server-name", "mx.test", "--quiet", "--maildir"])
            .arg(maildir)
            .args(args),
        2,
    )
}

#[test]
fn sighup_reloads_the_certificate_for_new_connections_only() {
    let a = Pair::new();
    let b = Pair::new();
    assert_ne!(a.fingerprint(), b.fingerprint());
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    a.write_to(&cert, &key);
    let maildir = dir.path().join("Maildir");
    let mut binary = start(
        &[
            "--cert".as_ref(),
            cert.as_os_str(),
            "--key".as_ref(),
            key.as_os_str(),
        ],
        &maildir,
    );
    let logged = logged_fingerprint(&mut binary, "TLS certificate ", 1);
    assert_eq!(logged, a.fingerprint());
    let (smtp, smtps) = (binary.port("smtp"), binary.port("smtps"));
    assert_eq!(seen_by_python(smtps), a.fingerprint());

    // Opened before the reload, in the middle of a transaction.
    let mut before = TlsClient::implicit(smtps, a.client_config());
    before.cmd("EHLO before.test", 250);
    before.cmd("MAIL FROM:<a@example.com>", 250);

    b.write_to(&cert, &key);
    binary.signal_caught(Signal::SIGHUP);
    let reloaded = logged_fingerprint(&mut binary, "reload: TLS certificate reloaded", 1);
    assert_eq!(reloaded, b.fingerprint());
    assert_eq!(seen_by_python(smtps), b.fingerprint());
    // STARTTLS uses the new certificate as well; a client trusting only A fails.
    let mut client = Client::ehlo(smtp);
    client.cmd("STARTTLS", 220);
    let mut after = TlsClient::after_starttls(client, b.client_config());
    assert_eq!(after.peer_der(), b.der);
    after.cmd("EHLO after.test", 250);
    after.quit();
    let socket = std::net::TcpStream::connect(("127.0.0.1", smtps)).unwrap();
    let error = TlsClient::handshake(socket, a.client_config(), "mx.test")
        .err()
        .expect("a client trusting only the old certificate is refused");
    assert!(error.to_string().contains("certificate"), "{error}");

    // The old connection still has certificate A and finishes its mail.
    assert_eq!(before.peer_der(), a.der);
    before.cmd("RCPT TO:<b@example.com>", 250);
    before.cmd("DATA", 354);
    before.send(b"Subject: across a reload\r\n\r\nstill here\r\n.\r\n");
    before.expect_enhanced(250, "2.0.0");
    before.quit();

    // Unreadable files: the old (B) certificate stays.
    std::fs::write(&cert, "not a certificate").unwrap();
    binary.signal_caught(Signal::SIGHUP);
    binary.wait_for_lines("reload: keeping the old TLS certificate", 1);
    assert_eq!(seen_by_python(smtps), b.fingerprint());
    binary.terminate();
    expect_messages(&maildir, 1);
}

#[test]
fn generated_certificate_fingerprint_is_logged_and_served() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Maildir");
    let mut binary = start(&[], &maildir);
    let logged = logged_fingerprint(&mut binary, "self-signed for mx.test", 1);
    let smtps = binary.port("smtps");
    assert_eq!(seen_by_python(smtps), logged);
    // A SIGHUP keeps a generated certificate.
    binary.signal_caught(Signal::SIGHUP);
    binary.wait_for_lines("reload: TLS certificate reloaded", 1);
    assert_eq!(seen_by_python(smtps), logged);
    binary.terminate();
}
