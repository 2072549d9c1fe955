//! A no-op milter for the benchmark (bench/milter.sh): negotiates version 6
//! asking for nothing but every step, and answers continue to every command
//! (accept-nothing, change-nothing), so what it costs is our client's side.
//! With `--no-replies` it asks, as many real milters do, for no answer but
//! the one to end of message (`SMFIP_NR_*`). Prints `listening on
//! inet:127.0.0.1:PORT`.
//!
//! Usage: `noop_milter [PORT] [--no-replies]` (0: any free port).

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The largest frame read (a body chunk is at most 65535 bytes).
const MAX_FRAME: usize = 1 << 20;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let no_replies = std::env::args().any(|a| a == "--no-replies");
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on inet:{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(serve(stream, no_replies));
    }
}

/// No reply to CONNECT, HELO, MAIL, RCPT, DATA, header fields, EOH, body.
const NO_REPLIES: u32 = 0x1000 | 0x2000 | 0x4000 | 0x8000 | 0x10000 | 0x80 | 0x40000 | 0x80000;

async fn serve(stream: TcpStream, no_replies: bool) {
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
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
