//! Power-cut tests of the spool (issue 18), against the real binary with its
//! spool on a small tmpfs and its Maildir on the ordinary disk:
//!
//! - the spool's disk fills up while sessions send: the flush that does not fit
//!   fails, its messages get `452 4.3.1`, the others `250`; once space returns
//!   the next messages get `250` again;
//! - the spool's file system is remounted read-only under load: `451 4.3.0`
//!   until it is writable again, then `250`.
//!
//! Either way nothing is half-acknowledged: every message that got 250 reaches
//! the Maildir exactly once (with the mail id its 250 named), none that got a
//! 4xx does, and after a restart on the same spool nothing is lost and nothing
//! unknown appears (a done mark the full disk kept out may repeat a delivery,
//! under the same id). Mounting needs root (CI runs the tests as root); without
//! it these tests fail saying so.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::disk_full::Tmpfs;
use crate::support::common::{Client, Reply, files_in, received_id, split_stored};
use crate::support::running::{Binary, listening_command};

/// The header that carries each message's token.
const TOKEN: &str = "X-Power-Token: ";
/// Concurrent sessions while the disk fills or turns read-only.
const CLIENTS: usize = 6;
/// Messages a session sends at most in one phase (the bound of every loop).
const MAX_PER_CLIENT: usize = 400;
/// How long a phase may wait for what it waits for (a hang guard).
const PHASE_LIMIT: Duration = Duration::from_secs(30);

/// Mounts a tmpfs of `size` on `dir`, or fails the test saying why.
fn mount(dir: &Path, size: &str) -> Tmpfs {
    std::fs::create_dir_all(dir).expect("mkdir");
    Tmpfs::mount(dir, size).unwrap_or_else(|why| {
        panic!("this test mounts a tmpfs for the spool and needs root (CI runs it as root): {why}")
    })
}

/// The binary delivering into `maildir` through the spool in `spool`.
fn start(maildir: &Path, spool: &Path) -> Binary {
    let mut command = listening_command(maildir);
    command.arg("--quiet").arg("--spool-dir").arg(spool);
    Binary::spawn(&mut command, 1)
}

/// The message for `token`: headers naming it and a body of at least `size` octets.
fn message(token: &str, size: usize) -> Vec<u8> {
    let mut text = format!("Subject: {token}\r\n{TOKEN}{token}\r\n\r\n");
    let line = format!("{token} {}\r\n", "p".repeat(70));
    while text.len() < size {
        text.push_str(&line);
    }
    text.into_bytes()
}

/// Sends one message; returns the reply to its data (after a 4xx the
/// transaction is reset, so the session goes on).
fn send(client: &mut Client, token: &str, size: usize) -> Reply {
    client.start_data("power@client.test", "inbox@bin.test");
    let mut data = message(token, size);
    data.extend_from_slice(b".\r\n");
    client.send(&data);
    let reply = client.reply();
    if reply.code != 250 {
        client.cmd("RSET", 250);
    }
    reply
}

/// What the sessions saw: token → (size, reply).
type Outcomes = HashMap<String, (usize, Reply)>;

/// Counters the test waits on while the sessions run.
#[derive(Default)]
struct Load {
    acked: AtomicUsize,
    deferred: AtomicUsize,
    stop: AtomicBool,
}

