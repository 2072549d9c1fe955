//! Limits and protocol errors, each with its exact reply code: message size,
//! line lengths, recipients, the error budget, sequence, syntax, parameters,
//! SMTPUTF8 and the informational commands.

use net_receiver::Config;

use crate::support::common::{Client, TestServer, config, split_stored};

fn small() -> Config {
    Config {
        max_message_size: 1000,
        ..config()
    }
}

#[test]
fn size_parameter_above_the_limit_is_refused_at_mail() {
    let server = TestServer::start(small());
    let mut client = Client::connect(server.port);
    let ehlo = client.cmd("EHLO client.test", 250);
    assert!(ehlo.lines.iter().any(|l| l == "SIZE 1000"), "{ehlo:?}");
    client.cmd("MAIL FROM:<a@b.c> SIZE=5000", 552);
    // Nothing was opened: RCPT is out of sequence.
    let reply = client.cmd("RCPT TO:<d@e.f>", 503);
    assert!(reply.text().starts_with("5.5.1 "), "{reply:?}");
    // At the limit it is fine.
    client.cmd("MAIL FROM:<a@b.c> SIZE=1000", 250);
    client.quit();
}

#[test]
fn size_parameter_reply_is_552_5_3_4() {
    let server = TestServer::start(small());
    let mut client = Client::ehlo(server.port);
    client.send(b"MAIL FROM:<a@b.c> SIZE=5000\r\n");
    client.expect_enhanced(552, "5.3.4");
    client.quit();
}

#[test]
fn oversized_message_is_read_to_its_end_then_refused() {
    let server = TestServer::start(small());
    let mut client = Client::ehlo(server.port);
    client.start_data("a@b.c", "d@e.f");
    let line = format!("{}\r\n", "x".repeat(98));
    let message = line.repeat(50);
    assert_eq!(message.len(), 5000);
    client.send(message.as_bytes());
    // Something that would be a command if the server stopped reading early.
    client.send(b"NOOP\r\n.\r\n");
    client.expect_enhanced(552, "5.3.4");
    client.send(b"NOOP\r\n");
    client.expect_enhanced(250, "2.0.0");
    // The transaction is over, and a message that fits still goes through.
    client.start_data("a@b.c", "d@e.f");
    client.send(b"small\r\n.\r\n");
    client.expect(250);
    client.quit();
    let files = server.expect_messages(1);
    assert_eq!(split_stored(&files[0]).body, b"small\r\n");
}

#[test]
fn long_command_line_is_refused_and_the_connection_stays_usable() {
    let server = TestServer::start(config());
    let mut client = Client::ehlo(server.port);
    let long = format!("NOOP {}\r\n", "a".repeat(600 - 7));
    assert_eq!(long.len(), 600);
    client.send(long.as_bytes());
    client.expect_enhanced(500, "5.5.6");
    client.cmd("NOOP", 250);
    // Exactly 512 octets with CRLF is allowed.
    let max = format!("NOOP {}\r\n", "a".repeat(512 - 7));
    client.send(max.as_bytes());
    client.expect(250);
    client.quit();
}

#[test]
fn endless_line_is_skipped_to_its_end() {
    let server = TestServer::start(config());
    let mut client = Client::ehlo(server.port);
    client.send(&vec![b'A'; 200 * 1024]);
    client.send(b"\r\nNOOP\r\n");
    client.expect_enhanced(500, "5.5.6");
    client.expect_enhanced(250, "2.0.0");
    client.quit();
}

#[test]
fn long_text_line_refuses_the_message() {
    let server = TestServer::start(config());
    let mut client = Client::ehlo(server.port);
    client.start_data("a@b.c", "d@e.f");
    client.send(format!("{}\r\n.\r\n", "y".repeat(1200)).as_bytes());
    client.expect_enhanced(500, "5.5.6");
    client.cmd("NOOP", 250);
    client.quit();
    server.expect_messages(0);
}

#[test]
fn fourth_recipient_over_max_recipients_gets_452() {
    let server = TestServer::start(Config {
        max_recipients: 3,
        ..config()
    });
    let mut client = Client::ehlo(server.port);
    client.cmd("MAIL FROM:<a@b.c>", 250);
    for i in 0..3 {
        client.cmd(&format!("RCPT TO:<r{i}@b.c>"), 250);
    }
    client.send(b"RCPT TO:<r3@b.c>\r\n");
    client.expect_enhanced(452, "4.5.3");
    // The three accepted ones still get the mail.
    client.cmd("DATA", 354);
    client.send(b"three\r\n.\r\n");
    client.expect(250);
    client.quit();
    server.expect_messages(1);
}

