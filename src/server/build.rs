//! A whole [`Server`] from a [`Config`]: the one library call that serves what the
//! `net-receiver` binary serves (the seed's `Net::Server.new(options).start`).
//!
//! [`Server::from_config`] honours every key of the configuration file in the order
//! that keeps a start safe: working directory, every setting checked, TLS (files
//! or a generated certificate), the AUTH password store (a database server's
//! query checked if it answers), the DNS resolver, the lockout store, then
//! binding (or taking sockets bound by others, such as systemd passes), the pid
//! file, the privilege drop, and only then
//! the Maildir (opened as the final user) and, with `spool_dir`, the spool in
//! front of it; the HTTP hooks (`[[hook]]`) are checked before binding and added
//! as policy layers after the DNS checks (and the SMTP callouts, with
//! `sender_callout`/`recipient_callout`), in the order given, then the milters
//! (`[[milter]]`). Each failure is a [`ServerError`] that
//! names its culprit, the same errors the binary prints.
//!
//! Three keys are process duties a library cannot do on its own: `daemon` (the
//! process must detach before any runtime starts: [`process::daemonize`]), and the
//! binary's output keys `log_file` and `quiet` (a library logs through `tracing`
//! to whatever subscriber its program installed). `from_config` refuses `daemon =
//! true` with an error saying so, and leaves the output keys to the program.

use std::path::PathBuf;
use std::sync::Arc;

use super::process::{self, PidFile};
use super::{InheritedListener, Server, ServerError, TlsHandle};
use crate::auth::{DbServerStore, PasswdFile, PasswordLookup, SqliteStore};
use crate::config::Config;
use crate::config::{ConfigError, DeliverConfig};
use crate::delivery::{
    Chain, Deliver, DeliverFuture, Link, Lmtp, LmtpAddress, Maildir, Nats, RetrySchedule, Webhook,
};
use crate::dns::Dns;
use crate::lockout::{Lockout, store_from_config};
use crate::mail::Mail;
use crate::metrics::Metrics;
use crate::policy::{HttpHook, Milter, Policy as _};
use crate::receiver::Receiver;
use crate::server::CertificateSource;
use crate::spool::{SpoolOptions, Spooled};

impl<R: Receiver> Server<R> {
    /// Builds, binds and readies a server exactly as the configuration says; serve
    /// it with [`Server::run_until`].
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use net_receiver::{Config, Receiver, Server};
    /// struct Mine;
    /// impl Receiver for Mine {}
    /// let config = Config::load("net-receiver.toml".as_ref())?;
    /// let server = Server::from_config(&config, Mine).await?;
    /// server.run_until(async { let _ = tokio::signal::ctrl_c().await; }).await;
    /// # Ok(()) }
    /// ```
    ///
    /// `working_directory` is entered (process-wide) before anything else; a
    /// program that entered it itself sets it to `None` first. With `user_name`
    /// or `group_name` the process drops its privileges after binding, so this
    /// must be called from a process that may do so (and only once).
    pub async fn from_config(config: &Config, receiver: R) -> Result<Self, ServerError> {
        Self::from_config_with_listeners(config, receiver, Vec::new()).await
    }

