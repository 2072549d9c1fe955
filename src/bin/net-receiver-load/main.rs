//! `net-receiver-load`: an SMTP load client for benchmarking `net-receiver` (or any
//! SMTP server) on loopback, past the ceiling of Postfix's `smtp-source`, and in
//! shapes smtp-source cannot make (PIPELINING, thousands of idle sessions).
//!
//! ```text
//! net-receiver-load [--reuse | --connect-per-message | --pipeline | --idle N]
//!                   [--sessions N] [--messages M] [--size S] [--hold SECS]
//!                   [--timeout SECS] [--reply-timeout SECS] [--threads N] ADDR
//! ```
//!
//! * `--reuse` (default): `--sessions` persistent sessions share `--messages`
//!   messages; each message is MAIL, RCPT, DATA, content, each waiting for its reply.
//! * `--connect-per-message`: a new connection (greeting, EHLO, message, QUIT) per
//!   message, `--sessions` of them at a time.
//! * `--pipeline`: persistent sessions using PIPELINING (RFC 2920): MAIL, RCPT and
//!   DATA go out in one write, and the end-of-data dot in the same write as the next
//!   message's MAIL, RCPT and DATA; one round trip per message instead of four.
//! * `--idle N`: opens N sessions past EHLO (100 handshakes at a time), prints
//!   `holding=N` once all are open, holds them `--hold` seconds, then checks that
//!   each still answers NOOP with 250, and QUITs.
//!
//! Each message is `--size` octets of body (76-character lines) below four short
//! headers. Latency is per message, from sending MAIL to reading the 250 after the
//! final dot. The result is one `key=value` line on stdout (`msgs_per_s`, `p50_us`,
//! `p99_us`, `errors`, ...); error kinds and counts go to stderr. The exit status is
//! 0 only if every message (or idle session) succeeded.
//!
//! Bounds: ADDR must be a literal loopback `IP:PORT` (no name lookups, no remote
//! hosts); every read and write has `--reply-timeout`, the whole run `--timeout`;
//! a failed message is counted, never retried, so a dead server ends the run fast.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod conn;

use anyhow::{Context as _, anyhow, bail};
use clap::Parser;
use conn::Conn;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Longest reply (all lines of one multi-line reply) accepted from the server.
const MAX_REPLY: usize = 64 * 1024;
/// Handshakes in flight at once in `--idle` mode.
const IDLE_CONNECT_PARALLELISM: usize = 100;

