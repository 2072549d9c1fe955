//! The binary's side of systemd: socket activation (`LISTEN_FDS`, `LISTEN_PID`,
//! `LISTEN_FDNAMES`) and the notification protocol (`NOTIFY_SOCKET`: `READY=1`
//! once listening, `STOPPING=1` on a stop signal, `WATCHDOG=1` every half of
//! `WATCHDOG_USEC`). Without those variables everything here does nothing, so
//! the same binary runs under systemd, another supervisor or a shell.
//!
//! What mode each inherited socket serves is the library's business
//! ([`InheritedListener::spec`](net_receiver::server::InheritedListener::spec)).

use std::time::Duration;

use anyhow::Context as _;
use net_receiver::server::InheritedListener;
use sd_notify::NotifyState;

/// The sockets systemd passed us, each with its `FileDescriptorName=`. Call it
/// first in `main`, before any thread starts: it removes `LISTEN_FDS` and
/// `LISTEN_PID` from the environment (so hooks' child processes do not take the
/// sockets for theirs) and marks the descriptors close-on-exec. Sockets meant
/// for another process (`LISTEN_PID` is not ours) are ignored.
pub(crate) fn inherited_listeners() -> anyhow::Result<Vec<InheritedListener>> {
    let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
    let mut names = names.split(':').map(|name| match name {
        "" | "unknown" => None,
        name => Some(name.to_owned()),
    });
    let mut fds = listenfd::ListenFd::from_env();
    let mut inherited = Vec::with_capacity(fds.len());
    for index in 0..fds.len() {
        let name = names.next().flatten();
        let what = || {
            format!(
                "socket activation: descriptor {} ({}) is not a listening TCP socket",
                3 + index,
                name.as_deref().unwrap_or("unnamed")
            )
        };
        if let Some(listener) = fds.take_tcp_listener(index).with_context(what)? {
            inherited.push(InheritedListener { listener, name });
        }
    }
    Ok(inherited)
}

/// Tells systemd we are listening (`READY=1`), with our pid.
pub(crate) fn notify_ready() {
    notify(&[NotifyState::Ready, NotifyState::MainPid(std::process::id())]);
}

/// Tells systemd we are shutting down (`STOPPING=1`).
pub(crate) fn notify_stopping() {
    notify(&[NotifyState::Stopping]);
}

/// With `WATCHDOG_USEC` set (systemd's `WatchdogSec=`) and meant for us, sends
/// `WATCHDOG=1` every half of it from a task on the current runtime. That
/// runtime also runs the signals and reloads, so a stuck one stops the pings
/// and systemd restarts us.
pub(crate) fn spawn_watchdog() {
    let Some(timeout) = sd_notify::watchdog_enabled() else {
        return;
    };
    let every = (timeout / 2).max(Duration::from_millis(1));
    tracing::info!("systemd watchdog: a ping every {every:?}");
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        loop {
            ticks.tick().await;
            notify(&[NotifyState::Watchdog]);
        }
    });
}

/// Sends `states` if `NOTIFY_SOCKET` is set; a failure is logged, never fatal
/// (the service manager decides what a missing notification means).
fn notify(states: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!("cannot notify systemd: {error}");
    }
}
