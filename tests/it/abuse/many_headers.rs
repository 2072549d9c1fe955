//! A million header lines (`X-H: v`, 8 MB) in DATA.
//!
//! * Over `max_message_size` (4 MiB): `552 5.3.4`, and the server's memory
//!   high-water mark stays within [`FLAT_MIB`] (the decoder stops storing at the
//!   limit).
//! * Under it (16 MiB), with the default `max_header_size` (1 MiB): `552 5.3.4`
//!   for the header section, and the memory stays flat as well.
//! * Under it with `max_header_size = 0` (no limit, the admin's choice):
//!   accepted (`250`) within [`MESSAGE_LIMIT`], stored byte for
//!   byte and printed as JSON with all million headers. The seed's mail structure
//!   keeps each header line as a string of its own (~60 MB for these 8 MB), so
//!   the memory is bounded by the message size times that, not flat: one message
//!   may raise the high-water mark by at most [`ONE_MESSAGE_MIB`], three (two in
//!   one session, one in another) by at most [`THREE_MESSAGES_MIB`].
//! * In process: the `closed` hook sees finished transactions without their
//!   headers, lines or bytes, so repeats in one session do not pile up (before,
//!   each kept its ~60 MB header map for the rest of the session).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use net_receiver::{Context, Receiver};

use super::{MIB, Memory, exclusive, fresh_transaction, ms, start};
use crate::support::common::{Client, TestServer, config, expect_messages, split_stored};

/// Header lines per message.
const LINES: usize = 1_000_000;
const HEADER: &[u8] = b"X-H: v\r\n";
const BODY: &[u8] = b"\r\nbody\r\n";
/// How far the memory high-water mark may rise for a refused message.
const FLAT_MIB: u64 = 16;
/// How far it may rise for the first accepted message: 16 times its 8 MB (the
/// message, its header map and their copies on the way; ~80 MiB measured).
const ONE_MESSAGE_MIB: u64 = 128;
/// How far it may rise for three accepted messages: memory freed on one runtime
/// thread is not always reused on another, so up to one such peak per runtime
/// thread (~140 MiB measured with two).
const THREE_MESSAGES_MIB: u64 = 256;
/// Longest time for sending one message and getting its reply (debug build).
const MESSAGE_LIMIT: Duration = Duration::from_secs(30);

/// Sends the million-header message in ~64 KiB writes after a 354 and reads the
/// reply, which must have `code`; returns how long it took.
fn send_many_headers(client: &mut Client, code: u16) -> Duration {
    client.start_data("many@example.com", "rcpt@example.com");
    let per_write = 8192;
    let chunk = HEADER.repeat(per_write);
    let started = Instant::now();
    for _ in 0..LINES / per_write {
        client.send(&chunk);
    }
    client.send(&HEADER.repeat(LINES % per_write));
    client.send(BODY);
    client.send(b".\r\n");
    client.expect(code);
    let took = started.elapsed();
    assert!(took < MESSAGE_LIMIT, "a million header lines took {took:?}");
    took
}

fn session(addr: SocketAddr) -> Client {
    let mut client = Client::open(addr);
    client.read_greeting(220);
    client.cmd("EHLO many.test", 250);
    client
}

/// Sends the million header lines to a binary started with `config`, expects
/// 552, and checks the memory high-water mark rose by less than `bound_mib`.
fn refused_with_flat_memory(what: &str, config: &str, bound_mib: u64) {
    let _serial = exclusive();
    let dir = tempfile::tempdir().expect("tempdir");
    let binary = start(dir.path(), config);
    let pid = binary.pid();
    fresh_transaction(binary.addr(), "warm-up");
    let baseline = Memory::of(pid);
    let mut client = session(binary.addr());
    let took = send_many_headers(&mut client, 552);
    let after = Memory::of(pid);
    client.cmd("RSET", 250);
    client.quit();
    expect_messages(&dir.path().join("Maildir"), 1);
    assert!(
        after.growth_since(baseline) < bound_mib * MIB,
        "{what}: {after:?}, before {baseline:?}"
    );
    eprintln!(
        "many headers over the {what}: 552 in {} ms; server RSS {} KiB before, VmHWM {} KiB after",
        ms(took),
        baseline.rss,
        after.hwm
    );
}