/// SMTP load generator for loopback benchmarks (see the crate's `bench/run.sh`).
#[derive(Debug, Parser)]
#[command(name = "net-receiver-load", version)]
#[command(group = clap::ArgGroup::new("mode").multiple(false))]
struct Args {
    /// Server address: a literal loopback IP:PORT, e.g. 127.0.0.1:2525.
    addr: SocketAddr,
    /// Persistent sessions, one command at a time (the default mode).
    #[arg(long, group = "mode")]
    reuse: bool,
    /// A new connection for every message.
    #[arg(long, group = "mode")]
    connect_per_message: bool,
    /// Persistent sessions with PIPELINING (MAIL/RCPT/DATA in one write).
    #[arg(long, group = "mode")]
    pipeline: bool,
    /// Open this many sessions past EHLO, hold them, then check each answers NOOP.
    #[arg(long, value_name = "N", group = "mode")]
    idle: Option<usize>,
    /// Concurrent sessions sending mail.
    #[arg(long, short = 's', default_value_t = 20)]
    sessions: usize,
    /// Messages in total, over all sessions.
    #[arg(long, short = 'm', default_value_t = 10_000)]
    messages: u64,
    /// Body octets per message (headers come on top).
    #[arg(long, short = 'l', default_value_t = 4096)]
    size: usize,
    /// Seconds to hold the idle sessions before the NOOP check.
    #[arg(long, default_value_t = 5)]
    hold: u64,
    /// Seconds the whole run may take; what is unfinished then counts as errors.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// Seconds to wait for any one reply or write.
    #[arg(long, default_value_t = 30)]
    reply_timeout: u64,
    /// Runtime threads (1 = a single-threaded event loop, like smtp-source).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// What the run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Reuse,
    ConnectPerMessage,
    Pipeline,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("net-receiver-load: error: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Checks the arguments, runs the chosen mode; `Ok(false)` when anything failed.
fn run(args: &Args) -> anyhow::Result<bool> {
    if !args.addr.ip().is_loopback() {
        bail!(
            "{} is not a loopback address; this tool only loads loopback servers",
            args.addr
        );
    }
    if args.sessions == 0 || args.threads == 0 {
        bail!("--sessions and --threads must be at least 1");
    }
    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(args.threads);
        builder
    }
    .enable_all()
    .build()
    .context("cannot start the async runtime")?;
    let limits = Limits {
        deadline: Instant::now() + Duration::from_secs(args.timeout),
        reply_timeout: Duration::from_secs(args.reply_timeout),
    };
    match args.idle {
        Some(count) => runtime.block_on(idle(args, count, limits)),
        None => {
            let mode = match (args.connect_per_message, args.pipeline) {
                (true, _) => (Mode::ConnectPerMessage, "connect-per-message"),
                (_, true) => (Mode::Pipeline, "pipeline"),
                _ => (Mode::Reuse, "reuse"),
            };
            runtime.block_on(load(args, mode, limits))
        }
    }
}

/// The time bounds every operation obeys.
#[derive(Debug, Clone, Copy)]
struct Limits {
    deadline: Instant,
    reply_timeout: Duration,
}

impl Limits {
    fn until(&self) -> tokio::time::Instant {
        (Instant::now() + self.reply_timeout)
            .min(self.deadline)
            .into()
    }
}

/// The envelope commands, sent as one write when pipelining.
const ENVELOPE: &[u8] = b"MAIL FROM:<load@example.com>\r\nRCPT TO:<sink@example.com>\r\nDATA\r\n";

/// The message content on the wire, with the end-of-data dot.
fn message(size: usize) -> Vec<u8> {
    let mut wire = Vec::with_capacity(size + 256);
    wire.extend_from_slice(
        b"From: <load@example.com>\r\nTo: <sink@example.com>\r\n\
          Subject: net-receiver-load\r\nMessage-ID: <load@example.com>\r\n\r\n",
    );
    let line = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmn\r\n";
    let mut left = size;
    while left > 0 {
        let take = left.min(line.len());
        let piece = line.get(line.len() - take..).unwrap_or_default();
        wire.extend_from_slice(piece);
        left -= take;
    }
    if !wire.ends_with(b"\r\n") {
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b".\r\n");
    wire
}

/// What one worker saw.
#[derive(Default)]
struct Tally {
    ok: u64,
    latencies_us: Vec<u32>,
    errors: BTreeMap<String, u64>,
}

impl Tally {
    fn error(&mut self, error: &anyhow::Error) {
        *self.errors.entry(format!("{error:#}")).or_default() += 1;
    }

    fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        self.latencies_us.extend(other.latencies_us);
        for (kind, count) in other.errors {
            *self.errors.entry(kind).or_default() += count;
        }
    }

    fn errors(&self) -> u64 {
        self.errors.values().sum()
    }

    fn record(&mut self, since: Instant) {
        self.ok += 1;
        let us = u32::try_from(since.elapsed().as_micros()).unwrap_or(u32::MAX);
        self.latencies_us.push(us);
    }
}

/// Hands out message numbers until `total` are taken.
struct Tickets(AtomicU64, u64);

impl Tickets {
    fn take(&self) -> bool {
        self.0.fetch_add(1, Ordering::Relaxed) < self.1
    }
}