#[test]
fn too_many_errors_close_the_connection() {
    let server = TestServer::start(config());
    let mut client = Client::ehlo(server.port);
    client.send(&b"BOGUS\r\n".repeat(10));
    for _ in 0..10 {
        client.expect_enhanced(500, "5.5.2");
    }
    client.expect_enhanced(421, "4.7.0");
    client.expect_eof();
}

#[test]
fn nine_errors_are_tolerated() {
    let server = TestServer::start(config());
    let mut client = Client::ehlo(server.port);
    client.send(&b"BOGUS\r\n".repeat(9));
    for _ in 0..9 {
        client.expect(500);
    }
    client.cmd("NOOP", 250);
    client.quit();
}

#[test]
fn out_of_sequence_commands_get_503() {
    let server = TestServer::start(config());
    let mut client = Client::connect(server.port);
    // MAIL before EHLO.
    client.send(b"MAIL FROM:<a@b.c>\r\n");
    client.expect_enhanced(503, "5.5.1");
    client.cmd("EHLO client.test", 250);
    for command in ["RCPT TO:<a@b.c>", "DATA"] {
        client.send(format!("{command}\r\n").as_bytes());
        client.expect_enhanced(503, "5.5.1");
    }
    client.cmd("MAIL FROM:<a@b.c>", 250);
    // DATA without an accepted recipient, and a nested MAIL.
    client.send(b"DATA\r\n");
    client.expect_enhanced(503, "5.5.1");
    client.send(b"MAIL FROM:<a@b.c>\r\n");
    client.expect_enhanced(503, "5.5.1");
    client.quit();
}

#[test]
fn unknown_command_gets_500_5_5_2() {
    let server = TestServer::start(config());
    let mut client = Client::ehlo(server.port);
    client.send(b"FROB nicate\r\n");
    client.expect_enhanced(500, "5.5.2");
    client.cmd("NOOP", 250);
    client.quit();
}

#[test]
fn unknown_rcpt_parameter_gets_555() {
    let server = TestServer::start(config());
    let mut client = Client::ehlo(server.port);
    client.cmd("MAIL FROM:<a@b.c>", 250);
    client.send(b"RCPT TO:<a@b.c> FOO=1\r\n");
    client.expect_enhanced(555, "5.5.4");
    client.send(b"MAIL FROM:<a@b.c> FOO=1\r\n");
    client.expect(503); // still inside the transaction
    client.cmd("RSET", 250);
    client.send(b"MAIL FROM:<a@b.c> FOO=1\r\n");
    client.expect_enhanced(555, "5.5.4");
    client.quit();
}

#[test]
fn vrfy_expn_help() {
    let server = TestServer::start(config());
    let mut client = Client::ehlo(server.port);
    client.send(b"VRFY postmaster\r\n");
    client.expect_enhanced(252, "2.5.0");
    client.send(b"EXPN staff\r\n");
    client.expect_enhanced(502, "5.5.1");
    let help = client.cmd("HELP", 214);
    assert!(help.text().contains("EHLO"), "{help:?}");
    client.quit();
}

#[test]
fn non_ascii_address_needs_smtputf8() {
    let server = TestServer::start(config());
    let mut client = Client::ehlo(server.port);
    client.send("MAIL FROM:<jörg@exämple.com>\r\n".as_bytes());
    client.expect_enhanced(553, "5.6.7");
    client.send("MAIL FROM:<jörg@exämple.com> SMTPUTF8\r\n".as_bytes());
    client.expect_enhanced(250, "2.1.0");
    client.send("RCPT TO:<ünïcode@exämple.com>\r\n".as_bytes());
    client.expect_enhanced(250, "2.1.5");
    client.cmd("DATA", 354);
    client.send("Subject: ü\r\n\r\nhé\r\n.\r\n".as_bytes());
    client.expect(250);
    client.quit();
    let files = server.expect_messages(1);
    let stored = split_stored(&files[0]);
    assert_eq!(stored.return_path, "Return-Path: <jörg@exämple.com>");
    assert!(
        stored.received.contains(" with UTF8SMTP id "),
        "{}",
        stored.received
    );
    assert_eq!(stored.body, "Subject: ü\r\n\r\nhé\r\n".as_bytes());
}

