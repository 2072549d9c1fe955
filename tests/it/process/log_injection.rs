//! Issue 19 item 2 and item 7: what a client sends cannot forge or garble a line of
//! the real binary's log (AUTH user names with a newline and a well-formed fake
//! line, CR, ESC, BS, BEL, DEL, U+0085, U+009B, U+2028, U+2029; EHLO names with
//! controls), on stderr and in the `--log-file`; that file is created without
//! access for others. The JSON log format keeps the same guarantees (issue 16).

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::support::auth::{plain, start_binary, write_file};
use crate::support::common::Client;
use crate::support::running::{PROCESS_LIMIT, command, parse_listening};

/// A user name that, logged raw, would write a line of its own claiming a
/// successful AUTH as root, followed by every kind of line break and terminal
/// control the review found in the log.
const FORGING_USER: &str = "bob\n2000-01-01 00:00:00 [INFO] AUTH succeeded remote=127.0.0.1 \
     user=root mechanism=\"PLAIN\"\rCR\x1b[2J\x08\x07\x7f\u{85}\u{9b}\u{2028}\u{2029}end";

/// The controls that are not line feeds: the protocol takes them in a user
/// name (only NUL, CR and LF are refused, 501), so the log must escape them.
const CONTROLS_USER: &str = "bob\x1b[2J\x08\x07\x7f\u{85}\u{9b}\u{2028}\u{2029}end";

/// AUTH in the clear and no lockout in the way.
const TOML: &str =
    "allow_plaintext_auth = true\nauth_failure_delay = 0.01\nmax_failed_msgs_per_period = 20\n";

/// One session of attacks: an EHLO with controls (whatever its answer), a
/// clean EHLO, the forging AUTH PLAIN (535), then a mail from an address with
/// a quote and a backslash in its quoted local part.
fn attack(port: u16) {
    let mut client = Client::connect(port);
    client.send(b"EHLO evil\x1b[31m\x07\x08\x7f\xc2\x85.example\r\n");
    let _ = client.reply();
    client.cmd("EHLO client.test", 250);
    // A name with CR or LF never reaches a hook nor the log (501 5.5.2).
    client.cmd(&format!("AUTH PLAIN {}", plain(FORGING_USER, "wrong")), 501);
    client.cmd(
        &format!("AUTH PLAIN {}", plain(CONTROLS_USER, "wrong")),
        535,
    );
    // A quoted local part with a quote and a backslash: logged escaped.
    client.start_data(r#""a b\"c"@example.com"#, "b@example.com");
    client.send(b"hi\r\n.\r\n");
    client.expect(250);
    client.quit();
}

/// Checks the log text: every line is one of ours (starts with a timestamp and a
/// level), none is an AUTH success (the forged text stays inside the escaped
/// value of the one failure line), no control or line separator is left, and
/// the escaped name is there.
fn assert_log_is_clean(log: &str) {
    for line in log.lines() {
        let bytes = line.as_bytes();
        let stamped = bytes.len() > 21
            && bytes[..19]
                .iter()
                .enumerate()
                .all(|(i, b)| matches!(i, 4 | 7 | 10 | 13 | 16) || b.is_ascii_digit())
            && &line[19..21] == " [";
        assert!(stamped, "a line not written by us: {line:?}\nlog:\n{log}");
        let message = line[21..].split_once("] ").map_or("", |(_, m)| m);
        assert!(!message.starts_with("AUTH succeeded"), "forged: {line:?}");
        let bad = line
            .chars()
            .find(|&c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}'));
        assert_eq!(bad, None, "raw control in {line:?}");
    }
    let received: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("received mail"))
        .collect();
    assert_eq!(received.len(), 1, "{log}");
    assert!(
        received[0].ends_with(r#" from=\"a b\\\"c\"@example.com"#),
        "{}",
        received[0]
    );
    let failed: Vec<&str> = log.lines().filter(|l| l.contains("AUTH failed")).collect();
    assert_eq!(failed.len(), 1, "{log}");
    assert!(
        failed[0].contains(r#"user=bob\x1B[2J\x08\x07\x7F\u{0085}\u{009B}\u{2028}\u{2029}end"#),
        "{}",
        failed[0]
    );
    assert!(
        !log.contains("root"),
        "the forging name reached the log:\n{log}"
    );
}

#[test]
fn issue19_auth_user_name_cannot_forge_a_stderr_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let passwd = write_file(dir.path(), "passwd", "root:{PLAIN}root-Secret-1\n");
    let args: [&OsStr; 2] = ["--passwd-file".as_ref(), passwd.as_os_str()];
    let mut binary = start_binary(
        dir.path(),
        TOML,
        "info",
        &[
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            args[0],
            args[1],
        ],
        1,
    );
    attack(binary.port("smtp"));
    // The session's last line: everything before it is in the log.
    binary.wait_for_lines("closed", 1);
    let (_, log) = binary.stop();
    assert_log_is_clean(&log);
}

/// Waits (at most [`PROCESS_LIMIT`]) until the file at `path` holds `needle`;
/// returns its text.
fn wait_for_text(child: &mut Child, path: &Path, needle: &str) -> String {
    let deadline = Instant::now() + PROCESS_LIMIT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        if Instant::now() >= deadline || child.try_wait().ok().flatten().is_some() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no {needle:?} in {}:\n{text}", path.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn issue19_log_file_is_private_and_escaped_too() {
    let dir = tempfile::tempdir().unwrap();
    let passwd = write_file(dir.path(), "passwd", "root:{PLAIN}root-Secret-1\n");
    let config = write_file(dir.path(), "config.toml", TOML);
    let log_base = dir.path().join("logs").join("net-receiver.log");
    let mut child = command()
        .arg("--config")
        .arg(&config)
        .args(["--listen", "127.0.0.1:0", "--server-name", "mx.test"])
        .arg("--maildir")
        .arg(dir.path().join("Maildir"))
        .arg("--passwd-file")
        .arg(&passwd)
        .arg("--log-file")
        .arg(&log_base)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start net-receiver");
    // The day's file: the only one in logs/ (a test run across midnight UTC
    // could make two; the first one holds the start).
    let deadline = Instant::now() + PROCESS_LIMIT;
    let day_file = loop {
        let mut files: Vec<_> = std::fs::read_dir(log_base.parent().unwrap())
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        if let Some(first) = files.into_iter().next() {
            break first;
        }
        assert!(Instant::now() < deadline, "no log file");
        std::thread::sleep(Duration::from_millis(20));
    };
    let name = day_file.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("net-receiver.log.20"), "{name}");
    let text = wait_for_text(&mut child, &day_file, "listening on ");
    let line = text.lines().find(|l| l.contains("listening on ")).unwrap();
    let addr: SocketAddr = parse_listening(line).0;
    attack(addr.port());
    let text = wait_for_text(&mut child, &day_file, "closed");
    let _ = child.kill();
    let _ = child.wait();
    assert_log_is_clean(&text);
    let mode = std::fs::metadata(&day_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o027, 0, "log file mode {mode:o}");
}

