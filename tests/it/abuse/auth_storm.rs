//! 1,000 sessions at once, each failing one AUTH (half with a known user and a
//! wrong password, half with unknown users; both cost one argon2id verification
//! with the default parameters), while a fresh client keeps sending mail.
//!
//! Set-up, and why: plaintext AUTH (`allow_plaintext_auth`), so the storm measures
//! AUTH and not 1,000 TLS handshakes; failed AUTHs are not counted by the lockout
//! (`lockout_counts` without `auth`), else all from 127.0.0.1 would be locked out
//! after 3 and refused at connect — cheap, and tested in `lockout/failures.rs` — while a
//! real storm comes from many addresses the per-IP lockout does not stop, so what
//! each failing AUTH costs the server is what matters; connection limits raised
//! out of the way; `auth_failure_delay` left at its default (1 s).
//!
//! Bounds: every storm session gets `535 5.7.8` within [`STORM_LIMIT`]; during the
//! storm the fresh client's whole transactions (connect to QUIT, delivered to the
//! Maildir) take at most [`PROBE_P99`] at the 99th percentile and [`PROBE_MAX`] at
//! worst; the server's memory rises by less than [`STORM_MEMORY_MIB`]. A client
//! that AUTHs during the storm waits behind it (verifications queue, at most one
//! per CPU at a time): its latency is printed, and it must succeed within
//! [`STORM_LIMIT`].

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

use super::{
    MIB, Memory, exclusive, fresh_transaction, ms, percentile, read_reply, runtime, start,
};
use crate::support::auth::{BAD_CREDENTIALS, USERS, plain, write_file};
use crate::support::common::read_reply as read_reply_blocking;

/// Sessions in the storm.
const STORM: usize = 1000;
/// Longest wait for any reply of a storm session (each waits its turn for one
/// of a few verification threads).
const STORM_LIMIT: Duration = Duration::from_secs(90);
/// The 99th percentile of the fresh client's transactions during the storm.
const PROBE_P99: Duration = Duration::from_secs(2);
/// The slowest of the fresh client's transactions during the storm.
const PROBE_MAX: Duration = Duration::from_secs(5);
/// Most the server's resident memory may rise (1,000 open sessions take ~40 MiB;
/// with one verification per AUTH on tokio's blocking pool it reached ~18 GiB).
const STORM_MEMORY_MIB: u64 = 192;

const JOE: (&str, &str) = USERS[0];

/// One storm session: EHLO, a wrong AUTH PLAIN (a known user for even `index`, an
/// unknown one for odd), QUIT.
async fn failing_session(addr: SocketAddr, index: usize) -> Result<(), String> {
    let stream = tokio::time::timeout(STORM_LIMIT, TcpStream::connect(addr))
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| format!("connect: {e}"))?;
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    let user = if index.is_multiple_of(2) {
        JOE.0.to_owned()
    } else {
        format!("nobody{index}")
    };
    let auth = format!("AUTH PLAIN {}\r\n", plain(&user, "wrong-password"));
    let steps: [(&[u8], u16); 4] = [
        (b"", 220),
        (b"EHLO storm.test\r\n", 250),
        (auth.as_bytes(), 535),
        (b"QUIT\r\n", 221),
    ];
    for (send, code) in steps {
        writer.write_all(send).await.map_err(|e| e.to_string())?;
        let reply = tokio::time::timeout(STORM_LIMIT, read_reply(&mut reader))
            .await
            .map_err(|_| format!("no reply within {STORM_LIMIT:?}"))?
            .map_err(|e| e.to_string())?;
        if reply.code != code || (code == 535 && reply.text() != BAD_CREDENTIALS) {
            return Err(format!("expected {code}, got {reply:?}"));
        }
    }
    Ok(())
}

