//! The server layer (the Ruby gem net-server's job): binds the listening sockets,
//! accepts connections and runs each one in its own task. Bytes move in
//! [`conn`]; the protocol lives in [`crate::protocol`].

mod conn;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::config::Settings;
use crate::delivery::Deliver;
use crate::protocol::Machine;
use crate::receiver::Receiver;
use crate::session::{ConnectionInfo, Session};

/// The server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A listening address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why (e.g. address in use, permission denied).
        source: std::io::Error,
    },
}

/// A bound SMTP server, generic over its hooks.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use net_receiver::{Config, Maildir, Receiver, Server};
/// struct Mine;
/// impl Receiver for Mine {}
/// let config = Config::default();
/// let server = Server::bind(&config.listen_addrs()?, config.settings()?, Mine)
///     .await?
///     .with_delivery(Maildir::open("mail")?);
/// server.run_until(async { let _ = tokio::signal::ctrl_c().await; }).await;
/// # Ok(()) }
/// ```
pub struct Server<R> {
    receiver: Arc<R>,
    settings: Arc<Settings>,
    delivery: Option<Arc<dyn Deliver>>,
    listeners: Vec<TcpListener>,
}

impl<R: Receiver> Server<R> {
    /// Binds every address (all or nothing).
    pub async fn bind(
        addrs: &[SocketAddr],
        settings: Settings,
        receiver: R,
    ) -> Result<Self, ServerError> {
        let mut listeners = Vec::with_capacity(addrs.len());
        for &addr in addrs {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Bind { addr, source })?;
            listeners.push(listener);
        }
        Ok(Self {
            receiver: Arc::new(receiver),
            settings: Arc::new(settings),
            delivery: None,
            listeners,
        })
    }

    /// Where `defaults::received` stores accepted mail.
    #[must_use]
    pub fn with_delivery(mut self, delivery: impl Deliver) -> Self {
        self.delivery = Some(Arc::new(delivery));
        self
    }

    /// The bound addresses (with the real port when port 0 was asked for).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// Serves until `shutdown` completes; then stops accepting and waits (up to
    /// 10 seconds) for open connections to end.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) {
        let mut accepting = JoinSet::new();
        let connections = Arc::new(tokio::sync::Mutex::new(JoinSet::new()));
        for listener in self.listeners {
            let receiver = Arc::clone(&self.receiver);
            let settings = Arc::clone(&self.settings);
            let delivery = self.delivery.clone();
            let connections = Arc::clone(&connections);
            accepting.spawn(async move {
                loop {
                    match listener.accept().await {
                        Ok((stream, remote)) => {
                            let task = connection(
                                stream,
                                remote,
                                Arc::clone(&receiver),
                                Arc::clone(&settings),
                                delivery.clone(),
                            );
                            let mut set = connections.lock().await;
                            while set.try_join_next().is_some() {}
                            set.spawn(task);
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
        shutdown.await;
        accepting.abort_all();
        let mut set = std::mem::take(&mut *connections.lock().await);
        let drained = tokio::time::timeout(Duration::from_secs(10), async {
            while set.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("closing {} connections still open", set.len());
            set.abort_all();
        }
    }
}

async fn connection<R: Receiver>(
    stream: TcpStream,
    remote: SocketAddr,
    receiver: Arc<R>,
    settings: Arc<Settings>,
    delivery: Option<Arc<dyn Deliver>>,
) {
    let local = match stream.local_addr() {
        Ok(local) => local,
        Err(error) => {
            tracing::debug!("connection from {remote} lost: {error}");
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    tracing::info!("connection accepted on port {} from {remote}", local.port());
    let machine = Machine::with_keywords(
        Arc::clone(&settings.limits),
        Arc::clone(&settings.ehlo_keywords),
        Instant::now(),
    );
    let session = Session::new(
        receiver,
        settings,
        delivery,
        ConnectionInfo { local, remote },
    );
    conn::serve(stream, session, machine).await;
    tracing::info!("connection from {remote} closed");
}
