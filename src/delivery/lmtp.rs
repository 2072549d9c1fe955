//! The LMTP delivery target (RFC 2033): hands each accepted mail to an LMTP
//! server — Dovecot's `lmtp` service, Cyrus, any mailbox server — over TCP or a
//! unix socket, and reports the server's answer **per recipient**
//! ([`Deliver::deliver_each`]).
//!
//! The protocol is the sans-IO [`crate::protocol::lmtp`] client; this file only
//! connects, moves bytes and keeps the deadlines.
//!
//! Connections are reused, as Postfix's LMTP client caches them: a
//! connection whose transaction ended cleanly is kept, idle, for the next
//! delivery from the same thread (each SMTP worker thread and the spool's
//! delivery thread run a runtime of their own, and a socket stays with the
//! runtime that opened it), which begins with `RSET` instead of a new
//! connection, greeting and LHLO. At most [`IDLE_KEPT`] idle connections per
//! thread, each for at most [`IDLE_LIMIT`]; older ones are closed when next
//! looked at. A kept connection the server closed meanwhile is noticed when
//! it answers nothing: the delivery then goes over a new connection (nothing
//! of it was taken). A batch (the spool's delivery thread) goes over at most
//! [`IDLE_KEPT`] connections at once, each carrying its share of the
//! messages one after the other, instead of a connection per message.
//!
//! What is sent: the trace header(s) (`mail.data.received`), then the message as
//! received, dot-stuffed on the way in buffers of [`WRITE_BUFFER`] octets (the
//! message is never copied whole). No `Return-Path`: the LMTP server adds it
//! from `MAIL FROM`.
//!
//! How replies map: 2xx after the final dot → stored; 5xx (at RCPT, DATA or
//! after the dot) → [`DeliveryError::Permanent`] for that recipient; 4xx →
//! [`DeliveryError::Temporary`] (a quota at RCPT, `452 4.2.2`, is a transient
//! refusal, as Dovecot means it); no answer (connection refused or lost, a
//! timeout, a malformed reply) → `Temporary`: the message may or may not have
//! been stored, so it is retried — at least once, never less.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{
    BatchFuture, Deliver, DeliverFuture, DeliveryError, DeliveryReport, ReportFuture,
    accepted_recipients,
};
use crate::mail::Mail;
use crate::protocol::lmtp::{DotStuffer, Envelope, LmtpClient, RecipientResult, ServerReply};

/// Octets of the message written per system call.
pub const WRITE_BUFFER: usize = 64 * 1024;

/// Idle connections kept per thread, at most; also how many connections a
/// batch uses at once.
pub const IDLE_KEPT: usize = 4;

/// How long an idle connection is kept for the next delivery.
pub const IDLE_LIMIT: Duration = Duration::from_secs(5);

/// Where the LMTP server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LmtpAddress {
    /// `host:port` (a name is resolved by the system at each connection).
    Tcp(String),
    /// A unix socket path.
    Unix(PathBuf),
}

impl std::str::FromStr for LmtpAddress {
    type Err = String;

    /// `"unix:/run/dovecot/lmtp"` or `"127.0.0.1:24"` / `"[::1]:24"` / `"host:24"`.
    fn from_str(text: &str) -> Result<Self, String> {
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("an LMTP unix address needs a path: unix:/path".to_owned());
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        match text.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(Self::Tcp(text.to_owned()))
            }
            _ => Err(format!(
                "{text:?} is not an LMTP address: use host:port or unix:/path"
            )),
        }
    }
}

impl std::fmt::Display for LmtpAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(address) => f.write_str(address),
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// The LMTP target (see the module doc).
#[derive(Debug, Clone)]
pub struct Lmtp {
    address: LmtpAddress,
    lhlo_name: String,
    connect_timeout: Duration,
    command_timeout: Duration,
    final_timeout: Duration,
    idle: IdleConnections,
}

/// A connection kept for the next transaction.
struct Idle {
    stream: Stream,
    /// The server's LHLO reply on it.
    lhlo: ServerReply,
    since: Instant,
}

