//! The milter client codec against recorded milter answers, each fed whole,
//! split at every byte boundary, and byte by byte.

use super::*;

fn frame(command: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    write_frame(&mut out, command, parts);
    out
}

/// The negotiation answer of a libmilter-style milter: version 6, `actions`,
/// `protocol`, and macro lists.
fn optneg(actions: u32, protocol: u32, lists: &[(u32, &str)]) -> Vec<u8> {
    let mut data = Vec::new();
    data.extend_from_slice(&6u32.to_be_bytes());
    data.extend_from_slice(&actions.to_be_bytes());
    data.extend_from_slice(&protocol.to_be_bytes());
    for (stage, names) in lists {
        data.extend_from_slice(&stage.to_be_bytes());
        data.extend_from_slice(names.as_bytes());
        data.push(0);
    }
    frame(command::OPTNEG, &[&data])
}

/// Feeds `input` in the given pieces; every event, and the error if any.
fn feed(client: &mut MilterClient, pieces: &[&[u8]]) -> Result<Vec<Event>, MilterError> {
    let mut buffer = Vec::new();
    let mut events = Vec::new();
    for piece in pieces {
        buffer.extend_from_slice(piece);
        for _ in 0..=buffer.len() {
            let (used, event) = client.handle_input(&buffer)?;
            buffer.drain(..used);
            events.extend(event);
            if used == 0 {
                break;
            }
        }
    }
    assert!(buffer.is_empty(), "bytes left over: {buffer:?}");
    Ok(events)
}

/// `input` as one piece, at every split into two, and byte by byte: the same
/// events each time (or the same error).
fn every_split(
    make: &dyn Fn() -> MilterClient,
    input: &[u8],
) -> (MilterClient, Result<Vec<Event>, MilterError>) {
    let mut whole_client = make();
    let whole = feed(&mut whole_client, &[input]);
    for at in 0..=input.len() {
        let mut client = make();
        let got = feed(&mut client, &[&input[..at], &input[at..]]);
        assert_eq!(got, whole, "split at {at}");
    }
    let mut client = make();
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(feed(&mut client, &bytes), whole, "byte by byte");
    (whole_client, whole)
}

fn negotiated(actions: u32, protocol: u32) -> MilterClient {
    let mut client = MilterClient::new(Offer::default());
    let mut sent = Vec::new();
    client.poll_transmit(&mut sent);
    let events = feed(&mut client, &[&optneg(actions, protocol, &[])]);
    assert_eq!(events, Ok(vec![Event::Negotiated]));
    client
}

#[test]
fn negotiation_is_version_6_with_everything_offered() {
    let mut client = MilterClient::new(Offer::default());
    let mut sent = Vec::new();
    client.poll_transmit(&mut sent);
    let mut expected = vec![0, 0, 0, 13, b'O', 0, 0, 0, 6, 0, 0, 1, 0xFF];
    expected.extend_from_slice(&protocol::OFFERED.to_be_bytes());
    assert_eq!(sent, expected);
    let answer = optneg(
        action::ADDHDRS | 0x1000_0000,
        protocol::HDR_LEADSPC | protocol::NR_CONN | 0x2000_0000,
        &[(0, "j {daemon_name}"), (5, "i {rcpt_addr}")],
    );
    let (client, events) = every_split(&|| MilterClient::new(Offer::default()), &answer);
    assert_eq!(events, Ok(vec![Event::Negotiated]));
    let n = client.negotiated().cloned().unwrap_or_default();
    assert_eq!(n.version, 6);
    assert_eq!(n.actions, action::ADDHDRS);
    assert_eq!(n.protocol, protocol::HDR_LEADSPC | protocol::NR_CONN);
    assert_eq!(
        n.macros[0],
        Some(vec!["j".to_owned(), "{daemon_name}".to_owned()])
    );
    assert_eq!(
        n.macros[MacroStage::EndOfMessage as usize],
        Some(vec!["i".to_owned(), "{rcpt_addr}".to_owned()])
    );
    assert_eq!(n.macros[1], None);
}

