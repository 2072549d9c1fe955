//! SMTP smuggling: only `<CRLF>.<CRLF>` ends DATA. Each variant of a fake end of
//! data is followed by a hidden second transaction; it must never be executed:
//! exactly one final reply for the message, then the 221 of our QUIT.

use net_receiver::config::LineEndingPolicy;
use net_receiver::{Config, Maildir};

use crate::support::common::{Client, TestServer, config, contains, split_stored};

/// The hidden transaction that follows each fake end of data.
const HIDDEN: &[u8] = b"MAIL FROM:<evil@x.y>\r\nRCPT TO:<victim@x.y>\r\nDATA\r\nsmuggled\r\n";

/// The fake ends of data, and what the message text between `hello` and the hidden
/// transaction becomes under `bare_line_ending = normalize` (bare CR or LF → CRLF,
/// a dot at the start of a line removed as stuffing).
const SEQUENCES: &[(&str, &[u8], &[u8])] = &[
    ("LF . LF", b"\n.\n", b"\r\n\r\n"),
    ("LF . CRLF", b"\n.\r\n", b"\r\n\r\n"),
    ("CR . LF", b"\r.\n", b"\r\n\r\n"),
    ("CR . CRLF", b"\r.\r\n", b"\r\n\r\n"),
    ("LF . CR", b"\n.\r", b"\r\n\r\n"),
    ("CR . CR", b"\r.\r", b"\r\n\r\n"),
    ("CRLF . LF", b"\r\n.\n", b"\r\n\r\n"),
    ("CRLF . CR X", b"\r\n.\rX", b"\r\n\r\nX"),
    ("CRLF NUL . CRLF", b"\r\n\0.\r\n", b"\r\n\0.\r\n"),
    ("CRLF . NUL CRLF", b"\r\n.\0\r\n", b"\r\n\0\r\n"),
    ("CRLF . CR CRLF", b"\r\n.\r\r\n", b"\r\n\r\n\r\n"),
];

fn has_bare_line_ending(bytes: &[u8]) -> bool {
    bytes.iter().enumerate().any(|(i, &b)| {
        (b == b'\r' && bytes.get(i + 1) != Some(&b'\n'))
            || (b == b'\n' && (i == 0 || bytes[i - 1] != b'\r'))
    })
}

/// Sends the message with `seq` in it, pipelined with QUIT; returns the reply to
/// the message (after checking that the next reply is QUIT's 221 and then EOF).
fn smuggle(server: &TestServer, seq: &[u8]) -> crate::support::common::Reply {
    let mut client = Client::ehlo(server.port);
    client.start_data("sender@x.y", "rcpt@x.y");
    let mut message = b"hello".to_vec();
    message.extend_from_slice(seq);
    message.extend_from_slice(HIDDEN);
    message.extend_from_slice(b".\r\nQUIT\r\n");
    client.send(&message);
    let reply = client.reply();
    let quit = client.reply();
    assert_eq!(
        quit.code,
        221,
        "after the message of {:?} ({reply:?}) the next reply must be QUIT's 221, got {quit:?}",
        String::from_utf8_lossy(seq)
    );
    client.expect_eof();
    reply
}

/// The failure for `name` unless `body` is `hello`, then `middle`, then
/// [`HIDDEN`].
fn body_mismatch(name: &str, body: &[u8], middle: &[u8]) -> Option<String> {
    let mut want = b"hello".to_vec();
    want.extend_from_slice(middle);
    want.extend_from_slice(HIDDEN);
    (body != want).then(|| {
        format!(
            "{name}: stored {:?}, expected {:?}",
            String::from_utf8_lossy(body),
            String::from_utf8_lossy(&want)
        )
    })
}

fn with_policy(policy: LineEndingPolicy) -> Config {
    Config {
        bare_line_ending: policy,
        ..config()
    }
}