#[test]
fn non_ascii_recipient_without_smtputf8_gets_553() {
    let server = TestServer::start(config());
    let mut client = Client::ehlo(server.port);
    client.cmd("MAIL FROM:<a@b.c>", 250);
    client.send("RCPT TO:<ünïcode@b.c>\r\n".as_bytes());
    client.expect_enhanced(553, "5.6.7");
    client.quit();
}

#[test]
fn invalid_utf8_gets_501() {
    let server = TestServer::start(config());
    let mut client = Client::ehlo(server.port);
    client.send(b"MAIL FROM:<\xff\xfe@b.c> SMTPUTF8\r\n");
    client.expect(501);
    client.send(b"NOOP \xc3\r\n");
    client.expect(501);
    client.cmd("NOOP", 250);
    client.quit();
}

/// A message of exactly `size` octets after un-stuffing; its first line is
/// dot-stuffed on the wire (`..x`), so the wire form is one octet longer.
fn message_of(size: usize) -> (Vec<u8>, Vec<u8>) {
    let mut stored = b".x\r\n".to_vec();
    while stored.len() + 100 <= size {
        stored.extend_from_slice(format!("{}\r\n", "y".repeat(98)).as_bytes());
    }
    let rest = size - stored.len();
    assert!(rest >= 2, "cannot build {size}");
    stored.extend_from_slice(format!("{}\r\n", "z".repeat(rest - 2)).as_bytes());
    assert_eq!(stored.len(), size);
    let wire = [b".", &stored[..]].concat();
    (stored, wire)
}

#[test]
fn message_size_limit_is_exact_and_counted_after_unstuffing() {
    let server = TestServer::start(small());
    let mut client = Client::ehlo(server.port);
    let (stored, wire) = message_of(1000);
    client.start_data("a@b.c", "d@e.f");
    client.send(&wire);
    client.send(b".\r\n");
    client.expect_enhanced(250, "2.0.0");
    let (_, wire) = message_of(1001);
    client.start_data("a@b.c", "d@e.f");
    client.send(&wire);
    client.send(b".\r\n");
    client.expect_enhanced(552, "5.3.4");
    client.quit();
    let files = server.expect_messages(1);
    assert_eq!(split_stored(&files[0]).body, stored);
}

#[test]
fn bdat_size_limit_is_exact() {
    let server = TestServer::start(small());
    let mut client = Client::ehlo(server.port);
    // A single chunk over the limit closes the session: tests/it/smtp/bdat_sizes.rs.
    for (chunks, last_code) in [
        (vec![1000], 250),
        (vec![600, 400], 250),
        (vec![600, 401], 552),
    ] {
        client.cmd("MAIL FROM:<a@b.c>", 250);
        client.cmd("RCPT TO:<d@e.f>", 250);
        for (i, &len) in chunks.iter().enumerate() {
            let last = i + 1 == chunks.len();
            let head = format!("BDAT {len}{}\r\n", if last { " LAST" } else { "" });
            client.send(head.as_bytes());
            client.send(&vec![b'b'; len]);
            let code = if last { last_code } else { 250 };
            let reply = client.expect(code);
            if code == 552 {
                assert!(reply.text().starts_with("5.3.4 "), "{chunks:?}: {reply:?}");
            }
        }
        client.cmd("NOOP", 250);
    }
    client.quit();
    let mut sizes: Vec<usize> = server
        .expect_messages(2)
        .iter()
        .map(|f| split_stored(f).body.len())
        .collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [1000, 1000]);
}

#[test]
fn command_and_text_line_limits_are_exact() {
    let server = TestServer::start(config());
    let mut client = Client::ehlo(server.port);
    // 513 octets with CRLF: one too many.
    client.send(format!("NOOP {}\r\n", "a".repeat(513 - 7)).as_bytes());
    client.expect_enhanced(500, "5.5.6");
    // A text line of 1000 octets with CRLF is fine, 1001 is not.
    client.start_data("a@b.c", "d@e.f");
    client.send(format!("{}\r\n.\r\n", "t".repeat(998)).as_bytes());
    client.expect(250);
    client.start_data("a@b.c", "d@e.f");
    client.send(format!("{}\r\n.\r\n", "t".repeat(999)).as_bytes());
    client.expect_enhanced(500, "5.5.6");
    client.quit();
    let files = server.expect_messages(1);
    assert_eq!(split_stored(&files[0]).body.len(), 1000);
}

