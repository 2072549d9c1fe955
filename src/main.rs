//! The `net-receiver` binary: command-line flags and the config file in, a running
//! receiver out. Each accepted mail is stored in a Maildir and printed as one JSON
//! line on stdout (the seed's sample printed `mail.pretty_inspect`); logs go to
//! stderr.
//!
//! Benchmark mode: `--no-deliver` receives and fully parses each mail (the mail
//! structure is built and the `received` hook runs) but stores it nowhere and still
//! answers 250; with `--quiet` as well nothing is printed per mail, and the default
//! log level drops to `warn` (unless `RUST_LOG` is set).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use net_receiver::auth::{PasswdFile, PasswordLookup, SqliteStore};
use net_receiver::config::{ListenerConfig, ListenerMode};
use net_receiver::delivery::DeliverFuture;
use net_receiver::dns::Dns;
use net_receiver::json_lines::JsonLines;
use net_receiver::lockout::{Lockout, store_from_config};
use net_receiver::logging;
use net_receiver::server::{CertificateSource, TlsHandle, open_files, process};
use net_receiver::{
    Config, Context, Deliver, DeliveryError, Mail, Maildir, Receiver, Server, defaults,
};

/// A programmable SMTP receiver. With no arguments it listens on 127.0.0.1:2525,
/// stores mail in the Maildir ./mail and prints each mail as a JSON line.
#[derive(Debug, Parser)]
#[command(name = "net-receiver", version, about)]
struct Args {
    /// TOML configuration file (keys: see README).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Listen for plain SMTP with STARTTLS (repeatable). Any of the three listen
    /// flags replaces the config file's `listening_ports` and `[[listener]]`s.
    #[arg(long = "listen", value_name = "ADDR:PORT")]
    listen: Vec<String>,
    /// Listen for implicit TLS, RFC 8314 (repeatable).
    #[arg(long = "tls-listen", value_name = "ADDR:PORT")]
    tls_listen: Vec<String>,
    /// Listen for message submission: STARTTLS, MAIL needs AUTH (repeatable).
    #[arg(long = "submission-listen", value_name = "ADDR:PORT")]
    submission_listen: Vec<String>,
    /// PEM certificate chain (default: a self-signed certificate generated at start-up).
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// PEM private key for --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// Maildir for accepted mail (created if missing).
    #[arg(long, value_name = "DIR")]
    maildir: Option<PathBuf>,
    /// Name used in the greeting, EHLO and Received headers.
    #[arg(long, value_name = "NAME")]
    server_name: Option<String>,
    /// Do not print the JSON line of each received mail; also lowers the default
    /// log level from `info` to `warn` (`RUST_LOG`, when set, still decides).
    #[arg(long)]
    quiet: bool,
    /// Benchmark mode: receive and fully parse each mail (structure built,
    /// `received` hook called) but store it nowhere, and answer 250 all the same.
    /// Mail is lost: never use it for real traffic.
    #[arg(long, conflicts_with = "maildir")]
    no_deliver: bool,
    /// Switch to this user after binding (needs root).
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// Switch to this group after binding (needs root).
    #[arg(long, value_name = "NAME")]
    group: Option<String>,
    /// Change to this directory first; relative paths are relative to it.
    #[arg(long, value_name = "DIR")]
    working_directory: Option<PathBuf>,
    /// Threads serving connections (default: half the CPUs, at least 1).
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// Write the server's pid to this file.
    #[arg(long, value_name = "FILE")]
    pid_file: Option<PathBuf>,
    /// Log to this file, rotated daily, instead of stderr.
    #[arg(long, value_name = "FILE")]
    log_file: Option<PathBuf>,
    /// Detach and run in the background.
    #[arg(long)]
    daemon: bool,
    /// Name server for the DNS checks, ADDR:PORT (repeatable), or `system` for
    /// /etc/resolv.conf. Without it no DNS lookups are made.
    #[arg(long = "dns-server", value_name = "ADDR:PORT")]
    dns_server: Vec<String>,
    /// Dovecot-style passwd file for AUTH (`user:{SCHEME}secret`), re-read on SIGHUP.
    #[arg(long, value_name = "FILE")]
    passwd_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Subcommand>,
}

