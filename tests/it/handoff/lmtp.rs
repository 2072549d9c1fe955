//! The LMTP target against a real Dovecot (`dovecot-lmtpd`): messages land in
//! Dovecot's own Maildirs byte-exact (dot-stuffing, 8-bit octets), over TCP and
//! over the unix socket; an unknown user and a full quota are refused per
//! recipient and recorded in the mail structure; Dovecot down is a 451.

use std::sync::{Arc, Mutex};

use net_receiver::delivery::{Lmtp, LmtpAddress};
use net_receiver::{Context, DeliveryError, Mail, Receiver, defaults};

use crate::support::common::{Client, SERVER_NAME, TestServer, config};
use crate::support::dovecot::Dovecot;

/// Delivers like the default and keeps every mail structure, delivered or not.
#[derive(Clone, Default)]
struct Keep(Arc<Mutex<Vec<Mail>>>);

impl Receiver for Keep {
    async fn received(&self, cx: &mut Context<'_>) -> Result<(), DeliveryError> {
        let result = defaults::received(cx).await;
        self.0.lock().unwrap().push(cx.mail.clone());
        result
    }
}

fn start(address: LmtpAddress) -> (TestServer, Keep) {
    let keep = Keep::default();
    let lmtp = Lmtp::new(address, SERVER_NAME);
    let server = TestServer::start_custom(
        config(),
        keep.clone(),
        &[net_receiver::config::ListenerSpec {
            addr: "127.0.0.1:0".parse().unwrap(),
            mode: net_receiver::config::ListenerMode::Smtp,
            proxy_protocol: false,
        }],
        |server| server.with_delivery(lmtp),
    );
    (server, keep)
}

/// Sends one message (`body` after a Subject header) to `recipients`; the
/// final reply's code.
fn send(port: u16, recipients: &[&str], body: &[u8]) -> (u16, String) {
    let mut client = Client::ehlo(port);
    client.cmd("MAIL FROM:<sender@example.org>", 250);
    for rcpt in recipients {
        client.cmd(&format!("RCPT TO:<{rcpt}>"), 250);
    }
    client.cmd("DATA", 354);
    // Dot-stuffed on the wire; the message itself has lines starting with a dot.
    let mut wire = b"Subject: lmtp\r\n\r\n".to_vec();
    for line in body.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b".") {
            wire.push(b'.');
        }
        wire.extend_from_slice(line);
    }
    wire.extend_from_slice(b".\r\n");
    client.send(&wire);
    let reply = client.reply();
    client.quit();
    (reply.code, reply.text().to_owned())
}

const BODY: &[u8] =
    b"first line\r\n.a line with a dot\r\n..two dots\r\n.\r\n8-bit: \xc3\xa9t\xc3\xa9\r\n";

