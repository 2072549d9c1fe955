//! Real clients sending real mail: lettre, Python's smtplib, swaks and a raw
//! socket. Each mail must land in `new/` byte-exact after our `Return-Path:` and
//! `Received:` headers.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::{Message, SmtpTransport, Transport as _};

use crate::support::common::{
    Client, SERVER_NAME, TestServer, config, contains, python, received_id, run_bounded,
    split_stored, swaks_path,
};

fn lettre_transport(port: u16) -> SmtpTransport {
    // `builder_dangerous` is plain SMTP (`Tls::None`) unless `.tls()` says otherwise.
    SmtpTransport::builder_dangerous("127.0.0.1")
        .port(port)
        .timeout(Some(Duration::from_secs(10)))
        .build()
}

#[test]
fn lettre_plain_send_is_stored_byte_exact() {
    let server = TestServer::start(config());
    let email = Message::builder()
        .from("Alice <alice@example.com>".parse().unwrap())
        .to("bob@example.org".parse().unwrap())
        .subject("integration")
        .header(ContentType::TEXT_PLAIN)
        .body("Hello Bob,\r\nthis is line two.\r\n".to_owned())
        .unwrap();
    let sent = email.formatted();
    let response = lettre_transport(server.port).send(&email).unwrap();
    assert_eq!(u16::from(response.code()), 250, "{response:?}");
    let text: Vec<&str> = response.message().collect();
    assert!(text[0].starts_with("2.0.0 OK id="), "{text:?}");

    let files = server.expect_messages(1);
    let stored = split_stored(&files[0]);
    assert_eq!(stored.return_path, "Return-Path: <alice@example.com>");
    assert!(
        stored.received.contains("[127.0.0.1]"),
        "{}",
        stored.received
    );
    assert!(
        stored
            .received
            .contains(&format!("by {SERVER_NAME} (net-receiver) with ESMTP id ")),
        "{}",
        stored.received
    );
    assert!(
        stored.received.contains("for <bob@example.org>;"),
        "{}",
        stored.received
    );
    let id = received_id(&stored.received);
    assert_eq!(text[0], format!("2.0.0 OK id={id}"));
    // lettre always ends the data with `\r\n.\r\n`, even after a message that
    // already ends in CRLF, so one empty line follows the message on the wire.
    assert!(sent.ends_with(b"\r\n"));
    assert_eq!(
        stored.body,
        [&sent[..], b"\r\n"].concat(),
        "stored {:?}",
        String::from_utf8_lossy(stored.body)
    );
}

const SMTPLIB_8BIT: &str = r#"
import smtplib, sys
port = int(sys.argv[1])
msg = bytes.fromhex(sys.argv[2])
with smtplib.SMTP("127.0.0.1", port, local_hostname="py.test", timeout=10) as s:
    s.ehlo("py.test")
    assert s.has_extn("8bitmime")
    refused = s.sendmail("eight@example.com", ["bit@example.com"], msg,
                         mail_options=["BODY=8BITMIME"])
    assert refused == {}, refused
"#;

#[test]
fn smtplib_8bit_body_is_byte_exact() {
    let server = TestServer::start(config());
    let mut msg = b"From: eight@example.com\r\nTo: bit@example.com\r\nSubject: 8bit\r\n\
                    MIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\n\
                    Content-Transfer-Encoding: 8bit\r\n\r\n"
        .to_vec();
    msg.extend(0x80u8..=0xff);
    msg.extend_from_slice(b"\r\nsecond line \xc3\xa9\xe2\x82\xac\xff\x80\r\n");
    let hex: String = msg.iter().map(|b| format!("{b:02x}")).collect();
    python(SMTPLIB_8BIT, &[&server.port.to_string(), &hex]);

    let files = server.expect_messages(1);
    let stored = split_stored(&files[0]);
    assert_eq!(stored.return_path, "Return-Path: <eight@example.com>");
    assert_eq!(stored.body, &msg[..]);
}

const SMTPLIB_SEND: &str = r#"
import smtplib, sys
port = int(sys.argv[1])
count = int(sys.argv[2])
msg = bytes.fromhex(sys.argv[3])
with smtplib.SMTP("127.0.0.1", port, local_hostname="py.test", timeout=10) as s:
    s.ehlo("py.test")
    for i in range(count):
        code, resp = s.mail("sender%d@example.com" % i)
        assert code == 250, (code, resp)
        code, resp = s.rcpt("rcpt%d@example.com" % i)
        assert code == 250, (code, resp)
        code, resp = s.data(msg)
        assert code == 250, (code, resp)
        print(resp.decode())
"#;