/// A session that AUTHs with the right password; returns how long AUTH took.
/// (Its own socket: the common client gives each read only 10 s, and behind a
/// storm the AUTH may wait longer.)
fn good_auth(addr: SocketAddr) -> Duration {
    let stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(STORM_LIMIT)).expect("timeout");
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = std::io::BufReader::new(stream);
    let mut exchange = |line: &str, code: u16| {
        writer.write_all(line.as_bytes()).expect("write");
        let reply = read_reply_blocking(&mut reader);
        assert_eq!(reply.code, code, "{line:?}: {reply:?}");
    };
    exchange("", 220);
    exchange("EHLO good.test\r\n", 250);
    let started = Instant::now();
    exchange(&format!("AUTH PLAIN {}\r\n", plain(JOE.0, JOE.1)), 235);
    let took = started.elapsed();
    exchange("QUIT\r\n", 221);
    took
}

#[test]
fn a_storm_of_failing_auths_does_not_stall_other_clients() {
    let _serial = exclusive();
    let dir = tempfile::tempdir().expect("tempdir");
    let hash = net_receiver::auth::hash_password(JOE.1).expect("hash");
    let passwd = write_file(dir.path(), "passwd", &format!("{}:{hash}\n", JOE.0));
    let toml = format!(
        "quiet = true\npasswd_file = {:?}\nallow_plaintext_auth = true\n\
         lockout_counts = [\"mail\", \"rcpt\", \"data\"]\n\
         max_connections = {}\nmax_connections_per_ip = {}\n",
        passwd.to_str().expect("UTF-8 path"),
        2 * STORM,
        2 * STORM
    );
    let binary = start(dir.path(), &toml);
    let pid = binary.pid();
    let addr = binary.addr();
    let mut before: Vec<Duration> = (0..10)
        .map(|_| fresh_transaction(addr, "before the storm"))
        .collect();
    let auth_before = good_auth(addr);
    let baseline = Memory::of(pid);

    let storming = Arc::new(AtomicBool::new(true));
    let prober = {
        let storming = Arc::clone(&storming);
        std::thread::spawn(move || {
            let mut times = Vec::new();
            while storming.load(Ordering::SeqCst) && times.len() < 2000 {
                times.push(fresh_transaction(addr, "during the storm"));
                std::thread::sleep(Duration::from_millis(50));
            }
            times
        })
    };
    let authenticating = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        good_auth(addr)
    });
    let started = Instant::now();
    let results: Vec<Result<(), String>> = runtime().block_on(async {
        let tasks: Vec<_> = (0..STORM)
            .map(|index| tokio::spawn(failing_session(addr, index)))
            .collect();
        let mut results = Vec::with_capacity(STORM);
        for task in tasks {
            results.push(task.await.unwrap_or_else(|e| Err(format!("task: {e}"))));
        }
        results
    });
    let storm_took = started.elapsed();
    let auth_during = authenticating.join().expect("AUTH during the storm");
    storming.store(false, Ordering::SeqCst);
    let mut during = prober.join().expect("prober");
    let memory = Memory::of(pid);

    let errors: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        errors.is_empty(),
        "{} storm sessions went wrong, e.g. {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert!(
        during.len() >= 10,
        "only {} transactions during the storm",
        during.len()
    );
    let p99 = percentile(&mut during, 99);
    let max = percentile(&mut during, 100);
    assert!(
        p99 < PROBE_P99,
        "p99 of the fresh transactions during the storm: {p99:?}"
    );
    assert!(
        max < PROBE_MAX,
        "slowest fresh transaction during the storm: {max:?}"
    );
    assert!(
        memory.growth_since(baseline) < STORM_MEMORY_MIB * MIB,
        "memory: {memory:?}, before {baseline:?}"
    );
    // Nothing got locked: the right password still works at once.
    let auth_after = good_auth(addr);
    eprintln!(
        "auth storm: {STORM} failing AUTHs in {} ms; fresh transactions before p50 {} ms max \
         {} ms, during ({}) p50 {} ms p99 {} ms max {} ms; a good AUTH took {} ms before, {} ms \
         during, {} ms after; server RSS {} KiB before, VmHWM {} KiB",
        ms(storm_took),
        ms(percentile(&mut before, 50)),
        ms(percentile(&mut before, 100)),
        during.len(),
        ms(percentile(&mut during, 50)),
        ms(p99),
        ms(max),
        ms(auth_before),
        ms(auth_during),
        ms(auth_after),
        baseline.rss,
        memory.hwm,
    );
}
