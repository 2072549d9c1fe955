//! Crash safety of the real binary (issue 7): 20 sessions send a few thousand
//! messages, each with its own token, while the receiver is SIGKILLed at random
//! moments and restarted on the same port. Afterwards every message that got
//! 250 is in `new/` exactly once and byte-exact, nothing in `new/` is partial or
//! unknown, each restart removed what the killed process left in `tmp/`, and
//! after a clean stop `tmp/` is empty.
//!
//! A message that got no 250 is sent again under a new token, so "exactly
//! once" is checked per acknowledged token; an unacknowledged attempt that was
//! stored anyway (killed between the rename and the 250) is allowed and counted.
//! `CRASH_SEED=<n>` repeats a run's kill moments; `CRASH_RECEIVER_BIN=<path>`
//! runs the loop against another build (e.g. `target/release/net-receiver`).

use std::collections::HashMap;
use std::io::{self, BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;

use crate::support::common::{files_in, received_id, split_stored};
use crate::support::running::{Binary, command};

/// Concurrent client sessions.
const SESSIONS: usize = 20;
/// Messages each session must get acknowledged.
const MESSAGES_PER_SESSION: usize = 125;
/// SIGKILLs during the run.
const KILLS: usize = 6;
/// Everything (sending, kills, restarts) must be over by then; a hang guard,
/// not a speed requirement.
const RUN_LIMIT: Duration = Duration::from_secs(50);
/// Attempts per message before the test gives up on it.
const MAX_ATTEMPTS: usize = 40;
/// The header that carries a message's token.
const TOKEN_HEADER: &str = "X-Crash-Token: ";

/// A small deterministic generator (xorshift64*), seeded per run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % bound.max(1)
    }
}

/// The whole message for `token`, as stored (no line starts with a dot, so it
/// is also what goes on the wire before the final `.`). Its length follows
/// from the token: 1 to 120 body lines.
fn message(token: &str) -> Vec<u8> {
    let hash = token.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let mut text = format!(
        "From: <crash@client.test>\r\nTo: <inbox@bin.test>\r\nSubject: crash {token}\r\n\
         {TOKEN_HEADER}{token}\r\n\r\n"
    );
    for line in 0..=hash % 120 {
        let padding = "x".repeat(usize::try_from(line % 50).unwrap_or(0));
        text.push_str(&format!("{token} line {line:03} {padding}\r\n"));
    }
    text.into_bytes()
}

/// How sending one message went.
enum Attempt {
    /// 250 after the final dot, with the id from its text.
    Acked(String),
    /// A 4xx: not taken; the connection stays usable.
    Deferred,
}

/// Why an attempt ended without a reply to judge.
enum Broken {
    /// The connection failed (the receiver was killed, or is restarting).
    Connection(io::Error),
    /// A reply no crash explains (5xx, garbage): the test fails.
    Unexpected(String),
}

impl From<io::Error> for Broken {
    fn from(error: io::Error) -> Self {
        Broken::Connection(error)
    }
}

/// One SMTP session over a std socket; every read and write has a timeout.
struct Smtp {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Smtp {
    /// Connects, reads the 220 and says EHLO.
    fn open(addr: SocketAddr) -> Result<Self, Broken> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        let reader = BufReader::new(stream.try_clone()?);
        let mut smtp = Smtp { stream, reader };
        let greeted =
            smtp.expect(220)?.is_some() && smtp.command("EHLO crash.test", 250)?.is_some();
        if !greeted {
            return Err(io::Error::other("greeting or EHLO deferred").into());
        }
        Ok(smtp)
    }

    /// Reads one reply: its code and the text of its last line.
    fn reply(&mut self) -> Result<(u16, String), Broken> {
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
            }
            let Some(code) = line.get(..3).and_then(|c| c.parse().ok()) else {
                return Err(Broken::Unexpected(format!("not a reply: {line:?}")));
            };
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok((code, line.get(4..).unwrap_or("").trim_end().to_owned()));
            }
        }
    }

    /// Reads a reply: `want` → its text; another 4xx → `None`; else broken.
    fn expect(&mut self, want: u16) -> Result<Option<String>, Broken> {
        match self.reply()? {
            (code, text) if code == want => Ok(Some(text)),
            (421, _) => Err(io::Error::other("421: closing").into()),
            (400..500, _) => Ok(None),
            (code, text) => Err(Broken::Unexpected(format!(
                "expected {want}, got {code} {text}"
            ))),
        }
    }

    fn command(&mut self, line: &str, want: u16) -> Result<Option<String>, Broken> {
        self.stream.write_all(format!("{line}\r\n").as_bytes())?;
        self.expect(want)
    }

    /// MAIL, RCPT, DATA, the message for `token`, and the final reply.
    fn send(&mut self, token: &str) -> Result<Attempt, Broken> {
        let steps = [
            ("MAIL FROM:<crash@client.test>", 250),
            ("RCPT TO:<inbox@bin.test>", 250),
            ("DATA", 354),
        ];
        for (line, want) in steps {
            if self.command(line, want)?.is_none() {
                self.command("RSET", 250)?;
                return Ok(Attempt::Deferred);
            }
        }
        let mut data = message(token);
        data.extend_from_slice(b".\r\n");
        self.stream.write_all(&data)?;
        let Some(text) = self.expect(250)? else {
            return Ok(Attempt::Deferred);
        };
        let id = text
            .split("id=")
            .nth(1)
            .ok_or_else(|| Broken::Unexpected(format!("250 without id: {text}")))?;
        Ok(Attempt::Acked(id.to_owned()))
    }
}