fn smtplib_send(port: u16, count: usize, msg: &[u8]) -> Vec<String> {
    let hex: String = msg.iter().map(|b| format!("{b:02x}")).collect();
    let out = python(SMTPLIB_SEND, &[&port.to_string(), &count.to_string(), &hex]);
    out.lines().map(str::to_owned).collect()
}

#[test]
fn smtplib_dot_stuffed_lines_arrive_unstuffed() {
    let server = TestServer::start(config());
    let msg = b"Subject: dots\r\n\r\n.\r\n..\r\n...\r\n.leading dot\r\n..two dots\r\n \
                .space first\r\nend.\r\n.\r\n"
        .to_vec();
    let replies = smtplib_send(server.port, 1, &msg);
    assert_eq!(replies.len(), 1, "{replies:?}");
    let files = server.expect_messages(1);
    assert_eq!(split_stored(&files[0]).body, &msg[..]);
}

#[test]
fn raw_dot_stuffing_is_removed() {
    let server = TestServer::start(config());
    let mut client = Client::ehlo(server.port);
    client.start_data("a@example.com", "b@example.com");
    client.send(b"Subject: raw\r\n\r\n..\r\n...\r\n..x\r\n.y\r\nz.\r\n.\r\n");
    client.expect_enhanced(250, "2.0.0");
    client.quit();
    let files = server.expect_messages(1);
    assert_eq!(
        split_stored(&files[0]).body,
        b"Subject: raw\r\n\r\n.\r\n..\r\n.x\r\ny\r\nz.\r\n"
    );
}

#[test]
fn smtplib_three_transactions_on_one_connection() {
    let server = TestServer::start(config());
    let msg = b"Subject: many\r\n\r\nsame body\r\n";
    let replies = smtplib_send(server.port, 3, msg);
    assert_eq!(replies.len(), 3, "{replies:?}");
    let reply_ids: BTreeSet<String> = replies
        .iter()
        .map(|r| {
            r.strip_prefix("2.0.0 OK id=")
                .unwrap_or_else(|| panic!("{r:?}"))
                .to_owned()
        })
        .collect();
    assert_eq!(reply_ids.len(), 3, "ids not distinct: {replies:?}");

    let files = server.expect_messages(3);
    let mut file_ids = BTreeSet::new();
    let mut senders = BTreeSet::new();
    for file in &files {
        let stored = split_stored(file);
        assert_eq!(stored.body, msg);
        file_ids.insert(received_id(&stored.received));
        senders.insert(stored.return_path.clone());
    }
    assert_eq!(file_ids, reply_ids);
    let want: BTreeSet<String> = (0..3)
        .map(|i| format!("Return-Path: <sender{i}@example.com>"))
        .collect();
    assert_eq!(senders, want);
}

#[test]
fn swaks_send_works() {
    let swaks = swaks_path();
    let server = TestServer::start(config());
    let output = run_bounded(
        Command::new(swaks)
            .arg("--server")
            .arg(format!("127.0.0.1:{}", server.port))
            .args(["--from", "a@example.com", "--to", "b@example.com"])
            .args(["--helo", "swaks.test", "--timeout", "10"])
            .args(["--body", "Body from swaks, line one"])
            .arg("--hide-all"),
        Duration::from_secs(20),
    );
    assert!(
        output.status.success(),
        "swaks failed ({}): {} {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let files = server.expect_messages(1);
    let stored = split_stored(&files[0]);
    assert_eq!(stored.return_path, "Return-Path: <a@example.com>");
    assert!(
        stored.received.starts_with("Received: from swaks.test "),
        "{}",
        stored.received
    );
    // swaks adds empty lines after the body (how many depends on its version).
    assert!(
        contains(stored.body, b"\r\n\r\nBody from swaks, line one\r\n"),
        "{:?}",
        String::from_utf8_lossy(stored.body)
    );
    assert!(stored.body.ends_with(b"\r\n"));
    assert!(contains(stored.body, b"\r\nTo: b@example.com\r\n"));
    assert!(contains(stored.body, b"\r\nX-Mailer: swaks"));
}

#[test]
fn client_text_in_received_is_sanitized() {
    let server = TestServer::start(config());
    let mut client = Client::connect(server.port);
    client.cmd("EHLO x(y)\\z", 250);
    client.start_data("a@example.com", "b@example.com");
    client.send(b"hi\r\n.\r\n");
    client.expect(250);
    client.quit();
    let files = server.expect_messages(1);
    let stored = split_stored(&files[0]);
    assert!(
        stored
            .received
            .starts_with("Received: from unknown (unknown [127.0.0.1] helo=x?y??z)\r\n\tby "),
        "{}",
        stored.received
    );
}
