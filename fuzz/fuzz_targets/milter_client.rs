//! Fuzz target: a milter's bytes, in two reads, into the milter client codec
//! through a whole message (negotiation, envelope, header, body, end of
//! message); it never panics, consumes no more than it was given, and stops
//! for good after an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use net_receiver::protocol::milter::{Event, MilterClient, Offer};

fuzz_target!(|data: &[u8]| {
    let Some((&split, milter)) = data.split_first() else {
        return;
    };
    let split = usize::from(split).min(milter.len());
    let mut client = MilterClient::new(Offer::default());
    let mut sent = Vec::new();
    let mut buffer = Vec::new();
    let mut step = 0usize;
    let mut failed = false;
    for chunk in [&milter[..split], &milter[split..]] {
        buffer.extend_from_slice(chunk);
        // Each round consumes a frame or stops: bounded by the input.
        for _ in 0..=buffer.len() {
            let (used, event) = match client.handle_input(&buffer) {
                Ok(found) => found,
                Err(_) => {
                    failed = true;
                    break;
                }
            };
            assert!(used <= buffer.len());
            buffer.drain(..used);
            if matches!(event, Some(Event::Negotiated | Event::Answer(_))) {
                // The next command of a message, as the driver sends them.
                let _ = match step {
                    0 => client.connect(&[("j", "mx")], "[192.0.2.1]", None),
                    1 => client.helo(&[], "client.test"),
                    2 => client.mail(&[("i", "ID")], &["<a@b.test>", "SIZE=5"]),
                    3 => client.rcpt(&[], &["<c@d.test>"]),
                    4 => client.data(&[]),
                    5 => client.header(b"Subject", b" hi\r\n there"),
                    6 => client.end_of_header(&[]),
                    7 => client.body(b"body\r\n").map(|(_, awaits)| awaits),
                    8 => client.end_of_message(&[]),
                    _ => Ok(false),
                };
                step += 1;
                let _ = client.take_modifications();
            }
            client.poll_transmit(&mut sent);
            if used == 0 {
                break;
            }
        }
        if failed {
            break;
        }
    }
    if failed {
        assert!(client.handle_input(b"\0\0\0\x01c").is_err());
        assert!(client.helo(&[], "x").is_err());
    }
});