/// Dovecot's file is its own headers, then exactly what we delivered: our
/// Received header and the message as the client meant it.
fn assert_stored(stored: &[u8], body: &[u8]) {
    let message = [&b"Subject: lmtp\r\n\r\n"[..], body].concat();
    assert!(
        stored.ends_with(&message),
        "{}",
        String::from_utf8_lossy(stored)
    );
    let text = String::from_utf8_lossy(stored);
    assert!(
        text.starts_with("Return-Path: <sender@example.org>\r\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!("by {SERVER_NAME} (net-receiver)")),
        "{text}"
    );
}

#[test]
fn delivers_into_dovecot_byte_exact_over_tcp_and_unix_socket() {
    let dovecot = Dovecot::start();
    let (server, keep) = start(LmtpAddress::Tcp(format!("127.0.0.1:{}", dovecot.port)));
    let (code, text) = send(server.port, &["alice@example.com", "bob@example.com"], BODY);
    assert_eq!(code, 250, "{text}");
    for user in ["alice", "bob"] {
        let stored = dovecot.messages(user);
        assert_eq!(stored.len(), 1, "{user}: {}", dovecot.log());
        assert_stored(&stored[0], BODY);
    }
    let mail = &keep.0.lock().unwrap()[0];
    assert_eq!(mail.delivered, Some(true));
    assert!(
        mail.rcptto
            .iter()
            .all(|r| r.delivered == Some(true) && r.delivery_error.is_none())
    );
    assert_eq!(server.messages_count(), 0, "nothing went to the Maildir");

    let (server, _) = start(LmtpAddress::Unix(dovecot.socket()));
    let (code, text) = send(server.port, &["alice@example.com"], b"over the socket\r\n");
    assert_eq!(code, 250, "{text}");
    let stored = dovecot.messages("alice");
    assert_eq!(stored.len(), 2);
    assert!(
        stored
            .iter()
            .any(|m| m.ends_with(b"\r\n\r\nover the socket\r\n"))
    );
}

#[test]
fn refusals_are_per_recipient_and_recorded() {
    let dovecot = Dovecot::start();
    let (server, keep) = start(LmtpAddress::Tcp(format!("127.0.0.1:{}", dovecot.port)));
    // Fill the 1 KiB quota of `full` (an empty mailbox takes any first message).
    let big = [&[b'x'; 78][..], b"\r\n"].concat().repeat(30);
    assert_eq!(send(server.port, &["full@example.com"], &big).0, 250);

    let (code, text) = send(
        server.port,
        &[
            "alice@example.com",
            "nobody@example.com",
            "full@example.com",
        ],
        b"mixed\r\n",
    );
    // Without a spool, a 250 would lose the refused copies: the whole message
    // is refused (see the delivery module doc), alice's copy is stored anyway.
    assert_eq!(code, 554, "{text}");
    // The sender's bounce says who did not get it and that alice did.
    assert!(
        text.contains("Not delivered to <nobody@example.com>, <full@example.com>: ")
            && text.contains("delivered to 1 other recipient"),
        "{text}"
    );
    assert_eq!(dovecot.messages("alice").len(), 1);
    let mails = keep.0.lock().unwrap();
    let mail = mails.last().unwrap();
    assert_eq!(mail.delivered, Some(false));
    let outcome: Vec<(Option<bool>, String)> = mail
        .rcptto
        .iter()
        .map(|r| (r.delivered, r.delivery_error.clone().unwrap_or_default()))
        .collect();
    assert_eq!(outcome[0].0, Some(true), "{outcome:?}");
    assert!(
        outcome[1].0 == Some(false) && outcome[1].1.contains("550"),
        "{outcome:?}"
    );
    assert!(
        outcome[2].0 == Some(false) && outcome[2].1.contains("5.2.2"),
        "quota refusal at RCPT: {outcome:?}"
    );
}

#[test]
fn lmtp_server_down_is_a_temporary_failure() {
    // A loopback port nobody listens on (a killed Dovecot's children can keep
    // its socket open for a moment, which would make this a closed connection).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (server, keep) = start(LmtpAddress::Tcp(format!("127.0.0.1:{port}")));
    let (code, text) = send(server.port, &["alice@example.com"], b"nobody home\r\n");
    assert_eq!(code, 451, "{text}");
    let mails = keep.0.lock().unwrap();
    let error = mails[0].rcptto[0]
        .delivery_error
        .clone()
        .unwrap_or_default();
    assert!(error.contains("cannot connect to LMTP"), "{error}");
}

/// Deliveries one after the other share one LMTP connection (each after the
/// first begins with RSET; Dovecot's log names each delivery's session, and
/// they are one);
/// when Dovecot's worker holding it dies, the next delivery notices the dead
/// connection before anything was taken, opens a new one and is stored once.
#[test]
fn deliveries_share_a_kept_connection_and_a_dead_one_is_replaced() {
    let dovecot = Dovecot::start();
    let (server, _) = start(LmtpAddress::Tcp(format!("127.0.0.1:{}", dovecot.port)));
    let saved = |log: &str| log.matches("saved mail to INBOX").count();
    let bodies: Vec<Vec<u8>> = (0..6)
        .map(|n| format!("message {n}\r\n").into_bytes())
        .collect();
    for body in &bodies[..3] {
        assert_eq!(send(server.port, &["alice@example.com"], body).0, 250);
    }
    let log = wait_for_log(&dovecot, |log| saved(log) >= 3);
    assert_eq!(lmtp_sessions(&log), 1, "{log}");

    assert!(dovecot.kill_lmtp_workers() >= 1, "{log}");
    for body in &bodies[3..] {
        let (code, text) = send(server.port, &["alice@example.com"], body);
        assert_eq!(code, 250, "{text}: {}", dovecot.log());
    }
    let log = wait_for_log(&dovecot, |log| saved(log) >= 6);
    assert_eq!(lmtp_sessions(&log), 2, "{log}");
    let stored = dovecot.messages("alice");
    assert_eq!(stored.len(), bodies.len(), "{log}");
    for body in &bodies {
        let ending = [&b"\r\n\r\n"[..], body].concat();
        let copies = stored.iter().filter(|m| m.ends_with(&ending)).count();
        assert_eq!(copies, 1, "{}", String::from_utf8_lossy(body));
    }
}

/// How many LMTP connections stored mail, by Dovecot's log: each saved
/// message's line names its session, `lmtp(alice)<pid><SESSION:T2>` for the
/// second transaction of a connection.
fn lmtp_sessions(log: &str) -> usize {
    let sessions: std::collections::HashSet<&str> = log
        .lines()
        .filter(|line| line.contains("saved mail to INBOX"))
        .filter_map(|line| line.split('<').nth(2)?.split(['>', ':']).next())
        .collect();
    sessions.len()
}

/// Dovecot's log once `done` holds for it (its log process writes a moment
/// later), waiting at most 10 s.
fn wait_for_log(dovecot: &Dovecot, done: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let log = dovecot.log();
        if done(&log) || std::time::Instant::now() > deadline {
            return log;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A batch (what the spool's delivery thread hands over) goes over at most
/// `IDLE_KEPT` connections at once, each carrying its share of the messages,
/// and every message is stored once with its own outcome.
#[test]
fn a_batch_goes_over_a_few_kept_connections() {
    use net_receiver::Deliver as _;
    use net_receiver::mail::{Address, Data, MailFrom, RcptTo};

    let dovecot = Dovecot::start();
    let lmtp = Lmtp::new(
        LmtpAddress::Tcp(format!("127.0.0.1:{}", dovecot.port)),
        SERVER_NAME,
    );
    let recipient = |url: &str| RcptTo {
        address: Address {
            accepted: true,
            url: url.to_owned(),
            ..Address::default()
        },
        ..RcptTo::default()
    };
    let mails: Vec<Mail> = (0..12)
        .map(|n| Mail {
            mailfrom: Some(MailFrom {
                address: Address {
                    accepted: true,
                    url: "sender@example.org".to_owned(),
                    ..Address::default()
                },
                ..MailFrom::default()
            }),
            // Every third one also to an unknown user: refused for it alone.
            rcptto: if n % 3 == 0 {
                vec![
                    recipient("alice@example.com"),
                    recipient("nobody@example.com"),
                ]
            } else {
                vec![recipient("alice@example.com")]
            },
            data: Some(Data::from_message(
                format!("Subject: batch\r\n\r\nbatch message {n}\r\n").into_bytes(),
                String::new(),
            )),
            ..Mail::default()
        })
        .collect();
    let batch: Vec<&Mail> = mails.iter().collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let reports = runtime.block_on(lmtp.deliver_batch(&batch));
    assert_eq!(reports.len(), mails.len());
    for (n, report) in reports.iter().enumerate() {
        let outcomes: Vec<bool> = report.outcomes.iter().map(|o| o.result.is_ok()).collect();
        let want = if n % 3 == 0 {
            vec![true, false]
        } else {
            vec![true]
        };
        assert_eq!(outcomes, want, "message {n}: {:?}", report.outcomes);
    }
    let saved = |log: &str| log.matches("saved mail to INBOX").count();
    let log = wait_for_log(&dovecot, |log| saved(log) >= mails.len());
    assert_eq!(
        lmtp_sessions(&log),
        net_receiver::delivery::lmtp::IDLE_KEPT,
        "{log}"
    );
    let stored = dovecot.messages("alice");
    assert_eq!(stored.len(), mails.len(), "{log}");
    for n in 0..mails.len() {
        let ending = format!("\r\n\r\nbatch message {n}\r\n");
        let copies = stored
            .iter()
            .filter(|m| m.ends_with(ending.as_bytes()))
            .count();
        assert_eq!(copies, 1, "message {n}");
    }
}
