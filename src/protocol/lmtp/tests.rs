//! LMTP client transcripts: the server's bytes whole and split at every
//! position give the same commands and results.

use super::*;

fn envelope(recipients: &[&str]) -> Envelope {
    Envelope {
        lhlo_name: "mx.test".to_owned(),
        sender: "a@b.example".to_owned(),
        recipients: recipients.iter().map(|r| (*r).to_owned()).collect(),
        ..Envelope::default()
    }
}

/// Runs a transaction against scripted server bytes, fed in `chunks`; the body
/// is "hi\r\n". Returns (everything the client sent, results).
fn run(envelope: Envelope, chunks: &[&[u8]]) -> (String, Vec<RecipientResult>) {
    let (sent, results, _) = drive(LmtpClient::new(envelope), chunks);
    (sent, results)
}

/// [`run`] with a given client, which it returns as it ends.
fn drive(mut client: LmtpClient, chunks: &[&[u8]]) -> (String, Vec<RecipientResult>, LmtpClient) {
    let mut sent = Vec::new();
    let mut buffer = Vec::new();
    for chunk in chunks {
        buffer.extend_from_slice(chunk);
        loop {
            let used = client.handle_input(&buffer);
            buffer.drain(..used);
            client.poll_transmit(&mut sent);
            if client.wants_body() {
                let mut stuffer = DotStuffer::default();
                stuffer.push(b"hi\r\n", &mut sent);
                stuffer.finish(&mut sent);
                client.body_sent();
                continue;
            }
            break;
        }
    }
    if !client.is_done() {
        client.connection_lost("closed");
    }
    client.poll_transmit(&mut sent);
    (
        String::from_utf8_lossy(&sent).into_owned(),
        client.results(),
        client,
    )
}

/// The whole script and every two-way split agree.
fn every_split(envelope: &Envelope, server: &[u8]) -> (String, Vec<RecipientResult>) {
    let whole = run(envelope.clone(), &[server]);
    for split in 1..server.len() {
        let (a, b) = server.split_at(split);
        assert_eq!(run(envelope.clone(), &[a, b]), whole, "split at {split}");
    }
    whole
}

fn reply(code: u16, text: &str) -> ServerReply {
    ServerReply {
        code,
        lines: vec![text.to_owned()],
    }
}

const LHLO_PIPELINING: &[u8] =
    b"220 lmtp ready\r\n250-dovecot\r\n250-8BITMIME\r\n250-PIPELINING\r\n250 SMTPUTF8\r\n";

#[test]
fn pipelined_transaction_with_a_reply_per_recipient() {
    let server = [
        LHLO_PIPELINING,
        b"250 2.1.0 OK\r\n250 2.1.5 OK\r\n550 5.1.1 no such user\r\n250 2.1.5 OK\r\n354 go\r\n",
        b"250 2.0.0 <x> Saved\r\n452 4.2.2 Quota exceeded\r\n221 bye\r\n",
    ]
    .concat();
    let (sent, results) = every_split(&envelope(&["x@y", "nobody@y", "full@y"]), &server);
    assert_eq!(
        sent,
        "LHLO mx.test\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@y>\r\nRCPT TO:<nobody@y>\r\n\
         RCPT TO:<full@y>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n"
    );
    assert_eq!(
        results,
        vec![
            RecipientResult::Delivered(reply(250, "2.0.0 <x> Saved")),
            RecipientResult::Refused(reply(550, "5.1.1 no such user")),
            RecipientResult::Refused(reply(452, "4.2.2 Quota exceeded")),
        ]
    );
}

#[test]
fn without_pipelining_one_command_at_a_time_and_no_data_when_all_refused() {
    let server = b"220 ready\r\n250-x\r\n250 8BITMIME\r\n250 ok\r\n550 no\r\n550 no\r\n";
    let (sent, results) = every_split(&envelope(&["p@q", "r@s"]), server);
    assert_eq!(
        sent,
        "LHLO mx.test\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<p@q>\r\nRCPT TO:<r@s>\r\nQUIT\r\n"
    );
    assert!(
        results
            .iter()
            .all(|r| matches!(r, RecipientResult::Refused(r) if r.code == 550))
    );
}

#[test]
fn mail_or_data_refused_refuses_every_open_recipient() {
    let pipelined_mail_refused = [
        LHLO_PIPELINING,
        b"451 4.3.0 try later\r\n503 no mail\r\n503 bad sequence\r\n",
    ]
    .concat();
    let (sent, results) = every_split(&envelope(&["x@y"]), &pipelined_mail_refused);
    assert!(sent.ends_with("DATA\r\nQUIT\r\n"), "{sent}");
    assert_eq!(
        results,
        vec![RecipientResult::Refused(reply(451, "4.3.0 try later"))]
    );

    let data_refused = [
        LHLO_PIPELINING,
        b"250 ok\r\n250 ok\r\n554 5.3.0 no data\r\n",
    ]
    .concat();
    let (_, results) = every_split(&envelope(&["x@y"]), &data_refused);
    assert_eq!(
        results,
        vec![RecipientResult::Refused(reply(554, "5.3.0 no data"))]
    );

    let greeting_refused = b"421 4.3.2 shutting down\r\n";
    let (sent, results) = every_split(&envelope(&["x@y"]), greeting_refused);
    assert_eq!(sent, "QUIT\r\n");
    assert_eq!(
        results,
        vec![RecipientResult::Refused(reply(421, "4.3.2 shutting down"))]
    );
}