/// `CLIENTS` sessions sending messages of `size` until `load.stop` (or
/// `MAX_PER_CLIENT` each), tokens `<prefix><client>-<n>`.
fn sessions(port: u16, prefix: &str, size: usize, load: &Arc<Load>) -> Vec<JoinHandle<Outcomes>> {
    (0..CLIENTS)
        .map(|c| {
            let load = Arc::clone(load);
            let prefix = format!("{prefix}{c}");
            std::thread::spawn(move || {
                let mut client = Client::ehlo(port);
                let mut seen = Outcomes::new();
                for n in 0..MAX_PER_CLIENT {
                    if load.stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let token = format!("{prefix}-{n}");
                    let reply = send(&mut client, &token, size);
                    let counter = if reply.code == 250 {
                        &load.acked
                    } else {
                        // As an MTA does after a 4xx, the next try comes on a
                        // new connection: a session that kept going would meet
                        // max_errors (421) before the disk is back.
                        client.quit();
                        client = Client::ehlo(port);
                        &load.deferred
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    seen.insert(token, (size, reply));
                }
                client.quit();
                seen
            })
        })
        .collect()
}

/// Joins the sessions and merges what they saw into `all`.
fn join(handles: Vec<JoinHandle<Outcomes>>, all: &mut Outcomes) {
    for handle in handles {
        all.extend(handle.join().expect("session thread"));
    }
}

/// Waits until `done()`, at most [`PHASE_LIMIT`] (then fails, naming `what`).
fn wait_for(what: &str, binary: &Binary, done: impl Fn() -> bool) {
    let deadline = Instant::now() + PHASE_LIMIT;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; stderr:\n{}",
            binary.log()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// token → the mail ids of its copies in `maildir/new`, each checked complete.
fn stored(maildir: &Path, outcomes: &Outcomes) -> HashMap<String, Vec<String>> {
    let mut found: HashMap<String, Vec<String>> = HashMap::new();
    for path in files_in(&maildir.join("new")) {
        let file = std::fs::read(&path).expect("read a stored message");
        let stored = split_stored(&file);
        let token = String::from_utf8_lossy(stored.body)
            .lines()
            .find_map(|l| l.strip_prefix(TOKEN))
            .unwrap_or_else(|| panic!("{}: no token", path.display()))
            .to_owned();
        let (size, _) = outcomes
            .get(&token)
            .unwrap_or_else(|| panic!("{}: {token} was never sent", path.display()));
        assert!(
            stored.body == message(&token, *size).as_slice(),
            "{}: partial ({} octets)",
            path.display(),
            stored.body.len()
        );
        found
            .entry(token)
            .or_default()
            .push(received_id(&stored.received));
    }
    found
}

/// Waits until every 250'd message is in the Maildir, then checks: each once
/// (or, with `repeats`, at least once), every copy under the id its 250 named;
/// nothing refused is there. Returns the number of repeats.
fn expect_delivered(maildir: &Path, outcomes: &Outcomes, repeats: bool, binary: &Binary) -> usize {
    let acked: Vec<(&String, &Reply)> = outcomes
        .iter()
        .filter(|(_, (_, reply))| reply.code == 250)
        .map(|(token, (_, reply))| (token, reply))
        .collect();
    wait_for("every 250'd message in the Maildir", binary, || {
        let found = stored(maildir, outcomes);
        acked.iter().all(|(token, _)| found.contains_key(*token))
    });
    let found = stored(maildir, outcomes);
    let mut repeated = 0;
    for (token, ids) in &found {
        let (_, reply) = &outcomes[token];
        assert_eq!(reply.code, 250, "{token} got {reply:?} but was delivered");
        assert!(repeats || ids.len() == 1, "{token} delivered {ids:?}");
        for id in ids {
            assert!(reply.text().contains(id.as_str()), "{reply:?} vs {id}");
        }
        repeated += ids.len() - 1;
    }
    assert_eq!(found.len(), acked.len(), "every 250'd message delivered");
    repeated
}

/// Counts the replies by (code, enhanced code); fails on any other kind than
/// 250 and `allowed`.
fn tally(outcomes: &Outcomes, allowed: (u16, &str)) -> (usize, usize) {
    let (mut acked, mut refused) = (0, 0);
    for (token, (_, reply)) in outcomes {
        if reply.code == 250 {
            acked += 1;
            continue;
        }
        assert_eq!(reply.code, allowed.0, "{token}: {reply:?}");
        assert!(
            reply.text().starts_with(&format!("{} ", allowed.1)),
            "{token}: {reply:?}"
        );
        refused += 1;
    }
    (acked, refused)
}

/// Fills the file system of `dir` with `dir/ballast` until `ENOSPC`, then
/// frees `leave` octets of it; returns its path.
fn fill(dir: &Path, leave: u64) -> PathBuf {
    let path = dir.join("ballast");
    let mut file = std::fs::File::create(&path).expect("ballast");
    let chunk = vec![b'b'; 64 * 1024];
    let mut written = 0_u64;
    // Bounded: a tmpfs of a few MiB takes a few dozen chunks.
    for _ in 0..10_000 {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(error) => {
                assert_eq!(error.raw_os_error(), Some(28), "{error}");
                break;
            }
        }
    }
    file.set_len(written.saturating_sub(leave))
        .expect("free some");
    path
}

#[test]
fn spool_disk_full_mid_flush_gives_452_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (maildir, spool) = (dir.path().join("Maildir"), dir.path().join("spool"));
    let _tmpfs = mount(&spool, "4m");
    let mut binary = start(&maildir, &spool);
    let port = binary.addr().port();
    let mut outcomes = Outcomes::new();
    let mut client = Client::ehlo(port);
    for n in 0..3 {
        let token = format!("before-{n}");
        let reply = send(&mut client, &token, 64 * 1024).assert_code(250);
        outcomes.insert(token, (64 * 1024, reply));
    }

    // Someone else fills the disk, leaving room for a few messages: the
    // sessions' flushes run into ENOSPC.
    let ballast = fill(&spool, 400 * 1024);
    let load = Arc::new(Load::default());
    let handles = sessions(port, "full", 64 * 1024, &load);
    wait_for("452s once the disk is full", &binary, || {
        load.deferred.load(Ordering::Relaxed) >= CLIENTS * 2
    });
    load.stop.store(true, Ordering::Relaxed);
    let mut during = Outcomes::new();
    join(handles, &mut during);
    let (acked, full) = tally(&during, (452, "4.3.1"));
    assert!(acked > 0 && full > 0, "{acked} 250s, {full} 452s");
    outcomes.extend(during);

    // Space returns: 250 again, on the old session and on new ones.
    std::fs::remove_file(&ballast).expect("free the disk");
    for n in 0..3 {
        let token = format!("after-{n}");
        let reply = send(&mut client, &token, 64 * 1024).assert_code(250);
        outcomes.insert(token, (64 * 1024, reply));
    }
    client.quit();
    expect_delivered(&maildir, &outcomes, false, &binary);
    binary.terminate();
    let first_log = binary.log();
    assert!(first_log.contains("No space left on device"), "{first_log}");

    // After a restart on the same spool: nothing lost, nothing unknown.
    let binary = start(&maildir, &spool);
    let repeated = expect_delivered(&maildir, &outcomes, true, &binary);
    for damage in ["damaged", "unreadable message", "torn tail"] {
        assert!(!binary.log().contains(damage), "{}", binary.log());
    }
    println!(
        "spool_power: disk full: {acked} 250s and {full} 452 4.3.1 under load, \
         {repeated} repeated after the restart"
    );
}

