//! Accepting: the listening sockets (with a deep backlog), the worker threads
//! that each accept from all of them on a runtime of their own, and the drain
//! of open connections within `shutdown_grace` when the server stops.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::{Shared, connection};
use crate::config::ListenerSpec;
use crate::receiver::Receiver;
use std::net::SocketAddr;

/// Starts `threads` worker threads, each serving every listener on a runtime of
/// its own; each returned receiver completes when its thread has finished.
pub(super) fn spawn_workers<R: Receiver>(
    threads: usize,
    listeners: Vec<(TcpListener, ListenerSpec)>,
    shared: &Arc<Shared<R>>,
    stop: &watch::Receiver<bool>,
) -> Vec<tokio::sync::oneshot::Receiver<()>> {
    let sockets: Vec<(std::net::TcpListener, ListenerSpec)> = listeners
        .into_iter()
        .filter_map(|(listener, spec)| match listener.into_std() {
            Ok(socket) => Some((socket, spec)),
            Err(error) => {
                tracing::error!("listener {} unusable: {error}", spec.addr);
                None
            }
        })
        .collect();
    let mut finished = Vec::with_capacity(threads);
    for index in 0..threads {
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let sockets: Vec<_> = sockets
            .iter()
            .filter_map(|(socket, spec)| match socket.try_clone() {
                Ok(socket) => Some((socket, *spec)),
                Err(error) => {
                    tracing::error!("listener {} unusable: {error}", spec.addr);
                    None
                }
            })
            .collect();
        let (shared, stop) = (Arc::clone(shared), stop.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("smtp-worker-{index}"))
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => {
                        runtime.block_on(async move {
                            let listeners = sockets
                                .into_iter()
                                .filter_map(|(socket, spec)| {
                                    TcpListener::from_std(socket).ok().map(|l| (l, spec))
                                })
                                .collect();
                            serve_listeners(listeners, shared, stop).await;
                        });
                        runtime.shutdown_timeout(Duration::from_secs(1));
                    }
                    Err(error) => tracing::error!("worker thread {index}: no runtime: {error}"),
                }
                let _ = done_tx.send(());
            });
        match spawned {
            Ok(_) => finished.push(done_rx),
            Err(error) => tracing::error!("cannot start worker thread {index}: {error}"),
        }
    }
    finished
}

/// Accepts on every listener until `stop` turns true; then stops accepting, and
/// waits for the connections (which see `stop` too) within `shutdown_grace`.
pub(super) async fn serve_listeners<R: Receiver>(
    listeners: Vec<(TcpListener, ListenerSpec)>,
    shared: Arc<Shared<R>>,
    mut stop: watch::Receiver<bool>,
) {
    // A session's read timer may be due before every timer the driver parked
    // with, or be the only one: the anchor (a timer always due within a
    // second) spares the driver a wake-up through its eventfd for each.
    crate::timers::anchor();
    let connections = Arc::new(std::sync::Mutex::new(JoinSet::new()));
    let mut accepting = JoinSet::new();
    for (listener, spec) in listeners {
        // The bound address (the real port when 0 was asked for).
        let spec = ListenerSpec {
            addr: listener.local_addr().unwrap_or(spec.addr),
            ..spec
        };
        let shared = Arc::clone(&shared);
        let connections = Arc::clone(&connections);
        let stop = stop.clone();
        accepting.spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, remote)) => {
                        // On the heap from the start: the task then moves a
                        // pointer, not the connection's ~4 KiB of state, through
                        // the runtime's spawn, its stage changes and the join.
                        let task = Box::pin(connection(
                            stream,
                            remote,
                            spec,
                            Arc::clone(&shared),
                            stop.clone(),
                        ));
                        if let Ok(mut set) = connections.lock() {
                            while set.try_join_next().is_some() {}
                            set.spawn(task);
                        }
                    }
                    Err(error) => {
                        // EMFILE and friends: wait instead of spinning.
                        tracing::warn!("accept failed: {error}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
    }
    // Until stop is true, or its sender is gone.
    let _ = stop.wait_for(|stopping| *stopping).await;
    accepting.abort_all();
    let mut set = match connections.lock() {
        Ok(mut set) => std::mem::take(&mut *set),
        Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
    };
    let grace = shared.settings.shutdown_grace;
    let drained =
        tokio::time::timeout(grace, async { while set.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            "closing {} connections still open after the grace period",
            set.len()
        );
        set.abort_all();
    }
}

/// Connections the kernel may hold ready for `accept` (the kernel caps it at
/// `net.core.somaxconn`). With the std/mio default of 128, a burst of connections
/// overflowed the queue: the kernel dropped the handshakes beyond it, and those
/// clients waited for their retransmissions (1 s, 3 s, 7 s, …) before they even
/// got their 421; in a flood of 10,000, half got nothing within 20 s.
const LISTEN_BACKLOG: u32 = 1024;

/// A listening socket on `addr` (address reuse on, as `TcpListener::bind` does),
/// with `TCP_NODELAY`: replies go out at once, even to a pipelining client
/// whose ACK of the previous reply is still delayed. Linux hands the option
/// down to every accepted socket, which spares a `setsockopt` per connection
/// (see [`NODELAY_INHERITED`]).
pub(super) fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Whether an accepted socket inherits `TCP_NODELAY` from its listener (Linux
/// copies the listener's options into each new connection); elsewhere each
/// connection sets it itself.
pub(super) const NODELAY_INHERITED: bool = cfg!(target_os = "linux");
