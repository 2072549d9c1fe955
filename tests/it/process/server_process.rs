//! The real binary's process duties, checked in `/proc` and on disk: the
//! privilege drop to `nobody` (all uids/gids, supplementary groups, capabilities,
//! every thread), the Maildir created by the final user, the pid file (written,
//! refused while live, replaced when stale, removed on exit), `--daemon` (detached
//! into its own session, stdio redirected, relative paths kept), the working
//! directory, unknown users and groups, and the root warning.
//!
//! These tests need root (CI runs as root): they fail with a clear message
//! otherwise.

use std::fs;
use std::io::Read as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Gid, Pid};

use crate::support::common::{Client, expect_messages, run_bounded, split_stored};
use crate::support::running::{Binary, PROCESS_LIMIT, command, listening_command};

/// nobody / nogroup on Debian and Ubuntu.
const NOBODY: u32 = 65534;

pub(crate) fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test must run as root (CI does): it checks what the binary does \
         with root privileges (--user/--group, pid files of other users)"
    );
}

/// A temporary directory anyone may write (so `nobody` can create the Maildir).
fn open_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

/// The numbers after `Name:` in `/proc/<pid>/task/<tid>/status` (or the
/// process's own status when `tid` is `None`).
fn status_numbers(status: &str, name: &str) -> Vec<u32> {
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in {status}"));
    line[name.len() + 1..]
        .split_whitespace()
        .map(|n| n.parse().expect("number"))
        .collect()
}

fn status_text(status: &str, name: &str) -> String {
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in {status}"));
    line[name.len() + 1..].trim().to_owned()
}

/// `/proc/<pid>/stat` from field 3 (state) on: `[state, ppid, pgrp, session, tty_nr, ...]`.
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')').expect("stat comm").1;
    Some(after.split_whitespace().map(str::to_owned).collect())
}

fn sorted(mut v: Vec<u32>) -> Vec<u32> {
    v.sort_unstable();
    v.dedup();
    v
}

/// Asserts every thread of `pid` runs as nobody/nogroup with exactly nobody's
/// groups and no capabilities.
fn assert_runs_as_nobody(pid: i32) {
    let nobody = c"nobody";
    let groups: Vec<u32> = nix::unistd::getgrouplist(nobody, Gid::from_raw(NOBODY))
        .unwrap()
        .into_iter()
        .map(Gid::as_raw)
        .collect();
    let groups = sorted(groups);
    assert!(!groups.contains(&0), "{groups:?}");
    let list_tasks = || -> Vec<PathBuf> {
        fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    };
    // The worker threads start right after "listening" is logged.
    let mut tasks = list_tasks();
    for _ in 0..100 {
        if tasks.len() > 1 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        tasks = list_tasks();
    }
    assert!(tasks.len() > 1, "the server has worker threads: {tasks:?}");
    let mut files = vec![PathBuf::from(format!("/proc/{pid}/status"))];
    files.extend(tasks.iter().map(|t| t.join("status")));
    for file in files {
        let status = fs::read_to_string(&file).unwrap();
        assert_eq!(status_numbers(&status, "Uid"), [NOBODY; 4], "{file:?}");
        assert_eq!(status_numbers(&status, "Gid"), [NOBODY; 4], "{file:?}");
        assert_eq!(
            sorted(status_numbers(&status, "Groups")),
            groups,
            "{file:?}"
        );
        for cap in ["CapPrm", "CapEff", "CapAmb"] {
            assert_eq!(
                status_text(&status, cap),
                "0000000000000000",
                "{cap} {file:?}"
            );
        }
    }
}

fn owner(path: &Path) -> (u32, u32) {
    let meta = fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (meta.uid(), meta.gid())
}

pub(crate) fn send_one(port: u16, subject: &str) {
    let mut client = Client::ehlo(port);
    client.start_data("a@example.com", "b@example.com");
    client.send(format!("Subject: {subject}\r\n\r\nbody\r\n.\r\n").as_bytes());
    client.expect_enhanced(250, "2.0.0");
    client.quit();
}