    /// [`Server::from_config`], but serving `inherited` — sockets bound already,
    /// such as systemd's socket activation passes — instead of binding the
    /// configuration's listeners (when `inherited` is empty, those are bound as
    /// usual). Each socket's mode is its name's, else that of the configured
    /// listener with the same address, else its port's (see
    /// [`InheritedListener::spec`]).
    pub async fn from_config_with_listeners(
        config: &Config,
        receiver: R,
        inherited: Vec<InheritedListener>,
    ) -> Result<Self, ServerError> {
        if config.daemon {
            return Err(ServerError::Unsupported(
                "daemon = true: a process must detach before its async runtime starts; \
                 call net_receiver::server::process::daemonize first (the net-receiver \
                 binary does) and then set daemon to false",
            ));
        }
        if let Some(dir) = &config.working_directory {
            process::enter_working_directory(dir)?;
        }
        let listeners = config.listeners()?;
        let settings = config.settings()?;
        for warning in config.checks_without_dns() {
            tracing::warn!("{warning}");
        }
        let identity =
            process::resolve_identity(config.user_name.as_deref(), config.group_name.as_deref())?;
        let tls = Arc::new(TlsHandle::new(certificate_source(
            config,
            &settings.server_name,
        )?)?);
        log_certificate(&tls);
        let passwords = password_store(config).await?.map(|(store, what)| {
            tracing::info!("{what}");
            store
        });
        let dns = match config.dns()? {
            Some(dns) => Some(Arc::new(Dns::new(&dns)?)),
            None => None,
        };
        let lockout = Arc::new(Lockout::new(
            store_from_config(config.lockout_store.as_deref())?,
            settings.lockout_policy,
        ));
        let hooks = config
            .hooks
            .iter()
            .map(HttpHook::new)
            .collect::<Result<Vec<_>, _>>()?;
        let callouts = match config.callout()? {
            Some(callout) => Some(
                crate::policy::Callouts::new(callout, dns.clone(), &settings.server_name).map_err(
                    |e| ConfigError::Invalid {
                        key: e.key(),
                        reason: e.to_string(),
                    },
                )?,
            ),
            None => None,
        };
        let milters = config
            .milters
            .iter()
            .map(Milter::new)
            .collect::<Result<Vec<_>, _>>()?;
        let metrics_addr = config.metrics_listen()?;
        let server_name = settings.server_name.clone();
        let server = if inherited.is_empty() {
            Server::bind(&listeners, settings, receiver).await?
        } else {
            Server::from_inherited(inherited, &listeners, settings, receiver)?
        };
        // Bound before the privilege drop, like the SMTP listeners.
        let metrics_listener = match metrics_addr {
            Some(addr) => Some(
                super::accept::listen(addr).map_err(|source| ServerError::Bind { addr, source })?,
            ),
            None => None,
        };
        let ports: Vec<u16> = server.local_addrs().iter().map(|a| a.port()).collect();
        if process::should_warn_running_as_root(identity.as_ref(), &ports) {
            tracing::warn!(
                "running as root on a port below 1024 without user_name/group_name: \
                 every hook runs as root; set user_name and group_name"
            );
        }
        let pid_file = match &config.pid_file {
            Some(path) => Some(PidFile::create(path)?),
            None => None,
        };
        if let Some(identity) = &identity {
            process::drop_privileges(identity)?;
            tracing::info!(uid = %identity.uid, gid = %identity.gid, "privileges dropped");
        }
        let mut spool_stats = None;
        let metrics = metrics_listener.as_ref().map(|_| Metrics::new());
        let (server, destination) = if config.no_deliver {
            (
                server.with_delivery(Discard),
                "nowhere (no_deliver)".to_owned(),
            )
        } else {
            // Opened as the final user, so it is that user's and known writable.
            let target_metrics = metrics.as_ref().map(Metrics::targets);
            let (target, target_name) =
                delivery_target(config, &server_name, target_metrics).await?;
            match &config.spool_dir {
                None => (server.with_delivery(target), target_name),
                Some(dir) => {
                    let mut options = SpoolOptions::new(dir);
                    options.max_bytes = config.spool_max_bytes;
                    options.commit_delay = config.spool_commit_delay()?;
                    let spooled =
                        Spooled::start(&options, target).map_err(|source| ServerError::Spool {
                            path: dir.clone(),
                            source,
                        })?;
                    spool_stats = Some(spooled.spool().stats_handle());
                    (
                        server.with_delivery(spooled),
                        format!("{target_name} through the spool {}", dir.display()),
                    )
                }
            }
        };
        let workers = match config.workers {
            0 => default_workers(),
            n => n,
        };
        let mut server = server
            .with_worker_threads(workers)
            .with_tls(tls)
            .with_lockout(Some(lockout));
        if let Some(passwords) = passwords {
            server = server.with_passwords(passwords);
        }
        if let Some(dns) = dns {
            server = server.with_dns(dns);
        }
        let callout_stats = callouts.as_ref().map(crate::policy::Callouts::stats);
        if let Some(callouts) = callouts {
            tracing::info!("SMTP callouts: {}", callouts.describe());
            server = server.with_policy(Arc::new(callouts));
        }
        for hook in hooks {
            tracing::info!("HTTP hook {}", hook.name());
            server = server.with_policy(Arc::new(hook));
        }
        for milter in milters {
            tracing::info!("milter {}", milter.name());
            server = server.with_policy(Arc::new(milter));
        }
        server.pid_file = pid_file;
        if let (Some(listener), Some(mut metrics)) = (metrics_listener, metrics) {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!("metrics on {addr}");
            }
            if let Some(spool) = spool_stats {
                metrics.register_spool(spool);
            }
            if let Some(stats) = callout_stats {
                metrics.register_callouts(stats);
            }
            server = server
                .with_metrics(Arc::new(metrics))
                .with_metrics_listener(listener);
        }
        for (addr, (_, spec)) in server.local_addrs().into_iter().zip(&server.listeners) {
            tracing::info!(
                name: "listening",
                mode = %spec.mode.as_str(),
                "listening on {addr}, delivering to {destination}"
            );
        }
        Ok(server)
    }
}

