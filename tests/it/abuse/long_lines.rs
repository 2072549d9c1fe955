//! 100 MB without a newline, sent as fast as loopback takes it, with
//! `max_message_size` = 64 MiB: as a command line it gets `500 5.5.6` (the line is
//! skipped, never buffered) and the session goes on; inside DATA it gets `552
//! 5.3.4` (over the size limit), and a 32 MiB line under the size limit gets `500
//! 5.5.6` (the text line limit, 1000 octets). Each time the server's memory
//! high-water mark stays within [`FLAT_MIB`] of where it was before, and a normal
//! message still goes through afterwards. The test sends one 64 KiB chunk over
//! and over; it never holds the 100 MB itself.

use std::time::{Duration, Instant};

use super::{MIB, Memory, exclusive, fresh_transaction, ms, start};
use crate::support::common::{Client, expect_messages};

/// 100 MiB.
const HUNDRED_MB: usize = 100 * 1024 * 1024;
/// The server's `max_message_size` (64 MiB).
const MAX_MESSAGE: usize = 64 * 1024 * 1024;
/// How far the server's memory high-water mark may rise above its resident size
/// before the abuse.
const FLAT_MIB: u64 = 16;
/// Longest time one 100 MB send and its reply may take (debug build).
const SEND_LIMIT: Duration = Duration::from_secs(30);

/// Sends `total` bytes of `A` (no line end) in 64 KiB chunks, then `end`;
/// returns how long until the reply with `code` and `enhanced` came.
fn send_long_line(
    client: &mut Client,
    total: usize,
    end: &[u8],
    code: u16,
    enhanced: &str,
) -> Duration {
    let chunk = vec![b'A'; 64 * 1024];
    let started = Instant::now();
    let mut sent = 0;
    while sent < total {
        let n = chunk.len().min(total - sent);
        client.send(&chunk[..n]);
        sent += n;
    }
    client.send(end);
    client.expect_enhanced(code, enhanced);
    let took = started.elapsed();
    assert!(
        took < SEND_LIMIT,
        "{total} bytes and the reply took {took:?}"
    );
    took
}

#[test]
fn a_hundred_megabytes_without_a_newline_leave_the_memory_flat() {
    let _serial = exclusive();
    let dir = tempfile::tempdir().expect("tempdir");
    let binary = start(
        dir.path(),
        &format!("quiet = true\nmax_message_size = {MAX_MESSAGE}\n"),
    );
    let pid = binary.pid();
    let addr = binary.addr();
    fresh_transaction(addr, "warm-up");
    let baseline = Memory::of(pid);
    let flat = |what: &str| {
        let now = Memory::of(pid);
        assert!(
            now.growth_since(baseline) < FLAT_MIB * MIB,
            "{what}: {now:?}, before {baseline:?}"
        );
        now
    };

    let mut client = Client::open(addr);
    client.read_greeting(220);
    client.cmd("EHLO long.test", 250);
    let command = send_long_line(&mut client, HUNDRED_MB, b"\r\n", 500, "5.5.6");
    client.cmd("NOOP", 250);
    let after_command = flat("100 MB command line");

    client.start_data("a@example.com", "b@example.com");
    let data = send_long_line(&mut client, HUNDRED_MB, b"\r\n.\r\n", 552, "5.3.4");
    let after_data = flat("100 MB line in DATA");

    client.start_data("a@example.com", "b@example.com");
    let under = send_long_line(&mut client, 32 * 1024 * 1024, b"\r\n.\r\n", 500, "5.5.6");
    let after_under = flat("32 MiB line in DATA");

    client.start_data("a@example.com", "b@example.com");
    client.send(b"Subject: after the long lines\r\n\r\nfine\r\n.\r\n");
    client.expect_enhanced(250, "2.0.0");
    client.quit();
    // The warm-up and the last one.
    expect_messages(&dir.path().join("Maildir"), 2);
    eprintln!(
        "long lines: 100 MB command line -> 500 in {} ms, 100 MB DATA line -> 552 in {} ms, \
         32 MiB DATA line -> 500 in {} ms; server RSS {} KiB before, VmHWM {} / {} / {} KiB after each",
        ms(command),
        ms(data),
        ms(under),
        baseline.rss,
        after_command.hwm,
        after_data.hwm,
        after_under.hwm,
    );
}
