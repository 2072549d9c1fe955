//! A slow hook holds only the sessions waiting for it: 100 sessions whose
//! recipient the hook holds (until the test lets it answer) and 100 others at
//! the same time; the others all complete while the held ones wait, then the
//! held ones complete too. A dead hook with few slots: every session still
//! ends, each with the hook's `on_error`. Assertions on completion, never on
//! timing.

use std::io::{BufReader, Write as _};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use net_receiver::policy::{HookConfig, Stage};

use super::{MESSAGE, hook_at, start};
use crate::support::common::{messages, read_reply};
use crate::support::hook_server::{Answer, HookServer};

/// Sessions of each kind.
const EACH: usize = 100;

/// How long a held session's client waits for a reply: long, so that only the
/// test's own release ends the wait.
const HELD_READ: Duration = Duration::from_secs(120);

/// One session to `recipient`; the reply code to the final dot (or to the
/// first refusal).
fn session(port: u16, recipient: &str) -> u16 {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(HELD_READ)).expect("timeout");
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    assert_eq!(read_reply(&mut reader).code, 220);
    let lines = [
        "EHLO client.test\r\n".to_owned(),
        "MAIL FROM:<sender@example.com>\r\n".to_owned(),
        format!("RCPT TO:<{recipient}>\r\n"),
        "DATA\r\n".to_owned(),
        format!("{MESSAGE}.\r\n"),
    ];
    let mut code = 0;
    for line in &lines {
        writer.write_all(line.as_bytes()).expect("write");
        code = read_reply(&mut reader).code;
        if code >= 400 {
            break;
        }
    }
    let _ = writer.write_all(b"QUIT\r\n");
    code
}

fn spawn_sessions(port: u16, recipient: &'static str, n: usize) -> Vec<JoinHandle<u16>> {
    (0..n)
        .map(|_| std::thread::spawn(move || session(port, recipient)))
        .collect()
}

fn codes(sessions: Vec<JoinHandle<u16>>) -> Vec<u16> {
    sessions
        .into_iter()
        .map(|s| s.join().expect("session thread"))
        .collect()
}

/// Waits until `done()` or the limit passes; true when done. A bounded wait for
/// a state, not a measurement.
fn wait_until(limit: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

#[test]
fn a_slow_hook_holds_only_the_sessions_that_wait_for_it() {
    let held_now = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&held_now);
    let hook = HookServer::start(move |request| {
        if request["command"]["url"] == "slow@example.com" {
            counter.fetch_add(1, Ordering::SeqCst);
            Answer::Held(Box::new(Answer::Reply(204, Vec::new())))
        } else {
            Answer::Reply(204, Vec::new())
        }
    });
    let config = HookConfig {
        timeout: 300.0,
        max_concurrency: 2 * EACH,
        ..hook_at(&hook.url(), &[Stage::RcptTo])
    };
    let mut server_config = super::server_config();
    server_config.max_connections_per_ip = 4 * EACH;
    let (server, _) = super::start_with(server_config, &[config]);
    let port = server.port;
    let slow = spawn_sessions(port, "slow@example.com", EACH);
    assert!(
        wait_until(Duration::from_secs(60), || held_now.load(Ordering::SeqCst)
            == EACH),
        "the hook got {} of {EACH} slow calls",
        held_now.load(Ordering::SeqCst)
    );
    let fast = codes(spawn_sessions(port, "fast@example.com", EACH));
    assert_eq!(fast, vec![250; EACH], "the other sessions were all served");
    assert!(
        slow.iter().all(|s| !s.is_finished()),
        "the held ones still wait"
    );
    assert_eq!(messages(server.dir()).len(), EACH);
    hook.release();
    assert_eq!(
        codes(slow),
        vec![250; EACH],
        "and end once the hook answers"
    );
    assert_eq!(messages(server.dir()).len(), 2 * EACH);
}

#[test]
fn a_dead_hook_with_few_slots_still_ends_every_session() {
    let hook = HookServer::start(|_| Answer::Never);
    let config = HookConfig {
        timeout: 1.0,
        max_concurrency: 2,
        ..hook_at(&hook.url(), &[Stage::Data])
    };
    let (server, _) = start(&[config]);
    let sessions = codes(spawn_sessions(server.port, "rcpt@example.com", 20));
    assert_eq!(sessions, vec![451; 20], "each gets on_error, none hangs");
    assert!(
        hook.requests().len() <= 20,
        "never more than one call per message"
    );
    assert!(messages(server.dir()).is_empty());
}
