//! Fuzz target: one command line into the command parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use net_receiver::protocol::command::parse_command;

fuzz_target!(|line: &[u8]| {
    let _ = parse_command(line);
});
