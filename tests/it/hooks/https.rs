//! HTTP stage hooks over TLS on loopback, against the test hook server serving
//! a certificate of a private test CA (for `127.0.0.1`, an IP SAN, and
//! `localhost`): with the CA in the hook's `tls_ca` every stage is called
//! over one kept-alive TLS connection and the verdict applies; without it the
//! certificate does not verify, the hook's `on_error` answers (451 4.3.0)
//! and the binary's log names the reason; a `tls_ca` that cannot be read
//! stops the start, naming the file.

use std::path::PathBuf;

use net_receiver::policy::{HookConfig, HttpHook, Stage};
use serde_json::json;

use super::{MESSAGE, converse, hook_at, start};
use crate::support::common::{Client, messages};
use crate::support::hook_server::{Answer, HookServer};
use crate::support::running::{Binary, listening_command};
use crate::support::test_ca::TestCa;

/// A hook at every stage that rejects at RCPT and lets the rest go on.
fn rejecting_at_rcpt(ca: &TestCa) -> HookServer {
    HookServer::start_tls(ca, |request| {
        if request["stage"] == "rcpt_to" {
            Answer::json(&json!({"action": "reject",
                "reply": {"code": 550, "enhanced": "5.7.1", "text": "not over TLS either"}}))
        } else {
            Answer::Reply(204, Vec::new())
        }
    })
}

#[test]
fn an_https_hook_trusting_its_ca_is_called_and_its_verdict_applies() {
    let ca = TestCa::new();
    for host in ["127.0.0.1", "localhost"] {
        let hook = rejecting_at_rcpt(&ca);
        let url = hook.url().replace("127.0.0.1", host);
        assert!(url.starts_with(&format!("https://{host}:")), "{url}");
        let (server, _) = start(&[HookConfig {
            tls_ca: Some(ca.ca_file.clone()),
            ..hook_at(&url, &Stage::ALL)
        }]);
        let t = converse(server.port, "rcpt@example.com");
        let (stage, reply) = t.last();
        assert_eq!(stage, Stage::RcptTo, "{host}: {t:?}");
        assert_eq!(
            (reply.code, reply.text()),
            (550, "5.7.1 not over TLS either"),
            "{host}: {t:?}"
        );
        let asked: Vec<&str> = Stage::ALL[..5].iter().map(|s| s.as_str()).collect();
        assert_eq!(
            hook.stages(),
            asked,
            "{host}: called over TLS at each stage"
        );
        assert_eq!(
            hook.connections(),
            1,
            "{host}: one kept-alive TLS connection"
        );
        assert!(messages(server.dir()).is_empty());
    }
}

#[test]
fn an_untrusted_certificate_is_the_hooks_on_error_and_the_log_says_why() {
    let ca = TestCa::new();
    let hook = HookServer::start_tls(&ca, |_| Answer::action("continue"));
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("hooks.toml");
    std::fs::write(
        &config,
        format!(
            "[[hook]]\nurl = \"{}\"\nstages = [\"data\"]\ntimeout = 5\n",
            hook.url()
        ),
    )
    .expect("config");
    let maildir = dir.path().join("mail");
    let mut binary = Binary::spawn(listening_command(&maildir).arg("--config").arg(&config), 1);
    let mut client = Client::ehlo(binary.addr().port());
    client.cmd("MAIL FROM:<alice@example.com>", 250);
    client.cmd("RCPT TO:<bob@example.com>", 250);
    client.cmd("DATA", 354);
    client.send(format!("{MESSAGE}.\r\n").as_bytes());
    let reply = client.expect(451);
    assert_eq!(
        reply.text(),
        "4.3.0 Policy service unavailable, try again later"
    );
    client.quit();
    let _ = binary.terminate();
    let log = binary.log();
    let failure = log
        .lines()
        .find(|l| l.contains("failed at data"))
        .unwrap_or_else(|| panic!("no hook failure logged:\n{log}"));
    assert!(
        failure.contains("invalid peer certificate: UnknownIssuer"),
        "{failure}"
    );
    assert!(hook.requests().is_empty(), "nothing reached the hook");
    assert_eq!(hook.connections(), 0, "no TLS connection was made");
    assert!(messages(&maildir).is_empty());
}

#[test]
fn a_tls_ca_that_cannot_be_used_is_refused_naming_the_file() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").expect("write");
    let missing = dir.path().join("missing.pem");
    let cases: [(&str, PathBuf, &str); 3] = [
        ("https://127.0.0.1:1/", missing.clone(), "cannot read"),
        (
            "https://127.0.0.1:1/",
            empty.clone(),
            "holds no PEM certificate",
        ),
        (
            "http://127.0.0.1:1/",
            ca.ca_file.clone(),
            "only for an https:// URL",
        ),
    ];
    for (url, file, want) in cases {
        let config = HookConfig {
            tls_ca: Some(file.clone()),
            ..HookConfig::with_url(url)
        };
        let error = HttpHook::new(&config)
            .expect_err("a bad tls_ca")
            .to_string();
        assert!(error.contains("hook.tls_ca"), "{error}");
        assert!(error.contains(&file.display().to_string()), "{error}");
        assert!(error.contains(want), "{error}");
    }
    let refused = HttpHook::new(&HookConfig::with_url("ftp://127.0.0.1/")).expect_err("ftp");
    assert!(refused.to_string().contains("hook.url"), "{refused}");
}
