//! The real `net-receiver` binary as a child process: started with any flags,
//! its `listening on ADDR ... mode=MODE` log lines parsed, its stderr readable
//! while it runs (to wait for a log line), signals, a bounded wait for its exit,
//! and a kill on drop so no test leaves it running.

use std::io::{BufRead as _, BufReader, Read as _};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The binary under test.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_net-receiver");

/// How long the binary may take to start listening or to exit after a signal.
pub(crate) const PROCESS_LIMIT: Duration = Duration::from_secs(15);

/// The stderr lines so far, and whether stderr was closed.
#[derive(Default)]
struct Log {
    lines: Mutex<(Vec<String>, bool)>,
    changed: Condvar,
}

/// A running binary; killed (SIGKILL) when dropped.
pub(crate) struct Binary {
    child: Child,
    /// Each `listening on` line: the address and the mode (`Smtp`, `Smtps`, ...).
    pub(crate) listening: Vec<(SocketAddr, String)>,
    log: Arc<Log>,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<()>>,
}

/// The binary with `RUST_LOG=info`, ready for arguments.
pub(crate) fn command() -> Command {
    let mut command = Command::new(BIN);
    command.env("RUST_LOG", "info");
    command
}

/// [`command`] listening on `127.0.0.1:0` as `bin.test`, delivering into
/// `maildir`; more flags may follow.
pub(crate) fn listening_command(maildir: &Path) -> Command {
    let mut command = command();
    command
        .args(["--listen", "127.0.0.1:0", "--server-name", "bin.test"])
        .arg("--maildir")
        .arg(maildir);
    command
}

impl Binary {
    /// Starts `command` and waits until it logged `listeners` listening lines.
    pub(crate) fn spawn(command: &mut Command, listeners: usize) -> Self {
        let mut binary = Self::start(command);
        let lines = binary.wait_for_lines("listening on ", listeners);
        binary.listening = lines.iter().map(|l| parse_listening(l)).collect();
        binary
    }

    /// Starts `command` without waiting for anything (`listening` stays empty).
    pub(crate) fn start(command: &mut Command) -> Self {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start net-receiver");
        let mut stdout = child.stdout.take().expect("stdout");
        let stdout = std::thread::spawn(move || {
            let mut all = Vec::new();
            let _ = stdout.read_to_end(&mut all);
            all
        });
        let log = Arc::new(Log::default());
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let writer = Arc::clone(&log);
        let stderr = std::thread::spawn(move || {
            let mut line = Vec::new();
            while stderr.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
                let text = String::from_utf8_lossy(&line).trim_end().to_owned();
                line.clear();
                writer.lines.lock().expect("log").0.push(text);
                writer.changed.notify_all();
            }
            writer.lines.lock().expect("log").1 = true;
            writer.changed.notify_all();
        });
        Self {
            child,
            listening: Vec::new(),
            log,
            stdout: Some(stdout),
            stderr: Some(stderr),
        }
    }

    /// The process id.
    pub(crate) fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid")
    }

    /// The address of the first listener.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.listening[0].0
    }

    /// The port of the (first) listener in `mode` (`"smtp"`, `"smtps"`, `"submission"`).
    pub(crate) fn port(&self, mode: &str) -> u16 {
        self.listening
            .iter()
            .find(|(_, m)| m == mode)
            .unwrap_or_else(|| panic!("no {mode} listener in {:?}", self.listening))
            .0
            .port()
    }

    /// Everything on stderr so far.
    pub(crate) fn log(&self) -> String {
        self.log.lines.lock().expect("log").0.join("\n")
    }

    /// Waits (at most [`PROCESS_LIMIT`]) until `count` stderr lines contain
    /// `needle`; returns them.
    pub(crate) fn wait_for_lines(&mut self, needle: &str, count: usize) -> Vec<String> {
        let deadline = Instant::now() + PROCESS_LIMIT;
        let mut guard = self.log.lines.lock().expect("log");
        loop {
            let found: Vec<String> = guard
                .0
                .iter()
                .filter(|l| l.contains(needle))
                .cloned()
                .collect();
            if found.len() >= count {
                return found;
            }
            let now = Instant::now();
            if guard.1 || now >= deadline {
                let log = guard.0.join("\n");
                drop(guard);
                let _ = self.child.kill();
                let status = self.child.wait();
                panic!("no {count} lines with {needle:?} ({status:?}); stderr:\n{log}");
            }
            guard = self
                .log
                .changed
                .wait_timeout(guard, deadline - now)
                .expect("log")
                .0;
        }
    }

    /// Sends `signal` to the process.
    pub(crate) fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid()), signal).expect("kill");
    }

    /// Waits (at most [`PROCESS_LIMIT`]) until the process catches `signal`
    /// (its bit in `SigCgt` of `/proc/<pid>/status`), then sends it. Tests that
    /// are not about start-up use this, so a signal never races the handler.
    pub(crate) fn signal_caught(&self, signal: Signal) {
        let deadline = Instant::now() + PROCESS_LIMIT;
        while !catches(self.pid(), signal) {
            assert!(
                Instant::now() < deadline,
                "{signal} never caught; stderr:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        self.signal(signal);
    }

    /// The exit status if the process has exited, without waiting.
    pub(crate) fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("wait")
    }

    /// Waits at most [`PROCESS_LIMIT`] for the process to exit.
    pub(crate) fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PROCESS_LIMIT;
        loop {
            if let Some(status) = self.try_wait() {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "still running after {PROCESS_LIMIT:?}; stderr:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then asserts a clean exit (status 0, no panic); returns stdout.
    pub(crate) fn terminate(&mut self) -> String {
        self.signal_caught(Signal::SIGTERM);
        let status = self.wait_exit();
        let (stdout, log) = self.output();
        assert!(status.success(), "{status} after SIGTERM; stderr:\n{log}");
        assert!(!log.contains("panicked"), "{log}");
        String::from_utf8(stdout).expect("stdout is UTF-8")
    }

    /// Kills the process (SIGKILL); returns everything it wrote on stdout and
    /// stderr.
    pub(crate) fn stop(&mut self) -> (String, String) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (stdout, log) = self.output();
        (String::from_utf8(stdout).expect("stdout is UTF-8"), log)
    }

    /// After the exit: all of stdout and of stderr.
    fn output(&mut self) -> (Vec<u8>, String) {
        let stdout = self.stdout.take().map(|h| h.join().expect("stdout"));
        if let Some(h) = self.stderr.take() {
            h.join().expect("stderr reader");
        }
        (stdout.unwrap_or_default(), self.log())
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// True if `pid` has a handler for `signal` (`SigCgt` in `/proc/<pid>/status`).
pub(crate) fn catches(pid: i32, signal: Signal) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    mask & (1 << (signal as i32 - 1)) != 0
}

/// `... listening on 127.0.0.1:2525, delivering to DIR mode=Smtp`, or the
/// same as a JSON line (`"message":"listening on …","mode":"smtp"`).
pub(crate) fn parse_listening(line: &str) -> (SocketAddr, String) {
    if line.starts_with('{') {
        let value: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
        let message = value["message"].as_str().expect("message");
        let mode = value["mode"].as_str().expect("mode");
        return parse_listening(&format!("{message} mode={mode}"));
    }
    let rest = line.split("listening on ").nth(1).expect("listening on");
    let addr = rest.split([',', ' ']).next().unwrap_or("");
    let addr: SocketAddr = addr
        .parse()
        .unwrap_or_else(|e| panic!("bad address in {line:?}: {e}"));
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{line}");
    let mode = line.rsplit("mode=").next().unwrap_or("").trim().to_owned();
    (addr, mode)
}
