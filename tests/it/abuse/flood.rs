//! A connection flood over `max_connections`, and the open-files limit the
//! binary needs for it.
//!
//! The flood: 10,000 connections from 127.0.0.1 to a server with `max_connections
//! = 1000` (the per-IP limit set out of the way), opened with up to 1000 handshakes
//! in flight at a time and all kept open on our side until the end.
//!
//! "Responsive" during a flood means here, all measured while the flood is held
//! (every flood socket, admitted or refused, still open on our side):
//! * every connection over the limit is answered `421 4.7.0 … Too many
//!   connections` and closed, each within [`REFUSAL_LIMIT`] of its connect (p99
//!   within [`REFUSAL_P99`]); exactly `max_connections` got their 220;
//! * a new connection still gets its 421 within [`PROBE_LIMIT`];
//! * the admitted sessions are still served: each of a sample answers EHLO within
//!   [`PROBE_LIMIT`], and one of them delivers a message;
//! * the server holds no descriptors for refused connections (at most
//!   `max_connections` + 64) and its memory stays under [`FLOOD_MEMORY_MIB`];
//! * once some flood connections close, a fresh client is admitted and delivers a
//!   message within [`PROBE_LIMIT`] per reply.
//!
//! The limit itself cannot answer a client that the limit keeps out; the above
//! is what a receiver can promise while full.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use std::sync::Arc;