/// Where accepted mail goes: the `[[deliver]]` chain, or without one the
/// Maildir at `maildir`; with its name for the start-up log line. With
/// `metrics`, the targets are counted (a lone Maildir as a chain of one).
pub(super) async fn delivery_target(
    config: &Config,
    server_name: &str,
    metrics: Option<crate::metrics::TargetMetrics>,
) -> Result<(Arc<dyn Deliver>, String), ServerError> {
    if config.deliver.is_empty() {
        let maildir = open_maildir(&config.maildir)?;
        let name = config.maildir.display().to_string();
        let Some(metrics) = metrics else {
            return Ok((Arc::new(maildir), name));
        };
        let link = Link {
            name: format!("maildir {name}"),
            target: Arc::new(maildir),
            required: true,
        };
        let chain = Chain::new(vec![link]).map_err(invalid_deliver)?;
        return Ok((Arc::new(chain.with_metrics(metrics)), name));
    }
    let links = delivery_links(config, server_name).await?;
    let mut chain = Chain::new(links).map_err(invalid_deliver)?;
    if let Some(metrics) = metrics {
        chain = chain.with_metrics(metrics);
    }
    let name = chain.describe();
    Ok((Arc::new(chain), name))
}

fn open_maildir(path: &std::path::Path) -> Result<Maildir, ServerError> {
    Maildir::open(path).map_err(|source| ServerError::Maildir {
        path: path.to_owned(),
        source,
    })
}

fn invalid_deliver(reason: String) -> ConfigError {
    ConfigError::Invalid {
        key: "deliver",
        reason,
    }
}