#[test]
fn commands_are_framed_with_their_macros() {
    let mut client = negotiated(action::ALL, protocol::HDR_LEADSPC | protocol::NR_HDR);
    let peer = "192.0.2.1:2525".parse().ok();
    assert_eq!(
        client.connect(&[("j", "mx")], "[192.0.2.1]", peer),
        Ok(true)
    );
    let mut sent = Vec::new();
    client.poll_transmit(&mut sent);
    let mut expected = frame(command::MACRO, &[b"Cj\0mx\0"]);
    expected.extend(frame(
        command::CONNECT,
        &[
            b"[192.0.2.1]\0",
            b"4",
            &2525u16.to_be_bytes(),
            b"192.0.2.1\0",
        ],
    ));
    assert_eq!(sent, expected);
    // A second command before the answer is a driver's mistake.
    assert_eq!(client.helo(&[], "x"), Err(MilterError::NotReady));
    assert_eq!(
        feed(&mut client, &[&frame(reply_code::CONTINUE, &[])]),
        Ok(vec![Event::Answer(Response::Continue)])
    );
    // NR_HDR: headers are not answered; leading spaces and folding kept, CRLF
    // inside becomes LF.
    assert_eq!(client.header(b"Subject", b"  Hi\r\n\tthere"), Ok(false));
    assert_eq!(client.header(b"To", b"\tx"), Ok(false));
    sent.clear();
    client.poll_transmit(&mut sent);
    let mut expected = frame(command::HEADER, &[b"Subject\0  Hi\n\tthere\0"]);
    expected.extend(frame(command::HEADER, &[b"To\0\tx\0"]));
    assert_eq!(sent, expected);
}

#[test]
fn without_leadspc_leading_blanks_go() {
    let mut client = negotiated(action::ALL, 0);
    assert_eq!(client.header(b"Subject", b" \t Hi \r\n x"), Ok(true));
    let mut sent = Vec::new();
    client.poll_transmit(&mut sent);
    assert_eq!(sent, frame(command::HEADER, &[b"Subject\0Hi \n x\0"]));
}

#[test]
fn skipped_steps_are_not_sent() {
    let mut client = negotiated(
        action::ALL,
        protocol::NOCONNECT | protocol::NOHELO | protocol::NOBODY,
    );
    assert_eq!(client.connect(&[], "h", None), Ok(false));
    assert_eq!(client.helo(&[], "h"), Ok(false));
    assert_eq!(client.body(b"abc"), Ok((3, false)));
    let mut sent = Vec::new();
    client.poll_transmit(&mut sent);
    assert!(sent.is_empty());
}

#[test]
fn body_chunks_are_at_most_65535_bytes() {
    let mut client = negotiated(action::ALL, protocol::NR_BODY);
    let body = vec![b'x'; 70_000];
    assert_eq!(client.body(&body), Ok((MAX_BODY_CHUNK, false)));
    assert_eq!(
        client.body(&body[MAX_BODY_CHUNK..]),
        Ok((70_000 - MAX_BODY_CHUNK, false))
    );
    let mut sent = Vec::new();
    client.poll_transmit(&mut sent);
    assert_eq!(sent.len(), 70_000 + 10);
    // The length counts the command byte: 65536.
    assert_eq!(&sent[..5], &[0, 1, 0, 0, b'B']);
}

