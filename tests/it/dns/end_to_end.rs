//! The DNS checks end to end: the real binary pointed at the loopback test DNS
//! server with `--dns-server`, mail sent with smtplib from 127.0.0.1, and the JSON
//! line and the delivered file checked against the zone.

use std::time::{Duration, Instant};

use crate::support::common::{messages, python};
use crate::support::dns_server::{DnsServer, SilentDnsServer};
use crate::support::running::{Binary, command};

/// The sender's domain: SPF allows the loopback client, DKIM-less, DMARC none.
const EXTRA: &str = r#"
e2e               MX    10 mx1
e2e               TXT   "v=spf1 ip4:127.0.0.1 -all"
_dmarc.e2e        TXT   "v=DMARC1; p=none"
"#;

fn send(port: u16, ehlo: &str, sender: &str, message: &str) -> String {
    python(
        &format!(
            r#"
import smtplib
s = smtplib.SMTP('127.0.0.1', {port}, local_hostname={ehlo:?}, timeout=20)
s.sendmail({sender:?}, ['user@test.example'], {message:?}.encode())
s.quit()
print('sent')
"#
        ),
        &[],
    )
}

fn start(dns: std::net::SocketAddr, maildir: &std::path::Path, extra: &[&str]) -> Binary {
    Binary::spawn(
        command()
            .args([
                "--listen",
                "127.0.0.1:0",
                "--server-name",
                "mx.test",
                "--maildir",
            ])
            .arg(maildir)
            .arg("--dns-server")
            .arg(dns.to_string())
            .args(extra),
        1,
    )
}

#[test]
fn findings_and_authentication_results_from_a_real_dns_server() {
    let dns = DnsServer::start_with(EXTRA);
    let dir = tempfile::tempdir().unwrap();
    let mut binary = start(dns.addr, dir.path(), &[]);
    let message = "From: sender@e2e.test.example\r\nSubject: dns\r\n\
                   Authentication-Results: mx.test; spf=pass smtp.mailfrom=forged\r\n\r\nhello\r\n";
    let out = send(
        binary.port("smtp"),
        "loop.test.example",
        "sender@e2e.test.example",
        message,
    );
    assert!(out.contains("sent"), "{out}");
    let stdout = binary.terminate();
    let json: serde_json::Value =
        serde_json::from_str(stdout.lines().next().expect("a JSON line")).unwrap();
    assert_eq!(json["connect"]["domain"], "loop.test.example");
    assert_eq!(json["connect"]["iprev"], "pass");
    assert_eq!(json["remote_hostname"], "loop.test.example");
    assert_eq!(json["ehlo"]["rip"], "127.0.0.1");
    assert_eq!(json["ehlo"]["matches_client"], true);
    assert_eq!(json["ehlo"]["domain"], "loop.test.example");
    assert_eq!(json["mailfrom"]["spf"], "pass");
    assert_eq!(
        json["mailfrom"]["mxs"],
        serde_json::json!(["mx1.test.example"])
    );
    assert_eq!(json["mailfrom"]["ips"], serde_json::json!(["192.0.2.11"]));
    assert_eq!(
        json["rcptto"][0]["mxs"],
        serde_json::json!(["mx1.test.example", "mx2.test.example", "mx3.test.example"])
    );
    assert_eq!(json["rcptto"][0]["ip"], "192.0.2.1");
    assert_eq!(json["data"]["dmarc"], "pass");
    let files = messages(dir.path());
    assert_eq!(files.len(), 1);
    let text = String::from_utf8_lossy(&files[0]);
    let results = text
        .split("\r\n")
        .position(|l| l.starts_with("Authentication-Results: mx.test;"))
        .expect("our Authentication-Results header");
    assert!(text.contains("spf=pass"), "{text}");
    assert!(text.contains("iprev=pass"), "{text}");
    assert!(text.contains("dmarc=pass"), "{text}");
    assert!(
        !text.contains("smtp.mailfrom=forged"),
        "the forged header is gone: {text}"
    );
    let received = text
        .split("\r\n")
        .position(|l| l.starts_with("Received:"))
        .unwrap();
    assert!(
        results < received,
        "Authentication-Results comes first: {text}"
    );
}

#[test]
fn ehlo_validation_check_refuses_a_name_of_someone_else() {
    let dns = DnsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "ehlo_validation_check = true\n").unwrap();
    let mut binary = start(
        dns.addr,
        &dir.path().join("mail"),
        &["--config", config.to_str().unwrap()],
    );
    let out = python(
        &format!(
            r#"
import smtplib
s = smtplib.SMTP('127.0.0.1', {port}, timeout=20)
print(s.ehlo('mail.test.example'))
print(s.ehlo('loop.test.example')[0])
print(s.ehlo('[127.0.0.1]')[0])
s.quit()
"#,
            port = binary.port("smtp")
        ),
        &[],
    );
    assert!(
        out.contains(
            "(550, b'5.7.1 EHLO name mail.test.example does not resolve to your IP address')"
        ),
        "{out}"
    );
    assert!(out.contains("\n250\n250"), "{out}");
    binary.terminate();
}

#[test]
fn a_dns_server_that_never_answers_leaves_nulls_within_the_timeout() {
    let silent = SilentDnsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "dns_timeout = 0.5\n").unwrap();
    let mut binary = start(
        silent.addr,
        &dir.path().join("mail"),
        &["--config", config.to_str().unwrap()],
    );
    let started = Instant::now();
    let out = send(
        binary.port("smtp"),
        "loop.test.example",
        "a@e2e.test.example",
        "Subject: x\r\n\r\nx\r\n",
    );
    assert!(out.contains("sent"), "{out}");
    // connect, EHLO, MAIL (MX and SPF at once), RCPT, DATA: each bounded by 0.5 s.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let stdout = binary.terminate();
    let json: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(json["connect"]["domain"], serde_json::Value::Null);
    assert_eq!(json["connect"]["iprev"], "temperror");
    assert_eq!(json["mailfrom"]["mxs"], serde_json::Value::Null);
    assert_eq!(json["mailfrom"]["error"], "timeout");
    assert_eq!(json["mailfrom"]["spf"], "temperror");
    assert_eq!(json["accepted"], true);
}