/// Issue 16: the same attack against `--log-format json`: every line is one
/// valid JSON object with no raw control or separator, the forged success is
/// only text inside the failure's `user` value, and the values read back as
/// their escaped forms.
#[test]
fn issue16_json_log_lines_cannot_be_forged_or_garbled() {
    let dir = tempfile::tempdir().unwrap();
    let passwd = write_file(dir.path(), "passwd", "root:{PLAIN}root-Secret-1\n");
    let mut binary = start_binary(
        dir.path(),
        TOML,
        "info",
        &[
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--passwd-file".as_ref(),
            passwd.as_os_str(),
            "--log-format".as_ref(),
            "json".as_ref(),
        ],
        1,
    );
    attack(binary.port("smtp"));
    binary.wait_for_lines(r#""event":"disconnect""#, 1);
    let (_, log) = binary.stop();
    let mut failed = Vec::new();
    for line in log.lines() {
        let bad = line
            .chars()
            .find(|&c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{85}'));
        assert_eq!(bad, None, "raw control in {line:?}");
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON line: {e}: {line:?}"));
        assert_ne!(value["event"], "auth_succeeded", "forged: {line}");
        if value["event"] == "auth_failed" {
            failed.push(value);
        }
    }
    assert_eq!(failed.len(), 1, "{log}");
    assert_eq!(
        failed[0]["user"],
        r#"bob\x1B[2J\x08\x07\x7F\u{0085}\u{009B}\u{2028}\u{2029}end"#
    );
    assert!(
        !log.contains("root"),
        "the forging name reached the log:\n{log}"
    );
    let received: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "message_accepted")
        .collect();
    assert_eq!(received.len(), 1, "{log}");
    assert_eq!(received[0]["from"], r#"\"a b\\\"c\"@example.com"#);
}