/// A whole message's end: progress, every modification, then accept.
#[test]
fn end_of_message_gathers_modifications() {
    let mut answer = Vec::new();
    answer.extend(frame(reply_code::PROGRESS, &[]));
    answer.extend(frame(reply_code::ADDHEADER, &[b"X-Spam\0 yes\0"]));
    answer.extend(frame(
        reply_code::INSHEADER,
        &[&0u32.to_be_bytes(), b"DKIM-Signature\0v=1;\n\tb=x\0"],
    ));
    answer.extend(frame(
        reply_code::CHGHEADER,
        &[&1u32.to_be_bytes(), b"Subject\0\0"],
    ));
    answer.extend(frame(reply_code::ADDRCPT, &[b"<new@x.test>\0"]));
    answer.extend(frame(
        reply_code::ADDRCPT_PAR,
        &[b"<p@x.test>\0NOTIFY=NEVER\0"],
    ));
    answer.extend(frame(reply_code::DELRCPT, &[b"<old@x.test>\0"]));
    answer.extend(frame(reply_code::REPLBODY, &[b"new "]));
    answer.extend(frame(reply_code::REPLBODY, &[b"body\r\n"]));
    answer.extend(frame(reply_code::CHGFROM, &[b"<s@x.test>\0"]));
    answer.extend(frame(reply_code::QUARANTINE, &[b"looks odd\0"]));
    answer.extend(frame(reply_code::ACCEPT, &[]));
    let make = || {
        let mut client = negotiated(action::ALL, 0);
        assert_eq!(client.end_of_message(&[("i", "ID1")]), Ok(true));
        client
    };
    let (mut client, events) = every_split(&make, &answer);
    assert_eq!(
        events,
        Ok(vec![Event::Progress, Event::Answer(Response::Accept)])
    );
    assert_eq!(
        client.take_modifications(),
        vec![
            Modification::AddHeader {
                name: "X-Spam".into(),
                value: " yes".into()
            },
            Modification::InsertHeader {
                index: 0,
                name: "DKIM-Signature".into(),
                value: "v=1;\n\tb=x".into()
            },
            Modification::ChangeHeader {
                index: 1,
                name: "Subject".into(),
                value: String::new()
            },
            Modification::AddRecipient {
                address: "<new@x.test>".into(),
                args: None
            },
            Modification::AddRecipient {
                address: "<p@x.test>".into(),
                args: Some("NOTIFY=NEVER".into())
            },
            Modification::DeleteRecipient {
                address: "<old@x.test>".into()
            },
            Modification::ReplaceBody(b"new body\r\n".to_vec()),
            Modification::ChangeSender {
                address: "<s@x.test>".into(),
                args: None
            },
            Modification::Quarantine("looks odd".into()),
        ]
    );
}

#[test]
fn reply_codes() {
    for (text, expected) in [
        (
            &b"550 5.7.1 Go away\0"[..],
            Ok(Response::ReplyCode {
                code: 550,
                text: "5.7.1 Go away".into(),
            }),
        ),
        (
            b"451-4.7.1 one\r\n451 4.7.1 two\0",
            Ok(Response::ReplyCode {
                code: 451,
                text: "4.7.1 one\n4.7.1 two".into(),
            }),
        ),
        (
            b"421\0",
            Ok(Response::ReplyCode {
                code: 421,
                text: String::new(),
            }),
        ),
        (b"250 ok\0", Err(())),
        (b"55\0", Err(())),
        (b"550x\0", Err(())),
        (b"550 a\n551 b\0", Err(())),
        (b"550 no nul", Err(())),
        (b"+50 x\0", Err(())),
    ] {
        let make = || {
            let mut client = negotiated(action::ALL, 0);
            assert_eq!(client.rcpt(&[], &["<a@b>"]), Ok(true));
            client
        };
        let (_, got) = every_split(&make, &frame(reply_code::REPLYCODE, &[text]));
        match expected {
            Ok(response) => assert_eq!(got, Ok(vec![Event::Answer(response)]), "{text:?}"),
            Err(()) => assert!(
                matches!(got, Err(MilterError::Malformed(_))),
                "{text:?}: {got:?}"
            ),
        }
    }
}

