//! Conversation tests of the state machine: scripts of client bytes, a stand-in
//! for the hooks that answers like the defaults, and a virtual clock. Every script
//! is also replayed split at every byte boundary and must give the same result.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::protocol::BareLineEnding;

/// The outcome of driving a machine with some input.
#[derive(Debug, PartialEq, Eq)]
struct Transcript {
    output: String,
    messages: Vec<Vec<u8>>,
    closed: bool,
}

fn limits() -> Limits {
    Limits {
        server_name: "mx.test".into(),
        ..Limits::default()
    }
}

/// Answers events the way the default hooks do; a recipient containing "reject"
/// is refused with 550.
fn respond(event: Event, messages: &mut Vec<Vec<u8>>) -> Reply {
    match event {
        Event::Ehlo { domain, .. } => Reply::plain(250, format!("mx.test Hello {domain}")),
        Event::MailFrom(_) => Reply::new(250, (2, 1, 0), "Sender OK"),
        Event::RcptTo(r) if r.argument.contains("reject") => {
            Reply::new(550, (5, 1, 1), "No such user")
        }
        Event::RcptTo(_) => Reply::new(250, (2, 1, 5), "Recipient OK"),
        Event::DataStart { .. } => Reply::plain(354, "Go ahead"),
        Event::Message {
            end: MessageEnd::Refused(refusal),
            ..
        } => Reply::from(refusal),
        Event::Message {
            end: MessageEnd::Complete(message),
            ..
        } => {
            messages.push(message);
            Reply::new(250, (2, 0, 0), "OK")
        }
        Event::Rset => Reply::new(250, (2, 0, 0), "Reset OK"),
        Event::Noop => Reply::new(250, (2, 0, 0), "OK"),
        Event::Help(_) => Reply::new(214, (2, 0, 0), "Commands"),
        Event::Vrfy(_) => Reply::new(252, (2, 5, 0), "Cannot VRFY"),
        Event::Expn(_) => Reply::new(502, (5, 5, 1), "No EXPN"),
        Event::Quit => Reply::new(221, (2, 0, 0), "Bye"),
        Event::Auth(c) if c.password.expose() == "secret" => {
            Reply::new(235, (2, 7, 0), "Authentication successful")
        }
        Event::Auth(_) => Reply::new(535, (5, 7, 8), "Authentication credentials invalid"),
        Event::StartTls => unreachable!("STARTTLS is not offered in these scripts"),
    }
}

/// Feeds `chunks` one after the other, keeping unconsumed bytes like a socket reader.
fn drive_chunks(limits: Limits, chunks: &[&[u8]]) -> Transcript {
    let now = Instant::now();
    let mut machine = Machine::new(Arc::new(limits), now);
    machine.answer(Reply::plain(220, "mx.test ESMTP"));
    let mut buffer = Vec::new();
    let mut messages = Vec::new();
    for chunk in chunks {
        buffer.extend_from_slice(chunk);
        loop {
            let progress = machine.handle_input(&buffer, now);
            buffer.drain(..progress.consumed);
            let Some(event) = progress.event else { break };
            let reply = respond(event, &mut messages);
            machine.answer(reply);
        }
    }
    let mut out = Vec::new();
    machine.poll_transmit(&mut out);
    Transcript {
        output: String::from_utf8_lossy(&out).into_owned(),
        messages,
        closed: machine.is_closed(),
    }
}

/// Drives `input` whole, then checks every two-chunk split gives the same transcript.
fn drive_with(limits: Limits, input: &[u8]) -> Transcript {
    let whole = drive_chunks(limits.clone(), &[input]);
    for split in 1..input.len() {
        let (a, b) = input.split_at(split);
        assert_eq!(
            drive_chunks(limits.clone(), &[a, b]),
            whole,
            "split at {split} differs"
        );
    }
    whole
}

fn drive(input: &[u8]) -> Transcript {
    drive_with(limits(), input)
}

