//! A no-op milter for the benchmark (bench/milter.sh): negotiates version 6
//! asking for nothing but every step, and answers continue to every command
//! (accept-nothing, change-nothing), so what it costs is our client's side.
//! With `--no-replies` it asks, as many real milters do, for no answer but
//! the one to end of message (`SMFIP_NR_*`). Prints `listening on
//! inet:127.0.0.1:PORT` (or `unix:PATH`).
//!
//! Usage: `noop_milter [PORT | unix:PATH] [--no-replies]` (0: any free port).

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, UnixListener};

/// The largest frame read (a body chunk is at most 65535 bytes).
const MAX_FRAME: usize = 1 << 20;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let address = std::env::args().nth(1).unwrap_or_default();
    let no_replies = std::env::args().any(|a| a == "--no-replies");
    if let Some(path) = address.strip_prefix("unix:") {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        println!("listening on unix:{path}");
        loop {
            let (stream, _) = listener.accept().await?;
            let (read, write) = stream.into_split();
            tokio::spawn(serve(read, write, no_replies));
        }
    }
    let port: u16 = address.parse().unwrap_or(0);
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on inet:{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        tokio::spawn(serve(read, write, no_replies));
    }
}

/// No reply to CONNECT, HELO, MAIL, RCPT, DATA, header fields, EOH, body.
const NO_REPLIES: u32 = 0x1000 | 0x2000 | 0x4000 | 0x8000 | 0x10000 | 0x80 | 0x40000 | 0x80000;

async fn serve(read: impl AsyncRead + Unpin, mut write: impl AsyncWrite + Unpin, no_replies: bool) {
    let mut read = BufReader::with_capacity(64 * 1024, read);
    let mut frame = Vec::new();
    loop {
        let Ok(len) = read.read_u32().await else {
            return;
        };
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len == 0 || len > MAX_FRAME {
            return;
        }
        frame.resize(len, 0);
        if read.read_exact(&mut frame).await.is_err() {
            return;
        }
        let negotiation;
        let answer: &[u8] = match frame[0] {
            // Version 6, no actions, every step wanted (and answered unless
            // --no-replies).
            b'O' => {
                let protocol = if no_replies { NO_REPLIES } else { 0 };
                let mut data = vec![0, 0, 0, 13, b'O', 0, 0, 0, 6, 0, 0, 0, 0];
                data.extend_from_slice(&protocol.to_be_bytes());
                negotiation = data;
                &negotiation
            }
            // Macros, abort and quit are not answered.
            b'D' | b'A' => continue,
            b'Q' => return,
            b'E' => &[0, 0, 0, 1, b'c'],
            _ if no_replies => continue,
            _ => &[0, 0, 0, 1, b'c'],
        };
        if write.write_all(answer).await.is_err() {
            return;
        }
    }
}
