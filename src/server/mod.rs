//! The server layer (the Ruby gem net-server's job): binds the listeners, accepts
//! connections within the connection limits, does implicit TLS and the PROXY
//! header, and runs each connection in its own task (on the caller's runtime or
//! on worker threads) until a graceful shutdown. Bytes move in `conn.rs`; the
//! protocol lives in [`crate::protocol`].

mod accept;
mod build;
mod check;
mod conn;
mod inherited;
mod limits;
pub mod process;
mod proxy;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::auth::PasswordLookup;
use crate::config::{ListenerMode, ListenerSpec, Settings};
use crate::delivery::Deliver;
use crate::dns::Dns;
use crate::lockout::Lockout;
use crate::metrics::{self, Metrics};
use crate::protocol::Reply;
use crate::receiver::{Receiver, Services};
use crate::session::ConnectionInfo;
use accept::{listen, serve_listeners, spawn_workers};
pub use build::{Reloader, default_workers, stop_signal};
pub use check::{CheckLine, CheckStatus, ConfigCheck, check_config};
pub use inherited::{InheritedListener, mode_named};
use limits::ConnectionLimits;
pub use tls::{CertificateSource, TlsError, TlsHandle};

/// The server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A listening address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why (e.g. address in use, permission denied).
        source: std::io::Error,
    },
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The TLS certificate or key could not be loaded or generated.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The AUTH password store could not be opened.
    #[error(transparent)]
    Passwords(#[from] crate::auth::StoreError),
    /// The DNS resolver could not be set up.
    #[error("DNS: {0}")]
    Dns(#[from] crate::dns::DnsError),
    /// The lockout store could not be set up.
    #[error("lockout_store: {0}")]
    Lockout(#[from] crate::lockout::StoreError),
    /// A process duty failed: working directory, user or group, pid file,
    /// privilege drop.
    #[error(transparent)]
    Process(#[from] process::ProcessError),
    /// The Maildir could not be created or opened.
    #[error("cannot use Maildir {}", path.display())]
    Maildir {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The spool directory could not be created, read or recovered.
    #[error("cannot use spool {}", path.display())]
    Spool {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration asks for something this call cannot do.
    #[error("{0}")]
    Unsupported(&'static str),
}

/// A bound SMTP server, generic over its hooks.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use net_receiver::{Config, Maildir, Receiver, Server};
/// struct Mine;
/// impl Receiver for Mine {}
/// let config = Config::default();
/// let server = Server::bind(&config.listeners()?, config.settings()?, Mine)
///     .await?
///     .with_delivery(Maildir::open("mail")?);
/// server.run_until(async { let _ = tokio::signal::ctrl_c().await; }).await;
/// # Ok(()) }
/// ```
pub struct Server<R> {
    shared: Arc<Shared<R>>,
    listeners: Vec<(TcpListener, ListenerSpec)>,
    /// Threads with a runtime of their own; 0: the caller's runtime.
    worker_threads: usize,
    /// Removed when the server has stopped ([`Server::from_config`] with `pid_file`).
    pid_file: Option<process::PidFile>,
    /// Where `/metrics` is served ([`Server::with_metrics_listener`]).
    metrics_listener: Option<TcpListener>,
}

/// What every connection task needs.
struct Shared<R> {
    receiver: Arc<R>,
    settings: Arc<Settings>,
    services: Services,
    tls: Option<Arc<TlsHandle>>,
    limits: ConnectionLimits,
    /// One "refused: too many connections" line per second at most.
    refusal_log: limits::LogThrottle,
}

impl<R: Receiver> Server<R> {
    /// Binds every listener (all or nothing). Accepts `&[SocketAddr]` (plain SMTP
    /// listeners) or `&[ListenerSpec]`.
    pub async fn bind<L: Into<ListenerSpec>>(
        listeners: impl IntoIterator<Item = L>,
        settings: Settings,
        receiver: R,
    ) -> Result<Self, ServerError> {
        let mut bound = Vec::new();
        for spec in listeners {
            let spec = spec.into();
            let listener = listen(spec.addr).map_err(|source| ServerError::Bind {
                addr: spec.addr,
                source,
            })?;
            bound.push((listener, spec));
        }
        Ok(Self::serving(bound, settings, receiver))
    }

    /// A server on listeners that are bound already.
    fn serving(bound: Vec<(TcpListener, ListenerSpec)>, settings: Settings, receiver: R) -> Self {
        let limits = ConnectionLimits::new(
            settings.max_connections,
            settings.max_connections_per_ip,
            &settings.per_ip_limit_exceptions,
        )
        .with_ipv6_prefix_length(settings.ipv6_prefix_length);
        let lockout = Lockout::in_memory(settings.lockout_policy);
        Self {
            shared: Arc::new(Shared {
                receiver: Arc::new(receiver),
                settings: Arc::new(settings),
                services: Services {
                    delivery: None,
                    lockout: Some(Arc::new(lockout)),
                    passwords: None,
                    dns: None,
                    policies: Arc::new([]),
                    metrics: None,
                },
                tls: None,
                limits,
                refusal_log: limits::LogThrottle::default(),
            }),
            listeners: bound,
            worker_threads: 0,
            pid_file: None,
            metrics_listener: None,
        }
    }

    /// Serves connections on `threads` threads of their own, each running a
    /// single-threaded tokio runtime that accepts from the same listening sockets
    /// (thread per core: a session's wake-ups never cross threads, which costs
    /// far less CPU per message than a work-stealing pool). Hooks then run on
    /// those threads. Without it (or with 0) connections are tasks on the runtime
    /// that calls [`Server::run_until`].
    #[must_use]
    pub fn with_worker_threads(mut self, threads: usize) -> Self {
        self.worker_threads = threads;
        self
    }

    /// Where `defaults::received` stores accepted mail.
    #[must_use]
    pub fn with_delivery(mut self, delivery: impl Deliver) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.services.delivery = Some(Arc::new(delivery));
        }
        self
    }

    /// Where `defaults::password` finds stored secrets for AUTH.
    #[must_use]
    pub fn with_passwords(mut self, passwords: Arc<dyn PasswordLookup>) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.services.passwords = Some(passwords);
        }
        self
    }

    /// The resolver for the DNS checks (PTR/iprev, EHLO, MX, SPF, DKIM, DMARC,
    /// ARC, DNSBL). Without it no lookups are made.
    #[must_use]
    pub fn with_dns(mut self, dns: Arc<Dns>) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            // The built-in checks are the first layer, whatever was added before.
            let checks = Arc::new(crate::policy::DnsChecks::new(Arc::clone(&dns)));
            let mut policies = shared.services.policies.to_vec();
            policies.insert(0, checks);
            shared.services.policies = policies.into();
            shared.services.dns = Some(dns);
        }
        self
    }

    /// Adds a policy layer after the ones already there (see [`crate::policy`]
    /// for the order: built-in checks, HTTP hooks, milters, then the `Receiver`).
    #[must_use]
    pub fn with_policy(mut self, policy: Arc<dyn crate::policy::Policy>) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            let mut policies = shared.services.policies.to_vec();
            policies.push(policy);
            shared.services.policies = policies.into();
        }
        self
    }

    /// Where failures are counted. By default an in-memory store with the
    /// settings' policy; `None` turns the lockout off.
    #[must_use]
    pub fn with_lockout(mut self, lockout: Option<Arc<Lockout>>) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.services.lockout = lockout;
        }
        self
    }

    /// The TLS configuration for STARTTLS and implicit-TLS listeners. Without it,
    /// STARTTLS is not offered and `smtps` connections are closed.
    #[must_use]
    pub fn with_tls(mut self, tls: Arc<TlsHandle>) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.tls = Some(tls);
        }
        self
    }

    /// Where the sessions count what happens (see [`crate::metrics`]).
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.services.metrics = Some(metrics);
        }
        self
    }

    /// Serves `GET /metrics` on `listener` while the server runs, on the
    /// runtime that calls [`Server::run_until`]; needs [`Server::with_metrics`]
    /// (without it the listener is closed).
    #[must_use]
    pub fn with_metrics_listener(mut self, listener: TcpListener) -> Self {
        self.metrics_listener = Some(listener);
        self
    }

    /// What [`Reloader::reload`] re-reads: the TLS certificate and the password
    /// store this server was given. Take it before [`Server::run_until`].
    pub fn reloader(&self) -> Reloader {
        Reloader {
            tls: self.shared.tls.clone(),
            passwords: self.shared.services.passwords.clone(),
        }
    }

    /// The bound addresses (with the real port when port 0 was asked for), in the
    /// order the listeners were given.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|(l, _)| l.local_addr().ok())
            .collect()
    }

    /// Serves until `shutdown` completes. Then it stops accepting, tells idle
    /// sessions 421 4.3.2, lets messages in progress finish within
    /// `shutdown_grace`, and returns.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let endpoint = match (self.metrics_listener, &self.shared.services.metrics) {
            (Some(listener), Some(metrics)) => Some(tokio::spawn(crate::metrics::serve(
                listener,
                Arc::clone(metrics),
                stop_rx.clone(),
            ))),
            _ => None,
        };
        let _endpoint = endpoint.map(AbortOnDrop);
        if self.worker_threads == 0 {
            let serving = serve_listeners(self.listeners, self.shared, stop_rx);
            let stopping = async {
                shutdown.await;
                let _ = stop_tx.send(true);
            };
            tokio::join!(serving, stopping);
            return;
        }
        let workers = spawn_workers(self.worker_threads, self.listeners, &self.shared, &stop_rx);
        shutdown.await;
        let _ = stop_tx.send(true);
        for done in workers {
            // An error means the thread is gone already (it could not start).
            let _ = done.await;
        }
        drop(self.pid_file);
    }
}

