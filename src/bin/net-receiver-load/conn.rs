//! One SMTP client connection of the load generator: buffered reads of
//! replies (bounded), writes, and the SMTP steps it needs.

use anyhow::{Context as _, anyhow, bail};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::timeout_at;

use super::{Limits, MAX_REPLY};

/// One SMTP client connection.
pub(crate) struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    limits: Limits,
}

/// A reply: its code and whether any line announced PIPELINING.
pub(crate) struct Reply {
    code: u16,
    pipelining: bool,
}

impl Conn {
    /// Connects and reads the greeting, which must be 220.
    pub(crate) async fn open(addr: SocketAddr, limits: Limits) -> anyhow::Result<Conn> {
        let stream = timeout_at(limits.until(), TcpStream::connect(addr))
            .await
            .map_err(|_| anyhow!("connect timed out"))?
            .context("connect")?;
        stream.set_nodelay(true).context("TCP_NODELAY")?;
        let mut conn = Conn {
            stream,
            buf: Vec::with_capacity(512),
            start: 0,
            limits,
        };
        conn.expect(220, "greeting").await?;
        Ok(conn)
    }

    /// Connects and says EHLO; returns the connection and whether the server
    /// offers PIPELINING.
    pub(crate) async fn open_ehlo(
        addr: SocketAddr,
        limits: Limits,
    ) -> anyhow::Result<(Conn, bool)> {
        let mut conn = Conn::open(addr, limits).await?;
        conn.send(b"EHLO load.example\r\n").await?;
        let reply = conn.reply().await?;
        if reply.code != 250 {
            bail!("EHLO got {}", reply.code);
        }
        Ok((conn, reply.pipelining))
    }

    pub(crate) async fn send(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        timeout_at(self.limits.until(), self.stream.write_all(bytes))
            .await
            .map_err(|_| anyhow!("write timed out"))?
            .context("write")
    }

    /// Reads one (possibly multi-line) reply.
    pub(crate) async fn reply(&mut self) -> anyhow::Result<Reply> {
        let mut pipelining = false;
        let mut taken = 0;
        loop {
            let rest = self.buf.get(self.start..).unwrap_or_default();
            let Some(end) = memchr::memchr(b'\n', rest) else {
                if rest.len() + taken > MAX_REPLY {
                    bail!("reply longer than {MAX_REPLY} octets");
                }
                self.fill().await?;
                continue;
            };
            let line = rest.get(..end).unwrap_or_default();
            taken += end + 1;
            let code = line
                .get(..3)
                .and_then(|d| std::str::from_utf8(d).ok())
                .and_then(|d| d.parse::<u16>().ok())
                .ok_or_else(|| anyhow!("malformed reply line"))?;
            let more = line.get(3) == Some(&b'-');
            pipelining |= line
                .get(4..)
                .is_some_and(|text| text.eq_ignore_ascii_case(b"PIPELINING\r"));
            self.start += end + 1;
            if !more {
                return Ok(Reply { code, pipelining });
            }
        }
    }

    /// Reads more bytes, dropping what was consumed first.
    pub(crate) async fn fill(&mut self) -> anyhow::Result<()> {
        if self.start > 0 {
            self.buf.drain(..self.start.min(self.buf.len()));
            self.start = 0;
        }
        self.buf.reserve(4096);
        let read = timeout_at(self.limits.until(), self.stream.read_buf(&mut self.buf))
            .await
            .map_err(|_| anyhow!("reply timed out"))?
            .context("read")?;
        if read == 0 {
            bail!("connection closed by the server");
        }
        Ok(())
    }

    /// Reads one reply and checks its code.
    pub(crate) async fn expect(&mut self, code: u16, after: &str) -> anyhow::Result<()> {
        let reply = self.reply().await?;
        if reply.code == code {
            Ok(())
        } else {
            bail!("{after} got {} (expected {code})", reply.code)
        }
    }

    /// QUIT, best effort: the session is over either way.
    pub(crate) async fn quit(mut self) {
        if self.send(b"QUIT\r\n").await.is_ok() {
            let _ = self.reply().await;
        }
    }
}