#[test]
fn helo_session_has_no_extensions() {
    let server = TestServer::start(config());
    let mut client = Client::connect(server.port);
    let reply = client.cmd("HELO old.test", 250);
    assert_eq!(reply.lines.len(), 1, "{reply:?}");
    client.send(b"MAIL FROM:<a@b.c> SIZE=10\r\n");
    client.expect_enhanced(555, "5.5.4");
    client.start_data("a@b.c", "d@e.f");
    client.send(b"old style\r\n.\r\n");
    client.expect(250);
    client.quit();
    let files = server.expect_messages(1);
    let stored = split_stored(&files[0]);
    assert!(
        stored.received.starts_with("Received: from old.test "),
        "{}",
        stored.received
    );
    assert!(
        stored.received.contains(" with SMTP id "),
        "{}",
        stored.received
    );
}

#[test]
fn second_ehlo_clears_the_transaction_not_the_session() {
    let server = TestServer::start(config());
    let mut client = Client::ehlo(server.port);
    client.cmd("MAIL FROM:<a@b.c>", 250);
    client.cmd("RCPT TO:<d@e.f>", 250);
    client.cmd("EHLO again.test", 250);
    client.send(b"DATA\r\n");
    client.expect_enhanced(503, "5.5.1");
    client.start_data("a@b.c", "d@e.f");
    client.send(b"after second EHLO\r\n.\r\n");
    client.expect(250);
    client.quit();
    server.expect_messages(1);
}

#[test]
fn starttls_and_auth_are_not_offered() {
    let server = TestServer::start(config());
    let mut client = Client::ehlo(server.port);
    client.send(b"STARTTLS\r\n");
    client.expect_enhanced(454, "4.7.0");
    client.send(b"AUTH PLAIN AGFAYg==\r\n");
    client.expect_enhanced(502, "5.5.1");
    client.cmd("NOOP", 250);
    client.quit();
}

#[test]
fn bdat_and_data_do_not_mix() {
    let server = TestServer::start(config());
    let mut client = Client::ehlo(server.port);
    client.cmd("MAIL FROM:<a@b.c>", 250);
    client.cmd("RCPT TO:<d@e.f>", 250);
    client.send(b"BDAT 3\r\nabc");
    client.expect(250);
    client.send(b"RCPT TO:<g@h.i>\r\n");
    client.expect_enhanced(503, "5.5.1");
    client.send(b"DATA\r\n");
    client.expect_enhanced(503, "5.5.1");
    client.send(b"BDAT 0 LAST\r\n");
    client.expect_enhanced(250, "2.0.0");
    client.quit();
    let files = server.expect_messages(1);
    assert_eq!(split_stored(&files[0]).body, b"abc");
}

#[test]
fn normalized_bare_ending_counts_as_two_octets() {
    use net_receiver::config::LineEndingPolicy;
    let server = TestServer::start(Config {
        bare_line_ending: LineEndingPolicy::Normalize,
        ..small()
    });
    let mut client = Client::ehlo(server.port);
    for (size, code) in [(1000, 250), (1001, 552)] {
        client.start_data("a@b.c", "d@e.f");
        // `a` + bare LF is stored as `a\r\n`: 3 octets, then one line of the rest.
        let mut wire = b"a\n".to_vec();
        wire.extend(std::iter::repeat_n(b'z', size - 5));
        wire.extend_from_slice(b"\r\n.\r\n");
        client.send(&wire);
        client.expect(code);
    }
    client.quit();
    let files = server.expect_messages(1);
    let body = split_stored(&files[0]).body;
    assert_eq!(body.len(), 1000);
    assert!(body.starts_with(b"a\r\nzzz"));
}

#[test]
fn stuffing_dot_does_not_count_toward_line_length() {
    let server = TestServer::start(config());
    let mut client = Client::ehlo(server.port);
    client.start_data("a@b.c", "d@e.f");
    // 1001 octets on the wire, 1000 once the stuffing dot is removed.
    client.send(format!(".{}\r\n.\r\n", "q".repeat(998)).as_bytes());
    client.expect(250);
    client.quit();
    let files = server.expect_messages(1);
    assert_eq!(split_stored(&files[0]).body.len(), 1000);
}