/// The three mail-sending modes.
async fn load(args: &Args, (mode, name): (Mode, &str), limits: Limits) -> anyhow::Result<bool> {
    let tickets = Arc::new(Tickets(AtomicU64::new(0), args.messages));
    let wire: Arc<[u8]> = message(args.size).into();
    let started = Instant::now();
    let mut workers = JoinSet::new();
    for _ in 0..args.sessions {
        let (tickets, wire) = (Arc::clone(&tickets), Arc::clone(&wire));
        let addr = args.addr;
        workers.spawn(async move {
            match mode {
                Mode::ConnectPerMessage => per_message(addr, limits, &tickets, &wire).await,
                Mode::Reuse | Mode::Pipeline => {
                    persistent(addr, limits, &tickets, &wire, mode == Mode::Pipeline).await
                }
            }
        });
    }
    let mut tally = Tally::default();
    while let Some(done) = workers.join_next().await {
        match done {
            Ok(worker) => tally.merge(worker),
            Err(error) => tally.error(&anyhow!("worker failed: {error}")),
        }
    }
    let elapsed = started.elapsed();
    let unsent = args.messages.saturating_sub(tally.ok + tally.errors());
    if unsent > 0 {
        *tally
            .errors
            .entry("not sent (run timed out)".to_owned())
            .or_default() += unsent;
    }
    tally.latencies_us.sort_unstable();
    let rate = tally.ok as f64 / elapsed.as_secs_f64().max(1e-9);
    let errors = tally.errors();
    println!(
        "mode={} sessions={} messages={} size={} ok={} errors={errors} elapsed_s={:.3} \
         msgs_per_s={rate:.1} p50_us={} p99_us={} max_us={}",
        name,
        args.sessions,
        args.messages,
        args.size,
        tally.ok,
        elapsed.as_secs_f64(),
        percentile(&tally.latencies_us, 50),
        percentile(&tally.latencies_us, 99),
        tally.latencies_us.last().copied().unwrap_or(0),
    );
    report_errors(&tally.errors);
    Ok(errors == 0)
}

/// The `p`-th percentile (nearest rank) of sorted values; 0 when empty.
fn percentile(sorted: &[u32], p: usize) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted.get(rank - 1).copied().unwrap_or(0)
}

/// Error kinds and counts, to stderr.
fn report_errors(errors: &BTreeMap<String, u64>) {
    for (kind, count) in errors {
        eprintln!("net-receiver-load: {count} x {kind}");
    }
}

/// One persistent session's worker: opens a session, sends messages while tickets
/// last; after an error the session is dropped and a new one opened.
async fn persistent(
    addr: SocketAddr,
    limits: Limits,
    tickets: &Tickets,
    wire: &[u8],
    pipeline: bool,
) -> Tally {
    let mut tally = Tally::default();
    let mut conn: Option<Conn> = None;
    // With pipelining, the dot of the previous message waits to go out with the
    // next envelope; `pending` holds when that previous message's MAIL was sent.
    let mut pending: Option<Instant> = None;
    while tickets.take() {
        if Instant::now() >= limits.deadline {
            break; // the rest is counted as not sent
        }
        let step = async {
            let mut c = match conn.take() {
                Some(c) => c,
                None => {
                    let (c, offered) = Conn::open_ehlo(addr, limits).await?;
                    if pipeline && !offered {
                        bail!("the server does not offer PIPELINING");
                    }
                    c
                }
            };
            let result = if pipeline {
                pipelined_message(&mut c, wire, &mut pending, &mut tally).await
            } else {
                plain_message(&mut c, wire)
                    .await
                    .map(|since| tally.record(since))
            };
            result.map(|()| c)
        };
        match step.await {
            Ok(c) => conn = Some(c),
            Err(error) => {
                if pending.take().is_some() {
                    tally.error(&error);
                }
                tally.error(&error);
            }
        }
    }
    if let Some(mut c) = conn {
        if let Some(since) = pending.take() {
            // The last pipelined message's dot, alone.
            let finished = async {
                c.send(b".\r\n").await?;
                c.expect(250, "end of data").await
            };
            match finished.await {
                Ok(()) => tally.record(since),
                Err(error) => tally.error(&error),
            }
        }
        c.quit().await;
    }
    tally
}

