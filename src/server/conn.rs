//! One connection: moves bytes between the socket (or its TLS stream) and the
//! [`Machine`], and hands events to the [`Session`]. Nothing protocol-ish lives here.
//!
//! Order of work: answer every command already buffered (hooks included), then write
//! all queued replies in one go (RFC 2920 pipelining), then read again — or stop at
//! the machine's deadline, at end of input, or when the machine closes.
//!
//! STARTTLS: once the machine has queued its 220, the reply is flushed, every byte
//! still buffered from the plaintext stream is thrown away (they were sent before
//! the handshake and must never be read as if encrypted, CVE-2011-0411), and the
//! handshake runs on the bare socket.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use super::tls::TlsHandle;
use crate::protocol::{Event, Machine};
use crate::receiver::Receiver;
use crate::session::{Session, TlsFacts};

/// Bytes asked for per read.
const READ_CHUNK: usize = 16 * 1024;
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

/// The buffers of one connection, kept across the STARTTLS switch.
struct Buffers {
    input: Vec<u8>,
    output: Vec<u8>,
}

/// Runs the SMTP conversation on `stream` until either side closes it.
/// `tls` is offered for STARTTLS when given.
pub(crate) async fn serve<R, S>(
    mut stream: S,
    mut session: Session<R>,
    mut machine: Machine,
    tls: Option<Arc<TlsHandle>>,
    handshake_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) where
    R: Receiver,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let greeting = session.connect().await;
    machine.answer(greeting);
    let mut buffers = Buffers {
        input: Vec::new(),
        output: Vec::new(),
    };
    let ending = converse(
        &mut stream,
        &mut session,
        &mut machine,
        &mut buffers,
        &mut stop,
    )
    .await;
    match (ending, tls) {
        (Ok(Ending::StartTls), Some(tls)) => {
            // Whatever the client sent after STARTTLS was sent in the clear.
            buffers.input = Vec::new();
            let accepted = tokio::time::timeout(handshake_timeout, tls.acceptor().accept(stream));
            match accepted.await {
                Ok(Ok(mut stream)) => {
                    session.tls_established(tls_facts(stream.get_ref().1));
                    machine.tls_established(Instant::now());
                    let ending = converse(
                        &mut stream,
                        &mut session,
                        &mut machine,
                        &mut buffers,
                        &mut stop,
                    )
                    .await;
                    log_ending(&session, ending);
                    let _ = stream.shutdown().await;
                }
                Ok(Err(error)) => {
                    tracing::info!(remote = %session.mail().remote_ip, "TLS handshake failed: {error}");
                }
                Err(_) => {
                    tracing::info!(remote = %session.mail().remote_ip, "TLS handshake timed out");
                }
            }
        }
        (ending, _) => {
            log_ending(&session, ending);
            let _ = stream.shutdown().await;
        }
    }
    session.finish().await;
}

/// What the TLS layer negotiated, for the mail structure.
pub(crate) fn tls_facts(connection: &rustls::ServerConnection) -> TlsFacts {
    TlsFacts {
        version: connection
            .protocol_version()
            .and_then(|v| v.as_str())
            .map(str::to_owned),
        cipher: connection
            .negotiated_cipher_suite()
            .and_then(|s| s.suite().as_str())
            .map(str::to_owned),
    }
}

fn log_ending<R: Receiver>(session: &Session<R>, ending: std::io::Result<Ending>) {
    if let Err(error) = ending {
        tracing::debug!(remote = %session.mail().remote_ip, "connection error: {error}");
    }
}

/// Pumps bytes until the session closes or asks for STARTTLS.
async fn converse<R, S>(
    stream: &mut S,
    session: &mut Session<R>,
    machine: &mut Machine,
    buffers: &mut Buffers,
    stop: &mut watch::Receiver<bool>,
) -> std::io::Result<Ending>
where
    R: Receiver,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Buffers { input, output } = buffers;
    let mut stopping = false;
    loop {
        let mut start = 0;
        let mut events = 0;
        loop {
            let rest = input.get(start..).unwrap_or_default();
            let progress = machine.handle_input(rest, Instant::now());
            start += progress.consumed;
            let Some(event) = progress.event else { break };
            if event == Event::StartTls {
                flush(machine, stream, output).await?;
                return Ok(Ending::StartTls);
            }
            let reply = session.handle(event, machine).await;
            machine.answer(reply);
            events += 1;
            if events >= MAX_EVENTS_PER_FLUSH {
                flush(machine, stream, output).await?;
                events = 0;
            }
        }
        input.drain(..start.min(input.len()));
        stopping |= *stop.borrow();
        if stopping {
            machine.handle_shutdown();
        }
        flush(machine, stream, output).await?;
        if machine.is_closed() {
            return Ok(Ending::Closed);
        }
        if input.capacity() - input.len() < READ_CHUNK / 2 {
            input.reserve(READ_CHUNK);
        }
        let deadline = machine
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + machine.limits().command_timeout);
        let read = tokio::select! {
            read = stream.read_buf(input) => read?,
            () = tokio::time::sleep_until(deadline.into()) => {
                machine.handle_timeout(Instant::now());
                continue;
            }
            // A change (or the server gone) means shutdown, handled above.
            _ = stop.changed(), if !stopping => {
                stopping = true;
                continue;
            }
        };
        if read == 0 {
            machine.handle_eof();
            return Ok(Ending::Closed);
        }
    }
}

async fn flush<W: AsyncWrite + Unpin>(
    machine: &mut Machine,
    writer: &mut W,
    output: &mut Vec<u8>,
) -> std::io::Result<()> {
    if !machine.has_output() {
        return Ok(());
    }
    machine.poll_transmit(output);
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