#[derive(Debug, clap::Subcommand)]
enum Subcommand {
    /// Read a password on stdin (without echo on a terminal) and print its argon2id
    /// hash, ready for a passwd file line `user:HASH`.
    HashPassword,
}

/// The binary's hooks: the defaults, plus a JSON line per delivered mail.
struct PrintingReceiver {
    /// Where each mail's JSON line goes; `None` with `--quiet`.
    lines: Option<JsonLines>,
}

impl Receiver for PrintingReceiver {
    async fn received(&self, cx: &mut Context<'_>) -> Result<(), DeliveryError> {
        defaults::received(cx).await?;
        let from = cx.mail.reverse_path();
        tracing::info!(id = %cx.mail.id, from = %logging::Escaped(&from), "received mail");
        if let Some(lines) = &self.lines {
            lines.print(cx.mail).await;
        }
        Ok(())
    }
}

/// The `--no-deliver` delivery: accepts every mail and keeps none of it.
struct Discard;

impl Deliver for Discard {
    fn deliver<'a>(&'a self, _mail: &'a Mail) -> DeliverFuture<'a> {
        Box::pin(std::future::ready(Ok(())))
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Subcommand::HashPassword) = args.command {
        return match hash_password_command() {
            Ok(hash) => {
                println!("{hash}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("net-receiver: error: {error:#}");
                ExitCode::FAILURE
            }
        };
    }
    // A daemon child leaves its parent's session before anything else happens.
    if let Err(error) = process::become_daemon_child() {
        eprintln!("net-receiver: error: {error}");
        return ExitCode::FAILURE;
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let message = format!("{error:#}");
            process::notify_failed(&message);
            tracing::error!("{message}");
            eprintln!("net-receiver: error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `net-receiver hash-password`.
fn hash_password_command() -> anyhow::Result<String> {
    use std::io::IsTerminal as _;
    let password = if std::io::stdin().is_terminal() {
        rpassword::prompt_password("Password: ").context("cannot read the password")?
    } else {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    Ok(net_receiver::auth::hash_password(&password)?)
}

/// The configuration file overlaid with the command-line flags.
fn configure(args: &Args) -> anyhow::Result<Config> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let cli_listeners = [
        (&args.listen, ListenerMode::Smtp),
        (&args.tls_listen, ListenerMode::Smtps),
        (&args.submission_listen, ListenerMode::Submission),
    ];
    if cli_listeners.iter().any(|(list, _)| !list.is_empty()) {
        config.listening_ports.clear();
        config.listeners = cli_listeners
            .iter()
            .flat_map(|(list, mode)| {
                list.iter().map(|address| ListenerConfig {
                    address: address.clone(),
                    mode: *mode,
                    proxy_protocol: false,
                })
            })
            .collect();
    }
    if args.cert.is_some() {
        config.certificate = args.cert.clone();
        config.private_key = args.key.clone();
    }
    if let Some(dir) = &args.maildir {
        config.maildir = dir.clone();
    }
    if args.server_name.is_some() {
        config.server_name = args.server_name.clone();
    }
    let overrides = [
        (&args.user, &mut config.user_name),
        (&args.group, &mut config.group_name),
    ];
    for (flag, option) in overrides {
        if flag.is_some() {
            option.clone_from(flag);
        }
    }
    if args.working_directory.is_some() {
        config.working_directory.clone_from(&args.working_directory);
    }
    if args.pid_file.is_some() {
        config.pid_file.clone_from(&args.pid_file);
    }
    if args.log_file.is_some() {
        config.log_file.clone_from(&args.log_file);
    }
    if !args.dns_server.is_empty() {
        config.dns_servers.clone_from(&args.dns_server);
    }
    if args.passwd_file.is_some() {
        config.passwd_file.clone_from(&args.passwd_file);
    }
    if let Some(workers) = args.workers {
        config.workers = workers;
    }
    config.daemon |= args.daemon;
    config.quiet |= args.quiet;
    Ok(config)
}

/// Start-up in the order that keeps it safe: working directory, daemon, bind,
/// pid file, privilege drop, then serve.
fn run(args: Args) -> anyhow::Result<()> {
    let config = configure(&args)?;
    if let Some(dir) = &config.working_directory {
        process::enter_working_directory(dir)?;
    }
    if config.daemon && !process::is_daemon_child() {
        if let Some(file) = &config.log_file {
            logging::prepare_log_dir(file)
                .with_context(|| format!("cannot create the directory of {}", file.display()))?;
        }
        let arguments: Vec<_> = std::env::args_os().skip(1).collect();
        let daemon = process::daemonize(&arguments, config.log_file.as_deref())?;
        println!("net-receiver: running as daemon, pid {}", daemon.pid());
        return Ok(());
    }
    // `--quiet` is for runs where per-connection info lines would be noise (or,
    // in a benchmark, most of the work).
    let default_log = if args.quiet { "warn" } else { "info" };
    let _log = logging::init(config.log_file.as_deref(), default_log).with_context(|| {
        let file = config.log_file.as_deref().unwrap_or(Path::new("-"));
        format!("cannot open log file {}", file.display())
    })?;
    let listeners = config.listeners()?;
    let settings = config.settings()?;
    check_open_files(settings.max_connections);
    let identity =
        process::resolve_identity(config.user_name.as_deref(), config.group_name.as_deref())?;
    let tls = Arc::new(TlsHandle::new(certificate_source(
        &config,
        &settings.server_name,
    )?)?);
    log_certificate(&tls);
    let passwords = password_store(&config)?;
    let dns = match config.dns()? {
        Some(dns) => Some(Arc::new(Dns::new(&dns)?)),
        None => None,
    };
    let lockout = Arc::new(Lockout::new(
        store_from_config(config.lockout_store.as_deref())?,
        settings.lockout_policy,
    ));
    // Signals, reloads and start-up run here; connections on the worker threads.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let (lines, writer) = if config.quiet {
            (None, None)
        } else {
            let (lines, writer) =
                JsonLines::spawn(std::io::stdout()).context("cannot start the output thread")?;
            (Some(lines), Some(writer))
        };
        let receiver = PrintingReceiver { lines };
        let server = Server::bind(&listeners, settings, receiver).await?;
        // Signal handlers are in place before anyone can learn we are listening.
        let shutdown = shutdown_signal()?;
        let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("cannot handle SIGHUP")?;
        let ports: Vec<u16> = server.local_addrs().iter().map(|a| a.port()).collect();
        if process::should_warn_running_as_root(identity.as_ref(), &ports) {
            tracing::warn!(
                "running as root on a port below 1024 without user_name/group_name: \
                 every hook runs as root; set --user and --group"
            );
        }

        let _pid_file = match &config.pid_file {
            Some(path) => Some(process::PidFile::create(path)?),
            None => None,
        };
        if let Some(identity) = &identity {
            process::drop_privileges(identity)?;
            tracing::info!(uid = %identity.uid, gid = %identity.gid, "privileges dropped");
        }
        let (server, destination) = if args.no_deliver {
            (
                server.with_delivery(Discard),
                "nowhere (--no-deliver)".to_owned(),
            )
        } else {
            // Opened as the final user, so it is that user's and known writable.
            let maildir = Maildir::open(&config.maildir)
                .with_context(|| format!("cannot use Maildir {}", config.maildir.display()))?;
            let destination = config.maildir.display().to_string();
            (server.with_delivery(maildir), destination)
        };
        let workers = match config.workers {
            0 => default_workers(),
            n => n,
        };
        let mut server = server
            .with_worker_threads(workers)
            .with_tls(Arc::clone(&tls))
            .with_lockout(Some(lockout));
        if let Some(passwords) = &passwords {
            server = server.with_passwords(Arc::clone(passwords));
        }
        if let Some(dns) = dns {
            server = server.with_dns(dns);
        }
        for (addr, spec) in server.local_addrs().into_iter().zip(&listeners) {
            tracing::info!(
                mode = ?spec.mode,
                "listening on {addr}, delivering to {destination}"
            );
        }
        tokio::spawn(reload_on_hangup(hangup, tls, passwords));
        process::notify_ready();
        server.run_until(shutdown).await;
        // Every session is over: the lines still queued are written out.
        if let Some(writer) = writer
            && !writer.finish(std::time::Duration::from_secs(10))
        {
            tracing::warn!("the output is blocked: JSON lines of stored mail were not printed");
        }
        tracing::info!(
            "{} terminated by signal",
            config.server_name.as_deref().unwrap_or("net-receiver")
        );
        Ok(())
    })
}

/// Half the CPUs, at least one: the kernel's TCP work, the blocking pool
/// (Maildir fsync, password hashing) and anything else on the machine need the
/// rest, and a thread per session-serving core keeps wake-ups off other threads.
fn default_workers() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    (cpus / 2).max(1)
}

/// Raises the open-files soft limit to the hard limit (each connection holds a
/// descriptor) and warns when `max_connections` still cannot fit.
fn check_open_files(max_connections: usize) {
    match open_files::raise_open_files_limit() {
        Ok(limit) => {
            if limit.soft > limit.before {
                tracing::info!(
                    "open files limit raised from {} to {}",
                    limit.before,
                    limit.soft
                );
            }
            if let Some(warning) = limit.shortfall(max_connections) {
                tracing::warn!("{warning}");
            }
        }
        Err(error) => tracing::warn!("cannot read the open files limit: {error}"),
    }
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
fn certificate_source(config: &Config, server_name: &str) -> anyhow::Result<CertificateSource> {
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
        _ => anyhow::bail!("certificate and private_key must be given together"),
    }
}

/// The AUTH password store the configuration names, if any.
fn password_store(config: &Config) -> anyhow::Result<Option<Arc<dyn PasswordLookup>>> {
    match (&config.passwd_file, &config.password_db) {
        (Some(_), Some(_)) => anyhow::bail!("passwd_file and password_db cannot both be set"),
        (Some(file), None) => {
            let store = PasswdFile::open(file)?;
            tracing::info!("AUTH users from {} ({} users)", file.display(), store.len());
            Ok(Some(Arc::new(store)))
        }
        (None, Some(db)) => {
            let store = SqliteStore::open(db, config.password_query.clone())?;
            tracing::info!("AUTH users from SQLite {}", db.display());
            Ok(Some(Arc::new(store)))
        }
        (None, None) => Ok(None),
    }
}

/// Re-reads the certificate, key and passwd file on every SIGHUP; open
/// connections are kept.
async fn reload_on_hangup(
    mut hangup: tokio::signal::unix::Signal,
    tls: Arc<TlsHandle>,
    passwords: Option<Arc<dyn PasswordLookup>>,
) {
    while hangup.recv().await.is_some() {
        if let Some(passwords) = &passwords {
            match passwords.reload() {
                Ok(()) => tracing::info!("SIGHUP: password store reloaded"),
                Err(error) => tracing::error!("SIGHUP: keeping the old passwords: {error}"),
            }
        }
        match tls.reload() {
            Ok(()) => tracing::info!(
                "SIGHUP: TLS certificate reloaded (SHA-256 {})",
                tls.fingerprint()
            ),
            Err(error) => tracing::error!("SIGHUP: keeping the old TLS certificate: {error}"),
        }
    }
}

/// Registers SIGINT and SIGTERM now; the future completes on either.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}