/// The codes of the final line of each reply, greeting included.
fn codes(t: &Transcript) -> Vec<u16> {
    t.output
        .split("\r\n")
        .filter(|l| l.len() >= 4 && l.as_bytes()[3] == b' ')
        .filter_map(|l| l[..3].parse().ok())
        .collect()
}

const HELLO: &[u8] = b"EHLO client.test\r\n";

fn script(lines: &[&[u8]]) -> Vec<u8> {
    lines.concat()
}

#[test]
fn ehlo_advertises_extensions() {
    let t = drive(HELLO);
    assert_eq!(
        t.output,
        "220 mx.test ESMTP\r\n250-mx.test Hello client.test\r\n250-PIPELINING\r\n\
         250-SIZE 26214400\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n\
         250-CHUNKING\r\n250 HELP\r\n"
    );
    let t = drive(b"HELO client.test\r\n");
    assert_eq!(
        t.output,
        "220 mx.test ESMTP\r\n250 mx.test Hello client.test\r\n"
    );
}

#[test]
fn a_transaction_and_a_second_one() {
    let input = script(&[
        HELLO,
        b"MAIL FROM:<a@example.org>\r\n",
        b"RCPT TO:<b@example.net>\r\n",
        b"DATA\r\n",
        b"Subject: one\r\n\r\nbody\r\n.\r\n",
        b"MAIL FROM:<>\r\n",
        b"RCPT TO:<postmaster>\r\n",
        b"DATA\r\n",
        b"..dot\r\n.\r\n",
        b"QUIT\r\n",
    ]);
    let t = drive(&input);
    assert_eq!(
        codes(&t),
        [220, 250, 250, 250, 354, 250, 250, 250, 354, 250, 221]
    );
    assert_eq!(
        t.messages,
        [
            b"Subject: one\r\n\r\nbody\r\n".to_vec(),
            b".dot\r\n".to_vec()
        ]
    );
    assert!(t.closed);
}

#[test]
fn out_of_sequence_and_unknown_commands() {
    let cases: &[(&[u8], u16, &str)] = &[
        (
            b"MAIL FROM:<a@b.c>\r\n",
            503,
            "503 5.5.1 Send EHLO or HELO first",
        ),
        (b"RCPT TO:<a@b.c>\r\n", 503, "503 5.5.1 Send MAIL first"),
        (b"DATA\r\n", 503, "503 5.5.1 Send MAIL first"),
        (b"BDAT 0 LAST\r\n", 503, "503 5.5.1 Send MAIL first"),
        (b"FOO bar\r\n", 500, "500 5.5.2 Command not recognized"),
        (b"VFRY x\r\n", 500, "500 5.5.2"),
        (b"EHLO\r\n", 501, "501 5.5.4 EHLO needs an argument"),
        (b"HELO \r\n", 501, "501 5.5.4"),
        (b"DATA now\r\n", 501, "501 5.5.4 DATA takes no argument"),
        (b"NOOP \xff\xfe\r\n", 501, "501 5.5.2 Invalid UTF-8"),
        (b"NOOP a\0b\r\n", 501, "501 5.5.2 Control character"),
        (b"STARTTLS\r\n", 454, "454 4.7.0"),
        (b"AUTH PLAIN\r\n", 502, "502 5.5.1"),
        (b"EXPN list\r\n", 502, "502 5.5.1"),
        (b"VRFY joe\r\n", 252, "252 2.5.0"),
        (b"HELP\r\n", 214, "214 2.0.0"),
        (b"NOOP with argument\r\n", 250, "250 2.0.0 OK"),
        (b"RSET\r\n", 250, "250 2.0.0 Reset OK"),
    ];
    for (line, code, text) in cases {
        let t = drive(line);
        assert_eq!(codes(&t), [220, *code], "{}", String::from_utf8_lossy(line));
        assert!(
            t.output.contains(text),
            "{} → {}",
            String::from_utf8_lossy(line),
            t.output
        );
    }
}

