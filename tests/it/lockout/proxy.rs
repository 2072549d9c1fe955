//! The PROXY protocol on a listener: v1 and v2 headers from a trusted peer set
//! the real client's address (mail structure, Received header, per-IP limit);
//! untrusted peers, missing, malformed, oversized or late headers close the
//! connection without a greeting; a PROXY line inside a normal session is just an
//! unknown command.

use std::net::Ipv6Addr;

use net_receiver::Config;
use net_receiver::config::ListenerMode;

use crate::support::common::{Client, Recorder, TestServer, config, split_stored};
use crate::support::tls::{Pair, TlsClient};

const V1: &[u8] = b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 25\r\n";
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// A v2 PROXY header for TCP over IPv6, `2001:db8::7:40000 -> 2001:db8::1:25`.
fn v2_ipv6() -> Vec<u8> {
    let source: Ipv6Addr = "2001:db8::7".parse().unwrap();
    let destination: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let mut header = V2_SIGNATURE.to_vec();
    header.push(0x21); // version 2, PROXY
    header.push(0x21); // AF_INET6, STREAM
    header.extend_from_slice(&36u16.to_be_bytes());
    header.extend_from_slice(&source.octets());
    header.extend_from_slice(&destination.octets());
    header.extend_from_slice(&40000u16.to_be_bytes());
    header.extend_from_slice(&25u16.to_be_bytes());
    assert_eq!(header.len(), 16 + 36);
    header
}

fn proxy_config(trusted: &str) -> Config {
    Config {
        proxy_trusted_networks: vec![trusted.to_owned()],
        tls_handshake_timeout: 1.0,
        ..config()
    }
}

/// Listeners: PROXY smtp (`ports[0]`), plain smtp (`ports[1]`), PROXY smtps
/// (`ports[2]`).
fn proxy_server(config: Config, pair: &Pair) -> (TestServer, Recorder) {
    let recorder = Recorder::default();
    let server = TestServer::start_listeners(
        config,
        recorder.clone(),
        &[
            (ListenerMode::Smtp, true),
            (ListenerMode::Smtp, false),
            (ListenerMode::Smtps, true),
        ],
        Some(pair.handle()),
    );
    (server, recorder)
}

/// Connects to `port`, sends `first` as the first bytes.
fn open_with(port: u16, first: &[u8]) -> Client {
    let mut client = Client::open(([127, 0, 0, 1], port).into());
    client.send(first);
    client
}

/// Sends one mail (EHLO already done) and QUITs.
fn send_mail(client: &mut Client, subject: &str) {
    client.start_data("a@example.com", "b@example.com");
    client.send(format!("Subject: {subject}\r\n\r\nbody\r\n.\r\n").as_bytes());
    client.expect_enhanced(250, "2.0.0");
}

#[test]
fn v1_header_sets_the_real_client() {
    let pair = Pair::new();
    let (server, recorder) = proxy_server(proxy_config("127.0.0.1/32"), &pair);
    let mut client = open_with(server.ports[0], V1);
    client.read_greeting(220);
    client.cmd("EHLO relay.test", 250);
    send_mail(&mut client, "v1");
    // Only once, only first: a later PROXY line is an unknown command.
    client.send(V1);
    client.expect_enhanced(500, "5.5.2");
    client.quit();

    let mail = recorder.only();
    assert_eq!(mail.remote_ip, "192.0.2.7");
    assert_eq!(mail.remote_port, "40000");
    assert_eq!(mail.connect.value, "192.0.2.7");
    let files = server.expect_messages(1);
    let stored = split_stored(&files[0]);
    assert!(
        stored
            .received
            .starts_with("Received: from relay.test (unknown [192.0.2.7])\r\n"),
        "{}",
        stored.received
    );
}