/// Ends the `/metrics` task with the server.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn connection<R: Receiver>(
    stream: TcpStream,
    remote: SocketAddr,
    spec: ListenerSpec,
    shared: Arc<Shared<R>>,
    stop: watch::Receiver<bool>,
) {
    // A listener on one address is that address; a wildcard one asks the socket.
    let local = if spec.addr.ip().is_unspecified() || spec.addr.port() == 0 {
        match stream.local_addr() {
            Ok(local) => local,
            Err(_) => return,
        }
    } else {
        spec.addr
    };
    if !accept::NODELAY_INHERITED {
        let _ = stream.set_nodelay(true);
    }
    let info = ConnectionInfo {
        local,
        remote,
        listener: spec,
    };
    if !spec.proxy_protocol {
        return handle(stream, info, spec, shared, stop).await;
    }
    let settings = &shared.settings;
    if !settings
        .proxy_trusted_networks
        .iter()
        .any(|net| net.contains(remote.ip()))
    {
        tracing::warn!("connection from {remote} closed: not trusted to send a PROXY header");
        count_refusal(&shared, metrics::Refused::UntrustedProxy);
        return;
    }
    // Boxed: a second copy of the session's state machine, for the prefixed stream.
    Box::pin(proxied(stream, remote, info, spec, shared, stop)).await;
}

