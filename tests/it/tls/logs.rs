//! Issue 19 item 7, the TLS log lines of the real binary: a failed handshake is
//! logged in one format whether it followed STARTTLS or opened an implicit-TLS
//! connection, and rustls's refusal of a renegotiation (a `log` crate record)
//! reaches the log as a warning, also when `RUST_LOG` names only our crate.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::common::Client;
use crate::support::running::{Binary, listening_command};

/// The binary with a plain (STARTTLS) and an implicit-TLS listener and its
/// generated certificate.
fn start_tls_binary(maildir: &std::path::Path) -> Binary {
    Binary::spawn(
        listening_command(maildir).args(["--tls-listen", "127.0.0.1:0"]),
        2,
    )
}

/// Bytes that are no TLS ClientHello.
const GARBAGE: &[u8] = b"this is not a ClientHello\r\n\r\n";

/// The message of a log line: what follows `[LEVEL] `.
fn message(line: &str) -> &str {
    line.split_once("] ").map_or("", |(_, m)| m)
}

#[test]
fn issue19_tls_handshake_failures_are_logged_in_one_format() {
    let dir = tempfile::tempdir().unwrap();
    let mut binary = start_tls_binary(dir.path());
    // Implicit TLS: garbage instead of a ClientHello, then the server closes.
    let mut implicit = TcpStream::connect(("127.0.0.1", binary.port("smtps"))).unwrap();
    implicit
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    implicit.write_all(GARBAGE).unwrap();
    let _ = implicit.read_to_end(&mut Vec::new());
    // STARTTLS: the same garbage after the 220.
    let mut client = Client::ehlo(binary.port("smtp"));
    client.cmd("STARTTLS", 220);
    let mut stream = client.into_stream();
    stream.write_all(GARBAGE).unwrap();
    let _ = stream.read_to_end(&mut Vec::new());

    let lines = binary.wait_for_lines("TLS handshake", 2);
    let messages: Vec<&str> = lines.iter().map(|l| message(l)).collect();
    for text in &messages {
        assert!(text.starts_with("TLS handshake failed: "), "{lines:?}");
        assert!(text.ends_with(" remote=127.0.0.1"), "{lines:?}");
    }
    assert_eq!(messages[0], messages[1], "two formats: {lines:?}");
}

#[test]
fn issue19_refused_renegotiation_is_a_warning_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    // A filter that names only our crate: rustls's warnings still get through.
    let mut binary = Binary::spawn(
        listening_command(dir.path())
            .env("RUST_LOG", "net_receiver=info")
            .args(["--tls-listen", "127.0.0.1:0"]),
        2,
    );
    let connect = format!("127.0.0.1:{}", binary.port("smtp"));
    // `R` on s_client's input asks for a renegotiation (TLS 1.2 only: 1.3 has none).
    let mut openssl = Command::new("openssl")
        .args(["s_client", "-tls1_2", "-starttls", "smtp", "-connect"])
        .arg(&connect)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_client");
    let mut input = openssl.stdin.take().expect("stdin");
    input.write_all(b"R\n").expect("write to s_client");
    let lines = binary.wait_for_lines("NoRenegotiation", 1);
    drop(input);
    let _ = openssl.kill();
    let _ = openssl.wait();
    assert!(lines[0].contains(" [WARN] "), "{lines:?}");
}