use nix::sys::resource::{Resource, getrlimit};
use tokio::io::{AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Semaphore;

use super::{
    MIB, Memory, closed_within, exclusive, fresh_transaction, ms, open_descriptors, percentile,
    raise_open_files, read_reply, runtime, start,
};
use crate::support::common::Client;
use crate::support::running::{BIN, Binary};

/// `max_connections` of the flooded server (a tenth of the flood when fewer
/// descriptors allow only a smaller flood).
const LIMIT: usize = 1000;
/// Connections the flood opens (fewer when this process may not open as many).
const FLOOD: usize = 10_000;
/// Descriptors this test process keeps for everything but the flood.
const SPARE_DESCRIPTORS: u64 = 500;
/// Longest wait for any one refusal (connect to 421) or greeting.
const REFUSAL_LIMIT: Duration = Duration::from_secs(20);
/// The 99th percentile of connect-to-421 over the whole flood.
const REFUSAL_P99: Duration = Duration::from_secs(5);
/// Longest wait for one reply to a client probing the server during the flood.
const PROBE_LIMIT: Duration = Duration::from_secs(2);
/// Most the server's resident memory may rise during the flood (1000 idle
/// sessions take ~30 MiB).
const FLOOD_MEMORY_MIB: u64 = 128;

const REFUSAL: &str = "4.7.0 mx.test Too many connections, try again later";

/// One flood connection, as it stands once answered.
enum Answer {
    /// Greeted with 220; kept open.
    Admitted {
        reader: BufReader<OwnedReadHalf>,
        writer: OwnedWriteHalf,
    },
    /// Refused with the 421 and closed by the server; our socket is kept open.
    Refused {
        socket: (BufReader<OwnedReadHalf>, OwnedWriteHalf),
        after: Duration,
    },
}

/// How many flood connections may wait for their greeting at once: up to 1000,
/// but no more than the kernel's cap on a listen queue (`net.core.somaxconn`, 128
/// before Linux 5.4): beyond it the kernel drops handshakes and the clients wait
/// for their retransmission, which would measure the kernel, not the receiver.
fn handshake_window() -> usize {
    let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(128);
    if somaxconn < 1000 {
        eprintln!("flood: at most {somaxconn} handshakes at once (net.core.somaxconn)");
    }
    somaxconn.min(1000)
}

/// Connects and reads the greeting; a refusal must be the 421 followed by the
/// server closing the connection.
async fn flood_connection(addr: SocketAddr, window: Arc<Semaphore>) -> Result<Answer, String> {
    let waiting = window.acquire_owned().await.map_err(|e| e.to_string())?;
    let started = Instant::now();
    let connect = tokio::time::timeout(REFUSAL_LIMIT, TcpStream::connect(addr));
    let stream = connect
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| format!("connect: {e}"))?;
    let (reader, writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    let left = REFUSAL_LIMIT.saturating_sub(started.elapsed());
    let greeting = tokio::time::timeout(left, read_reply(&mut reader))
        .await
        .map_err(|_| format!("no greeting within {REFUSAL_LIMIT:?}"))?
        .map_err(|e| format!("greeting: {e}"))?;
    let after = started.elapsed();
    drop(waiting);
    match greeting.code {
        220 => Ok(Answer::Admitted { reader, writer }),
        421 if greeting.lines == [REFUSAL] => {
            if !closed_within(&mut reader, REFUSAL_LIMIT).await {
                return Err("not closed after the 421".into());
            }
            Ok(Answer::Refused {
                socket: (reader, writer),
                after,
            })
        }
        _ => Err(format!("unexpected greeting {greeting:?}")),
    }
}

/// EHLO on an admitted flood session, answered within [`PROBE_LIMIT`].
async fn ehlo_within_limit(
    reader: &mut BufReader<OwnedReadHalf>,
    writer: &mut OwnedWriteHalf,
) -> Duration {
    let started = Instant::now();
    writer.write_all(b"EHLO held.test\r\n").await.expect("EHLO");
    let reply = tokio::time::timeout(PROBE_LIMIT, read_reply(reader))
        .await
        .expect("an admitted session answers EHLO during the flood")
        .expect("EHLO reply");
    assert_eq!(reply.code, 250, "{reply:?}");
    started.elapsed()
}

/// A new connection during the flood: the 421 within [`PROBE_LIMIT`].
fn probe_refused(addr: SocketAddr) -> Duration {
    let started = Instant::now();
    let mut client = Client::open(addr);
    let greeting = client.reply();
    let after = started.elapsed();
    assert_eq!((greeting.code, greeting.text()), (421, REFUSAL));
    assert!(after < PROBE_LIMIT, "a probe's 421 took {after:?}");
    client.expect_eof();
    after
}

#[test]
fn a_flood_over_max_connections_is_refused_and_the_receiver_stays_responsive() {
    let _serial = exclusive();
    let soft = raise_open_files();
    let room = usize::try_from(soft.saturating_sub(SPARE_DESCRIPTORS)).unwrap_or(usize::MAX);
    let flood = FLOOD.min(room);
    let limit = LIMIT.min(flood / 10);
    if flood < FLOOD {
        eprintln!(
            "flood: only {flood} connections over max_connections = {limit} (open files \
             limit {soft}), not {FLOOD} over {LIMIT}"
        );
    }
    assert!(
        limit >= 50,
        "the open files limit {soft} is too low for a meaningful flood"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = format!(
        "quiet = true\nmax_connections = {limit}\nmax_connections_per_ip = {}\n",
        2 * FLOOD
    );
    let binary = start(dir.path(), &toml);
    let pid = binary.pid();
    let addr = binary.addr();
    fresh_transaction(addr, "warm-up");
    let baseline = Memory::of(pid);
    let descriptors_before = open_descriptors(pid);

    let window = Arc::new(Semaphore::new(handshake_window()));
    let rt = runtime();
    let started = Instant::now();
    let answers: Vec<Result<Answer, String>> = rt.block_on(async {
        let tasks: Vec<_> = (0..flood)
            .map(|_| tokio::spawn(flood_connection(addr, Arc::clone(&window))))
            .collect();
        let mut answers = Vec::with_capacity(flood);
        for task in tasks {
            answers.push(task.await.unwrap_or_else(|e| Err(format!("task: {e}"))));
        }
        answers
    });
    let flooded_in = started.elapsed();
    let errors: Vec<&String> = answers.iter().filter_map(|a| a.as_ref().err()).collect();
    assert!(
        errors.is_empty(),
        "{} failed, e.g. {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    let mut admitted = Vec::new();
    let mut refusals = Vec::new();
    let mut refused_sockets = Vec::new();
    for answer in answers.into_iter().flatten() {
        match answer {
            Answer::Admitted { reader, writer } => admitted.push((reader, writer)),
            Answer::Refused { socket, after } => {
                refusals.push(after);
                refused_sockets.push(socket);
            }
        }
    }
    assert_eq!(admitted.len(), limit, "admitted");
    assert_eq!(refusals.len(), flood - limit, "refused");
    let refusal_p50 = percentile(&mut refusals, 50);
    let refusal_p99 = percentile(&mut refusals, 99);
    let refusal_max = percentile(&mut refusals, 100);
    assert!(
        refusal_p99 < REFUSAL_P99,
        "p99 of the 421s: {refusal_p99:?}"
    );

    // Still answering while full.
    let probes: Vec<Duration> = (0..5).map(|_| probe_refused(addr)).collect();
    let ehlos: Vec<Duration> = rt.block_on(async {
        let mut times = Vec::new();
        for (reader, writer) in admitted.iter_mut().step_by(limit / 20) {
            times.push(ehlo_within_limit(reader, writer).await);
        }
        times
    });
    let during = Memory::of(pid);
    let descriptors_during = open_descriptors(pid);
    assert!(
        descriptors_during <= limit + 64,
        "{descriptors_during} descriptors open in the server during the flood"
    );
    assert!(
        during.growth_since(baseline) < FLOOD_MEMORY_MIB * MIB,
        "memory during the flood: {during:?} from {baseline:?}"
    );

    // Room again: a fresh client is served.
    admitted.truncate(limit - 10);
    let freed = Instant::now();
    let fresh = loop {
        let mut client = Client::open(addr);
        match client.reply().code {
            220 => {
                drop(client);
                break fresh_transaction(addr, "after the flood");
            }
            421 => client.expect_eof(),
            other => panic!("unexpected greeting {other}"),
        }
        assert!(
            freed.elapsed() < PROBE_LIMIT,
            "no place freed within {PROBE_LIMIT:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(admitted);
    drop(refused_sockets);
    let settled = Instant::now();
    while open_descriptors(pid) > descriptors_before + 5 {
        assert!(
            settled.elapsed() < Duration::from_secs(10),
            "{} descriptors still open 10 s after the flood ended (before: {descriptors_before})",
            open_descriptors(pid)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "flood: {flood} connections, {limit} admitted, in {} ms; 421 after connect p50 {} ms \
         p99 {} ms max {} ms; probe 421 max {} ms; EHLO on held sessions max {} ms; fresh \
         transaction after freeing {} ms; server RSS {} KiB before, VmHWM {} KiB during; \
         descriptors {descriptors_before} before, {descriptors_during} during",
        ms(flooded_in),
        ms(refusal_p50),
        ms(refusal_p99),
        ms(refusal_max),
        probes.iter().max().map_or(0, |d| ms(*d)),
        ehlos.iter().max().map_or(0, |d| ms(*d)),
        ms(fresh),
        baseline.rss,
        during.hwm,
    );
}

/// The binary run through `sh` with `ulimit` arguments set first (`-S -n 256`:
/// the soft limit only; `-n 512`: soft and hard).
fn start_with_ulimit(dir: &Path, ulimit: &str, toml: &str) -> Binary {
    let config = dir.join("config.toml");
    std::fs::write(&config, toml).expect("config");
    let mut command = Command::new("sh");
    command
        .env("RUST_LOG", "info")
        .arg("-c")
        .arg(format!("ulimit {ulimit} && exec \"$0\" \"$@\""))
        .arg(BIN)
        .arg("--config")
        .arg(&config)
        .args(["--listen", "127.0.0.1:0", "--maildir"])
        .arg(dir.join("Maildir"));
    Binary::spawn(&mut command, 1)
}

/// `Max open files` of `/proc/<pid>/limits`: (soft, hard).
fn open_files_limits(pid: i32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or_else(|| panic!("{limits}"));
    let fields: Vec<&str> = line.split_whitespace().collect();
    (fields[3].to_owned(), fields[4].to_owned())
}

#[test]
fn the_binary_raises_its_open_files_limit_and_warns_when_max_connections_cannot_fit() {
    let _serial = exclusive();
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    // A low soft limit under a high hard one: raised, and 1000 connections fit.
    if hard >= 1000 + 64 {
        let mut raised = start_with_ulimit(dir.path(), "-S -n 256", "max_connections = 1000\n");
        let (soft, hard_now) = open_files_limits(raised.pid());
        assert_eq!(soft, hard_now, "soft limit not raised");
        assert_eq!(hard_now, hard.to_string());
        raised.wait_for_lines(&format!("open files limit raised from 256 to {hard}"), 1);
        raised.terminate();
        assert!(!raised.log().contains("does not fit"), "{}", raised.log());
    } else {
        eprintln!("open files: the hard limit {hard} is too low to check the raise");
    }
    // A hard limit too low for max_connections: the operator is told.
    let mut low = start_with_ulimit(dir.path(), "-n 512", "max_connections = 1000\n");
    assert_eq!(open_files_limits(low.pid()), ("512".into(), "512".into()));
    low.wait_for_lines(
        "max_connections = 1000 does not fit the open files limit of 512",
        1,
    );
    low.terminate();
}