/// A trusted proxy's connection: the PROXY header first, then the session.
async fn proxied<R: Receiver>(
    mut stream: TcpStream,
    remote: SocketAddr,
    info: ConnectionInfo,
    spec: ListenerSpec,
    shared: Arc<Shared<R>>,
    stop: watch::Receiver<bool>,
) {
    let timeout = shared.settings.tls_handshake_timeout;
    match proxy::read_header(&mut stream, timeout).await {
        Ok(proxied) => {
            let info = match proxied.addresses {
                Some((remote, local)) => ConnectionInfo {
                    local,
                    remote,
                    ..info
                },
                None => info,
            };
            let stream = proxy::Prefixed::new(proxied.rest, stream);
            handle(stream, info, spec, shared, stop).await;
        }
        Err(error) => {
            tracing::warn!("connection from {remote} closed: {error}");
            count_refusal(&shared, metrics::Refused::BadProxyHeader);
        }
    }
}

/// Serves one admitted-or-refused connection whose addresses are known.
async fn handle<R, S>(
    mut stream: S,
    info: ConnectionInfo,
    spec: ListenerSpec,
    shared: Arc<Shared<R>>,
    stop: watch::Receiver<bool>,
) where
    R: Receiver,
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let settings = &shared.settings;
    let remote = info.remote;
    let Some(_slot) = shared.limits.admit(remote.ip()) else {
        count_refusal(&shared, metrics::Refused::TooManyConnections);
        if let Some(suppressed) = shared.refusal_log.admit() {
            tracing::warn!(
                name: "refused",
                remote = %remote.ip(),
                // An implicit-TLS client gets no 421, just the close.
                code = (spec.mode != ListenerMode::Smtps).then_some(421u16),
                "connection from {remote} refused: too many connections \
                 ({suppressed} more refused since the last such line)"
            );
        }
        if spec.mode == ListenerMode::Smtps {
            // Its client expects a TLS handshake: plaintext would be garbage to it.
            return;
        }
        let mut out = Vec::new();
        Reply::new(
            421,
            (4, 7, 0),
            format!(
                "{} Too many connections, try again later",
                settings.server_name
            ),
        )
        .write_to(&mut out);
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&out)).await;
        return;
    };
    let conn_id = NEXT_CONNECTION_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let span = tracing::info_span!("connection", conn_id, remote_ip = %remote.ip());
    tracing::Instrument::instrument(conn::admitted(stream, info, spec, shared, stop), span).await;
}

