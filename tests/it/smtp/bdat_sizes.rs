//! BDAT chunk sizes at the edges over a real socket (issue 19, item 1): a size
//! the server can neither take nor skip (over `max_message_size`, or over 64
//! bits) is refused with 552 and the connection closes, so the octets declared
//! as chunk data — here a hidden `RCPT`/`DATA`/message — are never run as
//! commands and nothing is stored.

use net_receiver::Config;

use crate::support::common::{Client, Reply, TestServer, config, contains};

/// What the client hides in the octets it declares as chunk data.
const HIDDEN: &[u8] = b"RCPT TO:<victim@x>\r\nDATA\r\nSubject: hidden\r\n\r\nsmuggled\r\n.\r\n";

/// Opens a transaction, sends `BDAT <size> LAST`, the hidden commands and QUIT
/// in one write; returns every reply after the RCPT's 250 until the server
/// closes the connection.
fn send_bdat(server: &TestServer, size: &str) -> Vec<Reply> {
    let mut client = Client::ehlo(server.port);
    client.cmd("MAIL FROM:<sender@x.y>", 250);
    client.cmd("RCPT TO:<rcpt@x.y>", 250);
    let mut input = format!("BDAT {size} LAST\r\n").into_bytes();
    input.extend_from_slice(HIDDEN);
    input.extend_from_slice(b"QUIT\r\n");
    client.send(&input);
    let mut replies = Vec::new();
    for _ in 0..20 {
        match client.try_reply() {
            Some(reply) => replies.push(reply),
            None => return replies,
        }
    }
    panic!("no end after {replies:?}");
}

#[test]
fn sizes_that_cannot_be_skipped_get_552_and_close_with_nothing_stored() {
    let server = TestServer::start(config());
    for size in [
        "9223372036854775808",                      // 2^63
        "18446744073709551615",                     // 2^64 - 1
        "18446744073709551616",                     // 2^64
        "1234567890123456789012345678901234567890", // 40 digits
    ] {
        let replies = send_bdat(&server, size);
        let codes: Vec<u16> = replies.iter().map(|r| r.code).collect();
        assert_eq!(codes, [552, 421], "BDAT {size} LAST: {replies:?}");
        assert!(replies[0].text().starts_with("5.3.4 "), "{replies:?}");
        server.expect_messages(0);
    }
}

#[test]
fn one_chunk_over_max_message_size_closes_and_one_at_it_is_stored() {
    let server = TestServer::start(Config {
        max_message_size: 100,
        ..config()
    });
    let replies = send_bdat(&server, "101");
    let codes: Vec<u16> = replies.iter().map(|r| r.code).collect();
    assert_eq!(codes, [552, 421], "{replies:?}");
    server.expect_messages(0);
    // HIDDEN is under 100 octets: taken as the message, the QUIT runs.
    let replies = send_bdat(&server, &HIDDEN.len().to_string());
    let codes: Vec<u16> = replies.iter().map(|r| r.code).collect();
    assert_eq!(codes, [250, 221], "{replies:?}");
    let files = server.expect_messages(1);
    assert!(contains(&files[0], b"smuggled"));
}

#[test]
fn a_zero_size_chunk_declares_nothing_and_the_lines_after_it_are_commands() {
    // BDAT 0 LAST ends the message at once; what follows is read as commands
    // (as the client declared), none of which is accepted outside a transaction.
    let server = TestServer::start(config());
    let replies = send_bdat(&server, "0");
    let codes: Vec<u16> = replies.iter().map(|r| r.code).collect();
    assert_eq!(
        codes,
        [250, 503, 503, 500, 500, 500, 500, 221],
        "{replies:?}"
    );
    let files = server.expect_messages(1);
    assert!(!contains(&files[0], b"smuggled"));
}
