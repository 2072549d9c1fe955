//! A daemon started with a relative `--config` whose `working_directory`,
//! `log_file`, `pid_file`, `maildir` and `json_file` are relative too: the
//! command resolves the config file before detaching, the daemon serves from the
//! working directory, JSON lines go to `json_file` (reopened on SIGHUP, for log
//! rotation), and a daemon without `json_file` says its JSON lines are discarded.

use std::fs;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::server_process::{DaemonGuard, is_dead, listening_in_logs, require_root, send_one};
use crate::support::common::{expect_messages, run_bounded};
use crate::support::running::{PROCESS_LIMIT, command};

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PROCESS_LIMIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn relative_config_and_working_directory_with_a_json_file() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("w");
    fs::create_dir(&work).unwrap();
    fs::write(
        dir.path().join("d.toml"),
        "working_directory = \"w\"\nlog_file = \"d.log\"\npid_file = \"d.pid\"\n\
         maildir = \"m\"\njson_file = \"mail.json\"\nlistening_ports = [\"127.0.0.1:0\"]\n",
    )
    .unwrap();
    let mut guard = DaemonGuard {
        pid: None,
        pid_file: work.join("d.pid"),
    };
    let output = run_bounded(
        command()
            .current_dir(dir.path())
            .args(["--config", "d.toml", "--daemon"]),
        PROCESS_LIMIT,
    );
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!stdout.contains("discarded"), "{stdout}");
    let pid: i32 = fs::read_to_string(&guard.pid_file)
        .expect("pid file in the working directory")
        .trim()
        .parse()
        .unwrap();
    guard.pid = Some(pid);
    let mut port = None;
    wait_until("the listening line", || {
        port = listening_in_logs(&work, "d.log");
        port.is_some()
    });
    let port = port.unwrap();
    send_one(port, "first");
    let json = work.join("mail.json");
    wait_until("the first JSON line", || {
        fs::read_to_string(&json).is_ok_and(|t| t.lines().count() == 1)
    });
    // Rotation: move the file away, SIGHUP, the next line goes to a new file.
    fs::rename(&json, work.join("mail.json.1")).unwrap();
    kill(Pid::from_raw(pid), Signal::SIGHUP).unwrap();
    wait_until("the reload line", || {
        crate::support::common::files_in(&work).iter().any(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("d.log."))
                && fs::read_to_string(p).is_ok_and(|t| t.contains("SIGHUP: reloading"))
        })
    });
    send_one(port, "second");
    wait_until("the second JSON line in the new file", || {
        fs::read_to_string(&json).is_ok_and(|t| t.lines().count() == 1)
    });
    let first = fs::read_to_string(work.join("mail.json.1")).unwrap();
    assert_eq!(first.lines().count(), 1, "{first}");
    expect_messages(&work.join("m"), 2);
    kill(Pid::from_raw(pid), Signal::SIGTERM).unwrap();
    wait_until("the daemon to stop", || is_dead(pid));
    guard.pid = None;
}

#[test]
fn a_daemon_without_json_file_says_its_lines_are_discarded() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut guard = DaemonGuard {
        pid: None,
        pid_file: dir.path().join("d.pid"),
    };
    let output = run_bounded(
        command()
            .current_dir(dir.path())
            .args(["--daemon", "--pid-file", "d.pid", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped()),
        PROCESS_LIMIT,
    );
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("JSON lines are discarded") && stdout.contains("json_file"),
        "{stdout}"
    );
    let pid: i32 = fs::read_to_string(&guard.pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    guard.pid = Some(pid);
    kill(Pid::from_raw(pid), Signal::SIGTERM).unwrap();
    wait_until("the daemon to stop", || is_dead(pid));
    guard.pid = None;
}