/// The `conn_id` of the next connection (in the JSON logs).
static NEXT_CONNECTION_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
fn count_refusal<R>(shared: &Shared<R>, reason: metrics::Refused) {
    if let Some(m) = &shared.services.metrics {
        m.connection_refused(reason);
    }
}

fn tls_failure(metrics: Option<&Metrics>, timed_out: bool) {
    if let Some(m) = metrics {
        m.tls_handshake_failed(timed_out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Plain;
    impl Receiver for Plain {}

    /// An idle session costs its task's future: the rare, large states (TLS,
    /// PROXY, DNS lookups) are boxed so that it stays a few KiB (issue 6 asks for
    /// at most 8 KiB per idle session in all).
    #[tokio::test]
    async fn an_idle_connection_task_is_small() -> std::io::Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let client = TcpStream::connect(addr).await?;
        let settings = crate::Config::default()
            .settings()
            .map_err(std::io::Error::other)?;
        let shared = Arc::new(Shared {
            receiver: Arc::new(Plain),
            settings: Arc::new(settings),
            services: Services {
                delivery: None,
                lockout: None,
                passwords: None,
                dns: None,
                policies: Arc::new([]),
                metrics: None,
            },
            tls: None,
            limits: ConnectionLimits::new(10, 10, &[]),
            refusal_log: limits::LogThrottle::default(),
        });
        let (_stop_tx, stop) = watch::channel(false);
        let task = connection(client, addr, addr.into(), shared, stop);
        let size = std::mem::size_of_val(&task);
        assert!(size <= 4 * 1024, "the connection future takes {size} bytes");
        Ok(())
    }

    /// Replies are never held back by Nagle's algorithm: every accepted socket
    /// has `TCP_NODELAY`, inherited from the listener where the system hands it
    /// down (no `setsockopt` per connection), else set on each.
    #[tokio::test]
    async fn accepted_connections_have_nodelay() {
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        if !accept::NODELAY_INHERITED {
            accepted.set_nodelay(true).unwrap();
        }
        assert!(accepted.nodelay().unwrap());
    }

    /// 300 clients connect before the server accepts any: all complete their
    /// handshake (with a backlog of 128 the kernel drops the rest).
    #[tokio::test]
    async fn the_listen_queue_holds_a_burst_of_connections() {
        let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|v| v.trim().parse::<u32>().ok())
            .unwrap_or(0);
        if somaxconn < 300 {
            eprintln!("skipped: net.core.somaxconn is {somaxconn}, below this test's 300");
            return;
        }
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let clients = tokio::task::spawn_blocking(move || {
            (0..300)
                .map(|_| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)))
                .collect::<Result<Vec<_>, _>>()
        });
        let clients = clients.await.unwrap().expect("every handshake completes");
        assert_eq!(clients.len(), 300);
        let (first, _) = listener.accept().await.unwrap();
        assert_eq!(first.peer_addr().unwrap(), clients[0].local_addr().unwrap());
    }
}
