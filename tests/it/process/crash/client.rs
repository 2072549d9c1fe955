//! The crash loop's clients: SMTP sessions over std sockets that send one
//! message after another, each with its own token, reconnect after a break
//! and send a message that got no 250 again under a new token.

use std::collections::HashMap;
use std::io::{self, BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::{MAX_ATTEMPTS, MESSAGES_PER_SESSION, TOKEN_HEADER};

/// A small deterministic generator (xorshift64*), seeded per run.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % bound.max(1)
    }
}

/// The whole message for `token`, as stored (no line starts with a dot, so it
/// is also what goes on the wire before the final `.`). Its length follows
/// from the token: 1 to 120 body lines.
pub(super) fn message(token: &str) -> Vec<u8> {
    let hash = token.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let mut text = format!(
        "From: <crash@client.test>\r\nTo: <inbox@bin.test>\r\nSubject: crash {token}\r\n\
         {TOKEN_HEADER}{token}\r\n\r\n"
    );
    for line in 0..=hash % 120 {
        let padding = "x".repeat(usize::try_from(line % 50).unwrap_or(0));
        text.push_str(&format!("{token} line {line:03} {padding}\r\n"));
    }
    text.into_bytes()
}

/// How sending one message went.
enum Attempt {
    /// 250 after the final dot, with the id from its text.
    Acked(String),
    /// A 4xx: not taken; the connection stays usable.
    Deferred,
}

/// Why an attempt ended without a reply to judge.
enum Broken {
    /// The connection failed (the receiver was killed, or is restarting).
    Connection(io::Error),
    /// A reply no crash explains (5xx, garbage): the test fails.
    Unexpected(String),
}

impl From<io::Error> for Broken {
    fn from(error: io::Error) -> Self {
        Broken::Connection(error)
    }
}

/// One SMTP session over a std socket; every read and write has a timeout.
struct Smtp {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Smtp {
    /// Connects, reads the 220 and says EHLO.
    fn open(addr: SocketAddr) -> Result<Self, Broken> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        let reader = BufReader::new(stream.try_clone()?);
        let mut smtp = Smtp { stream, reader };
        let greeted =
            smtp.expect(220)?.is_some() && smtp.command("EHLO crash.test", 250)?.is_some();
        if !greeted {
            return Err(io::Error::other("greeting or EHLO deferred").into());
        }
        Ok(smtp)
    }

    /// Reads one reply: its code and the text of its last line.
    fn reply(&mut self) -> Result<(u16, String), Broken> {
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
            }
            let Some(code) = line.get(..3).and_then(|c| c.parse().ok()) else {
                return Err(Broken::Unexpected(format!("not a reply: {line:?}")));
            };
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok((code, line.get(4..).unwrap_or("").trim_end().to_owned()));
            }
        }
    }

    /// Reads a reply: `want` → its text; another 4xx → `None`; else broken.
    fn expect(&mut self, want: u16) -> Result<Option<String>, Broken> {
        match self.reply()? {
            (code, text) if code == want => Ok(Some(text)),
            (421, _) => Err(io::Error::other("421: closing").into()),
            (400..500, _) => Ok(None),
            (code, text) => Err(Broken::Unexpected(format!(
                "expected {want}, got {code} {text}"
            ))),
        }
    }

    fn command(&mut self, line: &str, want: u16) -> Result<Option<String>, Broken> {
        self.stream.write_all(format!("{line}\r\n").as_bytes())?;
        self.expect(want)
    }

    /// MAIL, RCPT, DATA, the message for `token`, and the final reply.
    fn send(&mut self, token: &str) -> Result<Attempt, Broken> {
        let steps = [
            ("MAIL FROM:<crash@client.test>", 250),
            ("RCPT TO:<inbox@bin.test>", 250),
            ("DATA", 354),
        ];
        for (line, want) in steps {
            if self.command(line, want)?.is_none() {
                self.command("RSET", 250)?;
                return Ok(Attempt::Deferred);
            }
        }
        let mut data = message(token);
        data.extend_from_slice(b".\r\n");
        self.stream.write_all(&data)?;
        let Some(text) = self.expect(250)? else {
            return Ok(Attempt::Deferred);
        };
        let id = text
            .split("id=")
            .nth(1)
            .ok_or_else(|| Broken::Unexpected(format!("250 without id: {text}")))?;
        Ok(Attempt::Acked(id.to_owned()))
    }
}

/// What one session saw.
#[derive(Default)]
pub(super) struct SessionLog {
    /// Token → the id its 250 named.
    pub(super) acked: HashMap<String, String>,
    /// Tokens sent without a 250 (each was retried under a new token).
    pub(super) unacked: Vec<String>,
    /// Connections opened (the first, and one after each break).
    pub(super) connections: usize,
}

/// Shared progress, read by the killer.
#[derive(Default)]
pub(super) struct Progress {
    pub(super) acked: AtomicUsize,
    pub(super) sessions_done: AtomicUsize,
}

/// One client session: sends its messages, reconnecting after a break and
/// retrying every message that got no 250 under a new token.
pub(super) fn run_session(
    session: usize,
    addr: SocketAddr,
    progress: &Progress,
    deadline: Instant,
) -> Result<SessionLog, String> {
    let mut log = SessionLog::default();
    let mut connection: Option<Smtp> = None;
    let mut last_break = None;
    for index in 0..MESSAGES_PER_SESSION {
        let mut attempt = 0;
        loop {
            if Instant::now() >= deadline {
                return Err(format!(
                    "session {session}: out of time at message {index}, last break {last_break:?}"
                ));
            }
            let smtp = match connection.as_mut() {
                Some(smtp) => smtp,
                None => match Smtp::open(addr) {
                    Ok(smtp) => {
                        log.connections += 1;
                        connection.insert(smtp)
                    }
                    Err(Broken::Unexpected(what)) => return Err(what),
                    Err(Broken::Connection(error)) => {
                        last_break = Some(error);
                        // Down or restarting: try again shortly.
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                },
            };
            attempt += 1;
            if attempt > MAX_ATTEMPTS {
                return Err(format!("session {session}: message {index} never got 250"));
            }
            let token = format!("s{session:02}m{index:04}a{attempt:02}");
            match smtp.send(&token) {
                Ok(Attempt::Acked(id)) => {
                    log.acked.insert(token, id);
                    progress.acked.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Ok(Attempt::Deferred) => log.unacked.push(token),
                Err(Broken::Connection(error)) => {
                    last_break = Some(error);
                    log.unacked.push(token);
                    connection = None;
                }
                Err(Broken::Unexpected(what)) => {
                    return Err(format!("session {session}, {token}: {what}"));
                }
            }
        }
    }
    if let Some(mut smtp) = connection {
        // The last message is acknowledged; how QUIT goes does not matter.
        let _ = smtp.command("QUIT", 221);
    }
    progress.sessions_done.fetch_add(1, Ordering::Relaxed);
    Ok(log)
}
