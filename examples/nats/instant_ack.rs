//! An instant-acknowledging NATS peer for the benchmark (bench/handoff.sh,
//! shape `instant`): it speaks enough of the NATS client protocol for our
//! JetStream target — `INFO` with headers and JetStream, `CONNECT`, `PING`,
//! `SUB`, `UNSUB`, `PUB`, `HPUB` — and answers every publish that has a reply
//! subject at once with a JetStream PubAck (`{"stream":"MAIL","seq":N}`),
//! storing nothing. What the receiver then spends over `--no-deliver` is its
//! own side of the hand-off (the mail structure's JSON, the publish, the
//! PubAck's wait and parse), measured without nats-server's cost on the same
//! cores — as `noop_hook` and `noop_milter` do for the other clients. Not a
//! JetStream: never deliver real mail to it. Prints `listening on
//! 127.0.0.1:PORT`.
//!
//! Usage: `instant_ack [PORT]` (0 or none: any free port).

use std::collections::HashMap;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// The largest publish taken (the `max_payload` announced).
const MAX_PAYLOAD: usize = 1 << 20;
/// The longest protocol line taken.
const MAX_LINE: usize = 4096;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            if let Err(e) = serve(stream).await {
                eprintln!("instant_ack: connection ended: {e}");
            }
        });
    }
}

/// One client connection, until it closes or breaks the protocol.
async fn serve(mut stream: TcpStream) -> std::io::Result<()> {
    let info = format!(
        "INFO {{\"server_id\":\"INSTANT-ACK\",\"server_name\":\"instant-ack\",\"version\":\"2.9.10\",\
         \"proto\":1,\"headers\":true,\"max_payload\":{MAX_PAYLOAD},\"jetstream\":true}}\r\n"
    );
    stream.write_all(info.as_bytes()).await?;
    let mut peer = Peer::default();
    let mut input = Vec::with_capacity(1 << 16);
    let mut output = Vec::with_capacity(1 << 14);
    let mut chunk = vec![0; 1 << 16];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        input.extend_from_slice(&chunk[..n]);
        let used = peer
            .take(&input, &mut output)
            .map_err(std::io::Error::other)?;
        input.drain(..used);
        if !output.is_empty() {
            stream.write_all(&output).await?;
            output.clear();
        }
    }
}

/// The protocol state of one connection: its subscriptions and the next
/// sequence number.
#[derive(Default)]
struct Peer {
    /// Subject (or wildcard) → sid.
    subscriptions: HashMap<String, String>,
    sequence: u64,
}

impl Peer {
    /// Handles every whole operation at the start of `input`, appending the
    /// answers to `output`; returns how many bytes were used.
    fn take(&mut self, input: &[u8], output: &mut Vec<u8>) -> Result<usize, String> {
        let mut used = 0;
        while let Some(end) = find_crlf(&input[used..]) {
            let line = std::str::from_utf8(&input[used..used + end])
                .map_err(|_| "a protocol line that is not UTF-8".to_owned())?;
            let mut words = line.split_ascii_whitespace();
            let op = words.next().unwrap_or_default().to_ascii_uppercase();
            let args: Vec<&str> = words.collect();
            let after_line = used + end + 2;
            match op.as_str() {
                "PUB" | "HPUB" => {
                    let total: usize = args
                        .last()
                        .and_then(|t| t.parse().ok())
                        .filter(|&t| t <= MAX_PAYLOAD)
                        .ok_or_else(|| format!("a bad size in {line:?}"))?;
                    let next = after_line + total + 2;
                    if input.len() < next {
                        return Ok(used); // the rest of the payload is still to come
                    }
                    let with_reply = if op == "PUB" { 3 } else { 4 };
                    if args.len() == with_reply {
                        self.acknowledge(args[1], output)?;
                    }
                    used = next;
                }
                "SUB" => {
                    let (Some(subject), Some(sid)) = (args.first(), args.last()) else {
                        return Err(format!("a bad SUB: {line:?}"));
                    };
                    self.subscriptions
                        .insert((*subject).to_owned(), (*sid).to_owned());
                    used = after_line;
                }
                "UNSUB" => {
                    if let Some(sid) = args.first() {
                        self.subscriptions.retain(|_, s| s != sid);
                    }
                    used = after_line;
                }
                "PING" => {
                    output.extend_from_slice(b"PONG\r\n");
                    used = after_line;
                }
                "CONNECT" | "PONG" => used = after_line,
                _ => return Err(format!("an operation this peer does not know: {line:?}")),
            }
        }
        if input.len() - used > MAX_LINE {
            return Err("a protocol line too long".to_owned());
        }
        Ok(used)
    }