#[test]
fn v2_ipv6_header_followed_by_ehlo_in_one_write() {
    let pair = Pair::new();
    let (server, recorder) = proxy_server(proxy_config("127.0.0.1/32"), &pair);
    let mut first = v2_ipv6();
    first.extend_from_slice(b"EHLO six.test\r\n");
    let mut client = open_with(server.ports[0], &first);
    client.read_greeting(220);
    client.expect(250);
    send_mail(&mut client, "v2");
    client.quit();
    // v1 with the EHLO in the same write, too.
    let first = b"PROXY TCP4 192.0.2.8 198.51.100.1 40001 25\r\nEHLO four.test\r\n";
    let mut client = open_with(server.ports[0], first);
    client.read_greeting(220);
    client.expect(250);
    send_mail(&mut client, "v1 and EHLO");
    client.quit();

    // v2 over IPv4 with a TLV (PP2_TYPE_AUTHORITY), sent in two writes.
    let mut header = V2_SIGNATURE.to_vec();
    header.extend_from_slice(&[0x21, 0x11]);
    let tlv: &[u8] = b"\x02\x00\x0amx.example";
    header.extend_from_slice(&u16::try_from(12 + tlv.len()).unwrap().to_be_bytes());
    header.extend_from_slice(&[192, 0, 2, 10, 198, 51, 100, 1]);
    header.extend_from_slice(&40010u16.to_be_bytes());
    header.extend_from_slice(&25u16.to_be_bytes());
    header.extend_from_slice(tlv);
    let (start, end) = header.split_at(20);
    let mut client = open_with(server.ports[0], start);
    std::thread::sleep(std::time::Duration::from_millis(100));
    client.send(end);
    client.read_greeting(220);
    client.cmd("EHLO tlv.test", 250);
    send_mail(&mut client, "v2 with a TLV");
    client.quit();

    let mails = recorder.mails();
    assert_eq!(mails.len(), 3, "{mails:?}");
    assert_eq!(mails[2].remote_ip, "192.0.2.10");
    assert_eq!(mails[2].remote_port, "40010");
    assert_eq!(mails[0].remote_ip, "2001:db8::7");
    assert_eq!(mails[0].remote_port, "40000");
    assert_eq!(mails[0].ehlo.as_ref().unwrap().value, "six.test");
    assert_eq!(mails[1].remote_ip, "192.0.2.8");
    assert_eq!(mails[1].remote_port, "40001");
    let files = server.expect_messages(3);
    let received: Vec<String> = files
        .iter()
        .map(|f| split_stored(f).received.clone())
        .collect();
    assert!(
        received
            .iter()
            .any(|r| r.starts_with("Received: from six.test (unknown [IPv6:2001:db8::7])")),
        "{received:?}"
    );
    assert!(
        received
            .iter()
            .any(|r| r.starts_with("Received: from four.test (unknown [192.0.2.8])")),
        "{received:?}"
    );
}

#[test]
fn local_and_unknown_headers_keep_the_socket_address() {
    let pair = Pair::new();
    let (server, recorder) = proxy_server(proxy_config("127.0.0.1/32"), &pair);
    let mut local = V2_SIGNATURE.to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]); // v2 LOCAL, no addresses
    for first in [b"PROXY UNKNOWN\r\n".to_vec(), local] {
        let mut client = open_with(server.ports[0], &first);
        client.read_greeting(220);
        client.cmd("EHLO health.test", 250);
        send_mail(&mut client, "local");
        client.quit();
    }
    let mails = recorder.mails();
    assert_eq!(mails.len(), 2);
    for mail in mails {
        assert_eq!(mail.remote_ip, "127.0.0.1", "{mail:?}");
    }
}

#[test]
fn untrusted_peer_is_closed_without_a_greeting() {
    let pair = Pair::new();
    let (server, recorder) = proxy_server(proxy_config("10.0.0.0/8"), &pair);
    let mut client = open_with(server.ports[0], V1);
    client.expect_closed();
    let mut client = Client::open(([127, 0, 0, 1], server.ports[0]).into());
    client.expect_closed();
    // The plain listener of the same server is unaffected.
    Client::ehlo(server.ports[1]).quit();
    assert!(recorder.mails().is_empty());
}

#[test]
fn missing_malformed_or_oversized_headers_close_the_connection() {
    let pair = Pair::new();
    let (server, recorder) = proxy_server(proxy_config("127.0.0.1/32"), &pair);
    let mut too_long_v2 = V2_SIGNATURE.to_vec();
    too_long_v2.extend_from_slice(&[0x21, 0x11]);
    too_long_v2.extend_from_slice(&600u16.to_be_bytes());
    too_long_v2.extend_from_slice(&[0; 600]);
    let mut version_3 = v2_ipv6();
    version_3[12] = 0x31;
    // UNKNOWN takes any text up to the CRLF, so only the length can fail it.
    let too_long_v1 = format!("PROXY UNKNOWN {}\r\n", "x".repeat(100));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("SMTP instead of a header", b"EHLO client.test\r\n".to_vec()),
        ("v2 over the cap", too_long_v2),
        ("v1 over 107 octets", too_long_v1.into_bytes()),
        (
            "v1 with a bad address",
            b"PROXY TCP4 192.0.2.999 198.51.100.1 40000 25\r\n".to_vec(),
        ),
        (
            "v1 with a bad port",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 70000 25\r\n".to_vec(),
        ),
        (
            "v1 with LF only",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 25\n".to_vec(),
        ),
        ("v2 version 3", version_3),
        (
            "half a header, then silence",
            b"PROXY TCP4 192.0.2.7".to_vec(),
        ),
    ];
    for (what, first) in cases {
        eprintln!("case: {what}");
        let mut client = open_with(server.ports[0], &first);
        client.expect_closed();
    }
    // Silence from a trusted peer: closed after the timeout (1 s; reads wait 10 s).
    let mut client = Client::open(([127, 0, 0, 1], server.ports[0]).into());
    client.expect_closed();
    // The listener still works.
    let mut client = open_with(server.ports[0], V1);
    client.read_greeting(220);
    client.quit();
    assert!(recorder.mails().is_empty());
}

