//! Crash safety of the real binary (issues 7 and 18): 20 sessions send a few
//! thousand messages, each with its own token, while the receiver is SIGKILLed
//! at random moments and restarted on the same port — once delivering straight
//! into the Maildir, once through the spool (`--spool-dir`). Afterwards every
//! message that got 250 is in `new/` byte-exact, nothing in `new/` is partial or
//! unknown, each restart removed what the killed process left in `tmp/`, and
//! after a clean stop `tmp/` is empty.
//!
//! Straight into the Maildir, each acknowledged message is there exactly once.
//! Through the spool, 250 means "durable in the spool" and the Maildir gets it
//! afterwards, so a kill between the Maildir storing a message and its done
//! mark stores it again after the restart: there each acknowledged message is
//! there at least once, every copy carrying the mail id its 250 named (the
//! repeats are counted). The spool test also waits for the delivery of every
//! acknowledged message, and no restart may find the spool damaged (only a torn
//! tail, which was never acknowledged, may be cut).
//!
//! A message that got no 250 is sent again under a new token, so the counts
//! are per acknowledged token; an unacknowledged attempt that was stored anyway
//! (killed between storing and the 250) is allowed and counted.
//! `CRASH_SEED=<n>` repeats a run's kill moments; `CRASH_RECEIVER_BIN=<path>`
//! runs the loop against another build (e.g. `target/release/net-receiver`).

mod client;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;

use crate::support::common::{files_in, received_id, split_stored};
use crate::support::running::{Binary, command};
use client::{Progress, Rng, SessionLog, message, run_session};

/// Concurrent client sessions.
const SESSIONS: usize = 20;
/// Messages each session must get acknowledged.
const MESSAGES_PER_SESSION: usize = 125;
/// SIGKILLs during the run.
const KILLS: usize = 6;
/// Everything (sending, kills, restarts) must be over by then; a hang guard,
/// not a speed requirement.
const RUN_LIMIT: Duration = Duration::from_secs(50);
/// Through the spool: how long the Maildir may take to catch up after the last
/// 250 (a hang guard, not a speed requirement).
const DELIVERY_LIMIT: Duration = Duration::from_secs(60);
/// Attempts per message before the test gives up on it.
const MAX_ATTEMPTS: usize = 40;
/// The header that carries a message's token.
const TOKEN_HEADER: &str = "X-Crash-Token: ";

/// Where the receiver keeps a message before its 250.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Straight in the Maildir: 250 = in `new/`.
    Maildir,
    /// In the spool (`--spool-dir`): 250 = durable in the spool.
    Spool,
}

/// The directories of one run.
struct Dirs {
    maildir: PathBuf,
    spool: Option<PathBuf>,
}

/// The receiver listening on `listen`, delivering into the Maildir (through
/// the spool when there is one), quiet.
fn receiver(dirs: &Dirs, listen: &str) -> Binary {
    let mut command: Command = match std::env::var_os("CRASH_RECEIVER_BIN") {
        Some(path) => {
            let mut other = Command::new(path);
            other.env("RUST_LOG", "info");
            other
        }
        None => command(),
    };
    command
        .args(["--listen", listen, "--server-name", "bin.test", "--quiet"])
        .arg("--maildir")
        .arg(&dirs.maildir);
    if let Some(spool) = &dirs.spool {
        command.arg("--spool-dir").arg(spool);
    }
    Binary::spawn(&mut command, 1)
}

/// Waits until `done()` or the deadline (then fails, naming `what`).
fn wait_until(what: &str, deadline: Instant, mut done: impl FnMut() -> bool) {
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Reads a file from `new/`, asserts it is one complete message of ours and
/// returns its token and the id in its `Received:` header.
fn stored_message(path: &Path) -> (String, String) {
    let file = std::fs::read(path).expect("read a message");
    assert!(
        file.starts_with(b"Return-Path: <") && file.ends_with(b"\r\n"),
        "{}: a partial or foreign file ({} octets): {:?}",
        path.display(),
        file.len(),
        String::from_utf8_lossy(&file[..file.len().min(200)])
    );
    let stored = split_stored(&file);
    let text = String::from_utf8_lossy(stored.body);
    let token = text
        .lines()
        .find_map(|l| l.strip_prefix(TOKEN_HEADER))
        .unwrap_or_else(|| panic!("{}: no token in {text:?}", path.display()))
        .to_owned();
    let want = message(&token);
    assert!(
        stored.body == want.as_slice(),
        "{}: not the complete message {token} ({} octets, want {})",
        path.display(),
        stored.body.len(),
        want.len()
    );
    (token, received_id(&stored.received))
}

/// The files in a Maildir subdirectory, sorted.
fn sorted_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = files_in(dir);
    files.sort();
    files
}

/// The tokens in `new/`, each file read once however often this is called.
#[derive(Default)]
struct Scanned {
    /// File → (token, mail id).
    files: HashMap<PathBuf, (String, String)>,
}

impl Scanned {
    /// Reads the files of `new/` not read before.
    fn update(&mut self, new: &Path) {
        for path in files_in(new) {
            if let std::collections::hash_map::Entry::Vacant(entry) = self.files.entry(path) {
                let found = stored_message(entry.key());
                entry.insert(found);
            }
        }
    }

    fn holds_all(&self, tokens: &HashMap<&str, &str>) -> bool {
        let present: HashSet<&str> = self.files.values().map(|(t, _)| t.as_str()).collect();
        tokens.keys().all(|token| present.contains(token))
    }
}

#[test]
fn acknowledged_mail_survives_sigkill_exactly_once() {
    crash_loop(Mode::Maildir);
}

#[test]
fn acknowledged_mail_survives_sigkill_through_the_spool() {
    crash_loop(Mode::Spool);
}

