//! SIGTERM on the real binary: idle sessions get `421 4.3.2` and are closed; a
//! message in the middle of DATA may finish within `shutdown_grace` (its 250,
//! then the 421) or, past the grace, is cut off unacknowledged; the process exits
//! 0. The invariant: every 250 after DATA is a file in `new/`, and nothing else is.

use std::path::Path;

use nix::sys::signal::Signal;

use crate::support::common::{Client, Reply, expect_messages, files_in, split_stored};
use crate::support::running::{Binary, command, listening_command};

/// The binary on 127.0.0.1 with `shutdown_grace` seconds of grace.
fn start(dir: &Path, grace: f64) -> Binary {
    let config = dir.join("net-receiver.toml");
    std::fs::write(&config, format!("shutdown_grace = {grace:?}\n")).unwrap();
    Binary::spawn(
        listening_command(&dir.join("Maildir"))
            .arg("--config")
            .arg(&config)
            .arg("--quiet"),
        1,
    )
}

/// An idle session (EHLO done) and one inside DATA with half a message sent.
fn idle_and_half_sent(port: u16) -> (Client, Client) {
    let idle = Client::ehlo(port);
    let mut slow = Client::ehlo(port);
    slow.start_data("a@example.com", "b@example.com");
    slow.send(b"Subject: slow\r\n\r\nfirst half\r\n");
    (idle, slow)
}

/// The next reply on `client`, which must exist: if the server closed the
/// connection instead, fails with the binary's exit status and log.
fn next_reply(client: &mut Client, binary: &mut Binary) -> Reply {
    if let Some(reply) = client.try_reply() {
        return reply;
    }
    let status = binary.wait_exit();
    panic!(
        "connection closed without a reply; the binary exited with {status}; stderr:\n{}",
        binary.log()
    );
}

fn assert_shutting_down(reply: &Reply) {
    assert_eq!(reply.code, 421, "{reply:?}");
    assert_eq!(
        reply.text(),
        "4.3.2 bin.test Service shutting down, try again later"
    );
}

#[test]
fn message_in_progress_finishes_within_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    let mut binary = start(dir.path(), 20.0);
    let (mut idle, mut slow) = idle_and_half_sent(binary.port("smtp"));
    binary.signal_caught(Signal::SIGTERM);
    // The idle session hears about it at once (so the signal has been handled).
    assert_shutting_down(&next_reply(&mut idle, &mut binary));
    idle.expect_eof();
    // The slow client now finishes its message.
    slow.send(b"second half\r\n.\r\n");
    let end = next_reply(&mut slow, &mut binary);
    let mut acknowledged = 0;
    if end.code == 250 {
        acknowledged += 1;
        assert!(end.text().starts_with("2.0.0 OK id="), "{end:?}");
        assert_shutting_down(&next_reply(&mut slow, &mut binary));
    } else {
        assert_shutting_down(&end);
    }
    slow.expect_eof();
    binary.terminate();
    let maildir = dir.path().join("Maildir");
    let files = expect_messages(&maildir, acknowledged);
    // Within the grace the message is delivered, whole.
    assert_eq!(acknowledged, 1, "the message was not let finish");
    assert_eq!(
        split_stored(&files[0]).body,
        b"Subject: slow\r\n\r\nfirst half\r\nsecond half\r\n"
    );
}

#[test]
fn message_past_the_grace_is_not_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut binary = start(dir.path(), 0.5);
    let (mut idle, mut slow) = idle_and_half_sent(binary.port("smtp"));
    binary.signal_caught(Signal::SIGTERM);
    assert_shutting_down(&next_reply(&mut idle, &mut binary));
    idle.expect_eof();
    // The slow client says nothing more: after the grace it is cut off, with no
    // reply to its DATA (a 250 would claim a message that is not stored).
    slow.expect_eof();
    binary.terminate();
    let maildir = dir.path().join("Maildir");
    expect_messages(&maildir, 0);
    assert!(files_in(&maildir.join("tmp")).is_empty());
}

/// Once the binary has said it is listening, SIGTERM must be the clean stop
/// (exit 0, pid file removed) and SIGHUP a reload — never the default action
/// (death by the signal). Each is sent as soon as the `listening on` line is
/// read, five times.
#[test]
fn signals_right_after_listening_are_handled() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("receiver.pid");
    let start = || {
        Binary::spawn(
            command()
                .args(["--listen", "127.0.0.1:0", "--quiet", "--maildir"])
                .arg(dir.path().join("Maildir"))
                .arg("--pid-file")
                .arg(&pid_file),
            1,
        )
    };
    for round in 1..=5 {
        let mut binary = start();
        binary.signal(Signal::SIGTERM);
        let status = binary.wait_exit();
        assert!(
            status.success(),
            "round {round}: SIGTERM right after 'listening on' ended the process with \
             {status} (pid file left behind: {}); stderr:\n{}",
            pid_file.exists(),
            binary.log()
        );
        assert!(!pid_file.exists(), "round {round}: pid file left behind");
    }
    for _ in 1..=5 {
        let mut binary = start();
        binary.signal(Signal::SIGHUP);
        // If the process died of the SIGHUP, this fails with its exit status.
        binary.wait_for_lines("reload: TLS certificate reloaded", 1);
        Client::ehlo(binary.port("smtp")).quit();
        binary.terminate();
    }
}

/// `--workers 3`: three threads accept from the same listening socket, each
/// with its own runtime; every session is served, and SIGTERM reaches the idle
/// sessions of every thread before the process exits 0 with every 250 stored.
#[test]
fn worker_threads_share_the_listener_and_stop_together() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Maildir");
    let mut binary = Binary::spawn(
        listening_command(&maildir).args(["--quiet", "--workers", "3"]),
        1,
    );
    let port = binary.port("smtp");
    let workers = (0..100).find_map(|_| {
        let names: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", binary.pid()))
            .unwrap()
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .filter(|name| name.starts_with("smtp-worker"))
            .collect();
        if names.len() == 3 {
            return Some(names);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        None
    });
    assert!(workers.is_some(), "three worker threads never showed up");
    let mut idle: Vec<Client> = (0..12).map(|_| Client::ehlo(port)).collect();
    for (n, client) in idle.iter_mut().enumerate() {
        client.start_data("a@example.com", "b@example.com");
        client.send(format!("Subject: {n}\r\n\r\nbody {n}\r\n.\r\n").as_bytes());
        client.expect(250);
    }
    binary.signal_caught(Signal::SIGTERM);
    for client in &mut idle {
        assert_shutting_down(&next_reply(client, &mut binary));
        client.expect_eof();
    }
    binary.terminate();
    expect_messages(&maildir, 12);
}
