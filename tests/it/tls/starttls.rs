//! STARTTLS and implicit TLS at the byte level (a raw socket, then rustls on the
//! same socket): plaintext pipelined after STARTTLS is thrown away (CVE-2011-0411),
//! the session starts over inside TLS, the sequencing replies (501, 503, 454), a
//! client that is not speaking TLS or not speaking at all only loses its own
//! connection, and the submission listener wants AUTH before MAIL.

use std::io::Read as _;
use std::time::Duration;

use net_receiver::Config;
use net_receiver::config::ListenerMode;

use super::clients::tls_server;
use crate::support::common::{Client, Plain, Recorder, TestServer, config, split_stored};
use crate::support::tls::{Pair, TlsClient};

/// The EHLO keywords (the lines after the first).
fn keywords(reply: &crate::support::common::Reply) -> Vec<String> {
    reply
        .lines
        .iter()
        .skip(1)
        .map(|l| l.split(' ').next().unwrap_or("").to_owned())
        .collect()
}

/// Connects, EHLOs (STARTTLS must be offered), sends `after_ehlo` in ONE write
/// (it starts with `STARTTLS\r\n`), reads the 220 and completes the handshake.
fn starttls_with(port: u16, pair: &Pair, after_ehlo: &[u8]) -> TlsClient {
    let mut client = Client::connect(port);
    let ehlo = client.cmd("EHLO client.test", 250);
    assert!(keywords(&ehlo).contains(&"STARTTLS".to_owned()), "{ehlo:?}");
    client.send(after_ehlo);
    client.expect_enhanced(220, "2.0.0");
    TlsClient::after_starttls(client, pair.client_config())
}

#[test]
fn plaintext_pipelined_after_starttls_is_discarded() {
    let pair = Pair::new();
    let (server, recorder) = tls_server(pair.handle(), config());
    let mut tls = starttls_with(server.ports[0], &pair, b"STARTTLS\r\nNOOP\r\n");
    // The NOOP was sent in the clear: no reply to it may appear inside TLS.
    tls.expect_silence(Duration::from_millis(700));
    // The session started over: no EHLO yet.
    tls.send(b"MAIL FROM:<a@example.com>\r\n");
    tls.expect_enhanced(503, "5.5.1");
    let ehlo = tls.cmd("EHLO inside.test", 250);
    assert_eq!(ehlo.lines[0], "mx.test Hello inside.test", "{ehlo:?}");
    let words = keywords(&ehlo);
    assert!(!words.contains(&"STARTTLS".to_owned()), "{ehlo:?}");
    assert!(words.contains(&"PIPELINING".to_owned()), "{ehlo:?}");
    tls.send(b"STARTTLS\r\n");
    tls.expect_enhanced(503, "5.5.1");
    tls.cmd("MAIL FROM:<a@example.com>", 250);
    tls.cmd("RCPT TO:<b@example.com>", 250);
    tls.cmd("DATA", 354);
    tls.send(b"Subject: inside\r\n\r\nsecret\r\n.\r\n");
    tls.expect_enhanced(250, "2.0.0");
    let (version, cipher) = tls.negotiated();
    tls.quit();
    let mail = recorder.only();
    assert!(mail.encrypted);
    assert_eq!(mail.tls_version.as_deref(), Some(version.as_str()));
    assert_eq!(mail.tls_cipher.as_deref(), Some(cipher.as_str()));
    assert_eq!(mail.ehlo.as_ref().expect("ehlo").value, "inside.test");
    let files = server.expect_messages(1);
    assert_eq!(
        split_stored(&files[0]).body,
        b"Subject: inside\r\n\r\nsecret\r\n"
    );
}

#[test]
fn injected_transaction_after_starttls_does_not_survive() {
    let pair = Pair::new();
    let (server, _recorder) = tls_server(pair.handle(), config());
    let injected: &[u8] = b"STARTTLS\r\nMAIL FROM:<evil@example.com>\r\n\
        RCPT TO:<victim@example.com>\r\nDATA\r\nSubject: injected\r\n\r\nx\r\n.\r\n";
    let mut tls = starttls_with(server.ports[0], &pair, injected);
    tls.expect_silence(Duration::from_millis(300));
    tls.cmd("EHLO inside.test", 250);
    // Nothing of the injected transaction exists.
    tls.send(b"RCPT TO:<other@example.com>\r\n");
    tls.expect_enhanced(503, "5.5.1");
    tls.send(b"DATA\r\n");
    tls.expect_enhanced(503, "5.5.1");
    tls.quit();
    server.expect_messages(0);
}

#[test]
fn starttls_sequencing_replies() {
    let pair = Pair::new();
    let (server, _recorder) = tls_server(pair.handle(), config());
    let mut client = Client::connect(server.ports[0]);
    client.send(b"STARTTLS\r\n");
    client.expect_enhanced(503, "5.5.1");
    client.cmd("EHLO client.test", 250);
    client.send(b"STARTTLS now\r\n");
    client.expect_enhanced(501, "5.5.4");
    client.cmd("MAIL FROM:<a@example.com>", 250);
    client.send(b"STARTTLS\r\n");
    client.expect_enhanced(503, "5.5.1");
    client.cmd("RSET", 250);
    // After all that, STARTTLS still works.
    client.send(b"STARTTLS\r\n");
    client.expect_enhanced(220, "2.0.0");
    let mut tls = TlsClient::after_starttls(client, pair.client_config());
    tls.cmd("EHLO client.test", 250);
    tls.quit();

    // STARTTLS may end a pipelined group (RFC 2920): both replies, then TLS.
    let mut client = Client::connect(server.ports[0]);
    client.send(b"EHLO client.test\r\nSTARTTLS\r\n");
    client.expect(250);
    client.expect_enhanced(220, "2.0.0");
    let mut tls = TlsClient::after_starttls(client, pair.client_config());
    tls.cmd("EHLO client.test", 250);
    tls.quit();

    // Implicit TLS: STARTTLS is neither offered nor accepted.
    let mut tls = TlsClient::implicit(server.ports[1], pair.client_config());
    let ehlo = tls.cmd("EHLO client.test", 250);
    assert!(
        !keywords(&ehlo).contains(&"STARTTLS".to_owned()),
        "{ehlo:?}"
    );
    tls.send(b"STARTTLS\r\n");
    tls.expect_enhanced(503, "5.5.1");
    tls.quit();
}