/// The kill-and-restart loop in `mode`, then the count.
fn crash_loop(mode: Mode) {
    let started = Instant::now();
    let deadline = started + RUN_LIMIT;
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    let mut rng = Rng(seed | 1);
    println!("crash ({mode:?}): CRASH_SEED={seed}");
    let dir = tempfile::tempdir().expect("tempdir");
    let dirs = Dirs {
        maildir: dir.path().join("Maildir"),
        spool: (mode == Mode::Spool).then(|| dir.path().join("spool")),
    };
    let maildir = &dirs.maildir;
    let mut binary = receiver(&dirs, "127.0.0.1:0");
    let addr = binary.addr();
    let listen = addr.to_string();

    let progress = Arc::new(Progress::default());
    let sessions: Vec<JoinHandle<Result<SessionLog, String>>> = (0..SESSIONS)
        .map(|session| {
            let progress = Arc::clone(&progress);
            std::thread::spawn(move || run_session(session, addr, &progress, deadline))
        })
        .collect();

    // Each kill lands at a random point of its share of the run, plus a random
    // few milliseconds, so it hits deliveries in every stage.
    let total = SESSIONS * MESSAGES_PER_SESSION;
    let mut leftovers = Vec::new();
    for kill in 0..KILLS {
        let share = (kill as u64 * 1000 + 200 + rng.below(600)) as usize;
        let target = total * share / ((KILLS + 1) * 1000);
        wait_until("load before a kill", deadline, || {
            progress.acked.load(Ordering::Relaxed) >= target
                || progress.sessions_done.load(Ordering::Relaxed) == SESSIONS
        });
        std::thread::sleep(Duration::from_millis(rng.below(20)));
        binary.signal(Signal::SIGKILL);
        let status = binary.wait_exit();
        assert!(!status.success(), "SIGKILL gave {status}");
        // Whatever moment the kill hit, new/ holds only complete messages.
        for path in sorted_files(&maildir.join("new")) {
            stored_message(&path);
        }
        // Only the killed process wrote these; the restart must remove them all.
        let left = files_in(&maildir.join("tmp")).len();
        leftovers.push(left);
        binary = receiver(&dirs, &listen);
        assert_eq!(binary.addr(), addr, "restarted on another address");
        let log = binary.log();
        if left > 0 {
            let removed = format!("removed {left} leftover file(s)");
            assert!(log.contains(&removed), "no {removed:?} in:\n{log}");
        }
        assert!(!log.contains("writers may be running"), "{log}");
        // A kill tears at most the tail of the newest segment.
        for damage in ["damaged", "unreadable message", "malformed done mark"] {
            assert!(!log.contains(damage), "{damage} after a SIGKILL:\n{log}");
        }
    }

    let mut logs = Vec::new();
    for handle in sessions {
        logs.push(
            handle
                .join()
                .expect("client thread")
                .unwrap_or_else(|e| panic!("{e}")),
        );
    }
    let acked_count = progress.acked.load(Ordering::Relaxed);
    let acked: HashMap<&str, &str> = logs
        .iter()
        .flat_map(|log| log.acked.iter().map(|(t, id)| (t.as_str(), id.as_str())))
        .collect();
    let unacked: HashSet<&str> = logs
        .iter()
        .flat_map(|log| log.unacked.iter().map(String::as_str))
        .collect();
    assert_eq!(acked.len(), total);
    assert_eq!(acked_count, total);

    let mut scanned = Scanned::default();
    if mode == Mode::Spool {
        // 250 came from the spool: wait for the Maildir to catch up.
        let delivered = Instant::now() + DELIVERY_LIMIT;
        wait_until("delivery of every acknowledged message", delivered, || {
            scanned.update(&maildir.join("new"));
            scanned.holds_all(&acked)
        });
    }
    binary.terminate();
    let stderr = binary.log();
    assert!(!stderr.contains("panicked"), "{stderr}");

    // After a clean stop nothing is left in tmp/ (earlier leftovers were
    // removed at each start) and nothing went to cur/.
    assert_eq!(sorted_files(&maildir.join("tmp")), Vec::<PathBuf>::new());
    assert_eq!(sorted_files(&maildir.join("cur")), Vec::<PathBuf>::new());

    scanned.update(&maildir.join("new"));
    let mut found: HashMap<&str, usize> = HashMap::new();
    let mut unacked_present = 0;
    for (path, (token, id_in_file)) in &scanned.files {
        if let Some(id) = acked.get(token.as_str()) {
            assert_eq!(id_in_file, id, "{}", path.display());
        } else {
            assert!(unacked.contains(token.as_str()), "{token} was never sent");
            unacked_present += 1;
        }
        *found.entry(token).or_default() += 1;
    }
    let mut repeated = 0;
    for token in acked.keys() {
        let copies = found.get(token).copied().unwrap_or(0);
        match mode {
            Mode::Maildir => assert_eq!(copies, 1, "acknowledged {token} stored"),
            Mode::Spool => assert!(copies >= 1, "acknowledged {token} lost"),
        }
        repeated += copies.saturating_sub(1);
    }
    let files = scanned.files.len();
    assert_eq!(files, acked.len() + repeated + unacked_present);

    let connections: usize = logs.iter().map(|l| l.connections).sum();
    println!(
        "crash ({mode:?}): sessions={SESSIONS} messages_acked={} attempts={} \
         unacked_attempts={} unacked_but_stored={unacked_present} repeated={repeated} \
         connections={connections} kills={KILLS} tmp_leftovers_removed={leftovers:?} \
         files_in_new={files} elapsed={:.1?}",
        acked.len(),
        acked.len() + unacked.len(),
        unacked.len(),
        started.elapsed()
    );
}
