//! Issue 16, logs: `--log-format json` (and `log_format = "json"`) writes one
//! JSON object per line with stable field names (`conn_id`, `mail_id`,
//! `remote_ip`, `event`, `code`) and one `disconnect` summary per connection;
//! no AUTH secret — password, PLAIN blob, LOGIN's base64 lines — reaches the
//! log in either format, even at the most verbose level.

use std::ffi::OsStr;

use serde_json::Value;

use crate::support::auth::{b64, plain, start_binary, write_file};
use crate::support::common::Client;

const PASSWORD: &str = "Tr0ub4dor&3-Secret";
const WRONG: &str = "wrong-Pa55word-Guess";

/// AUTH in the clear, quick failures, every log line ours.
const TOML: &str = "allow_plaintext_auth = true\nauth_failure_delay = 0.01\n";

/// Every form a secret of these sessions took on the wire.
fn secrets() -> Vec<String> {
    vec![
        PASSWORD.to_owned(),
        WRONG.to_owned(),
        plain("alice", PASSWORD),
        plain("alice", WRONG),
        b64(PASSWORD),
        b64("alice"),
    ]
}

/// Two connections: a failed AUTH PLAIN, AUTH LOGIN (user and password as
/// base64 lines) and a mail; then AUTH PLAIN with its response on a line of
/// its own.
fn sessions(port: u16) {
    let mut client = Client::connect(port);
    client.cmd("EHLO client.test", 250);
    client.cmd(&format!("AUTH PLAIN {}", plain("alice", WRONG)), 535);
    client.cmd("AUTH LOGIN", 334);
    client.cmd(&b64("alice"), 334);
    client.cmd(&b64(PASSWORD), 235);
    client.start_data("alice@example.com", "bob@example.com");
    client.send(b"Subject: logged\r\n\r\nhi\r\n.\r\n");
    client.expect(250);
    client.quit();

    let mut client = Client::connect(port);
    client.cmd("EHLO client.test", 250);
    client.cmd("AUTH PLAIN", 334);
    client.cmd(&plain("alice", PASSWORD), 235);
    client.quit();
}

fn assert_no_secrets(log: &str) {
    for secret in secrets() {
        assert!(!log.contains(&secret), "{secret:?} is in the log:\n{log}");
    }
}

fn start(dir: &std::path::Path, toml: &str, flags: &[&str]) -> crate::support::running::Binary {
    let passwd = write_file(dir, "passwd", &format!("alice:{{PLAIN}}{PASSWORD}\n"));
    let mut extra: Vec<&OsStr> = vec![
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--passwd-file".as_ref(),
        passwd.as_os_str(),
    ];
    extra.extend(flags.iter().map(|f| OsStr::new(*f)));
    start_binary(dir, toml, "trace", &extra, 1)
}

fn events<'a>(lines: &'a [Value], event: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["event"] == event).collect()
}

#[test]
fn issue16_json_logs_have_stable_fields_a_summary_per_connection_and_no_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let mut binary = start(dir.path(), TOML, &["--log-format", "json"]);
    sessions(binary.port("smtp"));
    binary.wait_for_lines(r#""event":"disconnect""#, 2);
    binary.terminate();
    let log = binary.log();
    assert_no_secrets(&log);

    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}")))
        .collect();
    for line in &lines {
        for field in ["ts", "level", "event"] {
            assert!(line[field].is_string(), "no {field}: {line}");
        }
    }
    let ends = events(&lines, "disconnect");
    assert_eq!(ends.len(), 2, "{log}");
    let (first, second) = (ends[0], ends[1]);
    assert_ne!(first["conn_id"], second["conn_id"]);
    for end in &ends {
        assert!(end["conn_id"].is_u64(), "{end}");
        assert_eq!(end["remote_ip"], "127.0.0.1", "{end}");
        assert_eq!(end["ended"], "quit", "{end}");
        assert!(end["bytes"].as_u64().unwrap_or(0) > 0, "{end}");
        assert!(end["duration_ms"].is_u64(), "{end}");
    }
    // EHLO, AUTH, AUTH (LOGIN), MAIL, RCPT, DATA, QUIT.
    assert_eq!(
        (first["commands"].as_u64(), first["messages"].as_u64()),
        (Some(7), Some(1)),
        "{first}"
    );
    // EHLO, AUTH, QUIT.
    assert_eq!(
        (second["commands"].as_u64(), second["messages"].as_u64()),
        (Some(3), Some(0)),
        "{second}"
    );

    let accepted = events(&lines, "message_accepted");
    assert_eq!(accepted.len(), 1, "{log}");
    assert_eq!(accepted[0]["code"], 250);
    assert_eq!(accepted[0]["conn_id"], first["conn_id"]);
    let mail_id = accepted[0]["mail_id"].as_str().expect("mail_id");
    let stored = crate::support::common::messages(&dir.path().join("Maildir"));
    assert_eq!(stored.len(), 1);
    assert!(
        String::from_utf8_lossy(&stored[0]).contains(mail_id),
        "{mail_id} is not the stored mail's id"
    );

    let failed = events(&lines, "auth_failed");
    assert_eq!(failed.len(), 1, "{log}");
    assert_eq!(failed[0]["user"], "alice");
    assert_eq!(failed[0]["remote_ip"], "127.0.0.1");
    assert_eq!(events(&lines, "auth_succeeded").len(), 2, "{log}");
    let connects = events(&lines, "connect");
    assert_eq!(connects.len(), 2, "{log}");
    assert_eq!(connects[0]["conn_id"], first["conn_id"]);
}

#[test]
fn issue16_seed_logs_have_the_summary_and_no_secrets_either() {
    let dir = tempfile::tempdir().unwrap();
    // The key in the file this time; the flag is not given.
    let mut binary = start(dir.path(), &format!("{TOML}log_format = \"seed\"\n"), &[]);
    sessions(binary.port("smtp"));
    let closed = binary.wait_for_lines("closed", 2);
    binary.terminate();
    assert_no_secrets(&binary.log());
    assert!(
        closed[0].contains(" commands=7 messages=1 bytes=")
            && closed[0].contains(r#" ended="quit""#),
        "{closed:?}"
    );
}

#[test]
fn issue16_log_format_json_in_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut binary = start(dir.path(), &format!("{TOML}log_format = \"json\"\n"), &[]);
    let mut client = Client::connect(binary.port("smtp"));
    client.cmd("NOOP", 250);
    client.quit();
    let line = binary
        .wait_for_lines(r#""event":"disconnect""#, 1)
        .remove(0);
    binary.terminate();
    let end: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (end["commands"].as_u64(), end["ended"].as_str()),
        (Some(2), Some("quit")),
        "{end}"
    );
}
