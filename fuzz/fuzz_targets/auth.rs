//! Fuzz target: the AUTH decoders. A session past EHLO (plaintext AUTH allowed)
//! gets `AUTH <mechanism> [initial response]` and then the fuzzer's lines as SASL
//! responses: base64, PLAIN's NUL-separated fields, LOGIN's two steps, `*`,
//! overlong lines. The first byte picks the mechanism and whether the first line
//! is an initial response. Nothing panics; a credential event carries what the
//! client sent, never a user name or authorization identity with NUL, CR or LF.
#![no_main]

use std::sync::Arc;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use net_receiver::protocol::machine::ehlo_keywords;
use net_receiver::protocol::{ConnectionOptions, Event, Limits, Machine, Reply};

const MECHANISMS: [&str; 4] = ["PLAIN", "LOGIN", "plain", "CRAM-MD5"];

fuzz_target!(|data: &[u8]| {
    let Some((&control, responses)) = data.split_first() else {
        return;
    };
    let limits = Arc::new(Limits::default());
    let keywords = ehlo_keywords(&limits);
    let options = ConnectionOptions {
        auth: true,
        allow_plaintext_auth: true,
        ..ConnectionOptions::default()
    };
    let now = Instant::now();
    let mut machine = Machine::with_options(limits, keywords, options, now);
    machine.answer(Reply::plain(220, "fuzz"));
    let mechanism = MECHANISMS[usize::from(control & 3)];
    let mut input = format!("EHLO fuzz\r\nAUTH {mechanism}").into_bytes();
    if control & 4 != 0 {
        input.push(b' '); // the first fuzzed line is the initial response
    } else {
        input.extend_from_slice(b"\r\n");
    }
    input.extend_from_slice(responses);
    let mut out = Vec::new();
    let mut rest: &[u8] = &input;
    for _ in 0..10_000 {
        let progress = machine.handle_input(rest, now);
        assert!(progress.consumed <= rest.len());
        rest = &rest[progress.consumed..];
        let Some(event) = progress.event else { break };
        let reply = match event {
            Event::Ehlo { .. } => Reply::plain(250, "fuzz"),
            Event::Auth(credentials) => {
                // No hook ever sees a user name or authzid with NUL, CR or LF.
                let unclean = |s: &str| s.contains(['\0', '\r', '\n']);
                assert!(!unclean(&credentials.username));
                assert!(!credentials.authorization.as_deref().is_some_and(unclean));
                if credentials.password.expose() == "secret" {
                    Reply::new(235, (2, 7, 0), "OK")
                } else {
                    Reply::new(535, (5, 7, 8), "no")
                }
            }
            _ => Reply::new(250, (2, 0, 0), "OK"),
        };
        machine.answer(reply);
        machine.poll_transmit(&mut out);
        out.clear();
        if machine.is_closed() {
            break;
        }
    }
});
