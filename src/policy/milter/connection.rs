//! One milter connection (TCP or unix socket) driven by the sans-IO
//! [`MilterClient`]: connect and negotiate within the connect timeout, then
//! each exchange — write the queued frames, read until the answer — within its
//! timeout. `SMFIR_PROGRESS` restarts the clock, at most [`MAX_PROGRESS`]
//! times per answer, so a milter cannot hold a session forever. Dropping a
//! connection sends `SMFIC_QUIT` if the socket takes it at once, then closes.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpStream, UnixStream};

use super::config::MilterAddress;
use crate::protocol::milter::{Event, MilterClient, MilterError, Offer, Response, write_frame};

/// How often one answer may be put off with `SMFIR_PROGRESS`.
pub(crate) const MAX_PROGRESS: u32 = 10;

/// Why talking to a milter failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DriverError {
    /// Connecting, reading or writing failed.
    #[error("{0}")]
    Io(String),
    /// No answer in time.
    #[error("no answer to {0} within {1:?}")]
    Timeout(&'static str, Duration),
    /// The milter broke the protocol.
    #[error("{0}")]
    Protocol(#[from] MilterError),
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Tcp(s) => s.write_all(bytes).await,
            Self::Unix(s) => s.write_all(bytes).await,
        }
    }

    async fn read_buf(&mut self, buffer: &mut Vec<u8>) -> std::io::Result<usize> {
        match self {
            Self::Tcp(s) => s.read_buf(buffer).await,
            Self::Unix(s) => s.read_buf(buffer).await,
        }
    }

    fn try_write(&self, bytes: &[u8]) -> std::io::Result<usize> {
        match self {
            Self::Tcp(s) => s.try_write(bytes),
            Self::Unix(s) => s.try_write(bytes),
        }
    }
}

/// A negotiated milter connection.
pub(crate) struct Connection {
    stream: Stream,
    pub(crate) client: MilterClient,
    buffer: Vec<u8>,
    out: Vec<u8>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let mut quit = Vec::with_capacity(5);
        write_frame(&mut quit, crate::protocol::milter::command::QUIT, &[]);
        // Best effort: a full socket buffer just closes without it.
        let _ = self.stream.try_write(&quit);
    }
}

impl Connection {
    /// Connects and negotiates within `limit`.
    pub(crate) async fn open(
        address: &MilterAddress,
        limit: Duration,
    ) -> Result<Self, DriverError> {
        tokio::time::timeout(limit, Self::open_unbounded(address))
            .await
            .map_err(|_| DriverError::Timeout("connect and negotiation", limit))?
    }

    async fn open_unbounded(address: &MilterAddress) -> Result<Self, DriverError> {
        let stream = match address {
            MilterAddress::Inet(host_port) => {
                let stream = TcpStream::connect(host_port.as_str())
                    .await
                    .map_err(|e| DriverError::Io(format!("cannot connect to {address}: {e}")))?;
                // Small frames each way: no Nagle delay.
                let _ = stream.set_nodelay(true);
                Stream::Tcp(stream)
            }
            MilterAddress::Unix(path) => Stream::Unix(
                UnixStream::connect(path)
                    .await
                    .map_err(|e| DriverError::Io(format!("cannot connect to {address}: {e}")))?,
            ),
        };
        let mut connection = Self {
            stream,
            client: MilterClient::new(Offer::default()),
            buffer: Vec::with_capacity(4096),
            out: Vec::with_capacity(4096),
        };
        connection.flush().await?;
        match connection.read_event().await? {
            Event::Negotiated => Ok(connection),
            // The client answers only Negotiated (or an error) first.
            _ => Err(DriverError::Protocol(MilterError::Malformed(
                "no negotiation",
            ))),
        }
    }

    async fn flush(&mut self) -> Result<(), DriverError> {
        self.client.poll_transmit(&mut self.out);
        if self.out.is_empty() {
            return Ok(());
        }
        let result = self.stream.write_all(&self.out).await;
        self.out.clear();
        result.map_err(|e| DriverError::Io(format!("write: {e}")))
    }

    /// The next event from the milter (reads as needed; no timeout here).
    async fn read_event(&mut self) -> Result<Event, DriverError> {
        loop {
            let (used, event) = self.client.handle_input(&self.buffer)?;
            self.buffer.drain(..used);
            if let Some(event) = event {
                return Ok(event);
            }
            if used > 0 {
                continue;
            }
            self.buffer.reserve(16 * 1024);
            let read = self
                .stream
                .read_buf(&mut self.buffer)
                .await
                .map_err(|e| DriverError::Io(format!("read: {e}")))?;
            if read == 0 {
                return Err(self.client.connection_closed().into());
            }
        }
    }

    /// When `awaits`, writes what is queued and reads the answer within
    /// `limit` (restarted by each progress note). A command the milter does
    /// not answer (it negotiated `SMFIP_NR_*`) stays queued and goes with the
    /// next one that is answered: one write for the lot. `None` when no
    /// answer was awaited.
    pub(crate) async fn exchange(
        &mut self,
        awaits: bool,
        what: &'static str,
        limit: Duration,
    ) -> Result<Option<Response>, DriverError> {
        if !awaits {
            return Ok(None);
        }
        tokio::time::timeout(limit, self.flush())
            .await
            .map_err(|_| DriverError::Timeout(what, limit))??;
        for _ in 0..=MAX_PROGRESS {
            match tokio::time::timeout(limit, self.read_event()).await {
                Err(_) => return Err(DriverError::Timeout(what, limit)),
                Ok(Err(error)) => return Err(error),
                Ok(Ok(Event::Answer(response))) => return Ok(Some(response)),
                Ok(Ok(Event::Progress | Event::Negotiated)) => {}
            }
        }
        Err(DriverError::Timeout(what, limit * (MAX_PROGRESS + 1)))
    }
}