#[test]
fn sequence_inside_a_session() {
    let input = script(&[
        HELLO,
        b"RCPT TO:<a@b.c>\r\n",      // 503 no MAIL
        b"MAIL FROM:<a@b.c>\r\n",    // 250
        b"MAIL FROM:<a@b.c>\r\n",    // 503 nested
        b"DATA\r\n",                 // 503 no RCPT
        b"RCPT TO:<reject@b.c>\r\n", // 550 (hook)
        b"DATA\r\n",                 // 503 still no valid RCPT
        b"RSET\r\n",                 // 250
        b"RCPT TO:<a@b.c>\r\n",      // 503 RSET cleared MAIL
        b"MAIL FROM:<a@b.c>\r\n",    // 250 EHLO kept
        b"EHLO again.test\r\n",      // 250 resets transaction
        b"RCPT TO:<a@b.c>\r\n",      // 503
    ]);
    let t = drive(&input);
    assert_eq!(
        codes(&t),
        [
            220, 250, 503, 250, 503, 503, 550, 503, 250, 503, 250, 250, 503
        ]
    );
    assert!(t.output.contains("503 5.5.1 Nested MAIL command"));
    assert!(t.output.contains("503 5.5.1 Send RCPT first"));
}

#[test]
fn mail_parameters() {
    let cases: &[(&[u8], u16, &str)] = &[
        (b"MAIL FROM:<a@b.c> SIZE=1000\r\n", 250, ""),
        (b"MAIL FROM:<a@b.c> SIZE=26214401\r\n", 552, "552 5.3.4"),
        (b"MAIL FROM:<a@b.c> SIZE=x\r\n", 501, "501 5.5.4"),
        (b"MAIL FROM:<a@b.c> BODY=8BITMIME\r\n", 250, ""),
        (b"MAIL FROM:<a@b.c> body=7bit\r\n", 250, ""),
        (b"MAIL FROM:<a@b.c> BODY=BINARYMIME\r\n", 555, "555 5.5.4"),
        (b"MAIL FROM:<a@b.c> SMTPUTF8\r\n", 250, ""),
        (
            b"MAIL FROM:<a@b.c> XYZ=1\r\n",
            555,
            "555 5.5.4 Unsupported MAIL parameter",
        ),
        (b"MAIL FROM:<a@b.c> SIZE=1 SIZE=2\r\n", 501, "Duplicate"),
        (b"MAIL FROM:a@b.c\r\n", 501, "501 5.1.7"),
        (b"MAIL FROM:<a@b..c>\r\n", 501, "501 5.1.7"),
        (b"MAIL FROM:<>\r\n", 250, ""),
        (b"MAIL FROM:<\xc3\xbc@b.c>\r\n", 553, "553 5.6.7"),
        (b"MAIL FROM:<\xc3\xbc@b.c> SMTPUTF8\r\n", 250, ""),
    ];
    for (line, code, text) in cases {
        let t = drive(&script(&[HELLO, line]));
        assert_eq!(
            codes(&t),
            [220, 250, *code],
            "{}",
            String::from_utf8_lossy(line)
        );
        assert!(t.output.contains(text), "{}", t.output);
    }
}

#[test]
fn recipients() {
    let cases: &[(&[u8], u16, &str)] = &[
        (b"RCPT TO:<postmaster>\r\n", 250, ""),
        (b"RCPT TO:<PostMaster>\r\n", 250, ""),
        (b"RCPT TO:<>\r\n", 501, "501 5.1.3"),
        (
            b"RCPT TO:<a@b.c> NOTIFY=NEVER\r\n",
            555,
            "555 5.5.4 Unsupported RCPT parameter",
        ),
        (b"RCPT TO:<\xc3\xbc@b.c>\r\n", 553, "553 5.6.7"),
    ];
    for (line, code, text) in cases {
        let t = drive(&script(&[HELLO, b"MAIL FROM:<a@b.c>\r\n", line]));
        assert_eq!(
            codes(&t),
            [220, 250, 250, *code],
            "{}",
            String::from_utf8_lossy(line)
        );
        assert!(t.output.contains(text), "{}", t.output);
    }
    let mut few = limits();
    few.max_recipients = 2;
    let input = script(&[
        HELLO,
        b"MAIL FROM:<a@b.c>\r\n",
        b"RCPT TO:<1@b.c>\r\nRCPT TO:<reject@b.c>\r\nRCPT TO:<2@b.c>\r\nRCPT TO:<3@b.c>\r\n",
    ]);
    let t = drive_with(few, &input);
    assert_eq!(codes(&t), [220, 250, 250, 250, 550, 250, 452]);
    assert!(t.output.contains("452 4.5.3 Too many recipients"));
}