#[test]
fn spool_remounted_read_only_under_load_gives_451_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (maildir, spool) = (dir.path().join("Maildir"), dir.path().join("spool"));
    let tmpfs = mount(&spool, "16m");
    let mut binary = start(&maildir, &spool);
    let port = binary.addr().port();
    let load = Arc::new(Load::default());
    let handles = sessions(port, "ro", 4096, &load);
    wait_for("250s under load", &binary, || {
        load.acked.load(Ordering::Relaxed) >= 30
    });

    // The remount is refused while a flush holds the segment open: retried
    // until it falls between two flushes.
    let mut busy = 0;
    while let Err(why) = tmpfs.try_remount("ro") {
        busy += 1;
        assert!(busy < 2000, "remount ro never succeeded: {why}");
        std::thread::sleep(Duration::from_millis(1));
    }
    let acked_before = load.acked.load(Ordering::Relaxed);
    wait_for("451s while read-only", &binary, || {
        load.deferred.load(Ordering::Relaxed) >= CLIENTS * 2
    });
    tmpfs.remount("rw");
    wait_for("250s once writable again", &binary, || {
        load.acked.load(Ordering::Relaxed) >= acked_before + 30
    });
    load.stop.store(true, Ordering::Relaxed);
    let mut outcomes = Outcomes::new();
    join(handles, &mut outcomes);
    let (acked, read_only) = tally(&outcomes, (451, "4.3.0"));
    assert!(read_only >= CLIENTS * 2, "{read_only} 451s");
    expect_delivered(&maildir, &outcomes, false, &binary);
    binary.terminate();
    assert!(
        binary.log().contains("Read-only file system"),
        "{}",
        binary.log()
    );

    let binary = start(&maildir, &spool);
    let repeated = expect_delivered(&maildir, &outcomes, true, &binary);
    for damage in ["damaged", "unreadable message", "torn tail"] {
        assert!(!binary.log().contains(damage), "{}", binary.log());
    }
    println!(
        "spool_power: read-only: {acked} 250s, {read_only} 451 4.3.0 (remount tried \
         {} times), {repeated} repeated after the restart",
        busy + 1
    );
}
