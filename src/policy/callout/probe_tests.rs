//! The probe's conversations as transcripts: each server script is fed whole,
//! split at every byte boundary and byte by byte, and must give the same
//! commands and the same outcome.

use super::probe::{HostOutcome, Probe, ProbeRequest, Step, is_probe_safe};
use crate::mail::CalloutResult;

fn request(random: bool) -> ProbeRequest {
    ProbeRequest {
        helo_name: "mx.test".into(),
        address: "user@example.com".into(),
        random: random.then(|| "nr-callout-0@example.com".to_owned()),
        starttls: true,
    }
}

/// What the client did: the commands it sent (and `<TLS>`), and the end.
#[derive(Debug, PartialEq)]
struct Run {
    sent: Vec<String>,
    outcome: Option<HostOutcome>,
}

/// Feeds `server` in the given chunks; after a StartTls step the TLS
/// "handshake" succeeds at once and the rest of the input is what came over TLS.
fn run(request: ProbeRequest, chunks: &[&[u8]]) -> Run {
    let mut probe = Probe::new(request);
    let mut sent = Vec::new();
    let mut buffer: Vec<u8> = Vec::new();
    for chunk in chunks {
        buffer.extend_from_slice(chunk);
        loop {
            let (used, step) = probe.handle_input(&buffer);
            buffer.drain(..used);
            match step {
                None => break,
                Some(Step::Send(bytes)) => sent.push(String::from_utf8(bytes).unwrap()),
                Some(Step::StartTls) => {
                    sent.push("<TLS>".into());
                    if let Step::Send(bytes) = probe.tls_started() {
                        sent.push(String::from_utf8(bytes).unwrap());
                    }
                }
                Some(Step::Done(outcome)) => {
                    return Run {
                        sent,
                        outcome: Some(outcome),
                    };
                }
            }
        }
    }
    Run {
        sent,
        outcome: None,
    }
}

/// `run` whole, at every split and byte by byte: all the same.
fn replay(request: ProbeRequest, server: &str) -> Run {
    let bytes = server.as_bytes();
    let whole = run(request.clone(), &[bytes]);
    for at in 0..=bytes.len() {
        let (a, b) = bytes.split_at(at);
        assert_eq!(run(request.clone(), &[a, b]), whole, "split at {at}");
    }
    let singles: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(run(request, &singles), whole, "byte by byte");
    whole
}

fn answer(result: CalloutResult, code: u16, text: &str) -> Option<HostOutcome> {
    Some(HostOutcome::Answer {
        result,
        code,
        text: text.into(),
    })
}

const GREETING_EHLO: &str =
    "220 mx.example ESMTP\r\n250-mx.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n";

#[test]
fn a_known_user_passes() {
    let got = replay(
        request(false),
        &format!("{GREETING_EHLO}250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"),
    );
    assert_eq!(
        got.sent,
        [
            "EHLO mx.test\r\n",
            "MAIL FROM:<>\r\n",
            "RCPT TO:<user@example.com>\r\n"
        ]
    );
    assert_eq!(got.outcome, answer(CalloutResult::Pass, 250, "2.1.5 Ok"));
}

#[test]
fn an_unknown_user_fails_and_a_4xx_is_a_tempfail() {
    let got = replay(
        request(false),
        &format!("{GREETING_EHLO}250 Ok\r\n550-5.1.1 no such\r\n550 5.1.1 user\r\n"),
    );
    assert_eq!(
        got.outcome,
        answer(CalloutResult::Fail, 550, "5.1.1 no such 5.1.1 user")
    );
    let got = replay(
        request(false),
        &format!("{GREETING_EHLO}250 Ok\r\n451 4.7.1 greylisted\r\n"),
    );
    assert_eq!(
        got.outcome,
        answer(CalloutResult::Tempfail, 451, "4.7.1 greylisted")
    );
}

#[test]
fn a_random_local_part_accepted_means_accept_all() {
    let got = replay(
        request(true),
        &format!("{GREETING_EHLO}250 Ok\r\n250 Ok\r\n"),
    );
    assert_eq!(
        got.sent.last().unwrap(),
        "RCPT TO:<nr-callout-0@example.com>\r\n"
    );
    assert_eq!(got.outcome, answer(CalloutResult::AcceptAll, 250, "Ok"));
    let got = replay(
        request(true),
        &format!("{GREETING_EHLO}250 Ok\r\n550 no\r\n250 Ok\r\n"),
    );
    assert_eq!(got.sent.last().unwrap(), "RCPT TO:<user@example.com>\r\n");
    assert_eq!(got.outcome, answer(CalloutResult::Pass, 250, "Ok"));
}

