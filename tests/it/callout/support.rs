//! What the callout tests share: the zone pointing the domains at 127.0.0.x,
//! the binary started with a callout configuration, and a client that sends
//! one mail or one MAIL FROM.

use std::net::SocketAddr;

use crate::support::common::{Client, Reply};
use crate::support::running::{Binary, command};

/// The domains (under `test.example`) and their exchangers.
pub(super) const ZONE: &str = r"
known        MX 10 mx-known
mx-known     A  127.0.0.2
acceptall    MX 10 mx-all
mx-all       A  127.0.0.3
tempfail     MX 10 mx-temp
mx-temp      A  127.0.0.4
silent       MX 10 mx-silent
mx-silent    A  127.0.0.5
backup       MX 10 mx-silent
backup       MX 20 mx-known
itself       MX 10 mx-self
mx-self      A  127.0.0.1
closed       MX 10 mx-closed
mx-closed    A  127.0.0.7
pf           MX 10 mx-pf
mx-pf        A  127.0.0.6
";

/// The binary with `config` (TOML) and the test DNS server; its JSON lines
/// come back from [`Binary::terminate`].
pub(super) fn start(dns: SocketAddr, dir: &std::path::Path, config: &str) -> Binary {
    let path = dir.join("callout.toml");
    std::fs::write(&path, config).unwrap();
    Binary::spawn(
        command()
            .args(["--listen", "127.0.0.1:0", "--server-name", "mx.test"])
            .arg("--maildir")
            .arg(dir.join("mail"))
            .arg("--dns-server")
            .arg(dns.to_string())
            .arg("--config")
            .arg(&path),
        1,
    )
}

/// One MAIL FROM in a fresh session: its reply (the session then QUITs).
pub(super) fn mail_from(port: u16, sender: &str) -> Reply {
    let mut client = Client::ehlo(port);
    let reply = client.reply_to(&format!("MAIL FROM:<{sender}>"));
    client.send(b"QUIT\r\n");
    let _ = client.try_reply();
    reply
}

/// One whole mail from `sender` to `recipient`, every step expected positive.
pub(super) fn send_mail(port: u16, sender: &str, recipient: &str) {
    let mut client = Client::ehlo(port);
    client.start_data(sender, recipient);
    client.send(b"Subject: callout\r\n\r\nhello\r\n.\r\n");
    client.expect(250);
    client.quit();
}

/// The JSON lines of a terminated binary.
pub(super) fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

trait ReplyTo {
    fn reply_to(&mut self, line: &str) -> Reply;
}

impl ReplyTo for Client {
    /// Sends `line` and reads one reply, whatever its code.
    fn reply_to(&mut self, line: &str) -> Reply {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }
}

/// MAIL FROM `sender` (expected 250), then RCPT TO `recipient`: its reply.
pub(super) fn rcpt_to(port: u16, sender: &str, recipient: &str) -> Reply {
    let mut client = Client::ehlo(port);
    client.cmd(&format!("MAIL FROM:<{sender}>"), 250);
    let reply = client.reply_to(&format!("RCPT TO:<{recipient}>"));
    client.send(b"QUIT\r\n");
    let _ = client.try_reply();
    reply
}

/// The metrics endpoint of a binary started with `metrics_listen`.
pub(super) fn metrics_addr(binary: &mut Binary) -> SocketAddr {
    let line = binary.wait_for_lines("metrics on ", 1).remove(0);
    line.rsplit("metrics on ")
        .next()
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
}

/// The value of the counter `name` in one scrape of `GET /metrics`.
pub(super) fn counter(addr: SocketAddr, name: &str) -> u64 {
    use std::io::{Read as _, Write as _};
    let mut stream =
        std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: metrics\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}