    /// A PubAck to `reply`, through the subscription that takes it.
    fn acknowledge(&mut self, reply: &str, output: &mut Vec<u8>) -> Result<(), String> {
        let sid = self
            .subscriptions
            .iter()
            .find(|(subject, _)| matches(subject, reply))
            .map(|(_, sid)| sid.as_str())
            .ok_or_else(|| format!("no subscription takes the reply subject {reply}"))?;
        self.sequence += 1;
        let ack = format!("{{\"stream\":\"MAIL\",\"seq\":{}}}", self.sequence);
        output
            .extend_from_slice(format!("MSG {reply} {sid} {}\r\n{ack}\r\n", ack.len()).as_bytes());
        Ok(())
    }
}

/// The position of the first CRLF.
fn find_crlf(bytes: &[u8]) -> Option<usize> {
    bytes.windows(2).position(|w| w == b"\r\n")
}

/// Whether the subscription `pattern` (`*` one token, `>` the rest) takes
/// `subject`.
fn matches(pattern: &str, subject: &str) -> bool {
    let mut subject_tokens = subject.split('.');
    for token in pattern.split('.') {
        match (token, subject_tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (want, Some(got)) if want == got => {}
            _ => return false,
        }
    }
    subject_tokens.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What async-nats sends for one JetStream publish, then a PING, cut at
    /// every point: the same single PubAck and PONG, nothing taken twice.
    #[test]
    fn a_publish_cut_anywhere_is_acknowledged_once() {
        let wire = b"CONNECT {\"headers\":true}\r\nSUB _INBOX.abc.* 1\r\n\
                     HPUB mail.in _INBOX.abc.7 18 23\r\nNATS/1.0\r\nA: b\r\n\r\nhello\r\nPING\r\n";
        for cut in 0..=wire.len() {
            let mut peer = Peer::default();
            let (mut input, mut output) = (Vec::new(), Vec::new());
            for part in [&wire[..cut], &wire[cut..]] {
                input.extend_from_slice(part);
                let used = peer.take(&input, &mut output).unwrap();
                input.drain(..used);
            }
            assert_eq!(
                String::from_utf8_lossy(&output),
                "MSG _INBOX.abc.7 1 25\r\n{\"stream\":\"MAIL\",\"seq\":1}\r\nPONG\r\n",
                "cut at {cut}"
            );
            assert!(input.is_empty(), "cut at {cut}");
        }
    }

    #[test]
    fn a_reply_without_a_subscription_or_a_bad_size_ends_the_connection() {
        let mut out = Vec::new();
        assert!(
            Peer::default()
                .take(b"PUB a _INBOX.x 1\r\nx\r\n", &mut out)
                .is_err()
        );
        assert!(Peer::default().take(b"PUB a x99\r\n", &mut out).is_err());
        assert!(
            Peer::default()
                .take(&[b'x'; MAX_LINE + 1], &mut out)
                .is_err()
        );
    }

    #[test]
    fn wildcards_match_as_nats_does() {
        assert!(matches("_INBOX.a.*", "_INBOX.a.b"));
        assert!(!matches("_INBOX.a.*", "_INBOX.a.b.c"));
        assert!(matches("_INBOX.>", "_INBOX.a.b.c"));
        assert!(!matches("_INBOX.>", "_INBOX"));
        assert!(!matches("a.b", "a"));
    }
}