#[test]
fn runs_as_nobody_after_binding() {
    require_root();
    for identity in [
        &["--user", "nobody", "--group", "nogroup"][..],
        &["--user", "nobody"][..],
    ] {
        let dir = open_dir();
        let maildir = dir.path().join("Maildir");
        let pid_file = dir.path().join("receiver.pid");
        let mut binary = Binary::spawn(
            listening_command(&maildir)
                .arg("--quiet")
                .arg("--pid-file")
                .arg(&pid_file)
                .args(identity),
            1,
        );
        let pid = binary.pid();
        assert_runs_as_nobody(pid);
        for sub in ["", "new", "cur", "tmp"] {
            assert_eq!(
                owner(&maildir.join(sub)),
                (NOBODY, NOBODY),
                "{identity:?} {sub}"
            );
        }
        send_one(binary.port("smtp"), "as nobody");
        let files = expect_messages(&maildir, 1);
        assert_eq!(
            split_stored(&files[0]).body,
            b"Subject: as nobody\r\n\r\nbody\r\n"
        );
        let stored = crate::support::common::files_in(&maildir.join("new"));
        assert_eq!(owner(&stored[0]), (NOBODY, NOBODY));
        assert!(
            binary.log().contains("privileges dropped"),
            "{}",
            binary.log()
        );
        assert_eq!(fs::read_to_string(&pid_file).unwrap(), format!("{pid}\n"));
        binary.terminate();
        assert!(!pid_file.exists(), "pid file left after SIGTERM");
    }
}

/// Runs the binary to completion expecting a start-up failure; returns stderr.
fn start_fails(command: &mut Command) -> String {
    let output = run_bounded(command, PROCESS_LIMIT);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "started anyway; stderr: {stderr}");
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

/// A pid that belonged to a process that has exited (and is reaped).
fn dead_pid() -> i32 {
    for _ in 0..10 {
        let mut child = Command::new("true").stdin(Stdio::null()).spawn().unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        child.wait().unwrap();
        if kill(Pid::from_raw(pid), None) == Err(nix::errno::Errno::ESRCH) {
            return pid;
        }
    }
    panic!("no dead pid found");
}

#[test]
fn pid_file_is_written_refused_replaced_and_removed() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("net-receiver.pid");
    let maildir = dir.path().join("Maildir");
    let start = |extra: &[&str]| {
        let mut c = command();
        c.args(["--listen", "127.0.0.1:0", "--quiet"])
            .arg("--maildir")
            .arg(&maildir)
            .arg("--pid-file")
            .arg(&pid_file)
            .args(extra);
        c
    };
    // Stale: a dead pid, then garbage.
    for stale in [format!("{}\n", dead_pid()), "not a pid\n".to_owned()] {
        fs::write(&pid_file, &stale).unwrap();
        let mut binary = Binary::spawn(&mut start(&[]), 1);
        let pid = binary.pid();
        assert_eq!(fs::read_to_string(&pid_file).unwrap(), format!("{pid}\n"));

        // A second instance (on another port) refuses to start and names the file.
        let stderr = start_fails(&mut start(&[]));
        assert!(stderr.contains(&pid_file.display().to_string()), "{stderr}");
        assert!(
            stderr.contains(&format!("names the running process {pid}")),
            "{stderr}"
        );
        assert_eq!(fs::read_to_string(&pid_file).unwrap(), format!("{pid}\n"));

        send_one(binary.port("smtp"), "pid file");
        binary.terminate();
        assert!(!pid_file.exists(), "pid file left after a clean exit");
    }
    expect_messages(&maildir, 2);
    let leftovers: Vec<_> = crate::support::common::files_in(dir.path());
    assert_eq!(leftovers, [maildir], "temporary pid files left behind");
}

