//! Fuzz target: an exchanger's bytes, in two reads, into the callout probe
//! (`policy::callout::probe`); it never panics, never consumes more than it
//! was given, writes only CRLF-terminated command lines without other control
//! characters, and ends (at the latest at the end of input) with an outcome.
#![no_main]

use libfuzzer_sys::fuzz_target;
use net_receiver::policy::callout::probe::{Probe, ProbeRequest, Step};

fuzz_target!(|data: &[u8]| {
    let Some((&first, server)) = data.split_first() else {
        return;
    };
    let split = usize::from(first).min(server.len());
    let mut probe = Probe::new(ProbeRequest {
        helo_name: "mx.test".to_owned(),
        address: if first % 2 == 0 { "a@b.example" } else { "jösé@b.example" }.to_owned(),
        random: (first % 3 == 0).then(|| "nr-callout-0@b.example".to_owned()),
        starttls: first % 5 != 0,
    });
    let mut buffer = Vec::new();
    let mut done = false;
    'input: for chunk in [&server[..split], &server[split..]] {
        buffer.extend_from_slice(chunk);
        for _ in 0..64 {
            let (used, step) = probe.handle_input(&buffer);
            assert!(used <= buffer.len());
            buffer.drain(..used);
            match step {
                None => break,
                Some(Step::Send(bytes)) => {
                    let line = bytes.strip_suffix(b"\r\n").expect("CRLF-terminated");
                    assert!(!line.iter().any(|b| *b < 0x20 || *b == 0x7f));
                }
                Some(Step::StartTls) => {
                    buffer.clear();
                    if let Step::Send(bytes) = probe.tls_started() {
                        assert!(bytes.ends_with(b"\r\n"));
                    }
                }
                Some(Step::Done(_)) => {
                    done = true;
                    break 'input;
                }
            }
        }
    }
    if !done {
        let _ = probe.handle_eof();
    }
});