#[test]
fn starttls_without_a_certificate_is_454_and_smtps_is_closed() {
    let server = TestServer::start_listeners(
        config(),
        Plain,
        &[(ListenerMode::Smtp, false), (ListenerMode::Smtps, false)],
        None,
    );
    let mut client = Client::connect(server.ports[0]);
    let ehlo = client.cmd("EHLO client.test", 250);
    assert!(
        !keywords(&ehlo).contains(&"STARTTLS".to_owned()),
        "{ehlo:?}"
    );
    client.send(b"STARTTLS\r\n");
    client.expect_enhanced(454, "4.7.0");
    // The session goes on in the clear.
    client.cmd("NOOP", 250);
    client.quit();
    // An implicit-TLS listener without a certificate serves nothing.
    let mut client = Client::open(([127, 0, 0, 1], server.ports[1]).into());
    client.expect_closed();
}

/// Reads what the server sends until it closes: nothing, or one TLS alert record
/// (content type 21); never an SMTP reply. A reset also counts as closed.
fn expect_closed_or_alert(socket: &mut std::net::TcpStream) {
    socket
        .set_read_timeout(Some(crate::support::common::READ_TIMEOUT))
        .unwrap();
    let mut got = Vec::new();
    match socket.read_to_end(&mut got) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("expected the connection closed, got {e} after {got:?}"),
    }
    assert!(
        got.is_empty() || (got.len() == 7 && got[0] == 21),
        "expected no bytes or one TLS alert, got {got:?}"
    );
}

#[test]
fn garbage_instead_of_a_client_hello_closes_only_that_connection() {
    let pair = Pair::new();
    let (server, _recorder) = tls_server(pair.handle(), config());
    let mut client = Client::ehlo(server.ports[0]);
    client.send(b"STARTTLS\r\n");
    client.expect(220);
    let mut socket = client.into_stream();
    std::io::Write::write_all(&mut socket, b"EHLO this is not a ClientHello\r\n").unwrap();
    expect_closed_or_alert(&mut socket);

    let mut socket = std::net::TcpStream::connect(("127.0.0.1", server.ports[1])).unwrap();
    std::io::Write::write_all(&mut socket, b"EHLO plain text on port 465\r\n").unwrap();
    expect_closed_or_alert(&mut socket);

    // Both listeners still serve.
    let mut tls = starttls_with(server.ports[0], &pair, b"STARTTLS\r\n");
    tls.cmd("EHLO client.test", 250);
    tls.quit();
    let mut tls = TlsClient::implicit(server.ports[1], pair.client_config());
    tls.cmd("EHLO client.test", 250);
    tls.quit();
}

#[test]
fn silent_client_is_closed_after_the_handshake_timeout() {
    let pair = Pair::new();
    let quick = Config {
        tls_handshake_timeout: 0.5,
        ..config()
    };
    let (server, _recorder) = tls_server(pair.handle(), quick);
    // Implicit TLS: no ClientHello at all. The read timeout (10 s) is far above
    // the handshake timeout, so a close (not a timeout) is what must come.
    let mut silent = Client::open(([127, 0, 0, 1], server.ports[1]).into());
    silent.expect_closed();
    // STARTTLS answered, then silence.
    let mut client = Client::ehlo(server.ports[0]);
    client.send(b"STARTTLS\r\n");
    client.expect(220);
    client.expect_closed();
    // A client that does the handshake in time is served.
    let mut tls = TlsClient::implicit(server.ports[1], pair.client_config());
    tls.cmd("EHLO client.test", 250);
    tls.quit();
}

#[test]
fn submission_wants_auth_before_mail() {
    let pair = Pair::new();
    let recorder = Recorder::default();
    let server = TestServer::start_listeners(
        config(),
        recorder.clone(),
        &[(ListenerMode::Submission, false)],
        Some(pair.handle()),
    );
    let mut client = Client::connect(server.port);
    let ehlo = client.cmd("EHLO client.test", 250);
    assert!(keywords(&ehlo).contains(&"STARTTLS".to_owned()), "{ehlo:?}");
    client.send(b"MAIL FROM:<a@example.com>\r\n");
    client.expect_enhanced(530, "5.7.0");
    client.send(b"RCPT TO:<b@example.com>\r\n");
    client.expect_enhanced(503, "5.5.1");
    client.send(b"STARTTLS\r\n");
    client.expect(220);
    let mut tls = TlsClient::after_starttls(client, pair.client_config());
    tls.cmd("EHLO client.test", 250);
    // Encrypted is not authenticated.
    tls.send(b"MAIL FROM:<a@example.com>\r\n");
    tls.expect_enhanced(530, "5.7.0");
    tls.quit();
    server.expect_messages(0);
    assert!(recorder.mails().is_empty());
}
