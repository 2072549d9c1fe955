//! Fuzz target: an LMTP server's bytes, in two reads, into the LMTP client
//! codec — a first transaction (closing or kept open) or one resumed on a kept
//! connection (with and without PIPELINING); it never panics, never writes a
//! control character it was not meant to, ends with a result for every
//! recipient, and a connection it says can be kept was sent no QUIT.
#![no_main]

use libfuzzer_sys::fuzz_target;
use net_receiver::protocol::lmtp::{DotStuffer, Envelope, LmtpClient, ServerReply};

fuzz_target!(|data: &[u8]| {
    let Some((&split, server)) = data.split_first() else {
        return;
    };
    let envelope = Envelope {
        lhlo_name: "mx.test".to_owned(),
        sender: "a@b.example".to_owned(),
        recipients: vec!["x@y".to_owned(), "z@y".to_owned()],
        eight_bit: split % 2 == 0,
        smtputf8: split % 3 == 0,
    };
    let lhlo = |pipelining: bool| ServerReply {
        code: 250,
        lines: if pipelining {
            vec!["lmtp".to_owned(), "PIPELINING".to_owned(), "8BITMIME".to_owned()]
        } else {
            vec!["lmtp".to_owned()]
        },
    };
    let mut client = match split % 4 {
        0 => LmtpClient::new(envelope),
        1 => LmtpClient::new(envelope).keep_open(),
        2 => LmtpClient::resume(envelope, lhlo(true)),
        _ => LmtpClient::resume(envelope, lhlo(false)),
    };
    let split = usize::from(split).min(server.len());
    // The commands, and the bodies sent.
    let mut sent = Vec::new();
    let mut bodies = Vec::new();
    let mut buffer = Vec::new();
    for chunk in [&server[..split], &server[split..]] {
        buffer.extend_from_slice(chunk);
        loop {
            let used = client.handle_input(&buffer);
            assert!(used <= buffer.len());
            buffer.drain(..used);
            client.poll_transmit(&mut sent);
            if !client.wants_body() {
                break;
            }
            let mut stuffer = DotStuffer::default();
            stuffer.push(chunk, &mut bodies);
            stuffer.finish(&mut bodies);
            client.body_sent();
        }
    }
    if client.reusable() {
        assert!(client.is_done());
        assert!(!sent.windows(6).any(|w| w == b"QUIT\r\n"));
    }
    client.connection_lost("end of input");
    client.poll_transmit(&mut sent);
    assert_eq!(client.results().len(), 2);
    assert!(client.is_done());
});
