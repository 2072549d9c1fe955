//! Exchanges captured from real milters (everything the milter wrote in one
//! SMTP session through this client, recorded by a proxy): OpenDKIM 2.11
//! signing, and the Python test milter (python3-milter 1.0.5 on libmilter)
//! refusing a recipient and making every kind of edit. Each is replayed with
//! the same commands, whole, split at every byte, and byte by byte.

use super::*;

const OPENDKIM: &[u8] = include_bytes!("captured/opendkim_sign.bin");
const PYTHON: &[u8] = include_bytes!("captured/python_edits.bin");

/// One command of the session, as the driver sent it.
enum Step {
    Connect,
    Helo,
    Mail,
    Rcpt(&'static str),
    Data,
    Header(&'static [u8], &'static [u8]),
    Eoh,
    Body(&'static [u8]),
    Eom,
}

fn send(client: &mut MilterClient, step: &Step) -> bool {
    let peer = "127.0.0.1:40000".parse().ok();
    let sent = match step {
        Step::Connect => client.connect(&[("j", "mx.test")], "[127.0.0.1]", peer),
        Step::Helo => client.helo(&[], "client.test"),
        Step::Mail => client.mail(&[("i", "ID")], &["<a@example.com>"]),
        Step::Rcpt(to) => client.rcpt(&[("i", "ID")], &[to]),
        Step::Data => client.data(&[("i", "ID")]),
        Step::Header(name, value) => client.header(name, value),
        Step::Eoh => client.end_of_header(&[("i", "ID")]),
        Step::Body(body) => client.body(body).map(|(_, awaits)| awaits),
        Step::Eom => client.end_of_message(&[("i", "ID")]),
    };
    sent.unwrap_or_else(|e| panic!("sending: {e}"))
}

/// Replays `pieces` against `steps`: every answer, then the modifications.
fn replay(steps: &[Step], pieces: &[&[u8]]) -> (Vec<Response>, Vec<Modification>) {
    let mut client = MilterClient::new(Offer::default());
    let mut next = 0;
    let mut answers = Vec::new();
    let mut buffer = Vec::new();
    for piece in pieces {
        buffer.extend_from_slice(piece);
        for _ in 0..=buffer.len() {
            let (used, event) = client
                .handle_input(&buffer)
                .unwrap_or_else(|e| panic!("{e}"));
            buffer.drain(..used);
            match event {
                Some(Event::Answer(answer)) => answers.push(answer),
                Some(Event::Negotiated) => {}
                Some(Event::Progress) | None => {
                    if used == 0 {
                        break;
                    }
                    continue;
                }
            }
            while next < steps.len() {
                next += 1;
                if send(&mut client, &steps[next - 1]) {
                    break;
                }
            }
        }
    }
    assert!(buffer.is_empty());
    assert_eq!(next, steps.len(), "every command was sent");
    (answers, client.take_modifications())
}

/// [`replay`] whole, at every split, byte by byte: the same result.
fn replay_every_split(steps: &[Step], input: &[u8]) -> (Vec<Response>, Vec<Modification>) {
    let whole = replay(steps, &[input]);
    for at in 0..=input.len() {
        assert_eq!(
            replay(steps, &[&input[..at], &input[at..]]),
            whole,
            "split at {at}"
        );
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(replay(steps, &bytes), whole, "byte by byte");
    whole
}

#[test]
fn opendkim_signing() {
    let steps = [
        Step::Connect,
        Step::Helo,
        Step::Mail,
        Step::Rcpt("<b@example.com>"),
        Step::Data,
        Step::Header(b"From", b" <a@example.com>"),
        Step::Header(b"To", b" <b@example.com>"),
        Step::Header(b"Subject", b" captured"),
        Step::Eoh,
        Step::Body(b"body\r\n"),
        Step::Eom,
    ];
    let (answers, modifications) = replay_every_split(&steps, OPENDKIM);
    assert_eq!(answers.last(), Some(&Response::Accept));
    assert!(
        answers[..answers.len() - 1]
            .iter()
            .all(|a| *a == Response::Continue)
    );
    match modifications.as_slice() {
        [
            Modification::InsertHeader {
                index: 0,
                name,
                value,
            },
        ] => {
            assert_eq!(name, "DKIM-Signature");
            assert!(
                value.starts_with(
                    " v=1; a=rsa-sha256; c=relaxed/simple; d=example.com; s=sel;\n\tt="
                ),
                "{value}"
            );
            assert!(value.contains("\n\th=From:To:Subject;\n\tb="), "{value}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn python_milter_refusal_and_edits() {
    let steps = [
        Step::Connect,
        Step::Helo,
        Step::Mail,
        Step::Rcpt("<reject@example.com>"),
        Step::Rcpt("<addheader@example.com>"),
        Step::Rcpt("<chgheader@example.com>"),
        Step::Rcpt("<delrcpt@example.com>"),
        Step::Rcpt("<replbody@example.com>"),
        Step::Rcpt("<chgfrom@example.com>"),
        Step::Data,
        Step::Header(b"From", b" <a@example.com>"),
        Step::Header(b"To", b" <b@example.com>"),
        Step::Header(b"Subject", b"  captured"),
        Step::Eoh,
        Step::Body(b"body\r\n"),
        Step::Eom,
    ];
    let (answers, modifications) = replay_every_split(&steps, PYTHON);
    assert_eq!(answers[3], Response::Reject, "{answers:?}");
    assert_eq!(answers.last(), Some(&Response::Continue));
    assert_eq!(
        modifications,
        [
            Modification::AddHeader {
                name: "X-Test-Milter".into(),
                value: "added".into()
            },
            Modification::ChangeHeader {
                index: 1,
                name: "Subject".into(),
                value: "changed by milter".into()
            },
            Modification::ReplaceBody(b"replaced body\r\n".to_vec()),
            Modification::DeleteRecipient {
                address: "<other@example.com>".into()
            },
            Modification::ChangeSender {
                address: "<new-sender@example.com>".into(),
                args: None
            },
        ]
    );
}
