//! STARTTLS, submission and shutdown paths of the state machine.

use super::*;

fn machine_with(options: ConnectionOptions) -> Machine {
    let limits = Arc::new(limits());
    let keywords = ehlo_keywords(&limits);
    let mut machine = Machine::with_options(limits, keywords, options, Instant::now());
    machine.answer(Reply::plain(220, "mx.test ESMTP"));
    machine
}

fn starttls_machine() -> Machine {
    machine_with(ConnectionOptions {
        starttls: true,
        ..ConnectionOptions::default()
    })
}

/// Feeds `input`, answering like the defaults, until an event other than those
/// answered appears or the input is used up; returns the unconsumed rest.
fn feed<'a>(machine: &mut Machine, mut input: &'a [u8]) -> (&'a [u8], Option<Event>) {
    let mut sink = Vec::new();
    loop {
        let progress = machine.handle_input(input, Instant::now());
        input = &input[progress.consumed..];
        match progress.event {
            None => return (input, None),
            Some(Event::StartTls) => return (input, Some(Event::StartTls)),
            Some(event) => {
                let reply = respond(event, &mut sink);
                machine.answer(reply);
            }
        }
    }
}

fn output(machine: &mut Machine) -> String {
    let mut out = Vec::new();
    machine.poll_transmit(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn starttls_is_offered_until_tls_is_up() {
    let mut machine = starttls_machine();
    let (rest, event) = feed(&mut machine, b"EHLO c\r\nSTARTTLS\r\nNOOP\r\n");
    assert_eq!(event, Some(Event::StartTls));
    assert_eq!(
        rest, b"NOOP\r\n",
        "the pipelined NOOP is left for the caller to drop"
    );
    assert_eq!(
        machine.handle_input(rest, Instant::now()).consumed,
        0,
        "nothing is read until TLS is up"
    );
    let out = output(&mut machine);
    assert!(
        out.contains("250-STARTTLS\r\n") || out.contains("250 STARTTLS\r\n"),
        "{out}"
    );
    assert!(out.ends_with("220 2.0.0 Ready to start TLS\r\n"), "{out}");

    machine.tls_established(Instant::now());
    assert!(machine.facts().tls);
    let (_, event) = feed(&mut machine, b"MAIL FROM:<a@b.c>\r\nEHLO c\r\nSTARTTLS\r\n");
    assert_eq!(event, None);
    let out = output(&mut machine);
    assert!(
        out.starts_with("503 5.5.1 Send EHLO or HELO first\r\n"),
        "EHLO state was reset: {out}"
    );
    assert!(!out.contains("STARTTLS"), "not offered inside TLS: {out}");
    assert!(out.ends_with("503 5.5.1 Already running TLS\r\n"), "{out}");
}

#[test]
fn starttls_refusals() {
    let cases: &[(&[u8], &str)] = &[
        (b"STARTTLS\r\n", "503 5.5.1 Send EHLO first"),
        (b"HELO c\r\nSTARTTLS\r\n", "503 5.5.1 Send EHLO first"),
        (
            b"EHLO c\r\nSTARTTLS now\r\n",
            "501 5.5.4 STARTTLS takes no argument",
        ),
        (
            b"EHLO c\r\nMAIL FROM:<a@b.c>\r\nSTARTTLS\r\n",
            "503 5.5.1 STARTTLS not allowed inside a mail transaction",
        ),
    ];
    for (input, reply) in cases {
        let mut machine = starttls_machine();
        assert_eq!(feed(&mut machine, input).1, None);
        let out = output(&mut machine);
        assert!(out.ends_with(&format!("{reply}\r\n")), "{out}");
    }
    let mut plain = machine_with(ConnectionOptions::default());
    feed(&mut plain, b"EHLO c\r\nSTARTTLS\r\n");
    let out = output(&mut plain);
    assert!(
        !out.contains("250-STARTTLS") && out.ends_with("454 4.7.0 TLS not available\r\n"),
        "{out}"
    );
}

#[test]
fn submission_needs_auth_before_mail() {
    let mut machine = machine_with(ConnectionOptions {
        starttls: true,
        require_auth: true,
        ..ConnectionOptions::default()
    });
    feed(&mut machine, b"EHLO c\r\nMAIL FROM:<a@b.c>\r\n");
    assert!(output(&mut machine).ends_with("530 5.7.0 Authentication required\r\n"));
}

#[test]
fn shutdown_closes_idle_sessions_and_lets_a_message_finish() {
    let mut idle = starttls_machine();
    feed(&mut idle, b"EHLO c\r\n");
    idle.handle_shutdown();
    assert!(idle.is_closed());
    assert!(
        output(&mut idle).ends_with("421 4.3.2 mx.test Service shutting down, try again later\r\n")
    );

    let mut busy = starttls_machine();
    feed(
        &mut busy,
        b"EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\nSubject: x\r\n",
    );
    busy.handle_shutdown();
    assert!(!busy.is_closed(), "a message in progress is not cut off");
    feed(&mut busy, b"\r\nbody\r\n.\r\nNOOP\r\n");
    assert!(busy.is_closed());
    let out = output(&mut busy);
    assert!(
        out.ends_with(
            "250 2.0.0 OK\r\n421 4.3.2 mx.test Service shutting down, try again later\r\n"
        ),
        "{out}"
    );
}