/// The idle connections, per thread (see the module doc); clones share them.
#[derive(Clone, Default)]
struct IdleConnections(Arc<Mutex<HashMap<ThreadId, Vec<Idle>>>>);

impl std::fmt::Debug for IdleConnections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdleConnections")
    }
}

impl IdleConnections {
    /// The most recently kept connection of this thread still young enough;
    /// older ones are dropped (closed).
    fn take(&self) -> Option<Idle> {
        let mut idle = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let kept = idle.get_mut(&std::thread::current().id())?;
        kept.retain(|connection| connection.since.elapsed() < IDLE_LIMIT);
        kept.pop()
    }

    /// Keeps a connection for this thread, unless it holds enough already.
    /// Connections too old to be taken (also those of threads that are gone)
    /// are closed on the way.
    fn keep(&self, stream: Stream, lhlo: ServerReply) {
        let mut idle = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        idle.retain(|_, kept| {
            kept.retain(|connection| connection.since.elapsed() < IDLE_LIMIT);
            !kept.is_empty()
        });
        let kept = idle.entry(std::thread::current().id()).or_default();
        if kept.len() < IDLE_KEPT {
            kept.push(Idle {
                stream,
                lhlo,
                since: Instant::now(),
            });
        }
    }
}

impl Lmtp {
    /// A target for the server at `address`, greeting it as `lhlo_name` (our
    /// `server_name`). Timeouts: 30 s to connect, 5 min per command reply,
    /// 10 min for the replies after the final dot (RFC 5321 §4.5.3.2).
    pub fn new(address: LmtpAddress, lhlo_name: impl Into<String>) -> Self {
        Self {
            address,
            lhlo_name: lhlo_name.into(),
            connect_timeout: Duration::from_secs(30),
            command_timeout: Duration::from_secs(300),
            final_timeout: Duration::from_secs(600),
            idle: IdleConnections::default(),
        }
    }

    /// Sets the connect, per-command and after-the-final-dot timeouts.
    #[must_use]
    pub fn with_timeouts(
        mut self,
        connect: Duration,
        command: Duration,
        final_dot: Duration,
    ) -> Self {
        self.connect_timeout = connect;
        self.command_timeout = command;
        self.final_timeout = final_dot;
        self
    }

    /// Where the server listens.
    pub fn address(&self) -> &LmtpAddress {
        &self.address
    }

    /// Runs one transaction; one result per accepted recipient, in order:
    /// over a kept connection when this thread has one (over a new one when
    /// the kept one answers nothing), else over a new connection.
    async fn transact(&self, mail: &Mail, envelope: Envelope) -> Vec<RecipientResult> {
        if let Some(idle) = self.idle.take() {
            let mut client = LmtpClient::resume(envelope.clone(), idle.lhlo);
            let outcome = self.converse(&mut client, idle.stream, mail).await;
            if client.began() {
                return client.results();
            }
            // Closed while idle, or RSET refused: nothing of it was taken.
            tracing::debug!(
                "a kept LMTP connection to {} failed before the transaction ({outcome:?}); opening a new one",
                self.address
            );
        }
        let mut client = LmtpClient::new(envelope).keep_open();
        if client.is_done() {
            return client.results();
        }
        let connected = tokio::time::timeout(self.connect_timeout, async {
            match &self.address {
                LmtpAddress::Tcp(address) => tokio::net::TcpStream::connect(address.as_str())
                    .await
                    .map(|s| {
                        let _ = s.set_nodelay(true);
                        Stream::Tcp(s)
                    }),
                LmtpAddress::Unix(path) => tokio::net::UnixStream::connect(path)
                    .await
                    .map(Stream::Unix),
            }
        })
        .await;
        match connected {
            Ok(Ok(stream)) => {
                // Its failure is in the results already.
                let _ = self.converse(&mut client, stream, mail).await;
            }
            Ok(Err(error)) => {
                client
                    .connection_lost(&format!("cannot connect to LMTP {}: {error}", self.address));
            }
            Err(_) => {
                client.connection_lost(&format!("connecting to LMTP {} timed out", self.address));
            }
        }
        client.results()
    }

