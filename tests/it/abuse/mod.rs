//! Load and abuse (issue 7, "Reliability under hostile input"), each against the
//! real binary on loopback so the memory measured (`VmRSS`/`VmHWM` of
//! `/proc/<pid>/status`) is the server's own: a connection flood over
//! `max_connections`, slowloris clients, 100 MB without a newline, a million header
//! lines, and a storm of failing AUTHs. Every wait has a timeout and every loop a
//! bound; the bounds are generous (a debug build on 2 shared cores) but each test
//! fails on the behaviour it is about. The figures measured are printed on stderr
//! (`cargo test --test it abuse -- --nocapture` shows them).
//!
//! The abuse tests run one at a time ([`exclusive`]): two floods at once would
//! measure each other.

mod auth_storm;
mod flood;
mod long_lines;
mod many_headers;
mod slowloris;

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use tokio::io::{AsyncBufRead, AsyncBufReadExt as _};

use crate::support::auth::start_binary;
use crate::support::common::{Client, Reply};
use crate::support::running::Binary;

/// Held by each abuse test for its whole run.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Waits until no other abuse test runs (a failed one does not block the rest).
fn exclusive() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One MiB, in KiB (the unit of `/proc/<pid>/status`).
const MIB: u64 = 1024;

/// The memory of a process, in KiB.
#[derive(Debug, Clone, Copy)]
struct Memory {
    /// Resident now.
    rss: u64,
    /// The most ever resident (high-water mark).
    hwm: u64,
}

impl Memory {
    /// `pid`'s `VmRSS` and `VmHWM`.
    fn of(pid: i32) -> Self {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or_else(|| panic!("no {name} in {status}"))
        };
        Self {
            rss: field("VmRSS:"),
            hwm: field("VmHWM:"),
        }
    }

    /// How far the high-water mark rose above `baseline`'s resident size, in KiB.
    fn growth_since(&self, baseline: Memory) -> u64 {
        self.hwm.saturating_sub(baseline.rss)
    }
}

/// How many descriptors `pid` has open.
fn open_descriptors(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(Iterator::count)
        .unwrap_or_else(|e| panic!("/proc/{pid}/fd: {e}"))
}

/// Raises this test process's soft open-files limit to its hard limit; returns
/// the soft limit now in force.
fn raise_open_files() -> u64 {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return hard;
    }
    soft
}

/// The binary on `127.0.0.1:0` with `toml` as its configuration (the server name
/// `mx.test`, the Maildir `dir/Maildir`), logging at `info`; killed when dropped.
fn start(dir: &Path, toml: &str) -> Binary {
    let listen: [&OsStr; 2] = ["--listen".as_ref(), "127.0.0.1:0".as_ref()];
    start_binary(dir, toml, "info", &listen, 1)
}

/// A client runtime for many connections at once.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("client runtime")
}

/// Reads one complete reply (all its lines); an error at EOF or on a malformed
/// line.
async fn read_reply(reader: &mut (impl AsyncBufRead + Unpin)) -> std::io::Result<Reply> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("closed after {lines:?}"),
            ));
        }
        let malformed = || std::io::Error::other(format!("malformed reply line {line:?}"));
        let text = line.strip_suffix("\r\n").ok_or_else(malformed)?;
        let code: u16 = text
            .get(..3)
            .and_then(|c| c.parse().ok())
            .ok_or_else(malformed)?;
        let last = text.as_bytes().get(3) != Some(&b'-');
        lines.push((code, text.get(4..).unwrap_or_default().to_owned()));
        if last {
            return Ok(Reply {
                code,
                lines: lines.into_iter().map(|(_, l)| l).collect(),
            });
        }
    }
}

/// True when the server closes `reader`'s connection (EOF or reset) within
/// `limit` without sending anything more.
async fn closed_within(reader: &mut (impl AsyncBufRead + Unpin), limit: Duration) -> bool {
    let mut rest = String::new();
    match tokio::time::timeout(limit, reader.read_line(&mut rest)).await {
        Ok(Ok(0)) => true,
        Ok(Err(e)) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(Ok(_)) | Err(_) => false,
    }
}

/// A whole transaction by a fresh client (connect, EHLO, MAIL, RCPT, DATA, QUIT),
/// each reply within the common 10 s read timeout; returns how long it took.
fn fresh_transaction(addr: SocketAddr, tag: &str) -> Duration {
    let started = Instant::now();
    let mut client = Client::open(addr);
    client.read_greeting(220);
    client.cmd("EHLO fresh.test", 250);
    client.start_data("fresh@example.com", "rcpt@example.com");
    client.send(format!("Subject: {tag}\r\n\r\nstill served\r\n.\r\n").as_bytes());
    client.expect_enhanced(250, "2.0.0");
    client.quit();
    started.elapsed()
}

/// The `p`-th percentile (0..=100) of `values` (sorted here).
fn percentile(values: &mut [Duration], p: usize) -> Duration {
    values.sort_unstable();
    let last = values.len().saturating_sub(1);
    values.get(last * p / 100).copied().unwrap_or_default()
}

/// Durations in milliseconds, for the figures printed.
fn ms(duration: Duration) -> u128 {
    duration.as_millis()
}