#[test]
fn garbage_is_an_error_and_errors_stick() {
    let at_rcpt = || {
        let mut client = negotiated(action::ADDHDRS, 0);
        assert_eq!(client.rcpt(&[], &["<a@b>"]), Ok(true));
        client
    };
    for (input, expected) in [
        (
            vec![0, 0, 0, 0],
            MilterError::Malformed("a frame of length 0"),
        ),
        (vec![0xFF, 0, 0, 0], MilterError::FrameTooLarge(0xFF00_0000)),
        (frame(b'Z', &[]), MilterError::Unexpected(b'Z', "a reply")),
        (
            frame(reply_code::ADDHEADER, &[b"X\0y\0"]),
            MilterError::Unexpected(b'h', "an answer"),
        ),
        (
            frame(reply_code::SKIP, &[]),
            MilterError::Unexpected(b's', "an answer"),
        ),
        (
            frame(reply_code::ADDHEADER, &[b"X\0"]),
            MilterError::Malformed("a string without NUL"),
        ),
    ] {
        let (mut client, got) = every_split(&at_rcpt, &input);
        assert_eq!(got, Err(expected.clone()), "{input:?}");
        assert_eq!(client.helo(&[], "x"), Err(expected.clone()));
        assert_eq!(client.handle_input(b"").map(|_| ()), Err(expected));
    }
    // An answer nobody asked for; a modification that was not negotiated.
    let mut idle = negotiated(action::ADDHDRS, 0);
    assert_eq!(
        feed(&mut idle, &[&frame(reply_code::CONTINUE, &[])]),
        Err(MilterError::Unexpected(b'c', "nothing"))
    );
    let mut eom = negotiated(action::ADDHDRS, 0);
    assert_eq!(eom.end_of_message(&[]), Ok(true));
    assert_eq!(
        feed(&mut eom, &[&frame(reply_code::DELRCPT, &[b"<a@b>\0"])]),
        Err(MilterError::ActionNotNegotiated(action::DELRCPT))
    );
    // Negotiation: too old, too short, a bad macro list.
    for (answer, expected) in [
        (
            frame(command::OPTNEG, &[&1u32.to_be_bytes(), &[0; 8]]),
            MilterError::Version(1),
        ),
        (
            frame(command::OPTNEG, &[&6u32.to_be_bytes()]),
            MilterError::Malformed("a frame too short for its numbers"),
        ),
        (
            optneg(0, 0, &[(9, "i")]),
            MilterError::Malformed("a macro list for an unknown stage"),
        ),
        (
            frame(reply_code::CONTINUE, &[]),
            MilterError::Unexpected(b'c', "the negotiation"),
        ),
    ] {
        let (_, got) = every_split(&|| MilterClient::new(Offer::default()), &answer);
        assert_eq!(got, Err(expected));
    }
}

#[test]
fn skip_is_an_answer_to_a_body_chunk_when_negotiated() {
    let make = || {
        let mut client = negotiated(action::ALL, protocol::SKIP);
        assert_eq!(client.body(b"x"), Ok((1, true)));
        client
    };
    let (_, got) = every_split(&make, &frame(reply_code::SKIP, &[]));
    assert_eq!(got, Ok(vec![Event::Answer(Response::Skip)]));
}

#[test]
fn abort_and_quit() {
    let mut client = negotiated(action::ALL, 0);
    assert_eq!(client.mail(&[], &["<a@b>", "SIZE=10"]), Ok(true));
    assert_eq!(client.abort(), Ok(()));
    client.quit();
    let mut sent = Vec::new();
    client.poll_transmit(&mut sent);
    let mut expected = frame(command::MAIL, &[b"<a@b>\0SIZE=10\0"]);
    expected.extend(frame(command::ABORT, &[]));
    expected.extend(frame(command::QUIT, &[]));
    assert_eq!(sent, expected);
    assert!(!client.is_waiting());
}

#[test]
fn quit_new_connection_is_framed_and_a_new_session_follows() {
    let mut client = negotiated(action::ALL, 0);
    let peer = "192.0.2.1:2525".parse().ok();
    assert_eq!(client.connect(&[], "[192.0.2.1]", peer), Ok(true));
    let mut sent = Vec::new();
    client.poll_transmit(&mut sent);
    assert_eq!(
        client
            .handle_input(&[0, 0, 0, 1, b'c'])
            .map(|(used, _)| used),
        Ok(5)
    );
    assert_eq!(client.quit_new_connection(), Ok(()));
    sent.clear();
    client.poll_transmit(&mut sent);
    assert_eq!(sent, frame(command::QUIT_NC, &[]));
    // The next session starts with CONNECT, without a new negotiation.
    assert_eq!(client.connect(&[], "[192.0.2.2]", peer), Ok(true));
    sent.clear();
    client.poll_transmit(&mut sent);
    assert_eq!(sent.get(4), Some(&command::CONNECT));
}