#[test]
fn a_lost_connection_or_bad_reply_leaves_the_open_recipients_unknown() {
    let cut = [
        LHLO_PIPELINING,
        b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n250 saved\r\n",
    ]
    .concat();
    let (_, results) = every_split(&envelope(&["x@y", "z@y"]), &cut);
    assert!(matches!(results[0], RecipientResult::Delivered(_)));
    assert!(matches!(results[1], RecipientResult::Unknown(_)));

    for bad in [
        &b"220 ok\r\n250 x\r\nhello\r\n"[..],
        b"220 ok\r\n250-x\r\n251 y\r\n",
        b"220 ok\r\n999 x\r\n",
        b"220 ok\r\n250 x\r\n250 ok\r\n250 ok\r\n354 go\r\n",
    ] {
        let (sent, results) = run(envelope(&["x@y"]), &[bad]);
        assert!(
            matches!(results[0], RecipientResult::Unknown(_)),
            "{bad:?}: {results:?}"
        );
        assert!(sent.ends_with("QUIT\r\n"), "{sent}");
    }
    let long = [b"220 ".as_slice(), &[b'x'; MAX_REPLY_LINE + 10]].concat();
    let (_, results) = run(envelope(&["x@y"]), &[&long]);
    assert!(matches!(results[0], RecipientResult::Unknown(_)));
}

#[test]
fn control_characters_never_reach_the_wire() {
    let server = [
        LHLO_PIPELINING,
        b"250 ok\r\n250 ok\r\n354 go\r\n250 saved\r\n",
    ]
    .concat();
    let (sent, results) = run(envelope(&["evil@y>\r\nRSET", "ok@y"]), &[&server]);
    assert!(!sent.contains("RSET"), "{sent}");
    assert!(matches!(results[0], RecipientResult::Unknown(_)));
    assert!(matches!(results[1], RecipientResult::Delivered(_)));

    let mut bad_sender = envelope(&["ok@y"]);
    bad_sender.sender = "a@b\r\nDATA".to_owned();
    let (sent, results) = run(bad_sender, &[&server]);
    assert_eq!(sent, "QUIT\r\n");
    assert!(matches!(results[0], RecipientResult::Unknown(_)));
}

#[test]
fn body_parameters_follow_the_message_and_the_server() {
    let mut eight = envelope(&["x@y"]);
    eight.eight_bit = true;
    let server = [
        LHLO_PIPELINING,
        b"250 ok\r\n250 ok\r\n354 go\r\n250 saved\r\n",
    ]
    .concat();
    let (sent, _) = run(eight.clone(), &[&server]);
    assert!(
        sent.contains("MAIL FROM:<a@b.example> BODY=8BITMIME\r\n"),
        "{sent}"
    );

    let mut utf8 = eight;
    utf8.smtputf8 = true;
    let (sent, _) = run(utf8.clone(), &[&server]);
    assert!(
        sent.contains("MAIL FROM:<a@b.example> BODY=8BITMIME SMTPUTF8\r\n"),
        "{sent}"
    );
    let plain_server = b"220 ok\r\n250 x\r\n";
    let (sent, results) = run(utf8, &[plain_server]);
    assert!(!sent.contains("MAIL"), "{sent}");
    assert!(matches!(&results[0], RecipientResult::Refused(r) if r.code == 554));
}

#[test]
fn dot_stuffing_at_every_line_start_across_parts() {
    let cases: &[(&[&[u8]], &[u8])] = &[
        (&[b"a\r\n.b\r\n"], b"a\r\n..b\r\n.\r\n"),
        (&[b".x"], b"..x\r\n.\r\n"),
        (
            &[b"Received: x\r\n", b".\r\n"],
            b"Received: x\r\n..\r\n.\r\n",
        ),
        (&[b"a\r", b"\n.", b"b"], b"a\r\n..b\r\n.\r\n"),
        (&[b"bare\n.\r\n"], b"bare\n..\r\n.\r\n"),
        (&[b"ends bare\n"], b"ends bare\n\r\n.\r\n"),
        (&[b"ends cr\r"], b"ends cr\r\n.\r\n"),
        (&[b""], b".\r\n"),
    ];
    for (parts, want) in cases {
        let mut out = Vec::new();
        let mut stuffer = DotStuffer::default();
        for part in *parts {
            stuffer.push(part, &mut out);
        }
        stuffer.finish(&mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(want),
            "{parts:?}"
        );
    }
}