    /// Runs `client`'s transaction over `stream`, then keeps the connection
    /// for the next one when the client says it can carry it, or ends it
    /// (QUIT, whose answer is not needed). A failure is also recorded in the
    /// client (its open recipients become `Unknown`).
    async fn converse(
        &self,
        client: &mut LmtpClient,
        mut stream: Stream,
        mail: &Mail,
    ) -> Result<(), String> {
        let outcome = match &mut stream {
            Stream::Tcp(tcp) => self.exchange(client, tcp, mail).await,
            Stream::Unix(unix) => self.exchange(client, unix, mail).await,
        };
        if let Err(why) = &outcome {
            client.connection_lost(why);
        }
        match (client.reusable(), client.lhlo_reply()) {
            (true, Some(lhlo)) => self.idle.keep(stream, lhlo.clone()),
            _ => {
                let mut output = Vec::new();
                client.poll_transmit(&mut output);
                match &mut stream {
                    Stream::Tcp(tcp) => self.close(tcp, &output).await,
                    Stream::Unix(unix) => self.close(unix, &output).await,
                }
            }
        }
        outcome
    }

    /// Sends what is left (QUIT) and shuts the connection down, within the
    /// command timeout.
    async fn close<S: AsyncWrite + Unpin>(&self, stream: &mut S, output: &[u8]) {
        if !output.is_empty() {
            let _ = tokio::time::timeout(self.command_timeout, stream.write_all(output)).await;
        }
        let _ = tokio::time::timeout(self.command_timeout, stream.shutdown()).await;
    }

    /// Moves bytes until the client has every result.
    async fn exchange<S>(
        &self,
        client: &mut LmtpClient,
        stream: &mut S,
        mail: &Mail,
    ) -> Result<(), String>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut input = Vec::with_capacity(4096);
        let mut output = Vec::new();
        let mut sent_body = false;
        while !client.is_done() {
            client.poll_transmit(&mut output);
            if !output.is_empty() {
                write(stream, &output, &self.address).await?;
                output.clear();
            }
            if client.wants_body() {
                self.send_body(stream, mail).await?;
                client.body_sent();
                sent_body = true;
                continue;
            }
            let timeout = if sent_body {
                self.final_timeout
            } else {
                self.command_timeout
            };
            let mut chunk = [0u8; 4096];
            let read = tokio::time::timeout(timeout, stream.read(&mut chunk)).await;
            let n = match read {
                Ok(Ok(0)) => return Err(format!("LMTP {} closed the connection", self.address)),
                Ok(Ok(n)) => n,
                Ok(Err(error)) => {
                    return Err(format!("reading from LMTP {}: {error}", self.address));
                }
                Err(_) => return Err(format!("LMTP {} did not answer in time", self.address)),
            };
            input.extend_from_slice(chunk.get(..n).unwrap_or_default());
            let used = client.handle_input(&input);
            input.drain(..used.min(input.len()));
        }
        Ok(())
    }

    async fn send_body<S: AsyncWrite + Unpin>(
        &self,
        stream: &mut S,
        mail: &Mail,
    ) -> Result<(), String> {
        let mut stuffer = DotStuffer::default();
        let mut buffer = Vec::with_capacity(WRITE_BUFFER + WRITE_BUFFER / 8);
        let (received, raw) = match &mail.data {
            Some(data) => (data.received.as_bytes(), &data.raw[..]),
            None => (&b""[..], &b""[..]),
        };
        for part in received
            .chunks(WRITE_BUFFER)
            .chain(raw.chunks(WRITE_BUFFER))
        {
            stuffer.push(part, &mut buffer);
            if buffer.len() >= WRITE_BUFFER {
                write(stream, &buffer, &self.address).await?;
                buffer.clear();
            }
        }
        stuffer.finish(&mut buffer);
        write(stream, &buffer, &self.address).await
    }
}