#[test]
fn proxy_line_in_a_normal_session_is_an_unknown_command() {
    let pair = Pair::new();
    let (server, _recorder) = proxy_server(proxy_config("127.0.0.1/32"), &pair);
    let mut client = Client::connect(server.ports[1]);
    client.send(V1);
    client.expect_enhanced(500, "5.5.2");
    client.cmd("EHLO client.test", 250);
    client.send(V1);
    client.expect_enhanced(500, "5.5.2");
    client.quit();
}

#[test]
fn the_per_ip_limit_counts_the_proxied_client() {
    let pair = Pair::new();
    let limited = Config {
        max_connections_per_ip: 1,
        per_ip_limit_exceptions: Vec::new(),
        ..proxy_config("127.0.0.1/32")
    };
    let (server, _recorder) = proxy_server(limited, &pair);
    let mut first = open_with(server.ports[0], V1);
    first.read_greeting(220);
    let mut other = open_with(
        server.ports[0],
        b"PROXY TCP4 192.0.2.8 198.51.100.1 40000 25\r\n",
    );
    other.read_greeting(220);
    let mut again = open_with(
        server.ports[0],
        b"PROXY TCP4 192.0.2.7 198.51.100.1 40002 25\r\n",
    );
    again.read_greeting(421);
    assert!(
        again.greeting.text().starts_with("4.7.0 "),
        "{:?}",
        again.greeting
    );
    again.expect_eof();
    // The proxy's own address (127.0.0.1) holds no slot.
    Client::ehlo(server.ports[1]).quit();
    first.quit();
    other.quit();
}

#[test]
fn proxy_header_then_implicit_tls() {
    let pair = Pair::new();
    let (server, recorder) = proxy_server(proxy_config("127.0.0.1/32"), &pair);
    let client = open_with(
        server.ports[2],
        b"PROXY TCP4 192.0.2.9 198.51.100.1 40009 465\r\n",
    );
    let mut tls =
        TlsClient::handshake(client.into_stream(), pair.client_config(), "mx.test").unwrap();
    tls.expect(220);
    tls.cmd("EHLO tls.test", 250);
    tls.cmd("MAIL FROM:<a@example.com>", 250);
    tls.cmd("RCPT TO:<b@example.com>", 250);
    tls.cmd("DATA", 354);
    tls.send(b"Subject: proxied TLS\r\n\r\nbody\r\n.\r\n");
    tls.expect(250);
    tls.quit();
    let mail = recorder.only();
    assert_eq!(mail.remote_ip, "192.0.2.9");
    assert_eq!(mail.remote_port, "40009");
    assert!(mail.encrypted);
}

#[test]
fn starttls_injection_behind_the_header_is_discarded() {
    let pair = Pair::new();
    let (server, _recorder) = proxy_server(proxy_config("127.0.0.1/32"), &pair);
    // Header, EHLO, STARTTLS and an injected transaction, all in the first write.
    let mut first = V1.to_vec();
    first.extend_from_slice(
        b"EHLO relay.test\r\nSTARTTLS\r\nMAIL FROM:<evil@example.com>\r\n\
          RCPT TO:<victim@example.com>\r\n",
    );
    let mut client = open_with(server.ports[0], &first);
    client.read_greeting(220);
    client.expect(250);
    client.expect_enhanced(220, "2.0.0");
    let mut tls = TlsClient::after_starttls(client, pair.client_config());
    tls.expect_silence(std::time::Duration::from_millis(300));
    tls.cmd("EHLO relay.test", 250);
    tls.send(b"DATA\r\n");
    tls.expect_enhanced(503, "5.5.1");
    tls.quit();
    server.expect_messages(0);
}