/// MAIL, RCPT, DATA, content, each waiting for its reply; returns when MAIL went out.
async fn plain_message(c: &mut Conn, wire: &[u8]) -> anyhow::Result<Instant> {
    let since = Instant::now();
    c.send(b"MAIL FROM:<load@example.com>\r\n").await?;
    c.expect(250, "MAIL").await?;
    c.send(b"RCPT TO:<sink@example.com>\r\n").await?;
    c.expect(250, "RCPT").await?;
    c.send(b"DATA\r\n").await?;
    c.expect(354, "DATA").await?;
    c.send(wire).await?;
    c.expect(250, "end of data").await?;
    Ok(since)
}

/// One pipelined message: [previous dot +] MAIL + RCPT + DATA in one write, then
/// the replies (the previous message's 250 first), then the content without its dot.
async fn pipelined_message(
    c: &mut Conn,
    wire: &[u8],
    pending: &mut Option<Instant>,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let (content, dot) = wire.split_at(wire.len() - 3);
    let mut group = Vec::with_capacity(dot.len() + ENVELOPE.len());
    if pending.is_some() {
        group.extend_from_slice(dot);
    }
    group.extend_from_slice(ENVELOPE);
    let since = Instant::now();
    c.send(&group).await?;
    if let Some(previous) = *pending {
        c.expect(250, "end of data").await?;
        *pending = None;
        tally.record(previous);
    }
    c.expect(250, "MAIL").await?;
    c.expect(250, "RCPT").await?;
    c.expect(354, "DATA").await?;
    c.send(content).await?;
    *pending = Some(since);
    Ok(())
}

/// One connection per message: greeting, EHLO, the message, QUIT.
async fn per_message(addr: SocketAddr, limits: Limits, tickets: &Tickets, wire: &[u8]) -> Tally {
    let mut tally = Tally::default();
    while tickets.take() {
        if Instant::now() >= limits.deadline {
            break; // the rest is counted as not sent
        }
        let attempt = async {
            let (mut c, _) = Conn::open_ehlo(addr, limits).await?;
            let since = plain_message(&mut c, wire).await?;
            c.send(b"QUIT\r\n").await?;
            c.expect(221, "QUIT").await?;
            anyhow::Ok(since)
        };
        match attempt.await {
            Ok(since) => tally.record(since),
            Err(error) => tally.error(&error),
        }
    }
    tally
}

/// `--idle N`: open N sessions, hold them, check each answers NOOP.
async fn idle(args: &Args, count: usize, limits: Limits) -> anyhow::Result<bool> {
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(IDLE_CONNECT_PARALLELISM));
    let mut opening = JoinSet::new();
    for _ in 0..count {
        let (gate, addr) = (Arc::clone(&gate), args.addr);
        opening.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            Conn::open_ehlo(addr, limits).await.map(|(c, _)| c)
        });
    }
    let mut tally = Tally::default();
    let mut held = Vec::with_capacity(count);
    while let Some(done) = opening.join_next().await {
        match done.map_err(anyhow::Error::from).and_then(|r| r) {
            Ok(conn) => held.push(conn),
            Err(error) => tally.error(&error),
        }
    }
    let opened = held.len();
    let open_s = started.elapsed().as_secs_f64();
    // The bench script samples the server's memory while this line is true.
    println!("holding={opened}");
    std::io::stdout().flush().context("stdout")?;
    let hold_until = (Instant::now() + Duration::from_secs(args.hold)).min(limits.deadline);
    tokio::time::sleep_until(hold_until.into()).await;
    let mut checking = JoinSet::new();
    for mut conn in held {
        checking.spawn(async move {
            conn.send(b"NOOP\r\n").await?;
            conn.expect(250, "NOOP").await?;
            conn.quit().await;
            anyhow::Ok(())
        });
    }
    while let Some(done) = checking.join_next().await {
        match done.map_err(anyhow::Error::from).and_then(|r| r) {
            Ok(()) => tally.ok += 1,
            Err(error) => tally.error(&error),
        }
    }
    let errors = tally.errors();
    println!(
        "mode=idle sessions={count} opened={opened} answered_noop={} errors={errors} \
         open_s={open_s:.3} elapsed_s={:.3}",
        tally.ok,
        started.elapsed().as_secs_f64(),
    );
    report_errors(&tally.errors);
    Ok(errors == 0 && tally.ok == count as u64)
}