enum Stream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn write<S: AsyncWrite + Unpin>(
    stream: &mut S,
    bytes: &[u8],
    address: &LmtpAddress,
) -> Result<(), String> {
    match tokio::time::timeout(Duration::from_secs(300), stream.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(format!("writing to LMTP {address}: {error}")),
        Err(_) => Err(format!("writing to LMTP {address} timed out")),
    }
}

/// The envelope for `mail`'s accepted recipients.
fn envelope(mail: &Mail, lhlo_name: &str) -> Envelope {
    let eight_bit = mail.data.as_ref().is_some_and(|d| {
        d.received
            .bytes()
            .chain(d.raw.iter().copied())
            .any(|b| b >= 0x80)
    });
    Envelope {
        lhlo_name: lhlo_name.to_owned(),
        sender: mail.reverse_path(),
        recipients: accepted_recipients(mail)
            .map(|(_, r)| r.url.clone())
            .collect(),
        eight_bit,
        smtputf8: mail.mailfrom.as_ref().is_some_and(|m| m.smtputf8),
    }
}

fn delivery_result(result: RecipientResult) -> Result<(), DeliveryError> {
    match result {
        RecipientResult::Delivered(_) => Ok(()),
        RecipientResult::Refused(reply) if reply.is_permanent() => {
            Err(DeliveryError::Permanent(format!("LMTP: {reply}")))
        }
        RecipientResult::Refused(reply) => Err(DeliveryError::Temporary(format!("LMTP: {reply}"))),
        RecipientResult::Unknown(why) => Err(DeliveryError::Temporary(why)),
    }
}

impl Deliver for Lmtp {
    /// The whole message: `Ok` only when every accepted recipient was stored
    /// (the rules of [`DeliveryReport::result`]).
    fn deliver<'a>(&'a self, mail: &'a Mail) -> DeliverFuture<'a> {
        Box::pin(async move { self.deliver_each(mail).await.result() })
    }

    fn deliver_each<'a>(&'a self, mail: &'a Mail) -> ReportFuture<'a> {
        Box::pin(async move {
            let mut report = DeliveryReport::default();
            if mail.data.is_none() {
                let none = Err(DeliveryError::Permanent("no message".into()));
                return DeliveryReport::same_for_all(mail, &none);
            }
            let envelope = envelope(mail, &self.lhlo_name);
            if envelope.recipients.is_empty() {
                return report;
            }
            let results = self.transact(mail, envelope).await;
            for ((index, rcpt), result) in accepted_recipients(mail).zip(results) {
                report.push(index, rcpt, delivery_result(result));
            }
            report
        })
    }

    /// At most [`IDLE_KEPT`] transactions at once, each lane of the batch
    /// one message after the other over its (kept) connection; the reports in
    /// the batch's order.
    fn deliver_batch<'a>(&'a self, mails: &'a [&'a Mail]) -> BatchFuture<'a> {
        Box::pin(async move {
            let lanes = mails.len().clamp(1, IDLE_KEPT);
            let delivered = futures_util::future::join_all((0..lanes).map(|lane| async move {
                let mut reports = Vec::new();
                for (index, mail) in mails.iter().enumerate().skip(lane).step_by(lanes) {
                    reports.push((index, self.deliver_each(mail).await));
                }
                reports
            }))
            .await;
            let mut reports: Vec<DeliveryReport> =
                mails.iter().map(|_| DeliveryReport::default()).collect();
            for (index, report) in delivered.into_iter().flatten() {
                if let Some(slot) = reports.get_mut(index) {
                    *slot = report;
                }
            }
            reports
        })
    }

    /// Connect, greeting, `LHLO`, `QUIT` (`checks.rs`).
    fn check(&self) -> super::CheckFuture<'_> {
        Box::pin(super::checks::lmtp(
            &self.address,
            &self.lhlo_name,
            self.connect_timeout.max(self.command_timeout),
        ))
    }
}