/// One link per `[[deliver]]` table, in order (targets opened or connected).
pub(super) async fn delivery_links(
    config: &Config,
    server_name: &str,
) -> Result<Vec<Link>, ServerError> {
    let invalid = invalid_deliver;
    let mut links = Vec::new();
    for table in &config.deliver {
        let (name, target): (String, Arc<dyn Deliver>) = match table {
            DeliverConfig::Maildir { path, .. } => (
                format!("maildir {}", path.display()),
                Arc::new(open_maildir(path)?),
            ),
            DeliverConfig::Lmtp {
                address, timeout, ..
            } => {
                let parsed: LmtpAddress = address.parse().map_err(invalid)?;
                let timeout = std::time::Duration::try_from_secs_f64(*timeout)
                    .ok()
                    .filter(|t| !t.is_zero())
                    .ok_or_else(|| invalid(format!("lmtp timeout {timeout} is not positive")))?;
                let lmtp =
                    Lmtp::new(parsed, server_name).with_timeouts(timeout, timeout, timeout * 2);
                (format!("lmtp {address}"), Arc::new(lmtp))
            }
            DeliverConfig::Nats {
                url,
                subject,
                stream,
                timeout,
                replicas,
                ..
            } => {
                let timeout = std::time::Duration::try_from_secs_f64(*timeout)
                    .ok()
                    .filter(|t| !t.is_zero())
                    .ok_or_else(|| invalid(format!("nats timeout {timeout} is not positive")))?;
                if !(1..=5).contains(replicas) {
                    return Err(invalid(format!("nats replicas {replicas} is not 1 to 5")).into());
                }
                let nats = Nats::connect(url, subject, stream.clone(), timeout)
                    .await
                    .map_err(invalid)?
                    .with_replicas(*replicas);
                (format!("nats {url} {subject}"), Arc::new(nats))
            }
            DeliverConfig::Webhook {
                url,
                secret,
                timeout,
                retry_initial,
                retry_max,
                retry_for,
                max_concurrency,
                tls_ca,
                ..
            } => {
                let seconds = |value: f64, key: &str| {
                    std::time::Duration::try_from_secs_f64(value)
                        .ok()
                        .filter(|t| !t.is_zero())
                        .ok_or_else(|| invalid(format!("webhook {key} {value} is not positive")))
                };
                let schedule = RetrySchedule {
                    initial: seconds(*retry_initial, "retry_initial")?,
                    max: seconds(*retry_max, "retry_max")?,
                    give_up_after: Some(seconds(*retry_for, "retry_for")?),
                };
                let webhook = Webhook::new_trusting(
                    url,
                    secret,
                    seconds(*timeout, "timeout")?,
                    *max_concurrency,
                    tls_ca.as_deref(),
                )
                .map_err(invalid)?
                .with_retry(schedule);
                (format!("webhook {url}"), Arc::new(webhook))
            }
        };
        links.push(Link {
            name,
            target,
            required: table.required(),
        });
    }
    Ok(links)
}

/// The `no_deliver` delivery (benchmarks): accepts every mail and keeps none.
struct Discard;

