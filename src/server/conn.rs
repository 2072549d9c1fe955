//! One connection: moves bytes between the socket (or its TLS stream) and the
//! [`Machine`], and hands events to the [`Session`]. Nothing protocol-ish lives here.
//! From admission to the summary line: an implicit-TLS handshake, the
//! conversation, STARTTLS, and a tally of what the connection did (its
//! `disconnect` log line: commands, messages, bytes, duration, how it ended).
//!
//! Order of work: answer every command already buffered (hooks included), then write
//! all queued replies in one go (RFC 2920 pipelining), then read again — or stop at
//! the machine's deadline, at end of input, or when the machine closes.
//!
//! STARTTLS: once the machine has queued its 220, the reply is flushed, every byte
//! still buffered from the plaintext stream is thrown away (they were sent before
//! the handshake and must never be read as if encrypted, CVE-2011-0411), and the
//! handshake runs on the bare socket.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::watch;

use super::Shared;
use super::tls::TlsHandle;
use crate::config::{ListenerMode, ListenerSpec};
use crate::metrics::{Metrics, Verb};
use crate::protocol::{ConnectionOptions, Event, Machine};
use crate::receiver::Receiver;
use crate::session::{ConnectionInfo, Session, TlsFacts};

/// Room for one read: a whole 4 KiB message (or a burst of pipelined commands)
/// in one system call. The room is the worker thread's, shared by its
/// connections (see [`read_some`]), so an idle session holds none of it.
const READ_CHUNK: usize = 16 * 1024;
/// A session's own buffer keeps this much room between reads at most: more is
/// given back once its bytes are consumed.
const KEPT_INPUT: usize = 1024;
/// Handle at most this many events before writing what is queued, so a client that
/// pipelines without reading cannot grow our output without bound.
const MAX_EVENTS_PER_FLUSH: usize = 256;

/// How a stretch of conversation on one stream ended.
enum Ending {
    /// The session is over.
    Closed,
    /// The client asked for STARTTLS and got its 220.
    StartTls,
}

/// One connection's state, kept across the STARTTLS switch.
struct Connection<R> {
    session: Session<R>,
    machine: Machine,
    input: Vec<u8>,
    output: Vec<u8>,
    stop: watch::Receiver<bool>,
    tally: Tally,
}

/// Runs the SMTP conversation on `stream` until either side closes it.
/// `tls` is offered for STARTTLS when given.
async fn serve<R, S>(
    mut stream: S,
    session: Session<R>,
    machine: Machine,
    tls: Option<Arc<TlsHandle>>,
    handshake_timeout: Duration,
    stop: watch::Receiver<bool>,
) -> Tally
where
    R: Receiver,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut conn = Connection {
        session,
        machine,
        input: Vec::new(),
        output: Vec::new(),
        stop,
        tally: Tally::default(),
    };
    let greeting = conn.session.connect().await;
    if greeting.is_negative() {
        conn.tally.end("refused");
    }
    conn.machine.answer(greeting);
    let ending = conn.converse(&mut stream).await;
    match (ending, tls) {
        (Ok(Ending::StartTls), Some(tls)) => {
            // Whatever the client sent after STARTTLS was sent in the clear.
            conn.input = Vec::new();
            // Boxed: the TLS state is large, and a session that never upgrades
            // should not carry room for it while idle.
            Box::pin(conn.upgrade(stream, &tls, handshake_timeout)).await;
        }
        (ending, _) => conn.end(ending, stream).await,
    }
    conn.session.finish().await;
    conn.tally
}