#[test]
fn long_command_lines() {
    let mut long = b"NOOP ".to_vec();
    long.resize(600, b'x');
    long.extend_from_slice(b"\r\nNOOP\r\n");
    let t = drive(&long);
    assert_eq!(codes(&t), [220, 500, 250]);
    assert!(t.output.contains("500 5.5.6 Line too long"));
    // Exactly 512 octets with CRLF is fine.
    let mut exact = b"NOOP ".to_vec();
    exact.resize(510, b'x');
    exact.extend_from_slice(b"\r\n");
    assert_eq!(codes(&drive(&exact)), [220, 250]);

    // 100 kB without a newline is consumed as it comes, never buffered.
    let now = Instant::now();
    let mut machine = Machine::new(Arc::new(limits()), now);
    machine.answer(Reply::plain(220, "hi"));
    let junk = vec![b'a'; 4096];
    for _ in 0..25 {
        let progress = machine.handle_input(&junk, now);
        assert_eq!(progress.consumed, junk.len());
    }
    let progress = machine.handle_input(b"\r\nNOOP\r\n", now);
    assert_eq!(progress.consumed, 8);
    assert_eq!(progress.event, Some(Event::Noop));
    let mut out = Vec::new();
    machine.poll_transmit(&mut out);
    assert!(String::from_utf8_lossy(&out).ends_with("500 5.5.6 Line too long\r\n"));
}

#[test]
fn too_many_errors_close_the_session() {
    let input = b"FOO\r\n".repeat(12);
    let t = drive(&input);
    assert_eq!(codes(&t), [&[220][..], &[500; 10], &[421]].concat());
    assert!(
        t.output
            .ends_with("421 4.7.0 mx.test Too many errors, closing connection\r\n")
    );
    assert!(t.closed);
}

#[test]
fn timeouts_use_the_virtual_clock() {
    let t0 = Instant::now();
    let mut machine = Machine::new(Arc::new(limits()), t0);
    assert_eq!(
        machine.poll_timeout(),
        None,
        "no deadline while the greeting is pending"
    );
    machine.answer(Reply::plain(220, "hi"));
    assert_eq!(machine.poll_timeout(), Some(t0 + Duration::from_secs(300)));
    // Bytes of an unfinished line do not move the deadline (slowloris).
    let _ = machine.handle_input(b"NO", t0 + Duration::from_secs(200));
    assert_eq!(machine.poll_timeout(), Some(t0 + Duration::from_secs(300)));
    machine.handle_timeout(t0 + Duration::from_secs(299));
    assert!(!machine.is_closed());
    machine.handle_timeout(t0 + Duration::from_secs(300));
    assert!(machine.is_closed());
    let mut out = Vec::new();
    machine.poll_transmit(&mut out);
    assert!(
        String::from_utf8_lossy(&out)
            .ends_with("421 4.4.2 mx.test Timeout waiting for client input\r\n")
    );
}