/// What one session saw.
#[derive(Default)]
struct SessionLog {
    /// Token → the id its 250 named.
    acked: HashMap<String, String>,
    /// Tokens sent without a 250 (each was retried under a new token).
    unacked: Vec<String>,
    /// Connections opened (the first, and one after each break).
    connections: usize,
}

/// Shared progress, read by the killer.
#[derive(Default)]
struct Progress {
    acked: AtomicUsize,
    sessions_done: AtomicUsize,
}

/// One client session: sends its messages, reconnecting after a break and
/// retrying every message that got no 250 under a new token.
fn run_session(
    session: usize,
    addr: SocketAddr,
    progress: &Progress,
    deadline: Instant,
) -> Result<SessionLog, String> {
    let mut log = SessionLog::default();
    let mut connection: Option<Smtp> = None;
    let mut last_break = None;
    for index in 0..MESSAGES_PER_SESSION {
        let mut attempt = 0;
        loop {
            if Instant::now() >= deadline {
                return Err(format!(
                    "session {session}: out of time at message {index}, last break {last_break:?}"
                ));
            }
            let smtp = match connection.as_mut() {
                Some(smtp) => smtp,
                None => match Smtp::open(addr) {
                    Ok(smtp) => {
                        log.connections += 1;
                        connection.insert(smtp)
                    }
                    Err(Broken::Unexpected(what)) => return Err(what),
                    Err(Broken::Connection(error)) => {
                        last_break = Some(error);
                        // Down or restarting: try again shortly.
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                },
            };
            attempt += 1;
            if attempt > MAX_ATTEMPTS {
                return Err(format!("session {session}: message {index} never got 250"));
            }
            let token = format!("s{session:02}m{index:04}a{attempt:02}");
            match smtp.send(&token) {
                Ok(Attempt::Acked(id)) => {
                    log.acked.insert(token, id);
                    progress.acked.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Ok(Attempt::Deferred) => log.unacked.push(token),
                Err(Broken::Connection(error)) => {
                    last_break = Some(error);
                    log.unacked.push(token);
                    connection = None;
                }
                Err(Broken::Unexpected(what)) => {
                    return Err(format!("session {session}, {token}: {what}"));
                }
            }
        }
    }
    if let Some(mut smtp) = connection {
        // The last message is acknowledged; how QUIT goes does not matter.
        let _ = smtp.command("QUIT", 221);
    }
    progress.sessions_done.fetch_add(1, Ordering::Relaxed);
    Ok(log)
}

/// The receiver listening on `listen`, delivering into `maildir`, quiet.
fn receiver(maildir: &Path, listen: &str) -> Binary {
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
        .arg(maildir);
    Binary::spawn(&mut command, 1)
}

/// Waits until `done()` or the deadline (then fails, naming `what`).
fn wait_until(what: &str, deadline: Instant, done: impl Fn() -> bool) {
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

#[test]
fn acknowledged_mail_survives_sigkill_exactly_once() {
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
    println!("crash: CRASH_SEED={seed}");
    let dir = tempfile::tempdir().expect("tempdir");
    let maildir = dir.path().join("Maildir");
    let mut binary = receiver(&maildir, "127.0.0.1:0");
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
        binary = receiver(&maildir, &listen);
        assert_eq!(binary.addr(), addr, "restarted on another address");
        let log = binary.log();
        if left > 0 {
            let removed = format!("removed {left} leftover file(s)");
            assert!(log.contains(&removed), "no {removed:?} in:\n{log}");
        }
        assert!(!log.contains("writers may be running"), "{log}");
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
    binary.terminate();
    let stderr = binary.log();
    assert!(!stderr.contains("panicked"), "{stderr}");

    // After a clean stop nothing is left in tmp/ (earlier leftovers were
    // removed at each start) and nothing went to cur/.
    assert_eq!(sorted_files(&maildir.join("tmp")), Vec::<PathBuf>::new());
    assert_eq!(sorted_files(&maildir.join("cur")), Vec::<PathBuf>::new());

    let acked: HashMap<&str, &str> = logs
        .iter()
        .flat_map(|log| log.acked.iter().map(|(t, id)| (t.as_str(), id.as_str())))
        .collect();
    let unacked: std::collections::HashSet<&str> = logs
        .iter()
        .flat_map(|log| log.unacked.iter().map(String::as_str))
        .collect();
    assert_eq!(acked.len(), total);
    assert_eq!(acked_count, total);

    let mut found: HashMap<String, usize> = HashMap::new();
    let mut unacked_present = 0;
    let files = sorted_files(&maildir.join("new"));
    for path in &files {
        let (token, id_in_file) = stored_message(path);
        if let Some(id) = acked.get(token.as_str()) {
            assert_eq!(id_in_file, *id, "{}", path.display());
        } else {
            assert!(unacked.contains(token.as_str()), "{token} was never sent");
            unacked_present += 1;
        }
        *found.entry(token).or_default() += 1;
    }
    for token in acked.keys() {
        assert_eq!(found.get(*token), Some(&1), "acknowledged {token} stored");
    }
    assert_eq!(files.len(), acked.len() + unacked_present);

    let connections: usize = logs.iter().map(|l| l.connections).sum();
    println!(
        "crash: sessions={SESSIONS} messages_acked={} attempts={} \
         unacked_attempts={} unacked_but_stored={unacked_present} connections={connections} \
         kills={KILLS} tmp_leftovers_removed={leftovers:?} files_in_new={} elapsed={:.1?}",
        acked.len(),
        acked.len() + unacked.len(),
        unacked.len(),
        files.len(),
        started.elapsed()
    );
}