/// Serves a connection admitted by the limits, in its `connection` span: the
/// implicit-TLS handshake if the listener wants one, the conversation, and the
/// summary line at its end (`disconnect`: commands, messages, bytes, duration
/// and how it ended).
pub(super) async fn admitted<R, S>(
    stream: S,
    info: ConnectionInfo,
    spec: ListenerSpec,
    shared: Arc<Shared<R>>,
    stop: watch::Receiver<bool>,
) where
    R: Receiver,
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let settings = &shared.settings;
    let remote = info.remote;
    let _open = shared
        .services
        .metrics
        .as_ref()
        .map(|m| m.connection_accepted());
    tracing::info!(
        name: "connect",
        "connection accepted on port {} from {remote}",
        info.local.port()
    );
    let started = Instant::now();
    let options = ConnectionOptions {
        starttls: shared.tls.is_some() && spec.mode != ListenerMode::Smtps,
        tls_active: spec.mode == ListenerMode::Smtps,
        require_auth: spec.mode == ListenerMode::Submission,
        auth: settings.auth,
        allow_plaintext_auth: settings.allow_plaintext_auth,
    };
    let machine = Machine::with_options(
        Arc::clone(&settings.limits),
        Arc::clone(&settings.ehlo_keywords),
        options,
        Instant::now(),
    );
    let mut session = Session::new(
        Arc::clone(&shared.receiver),
        Arc::clone(settings),
        shared.services.clone(),
        info,
    );
    let starttls = shared.tls.clone().filter(|_| options.starttls);
    let timeout = settings.tls_handshake_timeout;
    let tally = if spec.mode == ListenerMode::Smtps {
        let Some(tls) = &shared.tls else {
            tracing::error!("implicit-TLS listener {} has no certificate", spec.addr);
            return;
        };
        let mut failed = Tally::default();
        failed.end("tls_failed");
        let metrics = shared.services.metrics.as_deref();
        // Boxed so that plaintext sessions do not carry room for the TLS state.
        Box::pin(async move {
            match tokio::time::timeout(timeout, tls.acceptor().accept(stream)).await {
                Ok(Ok(stream)) => {
                    let facts = tls_facts(stream.get_ref().1);
                    if let Some(m) = metrics {
                        m.tls_handshake(facts.version.as_deref());
                    }
                    session.tls_established(facts);
                    serve(stream, session, machine, None, timeout, stop).await
                }
                Ok(Err(error)) => {
                    super::tls_failure(metrics, false);
                    super::tls::log_handshake_failure(&remote.ip(), &error);
                    failed
                }
                Err(_) => {
                    super::tls_failure(metrics, true);
                    super::tls::log_handshake_failure(&remote.ip(), &"timed out");
                    failed
                }
            }
        })
        .await
    } else {
        serve(stream, session, machine, starttls, timeout, stop).await
    };
    tracing::info!(
        name: "disconnect",
        commands = tally.commands,
        messages = tally.messages,
        bytes = tally.bytes,
        duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        ended = tally.ended.unwrap_or("closed"),
        "connection from {remote} closed"
    );
}

/// What one connection did, for its summary line.
#[derive(Debug, Default)]
struct Tally {
    /// Commands answered (STARTTLS included; a message's end is not one).
    commands: u64,
    /// Messages answered 250.
    messages: u64,
    /// Bytes read from the client (after TLS).
    bytes: u64,
    /// How it ended, once known: `quit`, `client_closed`, `timeout`,
    /// `shutdown`, `too_many_errors`, `refused`, `tls_failed`, `error`.
    ended: Option<&'static str>,
}

impl Tally {
    /// Records how the connection ended, unless that is known already.
    fn end(&mut self, how: &'static str) {
        self.ended.get_or_insert(how);
    }
}

/// What the TLS layer negotiated, for the mail structure.
pub(crate) fn tls_facts(connection: &rustls::ServerConnection) -> TlsFacts {
    TlsFacts {
        version: connection
            .protocol_version()
            .and_then(super::tls::version_name)
            .map(str::to_owned),
        cipher: connection
            .negotiated_cipher_suite()
            .and_then(|s| s.suite().as_str())
            .map(str::to_owned),
    }
}