#[test]
fn data_timeout_applies_while_receiving_a_message() {
    let t0 = Instant::now();
    let mut machine = Machine::new(Arc::new(limits()), t0);
    machine.answer(Reply::plain(220, "hi"));
    let input = script(&[
        HELLO,
        b"MAIL FROM:<a@b.c>\r\n",
        b"RCPT TO:<d@e.f>\r\n",
        b"DATA\r\n",
    ]);
    let mut rest = &input[..];
    let mut sink = Vec::new();
    loop {
        let p = machine.handle_input(rest, t0);
        rest = &rest[p.consumed..];
        let Some(event) = p.event else { break };
        let reply = respond(event, &mut sink);
        machine.answer(reply);
    }
    assert_eq!(machine.poll_timeout(), Some(t0 + Duration::from_secs(600)));
    let t1 = t0 + Duration::from_secs(500);
    let _ = machine.handle_input(b"partial line", t1);
    assert_eq!(machine.poll_timeout(), Some(t1 + Duration::from_secs(600)));
}

/// Every smuggling sequence stays inside the one message.
#[test]
fn smuggling_sequences_never_end_data() {
    let sequences: &[&[u8]] = &[
        b"\n.\n",
        b"\n.\r\n",
        b"\r.\n",
        b"\r.\r\n",
        b"\n.\r",
        b"\r.\r",
        b"\r\n.\n",
        b"\r\n.\rX",
        b"\r\n\0.\r\n",
        b"\r\n.\0\r\n",
        b"\r\n.\r\r\n",
    ];
    for sequence in sequences {
        let smuggled = script(&[
            b"Subject: x\r\n\r\nhello",
            sequence,
            b"MAIL FROM:<evil@x.y>\r\nRCPT TO:<victim@x.y>\r\nDATA\r\nsmuggled\r\n.\r\n",
        ]);
        let input = script(&[
            HELLO,
            b"MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\n",
            &smuggled,
            b"QUIT\r\n",
        ]);
        let name = String::from_utf8_lossy(sequence).escape_debug().to_string();
        let mut normalize = limits();
        normalize.bare_line_ending = BareLineEnding::Normalize;
        let t = drive_with(normalize, &input);
        assert_eq!(codes(&t), [220, 250, 250, 250, 354, 250, 221], "{name}");
        assert_eq!(t.messages.len(), 1, "{name}");
        let message = String::from_utf8_lossy(&t.messages[0]).into_owned();
        assert!(
            message.contains("MAIL FROM:<evil@x.y>"),
            "{name}: {message:?}"
        );
        assert!(message.ends_with("smuggled\r\n"), "{name}: {message:?}");

        let t = drive(&input);
        let bare = sequence.iter().enumerate().any(|(i, &b)| {
            (b == b'\r' && sequence.get(i + 1) != Some(&b'\n'))
                || (b == b'\n' && (i == 0 || sequence[i - 1] != b'\r'))
        });
        let end = if bare { 550 } else { 250 };
        assert_eq!(codes(&t), [220, 250, 250, 250, 354, end, 221], "{name}");
        assert_eq!(t.messages.len(), usize::from(!bare), "{name}");
    }
}

#[test]
fn message_limits_are_reported_after_the_end() {
    let mut small = limits();
    small.max_message_size = 100;
    let big = script(&[
        HELLO,
        b"MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\n",
        &b"0123456789\r\n".repeat(20),
        b".\r\nNOOP\r\n",
    ]);
    let t = drive_with(small, &big);
    assert_eq!(codes(&t), [220, 250, 250, 250, 354, 552, 250]);
    assert!(t.messages.is_empty());

    let mut long_line = script(&[HELLO, b"MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\n"]);
    long_line.extend(std::iter::repeat_n(b'x', 999));
    long_line.extend_from_slice(b"\r\n.\r\n");
    let t = drive_chunks(limits(), &[&long_line]);
    assert_eq!(codes(&t), [220, 250, 250, 250, 354, 500]);
    assert!(
        t.output
            .contains("500 5.5.6 Message refused: line longer than 1000 octets")
    );
}

