//! Milters against real milters on loopback: the Python test milter
//! (`support/milters/test_milter.py`, Debian's python3-milter on libmilter)
//! answering and editing by envelope; OpenDKIM signing, its signature checked
//! by our DKIM verifier and by dkimpy; rspamd in milter mode (GTUBE refused,
//! its headers added); milters written here that hang, die
//! mid-message or speak garbage, against each `default_action`.

mod misbehaving;
mod opendkim;
mod python;
mod rspamd;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use net_receiver::policy::Milter;
pub(super) use net_receiver::policy::MilterConfig;
use net_receiver::{Config, Mail};

use crate::support::common::{Client, Recorder, TestServer, config};

/// How long a milter process may take to be ready.
const START_LIMIT: Duration = Duration::from_secs(20);

/// Debian's Python (a pyenv `python3` on `PATH` does not see Debian's modules).
const PYTHON: &str = "/usr/bin/python3";

/// The test milter as a child process on a unix socket; killed when dropped.
pub(super) struct PythonMilter {
    child: Child,
    /// `unix:/…/milter.sock`.
    pub(super) address: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl PythonMilter {
    pub(super) fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("milter.sock");
        let log = dir.path().join("milter.log");
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/it/support/milters/test_milter.py"
        );
        assert!(
            Command::new(PYTHON)
                .args(["-c", "import Milter"])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
            "python3 Milter module missing: install python3-milter (scripts/test does it)"
        );
        let child = Command::new(PYTHON)
            .arg(script)
            .arg(format!("unix:{}", socket.display()))
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the test milter");
        wait_for_path(&socket);
        Self {
            child,
            address: format!("unix:{}", socket.display()),
            log,
            _dir: dir,
        }
    }

    /// What the milter logged for each message (one JSON value each).
    pub(super) fn seen(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).expect("milter log line"))
            .collect()
    }
}

impl Drop for PythonMilter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (bounded) until `path` exists.
pub(super) fn wait_for_path(path: &Path) {
    let deadline = Instant::now() + START_LIMIT;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A milter at `address` with short timeouts (the misbehaving ones are
/// waited for), the other keys at their defaults.
pub(super) fn milter_at(address: &str) -> MilterConfig {
    MilterConfig {
        connect_timeout: 5.0,
        command_timeout: 5.0,
        content_timeout: 5.0,
        ..MilterConfig::with_address(address)
    }
}

/// An in-process server with these milters (in order) and a recording receiver.
pub(super) fn start(milters: &[MilterConfig]) -> (TestServer, Recorder) {
    start_with(config(), milters)
}

/// [`start`] with another configuration.
pub(super) fn start_with(config: Config, milters: &[MilterConfig]) -> (TestServer, Recorder) {
    let recorder = Recorder::default();
    let spec = "127.0.0.1:0"
        .parse::<std::net::SocketAddr>()
        .expect("addr")
        .into();
    let layers: Vec<Milter> = milters
        .iter()
        .map(|m| Milter::new(m).expect("milter config"))
        .collect();
    let server = TestServer::start_custom(config, recorder.clone(), &[spec], |mut server| {
        for layer in layers {
            server = server.with_policy(Arc::new(layer));
        }
        server
    });
    (server, recorder)
}

/// A simple message with a header the milters may delete.
pub(super) const MESSAGE: &str = "From: <sender@example.com>\r\nTo: <rcpt@example.com>\r\n\
    Subject:  spaced  subject\r\nX-Remove-Me: yes\r\nX-Folded: one\r\n\ttwo\r\n\r\n\
    Hello milter.\r\n";

/// One session: MAIL, each RCPT (its code), DATA and `message` when a
/// recipient was taken; the code after the final dot (`None`: no DATA).
pub(super) fn send(
    port: u16,
    from: &str,
    recipients: &[(&str, u16)],
    message: &str,
) -> Option<u16> {
    let mut client = Client::ehlo(port);
    let code = ask(&mut client, &format!("MAIL FROM:<{from}>")).code;
    if code != 250 {
        client.quit();
        return Some(code);
    }
    let mut any = false;
    for (to, expected) in recipients {
        let reply = ask(&mut client, &format!("RCPT TO:<{to}>"));
        assert_eq!(reply.code, *expected, "RCPT {to}: {reply:?}");
        any |= reply.code == 250;
    }
    if !any {
        client.quit();
        return None;
    }
    client.cmd("DATA", 354);
    client.send(message.as_bytes());
    client.send(b".\r\n");
    let code = client.reply().code;
    client.quit();
    Some(code)
}

/// Sends one command line and reads its reply, whatever the code.
pub(super) fn ask(client: &mut Client, line: &str) -> crate::support::common::Reply {
    client.send(format!("{line}\r\n").as_bytes());
    client.reply()
}

/// The `milter` records of `mail` as JSON, for asserting.
pub(super) fn milter_records(mail: &Mail) -> serde_json::Value {
    serde_json::to_value(&mail.milter).expect("json")
}