impl<R: Receiver> Connection<R> {
    /// STARTTLS: the handshake on the bare socket, then the rest of the session.
    async fn upgrade<S>(&mut self, stream: S, tls: &TlsHandle, handshake_timeout: Duration)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let accepted = tokio::time::timeout(handshake_timeout, tls.acceptor().accept(stream));
        match accepted.await {
            Ok(Ok(mut stream)) => {
                let facts = tls_facts(stream.get_ref().1);
                if let Some(m) = self.session.metrics() {
                    m.tls_handshake(facts.version.as_deref());
                }
                // The machine owns "TLS is active" (and resets the greeting and
                // AUTH); the session records what it established.
                self.machine.tls_established(Instant::now());
                if self.machine.facts().tls {
                    self.session.tls_established(facts);
                }
                let ending = self.converse(&mut stream).await;
                self.end(ending, stream).await;
            }
            Ok(Err(error)) => {
                self.tally.end("tls_failed");
                super::tls_failure(self.session.metrics().map(Arc::as_ref), false);
                super::tls::log_handshake_failure(&self.session.mail().remote_ip, &error);
            }
            Err(_) => {
                self.tally.end("tls_failed");
                super::tls_failure(self.session.metrics().map(Arc::as_ref), true);
                super::tls::log_handshake_failure(&self.session.mail().remote_ip, &"timed out");
            }
        }
    }

    /// Logs how the conversation ended and closes the stream: TLS says
    /// close_notify first; plain TCP is just closed (a shutdown would add a
    /// system call and nothing else: close sends the FIN).
    ///
    /// A session closed for too many errors is counted as abuse first, while the
    /// socket is still open: the client's EOF comes after the count.
    async fn end<S: AsyncWrite + Unpin>(&mut self, ending: std::io::Result<Ending>, mut stream: S) {
        if self.machine.closed_for_too_many_errors() {
            self.tally.end("too_many_errors");
            self.session.protocol_abuse().await;
        }
        if let Err(error) = ending {
            self.tally.end(match error.kind() {
                std::io::ErrorKind::TimedOut => "timeout",
                _ => "error",
            });
            tracing::debug!(remote = %self.session.mail().remote_ip, "connection error: {error}");
        }
        if self.machine.facts().tls {
            let _ = stream.shutdown().await;
        }
    }

    /// Pumps bytes until the session closes or asks for STARTTLS.
    async fn converse<S>(&mut self, stream: &mut S) -> std::io::Result<Ending>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let Self {
            session,
            machine,
            input,
            output,
            stop,
            tally,
        } = self;
        let metrics = session.metrics().cloned();
        let metrics = metrics.as_deref();
        let mut stopping = false;
        // One timer and one wait for the stop signal for the whole
        // conversation, not one of each per read: a deadline that moves later
        // only updates the timer (tokio re-files it when the old one comes
        // due), and the stop signal stays registered once. Both on the heap:
        // in the conversation's own state they would sit beside every hook's
        // future and make each idle connection's task bigger.
        let mut deadline = machine
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + machine.limits().command_timeout);
        let mut timer = Box::pin(tokio::time::sleep_until(deadline.into()));
        let mut stop_watch = stop.clone();
        let mut stop_signal = Box::pin(async move {
            // An error is the server gone: a shutdown too.
            let _ = stop_watch.changed().await;
        });
        loop {
            let mut start = 0;
            let mut events = 0;
            loop {
                let rest = input.get(start..).unwrap_or_default();
                let progress = machine.handle_input(rest, Instant::now());
                start += progress.consumed;
                let Some(event) = progress.event else { break };
                tally.commands += u64::from(!matches!(event, Event::Message { .. }));
                if event == Event::StartTls {
                    if let Some(m) = metrics {
                        m.command(Verb::StartTls);
                    }
                    flush(machine, stream, output, metrics).await?;
                    return Ok(Ending::StartTls);
                }
                let message = matches!(event, Event::Message { .. });
                if event == Event::Quit {
                    tally.end("quit");
                }
                let reply = session.handle(event).await;
                if message && reply.code == 250 {
                    tally.messages += 1;
                }
                machine.answer(reply);
                events += 1;
                if events >= MAX_EVENTS_PER_FLUSH {
                    flush(machine, stream, output, metrics).await?;
                    events = 0;
                }
            }
            input.drain(..start.min(input.len()));
            stopping |= *stop.borrow();
            if stopping {
                machine.handle_shutdown();
            }
            flush(machine, stream, output, metrics).await?;
            if machine.is_closed() {
                if stopping {
                    tally.end("shutdown");
                }
                return Ok(Ending::Closed);
            }
            if input.is_empty() && input.capacity() > KEPT_INPUT {
                // A burst (DATA) is over: an idle session gives the memory back.
                *input = Vec::new();
            }
            let next = machine
                .poll_timeout()
                .unwrap_or_else(|| Instant::now() + machine.limits().command_timeout);
            if next != deadline || timer.is_elapsed() {
                deadline = next;
                timer.as_mut().reset(deadline.into());
            }
            let read = tokio::select! {
                read = read_some(stream, input) => read?,
                () = &mut timer => {
                    machine.handle_timeout(Instant::now());
                    if machine.is_closed() {
                        tally.end("timeout");
                    }
                    continue;
                }
                // A change (or the server gone) means shutdown, handled above;
                // the signal, once seen, is not waited for again.
                () = &mut stop_signal, if !stopping => {
                    stopping = true;
                    continue;
                }
            };
            if let Some(m) = metrics {
                m.bytes_received(read);
            }
            tally.bytes += read as u64;
            if read == 0 {
                tally.end("client_closed");
                machine.handle_eof();
                return Ok(Ending::Closed);
            }
        }
    }
}

thread_local! {
    /// The room every read of this thread's connections goes through.
    static READ_ROOM: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_CHUNK].into_boxed_slice());
}

/// Reads what `stream` has (up to [`READ_CHUNK`] bytes) and appends it to
/// `input`; `Ok(0)` at end of input. The bytes land first in the thread's
/// shared room, borrowed only within one poll, and only what was read is
/// copied to the session's own buffer: one system call per burst, however
/// small the session's buffer.
async fn read_some<S: AsyncRead + Unpin>(stream: &mut S, input: &mut Vec<u8>) -> io::Result<usize> {
    std::future::poll_fn(|cx| {
        READ_ROOM.with_borrow_mut(|room| {
            let mut buf = ReadBuf::new(room);
            match Pin::new(&mut *stream).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) => {
                    input.extend_from_slice(buf.filled());
                    Poll::Ready(Ok(buf.filled().len()))
                }
                Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
                Poll::Pending => Poll::Pending,
            }
        })
    })
    .await
}

async fn flush<W: AsyncWrite + Unpin>(
    machine: &mut Machine,
    writer: &mut W,
    output: &mut Vec<u8>,
    metrics: Option<&Metrics>,
) -> std::io::Result<()> {
    if !machine.has_output() {
        return Ok(());
    }
    machine.poll_transmit(output);
    if let Some(m) = metrics {
        m.replies_in(output);
    }
    // A client that stops reading gets as long as it may take for a command.
    let limit = machine.limits().command_timeout;
    let written = tokio::time::timeout(limit, async {
        writer.write_all(output).await?;
        writer.flush().await
    })
    .await;
    output.clear();
    match written {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "client stopped reading",
        )),
    }
}