#[test]
fn reject_policy_refuses_bare_endings_and_keeps_nul_as_content() {
    let bare = SEQUENCES
        .iter()
        .filter(|(_, seq, _)| has_bare_line_ending(seq))
        .count();
    assert_eq!((bare, SEQUENCES.len()), (9, 11), "the table itself");
    let mut failures = Vec::new();
    for &(name, seq, _) in SEQUENCES {
        let server = TestServer::start(with_policy(LineEndingPolicy::Reject));
        let reply = smuggle(&server, seq);
        let files = server.expect_messages(if has_bare_line_ending(seq) { 0 } else { 1 });
        if has_bare_line_ending(seq) {
            if reply.code != 550 || !reply.text().starts_with("5.6.2 ") {
                failures.push(format!("{name}: expected 550 5.6.2, got {reply:?}"));
            }
        } else {
            if reply.code != 250 {
                failures.push(format!("{name}: expected 250, got {reply:?}"));
                continue;
            }
            let stored = split_stored(&files[0]);
            let middle: &[u8] = match seq {
                b"\r\n.\0\r\n" => b"\r\n\0\r\n", // the leading dot is stuffing
                other => other,
            };
            failures.extend(body_mismatch(name, stored.body, middle));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn normalize_policy_keeps_the_hidden_commands_inside_one_message() {
    let mut failures = Vec::new();
    for &(name, seq, normalized) in SEQUENCES {
        let server = TestServer::start(with_policy(LineEndingPolicy::Normalize));
        let reply = smuggle(&server, seq);
        if reply.code != 250 {
            failures.push(format!("{name}: expected 250, got {reply:?}"));
            server.expect_messages(0);
            continue;
        }
        let files = server.expect_messages(1);
        let stored = split_stored(&files[0]);
        if !contains(stored.body, b"MAIL FROM:<evil@x.y>") || !contains(stored.body, b"smuggled") {
            failures.push(format!(
                "{name}: hidden commands missing from {:?}",
                String::from_utf8_lossy(stored.body)
            ));
        }
        if has_bare_line_ending(stored.body) {
            failures.push(format!(
                "{name}: bare line ending stored {:?}",
                String::from_utf8_lossy(stored.body)
            ));
        }
        failures.extend(body_mismatch(name, stored.body, normalized));
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn fake_end_split_across_writes_is_still_content() {
    // The same rule when the bytes trickle in one at a time.
    let server = TestServer::start(config());
    let mut client = Client::ehlo(server.port);
    client.start_data("sender@x.y", "rcpt@x.y");
    for byte in b"line\r\n\0.\r\nMAIL FROM:<evil@x.y>\r\n.\r\n" {
        client.send(&[*byte]);
    }
    client.expect_enhanced(250, "2.0.0");
    client.send(b"NOOP\r\n");
    client.expect(250);
    client.quit();
    let files = server.expect_messages(1);
    assert_eq!(
        split_stored(&files[0]).body,
        b"line\r\n\0.\r\nMAIL FROM:<evil@x.y>\r\n"
    );
}

#[test]
fn maildir_of_a_refused_smuggling_attempt_stays_clean() {
    // A refused message leaves nothing behind even across several attempts on
    // one connection, and the connection stays usable for a clean mail. (With the
    // default lockout, the third refused message would lock the client out: see
    // the lockout tests.)
    let server = TestServer::start(Config {
        max_failed_msgs_per_period: 10,
        ..config()
    });
    let mut client = Client::ehlo(server.port);
    for _ in 0..3 {
        client.start_data("sender@x.y", "rcpt@x.y");
        client.send(b"hello\n.\nMAIL FROM:<evil@x.y>\r\n.\r\n");
        client.expect_enhanced(550, "5.6.2");
    }
    client.start_data("sender@x.y", "rcpt@x.y");
    client.send(b"clean\r\n.\r\n");
    client.expect_enhanced(250, "2.0.0");
    client.quit();
    let files = server.expect_messages(1);
    assert_eq!(split_stored(&files[0]).body, b"clean\r\n");
    // And the Maildir still opens as a Maildir.
    Maildir::open(server.dir()).expect("maildir still valid");
}