/// Kills the daemon (by the pid it reported or its pid file) unless disarmed.
pub(crate) struct DaemonGuard {
    pub(crate) pid: Option<i32>,
    pub(crate) pid_file: PathBuf,
}

impl Drop for DaemonGuard {
    fn drop(&mut self) {
        let pid = self.pid.or_else(|| {
            let text = fs::read_to_string(&self.pid_file).ok()?;
            text.trim().parse().ok()
        });
        if let Some(pid) = pid.filter(|p| *p > 1) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// True once `pid` is gone or a zombie.
pub(crate) fn is_dead(pid: i32) -> bool {
    stat_fields(pid).is_none_or(|f| f[0] == "Z")
}

/// The first `listening on` address in the daily log files `<log>.<date>`.
pub(crate) fn listening_in_logs(dir: &Path, log: &str) -> Option<u16> {
    for path in crate::support::common::files_in(dir) {
        let name = path.file_name()?.to_string_lossy().into_owned();
        if !name.starts_with(&format!("{log}.")) {
            continue;
        }
        let text = fs::read_to_string(&path).ok()?;
        if let Some(rest) = text.split("listening on ").nth(1) {
            let addr = rest.split([',', ' ']).next()?;
            return addr.parse::<std::net::SocketAddr>().ok().map(|a| a.port());
        }
    }
    None
}

#[test]
fn daemon_detaches_into_its_own_session() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut guard = DaemonGuard {
        pid: None,
        pid_file: dir.path().join("d.pid"),
    };
    // Relative paths, resolved against the directory the command runs in.
    let mut parent = command()
        .current_dir(dir.path())
        .args(["--daemon", "--pid-file", "d.pid", "--log-file", "d.log"])
        .args(["--maildir", "m", "--listen", "127.0.0.1:0", "--quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let parent_pid = i32::try_from(parent.id()).unwrap();
    let deadline = Instant::now() + PROCESS_LIMIT;
    let status = loop {
        if let Some(status) = parent.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "--daemon did not return");
        std::thread::sleep(Duration::from_millis(20));
    };
    // Read with a bound: a daemon that kept our pipes open would block a plain read.
    let (tx, rx) = std::sync::mpsc::channel();
    let (mut out, mut err) = (parent.stdout.take().unwrap(), parent.stderr.take().unwrap());
    std::thread::spawn(move || {
        let (mut stdout, mut stderr) = (String::new(), String::new());
        let _ = out.read_to_string(&mut stdout);
        let _ = err.read_to_string(&mut stderr);
        let _ = tx.send((stdout, stderr));
    });
    let (stdout, stderr) = rx
        .recv_timeout(PROCESS_LIMIT)
        .expect("the daemon holds the command's stdout or stderr open");
    assert!(status.success(), "{status}: {stdout} {stderr}");

    let text = fs::read_to_string(&guard.pid_file).expect("pid file of the daemon");
    let pid: i32 = text.trim().parse().expect("a pid");
    guard.pid = Some(pid);
    assert_eq!(text, format!("{pid}\n"));
    assert_eq!(
        stdout,
        format!("net-receiver: running as daemon, pid {pid}\n")
    );
    assert_ne!(pid, parent_pid);
    let stat = stat_fields(pid).expect("the daemon is running");
    let ppid: i32 = stat[1].parse().unwrap();
    assert_ne!(ppid, parent_pid, "still the child of the command");
    assert_ne!(ppid, i32::try_from(std::process::id()).unwrap());
    assert_eq!(stat[2], pid.to_string(), "process group leader");
    assert_eq!(stat[3], pid.to_string(), "session leader (setsid)");
    assert_eq!(stat[4], "0", "no controlling terminal");
    let fd = |n: u32| fs::read_link(format!("/proc/{pid}/fd/{n}")).unwrap();
    assert_eq!(fd(0), Path::new("/dev/null"));
    assert_eq!(fd(1), Path::new("/dev/null"));
    assert_eq!(
        fd(2),
        dir.path().join("d.log"),
        "stderr goes to the log file"
    );
    assert_eq!(
        fs::read_link(format!("/proc/{pid}/cwd")).unwrap(),
        dir.path()
    );

    // Logs are written by a background thread: wait for the line.
    let port = loop {
        if let Some(port) = listening_in_logs(dir.path(), "d.log") {
            break port;
        }
        assert!(
            Instant::now() < deadline,
            "no listening line in the log files"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    send_one(port, "from the daemon");
    expect_messages(&dir.path().join("m"), 1);

    kill(Pid::from_raw(pid), Signal::SIGTERM).unwrap();
    while !is_dead(pid) {
        assert!(Instant::now() < deadline, "the daemon ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    guard.pid = None;
    assert!(!guard.pid_file.exists(), "pid file left by the daemon");
}

#[test]
fn working_directory_holds_relative_paths() {
    require_root();
    let work = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let mut binary = Binary::spawn(
        command()
            .current_dir(elsewhere.path())
            .arg("--working-directory")
            .arg(work.path())
            .args(["--maildir", "m", "--pid-file", "p.pid"])
            .args(["--listen", "127.0.0.1:0", "--quiet"]),
        1,
    );
    let pid = binary.pid();
    assert_eq!(
        fs::read_link(format!("/proc/{pid}/cwd")).unwrap(),
        work.path()
    );
    assert_eq!(
        fs::read_to_string(work.path().join("p.pid")).unwrap(),
        format!("{pid}\n")
    );
    send_one(binary.port("smtp"), "relative");
    binary.terminate();
    expect_messages(&work.path().join("m"), 1);
    assert!(crate::support::common::files_in(elsewhere.path()).is_empty());
    assert!(!work.path().join("p.pid").exists());
}

#[test]
fn unknown_user_or_group_stops_the_start() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let base = || {
        let mut c = command();
        c.current_dir(dir.path())
            .args(["--listen", "127.0.0.1:0", "--maildir", "m"]);
        c
    };
    let stderr = start_fails(base().args(["--user", "nosuchuser"]));
    assert!(stderr.contains("unknown user \"nosuchuser\""), "{stderr}");
    let stderr = start_fails(base().args(["--user", "nobody", "--group", "nosuchgroup"]));
    assert!(stderr.contains("unknown group \"nosuchgroup\""), "{stderr}");
    // As a daemon the command reports the child's error and exits 1.
    let stderr = start_fails(
        base()
            .args(["--daemon", "--pid-file", "d.pid"])
            .args(["--user", "nosuchuser"]),
    );
    assert!(stderr.contains("nosuchuser"), "{stderr}");
    assert!(!dir.path().join("d.pid").exists());
    assert!(
        !dir.path().join("m").exists(),
        "Maildir created by a failed start"
    );
}

#[test]
fn root_warning_only_for_ports_below_1024() {
    require_root();
    const WARNING: &str = "running as root on a port below 1024";
    let dir = tempfile::tempdir().unwrap();
    // Port 0 means an ephemeral port (>= 1024): no warning.
    let mut binary = Binary::spawn(
        command()
            .args(["--listen", "127.0.0.1:0", "--quiet", "--maildir"])
            .arg(dir.path()),
        1,
    );
    assert!(binary.port("smtp") >= 1024);
    binary.terminate();
    assert!(!binary.log().contains(WARNING), "{}", binary.log());
    // A privileged port does warn.
    let low = (600..1024)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port below 1024");
    let mut binary = Binary::spawn(
        command()
            .args([
                "--listen",
                &format!("127.0.0.1:{low}"),
                "--quiet",
                "--maildir",
            ])
            .arg(dir.path()),
        1,
    );
    binary.terminate();
    assert!(binary.log().contains(WARNING), "{}", binary.log());
}
