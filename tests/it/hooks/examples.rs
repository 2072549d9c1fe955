//! The example hooks of `examples/hooks/` (Python and Node.js, standard
//! libraries only) started as processes, with the real binary calling them: the
//! greylist at RCPT, the per-sender quota at MAIL, the header added at DATA and
//! its JSON line; then the hook stopped, and its failures logged once with a
//! count rather than once each.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use super::MESSAGE;
use crate::support::common::{Client, messages, split_stored};
use crate::support::running::{Binary, listening_command};

/// A running example hook; killed when dropped.
struct ExampleHook {
    child: Child,
    url: String,
}

impl ExampleHook {
    /// Starts `program script 0` in `examples/hooks/` (greylist delay 0 s, a
    /// quota of 2 per hour) and reads the URL it prints.
    fn start(program: &str, script: &str) -> Self {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/hooks");
        let mut child = Command::new(program)
            .arg(format!("{dir}/{script}"))
            .arg("0")
            .env("GREYLIST_DELAY", "0")
            .env("QUOTA_PER_HOUR", "2")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program} {script}: {e}"));
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout).read_line(&mut line).expect("read");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("{script} printed {line:?}"))
            .to_owned();
        Self { child, url }
    }
}

impl Drop for ExampleHook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_policy(program: &str, script: &str) {
    let mut hook = ExampleHook::start(program, script);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("hooks.toml");
    std::fs::write(
        &config,
        format!(
            "[[hook]]\nurl = \"{}\"\nstages = [\"mail_from\", \"rcpt_to\", \"data\"]\ntimeout = 5\n",
            hook.url
        ),
    )
    .expect("config");
    let maildir = dir.path().join("mail");
    let mut binary = Binary::spawn(listening_command(&maildir).arg("--config").arg(&config), 1);
    let port = binary.addr().port();

    let mut client = Client::ehlo(port);
    client.cmd("MAIL FROM:<alice@example.com>", 250);
    let grey = client.cmd("RCPT TO:<bob@example.com>", 451);
    assert!(
        grey.text().starts_with("4.7.1 Greylisted"),
        "{script}: {grey:?}"
    );
    client.cmd("RCPT TO:<bob@example.com>", 250);
    client.cmd("DATA", 354);
    client.send(format!("{MESSAGE}.\r\n").as_bytes());
    client.expect(250);
    client.cmd("MAIL FROM:<alice@example.com>", 250);
    client.cmd("RSET", 250);
    let quota = client.cmd("MAIL FROM:<alice@example.com>", 450);
    assert!(quota.text().contains("quota"), "{script}: {quota:?}");
    client.cmd("MAIL FROM:<carol@example.com>", 250);
    client.quit();

    let stored = messages(&maildir);
    assert_eq!(stored.len(), 1, "{script}");
    let expected = format!("X-Policy: greylist=passed; quota_used=1\r\n{MESSAGE}");
    assert_eq!(
        String::from_utf8_lossy(split_stored(&stored[0]).body),
        expected
    );

    // The hook goes away: each message gets 451, the log says so once.
    hook.child.kill().expect("kill the hook");
    hook.child.wait().expect("wait");
    let mut client = Client::ehlo(port);
    for _ in 0..5 {
        let failed = client.cmd("MAIL FROM:<dave@example.com>", 451);
        assert!(failed.text().starts_with("4.3.0 "), "{failed:?}");
    }
    client.quit();
    let stdout = binary.terminate();
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    assert_eq!(
        lines[0]["extensions"]["policy"],
        "greylist=passed; quota_used=1"
    );
    let log = binary.log();
    let reports = log
        .lines()
        .filter(|l| l.contains("failed at mail_from"))
        .count();
    assert!(
        (1..5).contains(&reports),
        "5 failures, {reports} log lines:\n{log}"
    );
}

#[test]
fn the_python_example_hook_against_the_binary() {
    run_policy("python3", "hook.py");
}

#[test]
fn the_node_example_hook_against_the_binary() {
    run_policy("node", "hook.js");
}
