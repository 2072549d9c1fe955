//! Small SMTP servers that play a domain's mail exchanger for the callout
//! tests: each knows some users (550 5.1.1 for the others), accepts every
//! recipient, tempfails every recipient, or never says a word. They run on a
//! thread and runtime of their own on a loopback address (127.0.0.x), count
//! the connections they get and keep the RCPT lines they saw; dropping one
//! stops it. A group shares one port on several addresses, since a receiver
//! asks every exchanger on the same `callout_port`.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// How an exchanger answers RCPT TO.
#[derive(Debug, Clone)]
pub(crate) enum Behaviour {
    /// 250 for these local parts, 550 5.1.1 for the others.
    Knows(Vec<&'static str>),
    /// 250 for anything.
    AcceptAll,
    /// 451 4.3.0 for anything.
    Tempfail,
    /// Accepts the connection and never writes.
    Silent,
}

/// What the exchanger saw.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    rcpts: Mutex<Vec<String>>,
}

/// A running exchanger; stopped when dropped.
pub(crate) struct Exchanger {
    pub(crate) addr: SocketAddr,
    seen: Arc<Seen>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Exchanger {
    /// Connections accepted so far.
    pub(crate) fn connections(&self) -> usize {
        self.seen.connections.load(Ordering::SeqCst)
    }

    /// The RCPT TO lines received so far.
    pub(crate) fn rcpts(&self) -> Vec<String> {
        self.seen.rcpts.lock().unwrap().clone()
    }

    fn start(listener: std::net::TcpListener, behaviour: Behaviour, delay: Duration) -> Self {
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let seen = Arc::new(Seen::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let counted = Arc::clone(&seen);
        let thread = std::thread::Builder::new()
            .name(format!("exchanger-{addr}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    let listener = TcpListener::from_std(listener).unwrap();
                    let serve = async {
                        loop {
                            let Ok((stream, _)) = listener.accept().await else {
                                continue;
                            };
                            counted.connections.fetch_add(1, Ordering::SeqCst);
                            let seen = Arc::clone(&counted);
                            let behaviour = behaviour.clone();
                            tokio::spawn(async move {
                                let _ = session(stream, &behaviour, delay, &seen).await;
                            });
                        }
                    };
                    tokio::select! {
                        () = serve => {}
                        _ = stopped => {}
                    }
                });
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .unwrap();
        Self {
            addr,
            seen,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Exchanger {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts one exchanger per `(address, behaviour)`, all on the same port
/// (returned); `delay` holds each RCPT reply back (to make callouts overlap).
pub(crate) fn start_group(
    specs: &[(Ipv4Addr, Behaviour)],
    delay: Duration,
) -> (u16, Vec<Exchanger>) {
    for _ in 0..50 {
        let Some((first_ip, _)) = specs.first() else {
            return (0, Vec::new());
        };
        let first = std::net::TcpListener::bind((*first_ip, 0)).unwrap();
        let port = first.local_addr().unwrap().port();
        let mut listeners = vec![first];
        for (ip, _) in specs.iter().skip(1) {
            match std::net::TcpListener::bind((*ip, port)) {
                Ok(listener) => listeners.push(listener),
                Err(_) => break,
            }
        }
        if listeners.len() == specs.len() {
            let servers = listeners
                .into_iter()
                .zip(specs)
                .map(|(listener, (_, behaviour))| {
                    Exchanger::start(listener, behaviour.clone(), delay)
                })
                .collect();
            return (port, servers);
        }
    }
    panic!("no port free on every address of {specs:?}");
}

async fn session(
    stream: TcpStream,
    behaviour: &Behaviour,
    delay: Duration,
    seen: &Seen,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    if matches!(behaviour, Behaviour::Silent) {
        let mut sink = Vec::new();
        // Until the client gives up (bounded by its own timeouts).
        while lines.read_until(b'\n', &mut sink).await? > 0 {
            sink.clear();
        }
        return Ok(());
    }
    write.write_all(b"220 exchanger.test ESMTP\r\n").await?;
    let mut line = String::new();
    for _ in 0..100 {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_owned();
        let upper = command.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") {
            "250-exchanger.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n".into()
        } else if upper.starts_with("HELO") || upper.starts_with("MAIL") || upper == "RSET" {
            "250 2.0.0 Ok\r\n".into()
        } else if upper.starts_with("RCPT TO:") {
            seen.rcpts.lock().unwrap().push(command.clone());
            tokio::time::sleep(delay).await;
            let local = command
                .get(8..)
                .unwrap_or("")
                .trim_matches(['<', '>', ' '])
                .split('@')
                .next()
                .unwrap_or("")
                .to_owned();
            match behaviour {
                Behaviour::Knows(users) if users.contains(&local.as_str()) => {
                    "250 2.1.5 Ok\r\n".into()
                }
                Behaviour::Knows(_) => "550 5.1.1 <unknown>: Recipient address rejected\r\n".into(),
                Behaviour::AcceptAll => "250 2.1.5 Ok\r\n".into(),
                _ => "451 4.3.0 Try again later\r\n".into(),
            }
        } else if upper == "QUIT" {
            write.write_all(b"221 2.0.0 Bye\r\n").await?;
            return Ok(());
        } else {
            "502 5.5.2 Not here\r\n".into()
        };
        write.write_all(reply.as_bytes()).await?;
    }
    Ok(())
}