/// A kept connection: no QUIT after a clean transaction, and the next one
/// starts with RSET, pipelined with MAIL when the server offers PIPELINING,
/// one at a time when not — split at every position.
#[test]
fn a_kept_connection_carries_the_next_transaction() {
    let first = [
        LHLO_PIPELINING,
        b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n250 2.0.0 <x@y> saved\r\n",
    ]
    .concat();
    let (sent, results, client) = drive(LmtpClient::new(envelope(&["x@y"])).keep_open(), &[&first]);
    assert_eq!(
        sent,
        "LHLO mx.test\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@y>\r\nDATA\r\nhi\r\n.\r\n"
    );
    assert!(matches!(results[..], [RecipientResult::Delivered(_)]));
    assert!(client.reusable());
    let lhlo = client.lhlo_reply().cloned().unwrap();
    assert!(lhlo.has_keyword("PIPELINING"));

    let second: &[u8] =
        b"250 2.0.0 ok\r\n250 2.1.0 ok\r\n550 5.1.1 no\r\n250 2.1.5 ok\r\n354 go\r\n250 2.0.0 <z@y> saved\r\n";
    let resumed = || LmtpClient::resume(envelope(&["nobody@y", "z@y"]), lhlo.clone());
    let whole = drive(resumed(), &[second]);
    for split in 1..second.len() {
        let (a, b) = second.split_at(split);
        let parts = drive(resumed(), &[a, b]);
        assert_eq!(
            (&parts.0, &parts.1),
            (&whole.0, &whole.1),
            "split at {split}"
        );
    }
    let (sent, results, client) = whole;
    assert_eq!(
        sent,
        "RSET\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<nobody@y>\r\nRCPT TO:<z@y>\r\nDATA\r\nhi\r\n.\r\n"
    );
    assert!(matches!(
        results[..],
        [RecipientResult::Refused(_), RecipientResult::Delivered(_)]
    ));
    assert!(client.reusable());

    // Without PIPELINING: RSET alone first.
    let plain = reply(250, "lmtp");
    let (sent, results, client) = drive(
        LmtpClient::resume(envelope(&["x@y"]), plain),
        &[b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n250 saved\r\n"],
    );
    assert_eq!(
        sent,
        "RSET\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@y>\r\nDATA\r\nhi\r\n.\r\n"
    );
    assert!(matches!(results[..], [RecipientResult::Delivered(_)]));
    assert!(client.reusable());
}

/// Refusals that end a transaction cleanly keep the connection; anything that
/// leaves it in no known state closes it with QUIT.
#[test]
fn what_keeps_a_connection_and_what_closes_it() {
    let lhlo = || {
        let mut reader = ReplyReader::default();
        let lhlo = b"250-dovecot\r\n250-PIPELINING\r\n250 8BITMIME\r\n";
        reader.read(lhlo).ok().and_then(|(_, r)| r).unwrap()
    };
    for (server, reusable, closes, began) in [
        // MAIL refused: RCPT and DATA still answered, nothing open.
        (
            &b"250 ok\r\n451 4.3.0 later\r\n503 no\r\n503 no\r\n"[..],
            true,
            false,
            true,
        ),
        // Every recipient refused, DATA too.
        (
            b"250 ok\r\n250 ok\r\n452 4.2.2 quota\r\n554 no\r\n",
            true,
            false,
            true,
        ),
        // RSET refused (a server that timed the idle connection out).
        (b"421 4.4.2 idle too long\r\n", false, true, false),
        // A malformed reply.
        (b"250 ok\r\nxyz\r\n", false, true, false),
        // The server goes away before answering anything.
        (b"", false, true, false),
        // 354 with no recipient accepted: the server waits for a body.
        (
            b"250 ok\r\n250 ok\r\n550 no\r\n354 go\r\n",
            false,
            true,
            true,
        ),
    ] {
        let (sent, results, client) =
            drive(LmtpClient::resume(envelope(&["x@y"]), lhlo()), &[server]);
        assert!(client.is_done());
        assert_eq!(client.began(), began, "{server:?}: {sent}");
        assert_eq!(client.reusable(), reusable, "{server:?}: {sent}");
        assert_eq!(sent.ends_with("QUIT\r\n"), closes, "{server:?}: {sent}");
        assert_eq!(results.len(), 1);
    }
    // Not kept open: QUIT as before, and never reusable.
    let (sent, _, client) = drive(
        LmtpClient::new(envelope(&["x@y"])),
        &[&[LHLO_PIPELINING, b"250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n"].concat()],
    );
    assert!(sent.ends_with(".\r\nQUIT\r\n"), "{sent}");
    assert!(!client.reusable());
    // A first transaction whose LHLO is refused is not kept.
    let (sent, _, client) = drive(
        LmtpClient::new(envelope(&["x@y"])).keep_open(),
        &[b"220 hi\r\n421 4.3.2 going down\r\n"],
    );
    assert!(sent.ends_with("QUIT\r\n"), "{sent}");
    assert!(!client.reusable());
}