#[test]
fn pipelined_replies_come_in_one_batch_in_order() {
    let input = script(&[
        HELLO,
        b"MAIL FROM:<a@b.c>\r\nRCPT TO:<reject@e.f>\r\nRCPT TO:<d@e.f>\r\nDATA\r\n",
    ]);
    let t = drive_chunks(limits(), &[&input]);
    assert_eq!(codes(&t), [220, 250, 250, 550, 250, 354]);
}

#[test]
fn enhanced_codes_on_every_reply_but_greeting_ehlo_and_354() {
    let input = script(&[
        b"NOOP\r\n",
        HELLO,
        b"MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\nx\r\n.\r\nFOO\r\nQUIT\r\n",
    ]);
    let t = drive(&input);
    for line in t.output.split("\r\n").filter(|l| !l.is_empty()) {
        let code = &line[..3];
        if ["220", "354"].contains(&code) || line.starts_with("250-") || line == "250 HELP" {
            continue;
        }
        let enhanced = line[4..].split(' ').next().unwrap_or("");
        assert!(
            enhanced.split('.').count() == 3 && enhanced.starts_with(&code[..1]),
            "no enhanced code in {line:?}"
        );
    }
}

#[test]
fn refused_greeting_only_allows_quit() {
    let now = Instant::now();
    let mut machine = Machine::new(Arc::new(limits()), now);
    machine.answer(Reply::new(554, (5, 7, 1), "No service"));
    let p = machine.handle_input(b"EHLO x\r\nQUIT\r\n", now);
    assert_eq!(p.event, Some(Event::Quit));
    machine.answer(Reply::new(221, (2, 0, 0), "Bye"));
    let mut out = Vec::new();
    machine.poll_transmit(&mut out);
    assert_eq!(
        String::from_utf8_lossy(&out),
        "554 5.7.1 No service\r\n503 5.5.1 Session refused, only QUIT is accepted\r\n221 2.0.0 Bye\r\n"
    );
    assert!(machine.is_closed());
}

#[test]
fn a_closing_reply_ends_the_session() {
    let now = Instant::now();
    let mut machine = Machine::new(Arc::new(limits()), now);
    machine.answer(Reply::plain(220, "hi"));
    let p = machine.handle_input(b"EHLO x\r\nNOOP\r\n", now);
    assert!(matches!(p.event, Some(Event::Ehlo { .. })));
    machine.answer(Reply::new(550, (5, 7, 1), "Go away").and_close());
    assert!(machine.is_closed());
    assert_eq!(machine.handle_input(b"NOOP\r\n", now).consumed, 0);
}

#[test]
fn a_go_ahead_for_data_is_always_354() {
    let now = Instant::now();
    let mut machine = Machine::new(Arc::new(limits()), now);
    machine.answer(Reply::plain(220, "hi"));
    let mut input: &[u8] =
        b"HELO x\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\nRSET\r\n.\r\n";
    let mut replies = [
        Reply::plain(250, "hello"),
        Reply::new(250, (2, 1, 0), "ok"),
        Reply::new(250, (2, 1, 5), "ok"),
        // A hook that wrongly answers DATA with 250.
        Reply::new(250, (2, 0, 0), "go on"),
    ]
    .into_iter();
    let mut events = Vec::new();
    loop {
        let progress = machine.handle_input(input, now);
        input = &input[progress.consumed..];
        let Some(event) = progress.event else { break };
        events.push(event);
        match replies.next() {
            Some(reply) => machine.answer(reply),
            None => break,
        }
    }
    // "RSET" went into the message instead of being run as a command.
    assert!(matches!(
        events.last(),
        Some(Event::Message { end: MessageEnd::Complete(message), .. }) if message == b"RSET\r\n"
    ));
    let mut out = Vec::new();
    machine.poll_transmit(&mut out);
    assert!(String::from_utf8_lossy(&out).ends_with("354 go on\r\n"));
}

mod auth;
mod bdat;
mod chunking;
mod deadlines;
mod facts;
mod header_limit;
mod properties;
mod recipient_overshoot;
mod starttls;
