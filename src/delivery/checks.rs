//! The start-up probes of the targets ([`Deliver::check`](super::Deliver::check),
//! run by `net-receiver check-config`) that take more than a line: a Maildir
//! is written to, an LMTP server is greeted. Nothing is delivered.
//!
//! - Maildir: a file is created, written, fsynced and removed in `tmp/`, and
//!   `new/` and `cur/` must be directories.
//! - LMTP: connect, read the greeting, `LHLO`, `QUIT` — the replies read by
//!   the sans-IO [`ReplyReader`] of the LMTP client.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::lmtp::LmtpAddress;
use crate::protocol::lmtp::{ReplyReader, ServerReply};

/// The longest a probe waits for a target (or its target's own, shorter,
/// timeout): a check says whether it answers, not how patient delivery is.
pub(super) const CHECK_LIMIT: Duration = Duration::from_secs(10);

/// Checks that the Maildir at `root` takes a file (created in `tmp/`, then removed).
pub(super) async fn maildir(root: &Path) -> Result<String, String> {
    let root = root.to_owned();
    let probe = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        for sub in ["new", "cur"] {
            let dir = root.join(sub);
            if !std::fs::metadata(&dir)?.is_dir() {
                return Err(std::io::Error::other(format!(
                    "{} is not a directory",
                    dir.display()
                )));
            }
        }
        let file = root
            .join("tmp")
            .join(format!(".check-config.{}", std::process::id()));
        let written = std::fs::write(&file, b"net-receiver check-config\n")
            .and_then(|()| std::fs::File::open(&file)?.sync_all());
        let removed = std::fs::remove_file(&file);
        written.and(removed)
    });
    match probe.await {
        Ok(Ok(())) => Ok("writable (a file written and removed in tmp/)".to_owned()),
        Ok(Err(error)) => Err(format!("not writable: {error}")),
        Err(error) => Err(format!("the check failed: {error}")),
    }
}

/// Connects to the LMTP server, reads its greeting, says `LHLO name` and
/// `QUIT`, all within `timeout` (at most [`CHECK_LIMIT`]).
pub(super) async fn lmtp(
    address: &LmtpAddress,
    name: &str,
    timeout: Duration,
) -> Result<String, String> {
    let talk = async {
        match address {
            LmtpAddress::Tcp(host_port) => {
                let mut stream = tokio::net::TcpStream::connect(host_port.as_str())
                    .await
                    .map_err(|e| format!("cannot connect: {e}"))?;
                greet(&mut stream, name).await
            }
            LmtpAddress::Unix(path) => {
                let mut stream = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(|e| format!("cannot connect: {e}"))?;
                greet(&mut stream, name).await
            }
        }
    };
    let timeout = timeout.min(CHECK_LIMIT);
    tokio::time::timeout(timeout, talk)
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
}

async fn greet<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    name: &str,
) -> Result<String, String> {
    let mut input = Vec::new();
    let mut reader = ReplyReader::default();
    let greeting = read_reply(stream, &mut reader, &mut input).await?;
    if greeting.code != 220 {
        return Err(format!("greeting: {greeting}"));
    }
    stream
        .write_all(format!("LHLO {name}\r\n").as_bytes())
        .await
        .map_err(|e| format!("writing LHLO: {e}"))?;
    let lhlo = read_reply(stream, &mut reader, &mut input).await?;
    // QUIT; its answer is not needed.
    let _ = stream.write_all(b"QUIT\r\n").await;
    if lhlo.code != 250 {
        return Err(format!("LHLO answered {lhlo}"));
    }
    Ok(format!("greeted, LHLO answered {}", lhlo.code))
}

/// Reads until one whole reply; what follows it stays in `input`.
async fn read_reply<S: AsyncRead + Unpin>(
    stream: &mut S,
    reader: &mut ReplyReader,
    input: &mut Vec<u8>,
) -> Result<ServerReply, String> {
    loop {
        let (used, reply) = reader.read(input).map_err(|e| e.to_string())?;
        input.drain(..used.min(input.len()));
        if let Some(reply) = reply {
            return Ok(reply);
        }
        let mut chunk = [0u8; 4096];
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("reading: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection".to_owned());
        }
        input.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_maildir_is_writable_or_says_why_not() {
        let dir = tempfile::tempdir().unwrap();
        let opened = super::super::Maildir::open(dir.path()).unwrap();
        let text = maildir(opened.root()).await.unwrap();
        assert!(text.contains("writable"), "{text}");
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
        std::fs::remove_dir(dir.path().join("new")).unwrap();
        let error = maildir(dir.path()).await.unwrap_err();
        assert!(error.contains("not writable"), "{error}");
    }

    #[tokio::test]
    async fn an_lmtp_server_is_greeted_and_a_wrong_one_named() {
        for (script, want) in [
            (
                &b"220 lmtp ready\r\n250-lmtp\r\n250 PIPELINING\r\n"[..],
                Ok("LHLO answered 250"),
            ),
            (b"421 busy\r\n", Err("greeting: 421 busy")),
            (b"220 ok\r\n500 what\r\n", Err("LHLO answered 500 what")),
            (b"220 ok\r\n", Err("closed the connection")),
            (b"HTTP/1.1 400\r\n", Err("malformed")),
        ] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = LmtpAddress::Tcp(listener.local_addr().unwrap().to_string());
            let server = tokio::spawn(async move {
                let (mut stream, _) = listener.accept().await.unwrap();
                // The greeting, then the rest after our LHLO, then close.
                let mut lines = script.split_inclusive(|&b| b == b'\n');
                let greeting = lines.next().unwrap_or_default();
                let rest: Vec<u8> = lines.flatten().copied().collect();
                let _ = stream.write_all(greeting).await;
                let mut buf = [0u8; 256];
                if matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {
                    let _ = stream.write_all(&rest).await;
                }
            });
            let result = lmtp(&address, "mx.test", Duration::from_secs(10)).await;
            match (result, want) {
                (Ok(text), Ok(want)) => assert!(text.contains(want), "{text}"),
                (Err(error), Err(want)) => assert!(error.contains(want), "{error}"),
                (result, want) => panic!("{result:?}, expected {want:?}"),
            }
            server.abort();
        }
    }
}