#[test]
fn a_million_header_lines_over_the_size_limit_get_552_and_the_memory_stays_flat() {
    refused_with_flat_memory(
        "size limit",
        "quiet = true\nmax_message_size = 4194304\n",
        FLAT_MIB,
    );
}

#[test]
fn a_million_header_lines_over_the_header_limit_get_552_and_the_memory_stays_flat() {
    // The message itself (8 MB) is held until its end; nothing is built from it.
    refused_with_flat_memory(
        "header limit",
        "quiet = true\nmax_message_size = 16777216\n",
        FLAT_MIB + 16,
    );
}

#[test]
fn a_million_header_lines_under_the_size_limit_are_accepted_in_bounded_memory() {
    let _serial = exclusive();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut binary = start(
        dir.path(),
        "max_message_size = 16777216\nmax_header_size = 0\n",
    );
    let pid = binary.pid();
    fresh_transaction(binary.addr(), "warm-up");
    let baseline = Memory::of(pid);
    let mut client = session(binary.addr());
    let first = send_many_headers(&mut client, 250);
    let after_one = Memory::of(pid);
    let second = send_many_headers(&mut client, 250);
    client.quit();
    let mut client = session(binary.addr());
    let third = send_many_headers(&mut client, 250);
    client.quit();
    let after_three = Memory::of(pid);
    assert!(
        after_one.growth_since(baseline) < ONE_MESSAGE_MIB * MIB,
        "one message: {after_one:?}, before {baseline:?}"
    );
    assert!(
        after_three.growth_since(baseline) < THREE_MESSAGES_MIB * MIB,
        "three messages: {after_three:?}, before {baseline:?}"
    );

    let stdout = binary.terminate();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "one JSON line per mail");
    let mail: serde_json::Value = serde_json::from_str(lines[3]).expect("JSON");
    let headers = mail["data"]["headers"]["x_h"].as_array().expect("x_h");
    assert_eq!(headers.len(), LINES);
    assert_eq!(mail["data"]["text"], serde_json::json!(["body"]));
    let size = LINES * HEADER.len() + BODY.len();
    assert_eq!(mail["data"]["size"], size);
    let files = expect_messages(&dir.path().join("Maildir"), 4);
    let stored = files.iter().filter(|f| split_stored(f).body.len() == size);
    assert_eq!(stored.count(), 3, "the three stored byte for byte");
    eprintln!(
        "many headers under the limit: 250 in {} / {} / {} ms; server RSS {} KiB before, \
         VmHWM {} KiB after one, {} KiB after three",
        ms(first),
        ms(second),
        ms(third),
        baseline.rss,
        after_one.hwm,
        after_three.hwm
    );
}

/// Records, when the connection closes, how many headers, text lines and bytes
/// each finished transaction still holds.
#[derive(Clone, Default)]
struct Kept(Arc<Mutex<Vec<(usize, usize, usize)>>>);

impl Receiver for Kept {
    async fn closed(&self, cx: &mut Context<'_>) {
        let kept = cx
            .transactions
            .iter()
            .filter_map(|mail| mail.data.as_ref())
            .map(|data| (data.headers.len(), data.text.len(), data.raw.len()));
        self.0.lock().expect("kept").extend(kept);
    }
}

#[test]
fn finished_transactions_keep_no_headers_lines_or_bytes() {
    let kept = Kept::default();
    let server = TestServer::start_with(config(), kept.clone());
    let mut client = Client::ehlo(server.port);
    for n in 0..3 {
        client.start_data("a@example.com", "b@example.com");
        client.send(format!("Subject: {n}\r\nX-A: 1\r\nX-B: 2\r\n\r\nline\r\n.\r\n").as_bytes());
        client.expect_enhanced(250, "2.0.0");
    }
    client.quit();
    let deadline = Instant::now() + Duration::from_secs(10);
    while kept.0.lock().expect("kept").is_empty() {
        assert!(Instant::now() < deadline, "closed was not called");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(*kept.0.lock().expect("kept"), [(0, 0, 0); 3]);
    server.expect_messages(3);
}