impl crate::delivery::Deliver for Discard {
    fn deliver<'a>(&'a self, _mail: &'a Mail) -> DeliverFuture<'a> {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// Half the CPUs, at least one: the kernel's TCP work, the blocking pool
/// (Maildir fsync, password hashing) and anything else on the machine need the
/// rest, and a thread per session-serving core keeps wake-ups off other threads.
pub fn default_workers() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    (cpus / 2).max(1)
}

fn log_certificate(tls: &TlsHandle) {
    match tls.source() {
        CertificateSource::Files { certificate, .. } => tracing::info!(
            "TLS certificate {} (SHA-256 {})",
            certificate.display(),
            tls.fingerprint()
        ),
        CertificateSource::Generated { server_name, .. } => tracing::info!(
            "TLS certificate: self-signed for {server_name}, SHA-256 {}",
            tls.fingerprint()
        ),
    }
}

/// Where the TLS certificate comes from: both files, or generated.
pub(super) fn certificate_source(
    config: &Config,
    server_name: &str,
) -> Result<CertificateSource, ServerError> {
    match (&config.certificate, &config.private_key) {
        (Some(certificate), Some(private_key)) => Ok(CertificateSource::Files {
            certificate: certificate.clone(),
            private_key: private_key.clone(),
        }),
        (None, None) => Ok(CertificateSource::Generated {
            server_name: server_name.to_owned(),
            keep_in: config
                .keep_generated_certificate
                .then(|| PathBuf::from(".")),
        }),
        _ => Err(ServerError::Unsupported(
            "certificate and private_key must be given together",
        )),
    }
}

/// The AUTH password store the configuration names, if any, with what it is
/// (`AUTH users from …`: logged at start, shown by `check-config`): a
/// `password_db` with a URL is a database server, else an SQLite file.
pub(super) async fn password_store(
    config: &Config,
) -> Result<Option<(Arc<dyn PasswordLookup>, String)>, ServerError> {
    let timeout = config.password_db_timeout()?;
    match (&config.passwd_file, &config.password_db) {
        (Some(_), Some(_)) => Err(ServerError::Unsupported(
            "passwd_file and password_db cannot both be set",
        )),
        (Some(file), None) => {
            let store = PasswdFile::open(file)?;
            let what = format!("AUTH users from {} ({} users)", file.display(), store.len());
            Ok(Some((Arc::new(store), what)))
        }
        (None, Some(db)) => {
            if let Some(url) = db.to_str().filter(|text| text.contains("://")) {
                let store =
                    DbServerStore::open(url, config.password_query.clone(), timeout).await?;
                let what = format!(
                    "AUTH users from {} {} (lookups within {timeout:?})",
                    store.kind().name(),
                    store.shown_url()
                );
                return Ok(Some((Arc::new(store), what)));
            }
            let store = SqliteStore::open(db, config.password_query.clone())?;
            let what = format!("AUTH users from SQLite {}", db.display());
            Ok(Some((Arc::new(store), what)))
        }
        (None, None) => Ok(None),
    }
}

/// Re-reads what a running server may re-read: the password store and the TLS
/// certificate and key (open connections keep theirs). Get one with
/// [`Server::reloader`] and call [`Reloader::reload`] on SIGHUP.
#[derive(Clone)]
pub struct Reloader {
    pub(super) tls: Option<Arc<TlsHandle>>,
    pub(super) passwords: Option<Arc<dyn PasswordLookup>>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("tls", &self.tls.is_some())
            .field("passwords", &self.passwords.is_some())
            .finish()
    }
}

impl Reloader {
    /// Reloads each part; a part that fails keeps what it had, and says so in the
    /// log. True when everything reloaded.
    pub fn reload(&self) -> bool {
        let mut all = true;
        if let Some(passwords) = &self.passwords {
            match passwords.reload() {
                Ok(()) => tracing::info!("reload: password store reloaded"),
                Err(error) => {
                    all = false;
                    tracing::error!("reload: keeping the old passwords: {error}");
                }
            }
        }
        if let Some(tls) = &self.tls {
            if let Some(unreadable) = unreadable_tls_file(tls) {
                tracing::error!(
                    "reload: keeping the loaded TLS certificate: {unreadable} cannot be read \
                     by uid {} (the user after the privilege drop); make it readable by \
                     that user or its group (e.g. mode 0640) or restart to load new files",
                    nix::unistd::geteuid()
                );
                return false;
            }
            match tls.reload() {
                Ok(()) => tracing::info!(
                    "reload: TLS certificate reloaded (SHA-256 {})",
                    tls.fingerprint()
                ),
                Err(error) => {
                    all = false;
                    tracing::error!("reload: keeping the old TLS certificate: {error}");
                }
            }
        }
        all
    }
}

/// The certificate or key file this process may no longer read (after a
/// privilege drop, a root-only key), if any.
fn unreadable_tls_file(tls: &TlsHandle) -> Option<String> {
    let CertificateSource::Files {
        certificate,
        private_key,
    } = tls.source()
    else {
        return None;
    };
    [certificate, private_key]
        .into_iter()
        .find_map(|path| match std::fs::File::open(path) {
            Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => {
                Some(path.display().to_string())
            }
            _ => None,
        })
}

/// A future that completes on the first SIGTERM or SIGINT (Ctrl-C), for
/// [`Server::run_until`]; the handlers are registered when this returns, so a
/// signal that comes before the future is awaited is not lost.
pub fn stop_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}
