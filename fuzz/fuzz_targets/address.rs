//! Fuzz target: a MAIL/RCPT argument into the path parser, its parameters and the
//! local-part analysis; the first byte picks MAIL or RCPT.
#![no_main]

use libfuzzer_sys::fuzz_target;
use net_receiver::protocol::address::{
    PathKind, analyze_local_part, parameters, parse_path_argument,
};

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let kind = if kind & 1 == 0 {
        PathKind::Reverse
    } else {
        PathKind::Forward
    };
    if let Ok(parsed) = parse_path_argument(text, kind) {
        for parameter in parameters(parsed.parameters) {
            let _ = parameter;
        }
        if let net_receiver::protocol::Path::Mailbox(mailbox) = &parsed.path {
            let _ = analyze_local_part(&mailbox.local_part);
        }
    }
    let _ = analyze_local_part(text);
});
