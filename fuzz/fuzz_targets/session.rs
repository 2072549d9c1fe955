//! Fuzz target: the whole sans-IO session fed arbitrary bytes in arbitrary chunks,
//! with AUTH and STARTTLS offered, every event answered the way the default hooks
//! answer (a password "secret" is right). The first byte picks the chunk size and
//! the options. Whatever comes in, nothing panics and the input is consumed within
//! bounds.
#![no_main]

use std::sync::Arc;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use net_receiver::protocol::machine::ehlo_keywords;
use net_receiver::protocol::{ConnectionOptions, Event, Limits, Machine, MessageEnd, Reply};

fn answer(machine: &mut Machine, event: Event) -> Option<Reply> {
    Some(match event {
        Event::Ehlo { .. } => Reply::plain(250, "fuzz Hello"),
        Event::MailFrom(_) => Reply::new(250, (2, 1, 0), "OK"),
        Event::RcptTo(r) if r.argument.contains("no") => Reply::new(550, (5, 1, 1), "no"),
        Event::RcptTo(_) => Reply::new(250, (2, 1, 5), "OK"),
        Event::DataStart { .. } => Reply::plain(354, "go"),
        Event::Message { end: MessageEnd::Refused(refusal), .. } => Reply::from(refusal),
        Event::Message { end: MessageEnd::Complete(_), .. } => Reply::new(250, (2, 0, 0), "OK"),
        Event::Auth(c) if c.password.expose() == "secret" => Reply::new(235, (2, 7, 0), "OK"),
        Event::Auth(_) => Reply::new(535, (5, 7, 8), "no"),
        Event::Quit => Reply::new(221, (2, 0, 0), "bye"),
        Event::StartTls => {
            machine.tls_established(Instant::now());
            return None;
        }
        _ => Reply::new(250, (2, 0, 0), "OK"),
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let limits = Arc::new(Limits {
        max_message_size: 2048,
        max_errors: 50,
        ..Limits::default()
    });
    let keywords = ehlo_keywords(&limits);
    let options = ConnectionOptions {
        starttls: control & 1 != 0,
        require_auth: control & 2 != 0,
        auth: true,
        allow_plaintext_auth: control & 4 != 0,
        ..ConnectionOptions::default()
    };
    let now = Instant::now();
    let mut machine = Machine::with_options(limits, keywords, options, now);
    machine.answer(Reply::plain(220, "fuzz"));
    let chunk = usize::from(control >> 3).max(1);
    let mut buffer: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    for piece in input.chunks(chunk) {
        buffer.extend_from_slice(piece);
        for _ in 0..10_000 {
            let progress = machine.handle_input(&buffer, now);
            assert!(progress.consumed <= buffer.len());
            buffer.drain(..progress.consumed);
            let Some(event) = progress.event else { break };
            if let Some(reply) = answer(&mut machine, event) {
                machine.answer(reply);
            }
        }
        machine.poll_transmit(&mut out);
        out.clear();
        if machine.is_closed() {
            break;
        }
    }
});
