//! A real webhook endpoint for the webhook tests: `webhook_server.py`
//! (Python's standard library) on `127.0.0.1:<random port>`, which checks the
//! Standard Webhooks signature with its own HMAC code, answers each request
//! as the test planned (a status, or never) and records every request as a
//! JSON line; [`WebhookServer::start_tls`] serves HTTPS with a certificate of
//! a test CA. Killed when dropped.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::test_ca::TestCa;

/// A secret in the Standard Webhooks form.
pub(crate) const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// How long a test waits for the requests it expects.
const WAIT_LIMIT: Duration = Duration::from_secs(60);

/// The running endpoint.
pub(crate) struct WebhookServer {
    /// Its port on 127.0.0.1.
    pub(crate) port: u16,
    scheme: &'static str,
    child: Child,
    record: PathBuf,
    _dir: tempfile::TempDir,
}

impl WebhookServer {
    /// Starts one answering the n-th request with `answers[n]` (a status or
    /// `hang`), then 200.
    pub(crate) fn start(answers: &[&str]) -> Self {
        Self::serve(answers, None)
    }

    /// [`WebhookServer::start`] over HTTPS with `ca`'s server certificate.
    pub(crate) fn start_tls(answers: &[&str], ca: &TestCa) -> Self {
        Self::serve(answers, Some(ca))
    }

    fn serve(answers: &[&str], tls: Option<&TestCa>) -> Self {
        let dir = tempfile::tempdir().expect("webhook dir");
        let record = dir.path().join("requests.jsonl");
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/it/support/webhook_server.py"
        );
        let mut command = Command::new("python3");
        command
            .arg(script)
            .arg(SECRET)
            .arg(&record)
            .arg(answers.join(","));
        if let Some(ca) = tls {
            command.arg(&ca.server_cert_file).arg(&ca.server_key_file);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 (scripts/test installs it)");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        // Bounded: python3 prints the line or exits (EOF).
        let _ = BufReader::new(stdout).read_line(&mut line);
        let Some(port) = line
            .trim()
            .strip_prefix("port ")
            .and_then(|p| p.parse().ok())
        else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("webhook_server.py did not start: {line:?}");
        };
        Self {
            port,
            scheme: if tls.is_some() { "https" } else { "http" },
            child,
            record,
            _dir: dir,
        }
    }

    /// Its URL (`https://` for [`WebhookServer::start_tls`]).
    pub(crate) fn url(&self) -> String {
        format!("{}://127.0.0.1:{}/mail", self.scheme, self.port)
    }

    /// Every request so far.
    pub(crate) fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).expect("a recorded request"))
            .collect()
    }

    /// Waits (bounded) until at least `n` requests came, and returns them all.
    pub(crate) fn wait_for(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + WAIT_LIMIT;
        loop {
            let requests = self.requests();
            if requests.len() >= n {
                return requests;
            }
            assert!(
                Instant::now() < deadline,
                "{} webhook requests after {WAIT_LIMIT:?}, expected {n}: {requests:?}",
                requests.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for WebhookServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