#[test]
fn starttls_when_offered_then_ehlo_again() {
    let got = replay(
        request(false),
        "220 hi\r\n250-mx\r\n250 STARTTLS\r\n220 go ahead\r\n250-mx\r\n250 8BITMIME\r\n250 Ok\r\n250 Ok\r\n",
    );
    assert_eq!(
        got.sent,
        [
            "EHLO mx.test\r\n",
            "STARTTLS\r\n",
            "<TLS>",
            "EHLO mx.test\r\n",
            "MAIL FROM:<>\r\n",
            "RCPT TO:<user@example.com>\r\n"
        ]
    );
    assert_eq!(got.outcome, answer(CalloutResult::Pass, 250, "Ok"));
    // STARTTLS refused: on in plain text.
    let got = replay(
        request(false),
        "220 hi\r\n250-mx\r\n250 STARTTLS\r\n454 not now\r\n250 Ok\r\n250 Ok\r\n",
    );
    assert_eq!(got.sent[2], "MAIL FROM:<>\r\n");
    assert_eq!(got.outcome, answer(CalloutResult::Pass, 250, "Ok"));
}

#[test]
fn helo_when_ehlo_is_refused() {
    let got = replay(
        request(false),
        "220 hi\r\n502 no\r\n250 hello\r\n250 Ok\r\n550 no\r\n",
    );
    assert_eq!(got.sent[1], "HELO mx.test\r\n");
    assert_eq!(got.outcome, answer(CalloutResult::Fail, 550, "no"));
}

#[test]
fn host_failures_move_on_to_the_next_host() {
    for server in [
        "421 busy\r\n",
        "554 go away\r\n",
        "220 hi\r\n502 no\r\n502 no\r\n",
        &format!("{GREETING_EHLO}451 try later\r\n"),
        "220 hi\r\n250 ok\r\nnonsense\r\n",
        "220-a\r\n221 b\r\n",
    ] {
        let got = replay(request(false), server);
        assert!(
            matches!(got.outcome, Some(HostOutcome::NextHost { .. })),
            "{server:?}: {got:?}"
        );
    }
}

#[test]
fn a_refused_null_sender_is_an_error() {
    let got = replay(
        request(false),
        &format!("{GREETING_EHLO}553 we do not take bounces\r\n"),
    );
    assert_eq!(
        got.outcome,
        answer(CalloutResult::Error, 553, "we do not take bounces")
    );
}

#[test]
fn a_utf8_address_needs_smtputf8() {
    let mut utf8 = request(false);
    utf8.address = "jösé@example.com".into();
    let got = replay(utf8.clone(), GREETING_EHLO);
    assert!(matches!(
        got.outcome,
        Some(HostOutcome::Answer {
            result: CalloutResult::Error,
            ..
        })
    ));
    let got = replay(
        utf8,
        "220 hi\r\n250-mx\r\n250 SMTPUTF8\r\n250 Ok\r\n250 Ok\r\n",
    );
    assert_eq!(got.sent[1], "MAIL FROM:<> SMTPUTF8\r\n");
    assert_eq!(got.outcome, answer(CalloutResult::Pass, 250, "Ok"));
}

#[test]
fn an_incomplete_reply_waits_and_eof_moves_on() {
    let got = run(request(false), &[b"220 hi\r\n250-mx\r\n"]);
    assert_eq!(got.outcome, None);
    let mut probe = Probe::new(request(false));
    assert!(matches!(probe.handle_eof(), HostOutcome::NextHost { .. }));
}

#[test]
fn only_plain_addresses_are_probed() {
    assert!(is_probe_safe("a@b.example"));
    assert!(is_probe_safe("jösé@b.example"));
    for bad in ["", "a", "@b", "a@", "a b@c", "a\r\n@b", "a>@b", "a@b\0"] {
        assert!(!is_probe_safe(bad), "{bad:?}");
    }
}
