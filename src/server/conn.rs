//! One connection: moves bytes between the socket and the [`Machine`], and hands
//! events to the [`Session`]. Nothing protocol-ish lives here.
//!
//! Order of work: answer every command already buffered (hooks included), then write
//! all queued replies in one go (RFC 2920 pipelining), then read again — or stop at
//! the machine's deadline, at end of input, or when the machine closes.

use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::protocol::Machine;
use crate::receiver::Receiver;
use crate::session::Session;

/// Bytes asked for per read.
const READ_CHUNK: usize = 16 * 1024;
/// Handle at most this many events before writing what is queued, so a client that
/// pipelines without reading cannot grow our output without bound.
const MAX_EVENTS_PER_FLUSH: usize = 256;

/// Runs the SMTP conversation on `stream` until either side closes it.
pub(crate) async fn serve<R, S>(stream: S, mut session: Session<R>, mut machine: Machine)
where
    R: Receiver,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let greeting = session.connect().await;
    machine.answer(greeting);
    let mut input: Vec<u8> = Vec::new();
    let mut output: Vec<u8> = Vec::new();
    let result: std::io::Result<()> = async {
        loop {
            let mut start = 0;
            let mut events = 0;
            loop {
                let progress =
                    machine.handle_input(input.get(start..).unwrap_or_default(), Instant::now());
                start += progress.consumed;
                let Some(event) = progress.event else { break };
                let reply = session.handle(event, &mut machine).await;
                machine.answer(reply);
                events += 1;
                if events >= MAX_EVENTS_PER_FLUSH {
                    flush(&mut machine, &mut writer, &mut output).await?;
                    events = 0;
                }
            }
            input.drain(..start.min(input.len()));
            flush(&mut machine, &mut writer, &mut output).await?;
            if machine.is_closed() {
                return Ok(());
            }
            if input.capacity() - input.len() < READ_CHUNK / 2 {
                input.reserve(READ_CHUNK);
            }
            let read = match machine.poll_timeout() {
                Some(deadline) => {
                    tokio::select! {
                        read = reader.read_buf(&mut input) => read?,
                        () = tokio::time::sleep_until(deadline.into()) => {
                            machine.handle_timeout(Instant::now());
                            continue;
                        }
                    }
                }
                None => reader.read_buf(&mut input).await?,
            };
            if read == 0 {
                machine.handle_eof();
                return Ok(());
            }
        }
    }
    .await;
    if let Err(error) = result {
        tracing::debug!(remote = %session.mail().remote_ip, "connection error: {error}");
    }
    let _ = writer.shutdown().await;
    session.finish().await;
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
