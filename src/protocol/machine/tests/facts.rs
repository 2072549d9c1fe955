//! The machine is the one owner of the session's facts (greeting, AUTH, TLS):
//! they follow the answers it was given, reset with STARTTLS, and ride on the
//! message event.

use super::*;

fn machine(options: ConnectionOptions) -> Machine {
    let limits = Arc::new(limits());
    let keywords = ehlo_keywords(&limits);
    let mut machine = Machine::with_options(limits, keywords, options, Instant::now());
    machine.answer(Reply::plain(220, "mx.test ESMTP"));
    machine
}

/// Feeds `input`, answering each event with `answer` (or like the defaults),
/// and returns the message events' facts.
fn feed(
    machine: &mut Machine,
    input: &[u8],
    answer: impl Fn(&Event) -> Option<Reply>,
) -> Vec<Facts> {
    let mut input = input;
    let mut sink = Vec::new();
    let mut seen = Vec::new();
    loop {
        let progress = machine.handle_input(input, Instant::now());
        input = &input[progress.consumed..];
        let Some(event) = progress.event else {
            return seen;
        };
        if let Event::Message { facts, .. } = &event {
            seen.push(*facts);
        }
        if event == Event::StartTls {
            return seen;
        }
        let reply = answer(&event).unwrap_or_else(|| respond(event, &mut sink));
        machine.answer(reply);
    }
}

const MESSAGE: &[u8] =
    b"MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\n";

#[test]
fn the_greeting_in_force_is_the_last_one_answered_positively() {
    let mut m = machine(ConnectionOptions::default());
    assert_eq!(m.facts(), Facts::default());
    feed(&mut m, b"HELO c\r\n", |_| None);
    assert_eq!(m.facts().greeting, Some(Greeting::Helo));
    // A refused EHLO leaves the HELO in force.
    let refuse_ehlo = |e: &Event| {
        matches!(e, Event::Ehlo { extended: true, .. }).then(|| Reply::new(550, (5, 7, 1), "No"))
    };
    feed(&mut m, b"EHLO c\r\n", refuse_ehlo);
    assert_eq!(m.facts().greeting, Some(Greeting::Helo));
    let seen = feed(&mut m, MESSAGE, |_| None);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].greeting, Some(Greeting::Helo));
    feed(&mut m, b"EHLO c\r\n", |_| None);
    assert_eq!(m.facts().greeting, Some(Greeting::Ehlo));
}

#[test]
fn auth_counts_only_when_answered_235_and_tls_starts_over() {
    let mut m = machine(ConnectionOptions {
        starttls: true,
        auth: true,
        allow_plaintext_auth: true,
        ..ConnectionOptions::default()
    });
    // \0joe\0wrong, then \0joe\0secret
    feed(&mut m, b"EHLO c\r\nAUTH PLAIN AGpvZQB3cm9uZw==\r\n", |_| {
        None
    });
    assert!(!m.facts().authenticated);
    let seen = feed(&mut m, b"AUTH PLAIN AGpvZQBzZWNyZXQ=\r\n", |_| None);
    assert!(seen.is_empty());
    assert!(m.facts().authenticated);
    let seen = feed(&mut m, MESSAGE, |_| None);
    assert_eq!(
        seen,
        vec![Facts {
            greeting: Some(Greeting::Ehlo),
            authenticated: true,
            tls: false,
        }]
    );
    feed(&mut m, b"STARTTLS\r\n", |_| None);
    assert!(!m.facts().tls, "not before the handshake is done");
    m.tls_established(Instant::now());
    assert_eq!(
        m.facts(),
        Facts {
            greeting: None,
            authenticated: false,
            tls: true,
        }
    );
    let seen = feed(
        &mut m,
        &[b"EHLO c\r\n".as_slice(), MESSAGE].concat(),
        |_| None,
    );
    assert_eq!(
        seen,
        vec![Facts {
            greeting: Some(Greeting::Ehlo),
            authenticated: false,
            tls: true,
        }]
    );
}

#[test]
fn implicit_tls_is_a_fact_from_the_start() {
    let m = machine(ConnectionOptions {
        tls_active: true,
        ..ConnectionOptions::default()
    });
    assert!(m.facts().tls);
    // A stray call (no STARTTLS pending) changes nothing.
    let mut m = machine(ConnectionOptions::default());
    feed(&mut m, b"EHLO c\r\n", |_| None);
    m.tls_established(Instant::now());
    assert_eq!(m.facts().greeting, Some(Greeting::Ehlo));
    assert!(!m.facts().tls);
}
