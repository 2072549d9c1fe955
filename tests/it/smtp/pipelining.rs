//! PIPELINING (RFC 2920) and CHUNKING/BDAT (RFC 3030) over a raw socket: replies
//! come back in order, one per command, and BDAT chunks are stored byte-exact
//! without dot-unstuffing.

use crate::support::common::{Client, SERVER_NAME, TestServer, config, split_stored};

#[test]
fn ehlo_advertises_the_extensions() {
    let server = TestServer::start(config());
    let mut client = Client::connect(server.port);
    assert_eq!(
        client.greeting.lines,
        [format!("{SERVER_NAME} ESMTP net-receiver")]
    );
    let reply = client.cmd("EHLO client.test", 250);
    assert_eq!(
        reply.lines,
        [
            &format!("{SERVER_NAME} Hello client.test"),
            "PIPELINING",
            "SIZE 26214400",
            "8BITMIME",
            "SMTPUTF8",
            "ENHANCEDSTATUSCODES",
            "CHUNKING",
            "HELP",
        ]
    );
    client.quit();
}

#[test]
fn pipelined_envelope_gets_replies_in_order() {
    let server = TestServer::start(config());
    let mut client = Client::ehlo(server.port);
    client.send(
        b"MAIL FROM:<p@example.com>\r\nRCPT TO:<one@example.com>\r\n\
          RCPT TO:<two@example.com>\r\nRCPT TO:<three@example.com>\r\nDATA\r\n",
    );
    let replies = client.replies(5);
    let codes: Vec<u16> = replies.iter().map(|r| r.code).collect();
    assert_eq!(codes, [250, 250, 250, 250, 354], "{replies:?}");
    assert_eq!(replies[0].text(), "2.1.0 Sender OK");
    for reply in &replies[1..4] {
        assert_eq!(reply.text(), "2.1.5 Recipient OK");
    }
    let body = b"Subject: pipelined\r\n\r\nthree recipients\r\n";
    client.send(body);
    client.send(b".\r\n");
    client.expect_enhanced(250, "2.0.0");
    client.quit();

    let files = server.expect_messages(1);
    let stored = split_stored(&files[0]);
    assert_eq!(stored.return_path, "Return-Path: <p@example.com>");
    assert_eq!(stored.body, body);
    // With several recipients the Received header names none of them.
    assert!(!stored.received.contains(" for <"), "{}", stored.received);
}

#[test]
fn two_transactions_and_quit_in_one_write() {
    let server = TestServer::start(config());
    let mut client = Client::ehlo(server.port);
    client.send(
        b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n\
          Subject: first\r\n\r\none\r\n.\r\n\
          MAIL FROM:<c@example.com>\r\nRCPT TO:<d@example.com>\r\nDATA\r\n\
          Subject: second\r\n\r\ntwo\r\n.\r\nQUIT\r\n",
    );
    let replies = client.replies(9);
    let codes: Vec<u16> = replies.iter().map(|r| r.code).collect();
    assert_eq!(
        codes,
        [250, 250, 354, 250, 250, 250, 354, 250, 221],
        "{replies:?}"
    );
    client.expect_eof();
    let files = server.expect_messages(2);
    let mut bodies: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|f| {
            let s = split_stored(f);
            (s.return_path, s.body.to_vec())
        })
        .collect();
    bodies.sort();
    assert_eq!(
        bodies,
        [
            (
                "Return-Path: <a@example.com>".to_owned(),
                b"Subject: first\r\n\r\none\r\n".to_vec()
            ),
            (
                "Return-Path: <c@example.com>".to_owned(),
                b"Subject: second\r\n\r\ntwo\r\n".to_vec()
            ),
        ]
    );
}

#[test]
fn pipelined_rset_clears_the_transaction() {
    let server = TestServer::start(config());
    let mut client = Client::ehlo(server.port);
    client
        .send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nRSET\r\nDATA\r\nNOOP\r\n");
    let replies = client.replies(5);
    let codes: Vec<u16> = replies.iter().map(|r| r.code).collect();
    assert_eq!(codes, [250, 250, 250, 503, 250], "{replies:?}");
    assert!(replies[3].text().starts_with("5.5.1 "), "{replies:?}");
    client.quit();
    server.expect_messages(0);
}

#[test]
fn bdat_chunks_are_stored_byte_exact() {
    let server = TestServer::start(config());
    let mut client = Client::ehlo(server.port);
    client.cmd("MAIL FROM:<chunk@example.com>", 250);
    client.cmd("RCPT TO:<rcpt@example.com>", 250);
    // Dots and even the DATA end marker are plain content in BDAT.
    let first: &[u8] = b"Subject: chunks\r\n\r\n..two dots\r\n.\r\n.one dot\r\n";
    let second: &[u8] = b"MAIL FROM:<x@y.z>\r\n\r\n.\r\n";
    let third: &[u8] = b"tail without CRLF";
    for chunk in [first, second] {
        client.send(format!("BDAT {}\r\n", chunk.len()).as_bytes());
        client.send(chunk);
        let reply = client.expect(250);
        assert_eq!(
            reply.text(),
            format!("2.0.0 {} octets received", chunk.len())
        );
    }
    client.send(format!("BDAT {} LAST\r\n", third.len()).as_bytes());
    client.send(third);
    let reply = client.expect_enhanced(250, "2.0.0");
    assert!(reply.text().starts_with("2.0.0 OK id="), "{reply:?}");
    client.quit();

    let files = server.expect_messages(1);
    let stored = split_stored(&files[0]);
    assert_eq!(stored.return_path, "Return-Path: <chunk@example.com>");
    assert_eq!(stored.body, [first, second, third].concat());
}

#[test]
fn bdat_pipelined_with_empty_last_chunk() {
    let server = TestServer::start(config());
    let mut client = Client::ehlo(server.port);
    client.send(
        b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n\
          BDAT 7\r\nhello\r\nBDAT 6\r\n worldBDAT 0 LAST\r\nNOOP\r\n",
    );
    let replies = client.replies(6);
    let codes: Vec<u16> = replies.iter().map(|r| r.code).collect();
    assert_eq!(codes, [250, 250, 250, 250, 250, 250], "{replies:?}");
    assert_eq!(replies[2].text(), "2.0.0 7 octets received");
    assert_eq!(replies[3].text(), "2.0.0 6 octets received");
    assert!(replies[4].text().starts_with("2.0.0 OK id="), "{replies:?}");
    assert_eq!(replies[5].text(), "2.0.0 OK");
    client.quit();
    let files = server.expect_messages(1);
    assert_eq!(split_stored(&files[0]).body, b"hello\r\n world");
}

#[test]
fn bdat_without_transaction_is_read_and_refused() {
    let server = TestServer::start(config());
    let mut client = Client::ehlo(server.port);
    // The chunk holds something that looks like a command; it must be skipped.
    client.send(b"BDAT 6 LAST\r\nRSET\r\nNOOP\r\n");
    let replies = client.replies(2);
    assert_eq!(replies[0].code, 503, "{replies:?}");
    assert!(replies[0].text().starts_with("5.5.1 "), "{replies:?}");
    assert_eq!(replies[1].text(), "2.0.0 OK", "{replies:?}");
    client.quit();
    server.expect_messages(0);
}
