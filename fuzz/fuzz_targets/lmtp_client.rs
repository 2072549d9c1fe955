//! Fuzz target: an LMTP server's bytes, in two reads, into the LMTP client
//! codec; it never panics, never writes a control character it was not meant
//! to, and ends with a result for every recipient.
#![no_main]

use libfuzzer_sys::fuzz_target;
use net_receiver::protocol::lmtp::{DotStuffer, Envelope, LmtpClient};

fuzz_target!(|data: &[u8]| {
    let Some((&split, server)) = data.split_first() else {
        return;
    };
    let split = usize::from(split).min(server.len());
    let mut client = LmtpClient::new(Envelope {
        lhlo_name: "mx.test".to_owned(),
        sender: "a@b.example".to_owned(),
        recipients: vec!["x@y".to_owned(), "z@y".to_owned()],
        eight_bit: split % 2 == 0,
        smtputf8: split % 3 == 0,
    });
    let mut sent = Vec::new();
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
            stuffer.push(chunk, &mut sent);
            stuffer.finish(&mut sent);
            client.body_sent();
        }
    }
    client.connection_lost("end of input");
    assert_eq!(client.results().len(), 2);
    assert!(client.is_done());
});
