//! Fuzz target: the first bytes of a connection into the PROXY header parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use net_receiver::protocol::proxy::{ProxyStatus, parse_proxy_header};

fuzz_target!(|data: &[u8]| {
    if let Ok(ProxyStatus::Complete { consumed, .. }) = parse_proxy_header(data) {
        assert!(consumed <= data.len());
    }
});
