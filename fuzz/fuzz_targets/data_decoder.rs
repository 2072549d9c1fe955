//! Fuzz target: message bytes into the DATA decoder in chunks. The first byte picks
//! the chunk size and the bare-line-ending policy; the decoded size never exceeds
//! the limit and `consumed` never exceeds the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use net_receiver::protocol::data::{BareLineEnding, DataDecoder, DataLimits};

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let limits = DataLimits {
        max_message_size: 4096,
        max_line_length: 1000,
        bare_line_ending: if control & 0x80 == 0 {
            BareLineEnding::Reject
        } else {
            BareLineEnding::Normalize
        },
    };
    let chunk = usize::from(control & 0x7f).max(1);
    let mut decoder = DataDecoder::new(limits);
    let mut out = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    for piece in input.chunks(chunk) {
        pending.extend_from_slice(piece);
        let decoded = decoder.decode(&pending, &mut out);
        assert!(decoded.consumed <= pending.len());
        pending.drain(..decoded.consumed);
        assert!(out.len() as u64 <= limits.max_message_size);
        if decoded.finished {
            break;
        }
    }
});
