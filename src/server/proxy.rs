//! The PROXY protocol on a listener (running behind HAProxy or a load balancer):
//! reads the header a trusted peer sends as its first bytes, with a size cap and
//! a timeout, and hands back the real client's addresses and any bytes that came
//! after the header. Parsing is sans-IO in [`crate::protocol::proxy`]; trust is
//! decided by the caller from `proxy_trusted_networks`.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf};

use crate::protocol::proxy::{
    MAX_HEADER, ProxiedAddresses, ProxyError, ProxyStatus, parse_proxy_header,
};

/// What a PROXY header said.
#[derive(Debug)]
pub(crate) struct Proxied {
    /// The real client and the address it connected to; `None` for LOCAL
    /// (the proxy's own health check): keep the socket's addresses.
    pub(crate) addresses: Option<(SocketAddr, SocketAddr)>,
    /// Bytes the peer sent after the header (the start of SMTP or TLS).
    pub(crate) rest: Vec<u8>,
}

/// Why no usable header arrived.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyFailure {
    #[error("bad PROXY header: {0}")]
    Header(ProxyError),
    #[error("no PROXY header within the time allowed")]
    Timeout,
    #[error("connection closed before the PROXY header was complete")]
    Closed,
    #[error("reading the PROXY header: {0}")]
    Io(#[from] io::Error),
}

/// Reads the PROXY header (v1 or v2) that must start the stream.
pub(crate) async fn read_header<S: AsyncRead + Unpin>(
    stream: &mut S,
    timeout: Duration,
) -> Result<Proxied, ProxyFailure> {
    let mut buffer = Vec::with_capacity(MAX_HEADER);
    let read = async {
        loop {
            if buffer.len() >= MAX_HEADER * 2 {
                return Err(ProxyFailure::Header(ProxyError::TooLong));
            }
            let n = stream.read_buf(&mut buffer).await?;
            if n == 0 {
                return Err(ProxyFailure::Closed);
            }
            match parse_proxy_header(&buffer).map_err(ProxyFailure::Header)? {
                ProxyStatus::Partial => continue,
                ProxyStatus::Complete {
                    consumed,
                    addresses,
                } => {
                    let rest = buffer.get(consumed..).unwrap_or_default().to_vec();
                    let addresses = match addresses {
                        ProxiedAddresses::Tcp {
                            source,
                            destination,
                        } => Some((source, destination)),
                        ProxiedAddresses::Local => None,
                    };
                    return Ok(Proxied { addresses, rest });
                }
            }
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or(Err(ProxyFailure::Timeout))
}

/// A stream that first yields `prefix`, then reads from `inner`; writes go to
/// `inner`. Carries the bytes that arrived with the PROXY header.
#[derive(Debug)]
pub(crate) struct Prefixed<S> {
    prefix: Vec<u8>,
    position: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    pub(crate) fn new(prefix: Vec<u8>, inner: S) -> Self {
        Self {
            prefix,
            position: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let pending = this.prefix.get(this.position..).unwrap_or_default();
        if !pending.is_empty() {
            let n = pending.len().min(buf.remaining());
            buf.put_slice(pending.get(..n).unwrap_or_default());
            this.position += n;
            if this.position >= this.prefix.len() {
                this.prefix = Vec::new();
                this.position = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt as _;

    #[tokio::test]
    async fn reads_the_header_and_keeps_what_follows() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        client
            .write_all(b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 25\r\nEHLO x\r\n")
            .await
            .unwrap();
        let proxied = read_header(&mut server, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(
            proxied.addresses,
            Some((
                "192.0.2.7:40000".parse().unwrap(),
                "198.51.100.1:25".parse().unwrap()
            ))
        );
        let mut stream = Prefixed::new(proxied.rest, server);
        client.write_all(b"QUIT\r\n").await.unwrap();
        let mut got = vec![0; 14];
        stream.read_exact(&mut got).await.unwrap();
        assert_eq!(got, b"EHLO x\r\nQUIT\r\n");
    }

    #[tokio::test]
    async fn refuses_garbage_silence_and_early_close() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(b"EHLO x\r\n").await.unwrap();
        let e = read_header(&mut server, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            matches!(e, ProxyFailure::Header(ProxyError::NotProxy)),
            "{e}"
        );

        let (_client, mut server) = tokio::io::duplex(1024);
        let e = read_header(&mut server, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(matches!(e, ProxyFailure::Timeout), "{e}");

        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(b"PROXY TCP4 1.2.3.4").await.unwrap();
        drop(client);
        let e = read_header(&mut server, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(e, ProxyFailure::Closed), "{e}");
    }
}
