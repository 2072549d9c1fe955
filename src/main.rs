//! The `net-receiver` binary: command-line flags and the config file in, a running
//! receiver out. Each accepted mail is stored in a Maildir and printed as one JSON
//! line on stdout (the seed's sample printed `mail.pretty_inspect`); logs go to
//! stderr.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use net_receiver::config::{ListenerConfig, ListenerMode};
use net_receiver::server::{CertificateSource, TlsHandle};
use net_receiver::{Config, Context, DeliveryError, Maildir, Receiver, Server, defaults};

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
    /// Do not print the JSON line of each received mail.
    #[arg(long)]
    quiet: bool,
}

/// The binary's hooks: the defaults, plus a JSON line per delivered mail.
struct PrintingReceiver {
    quiet: bool,
}

impl Receiver for PrintingReceiver {
    async fn received(&self, cx: &mut Context<'_>) -> Result<(), DeliveryError> {
        defaults::received(cx).await?;
        tracing::info!(id = %cx.mail.id, from = %cx.mail.reverse_path(), "received mail");
        if !self.quiet {
            let line = cx.mail.to_json();
            let mut stdout = std::io::stdout().lock();
            // The mail is already stored; a closed stdout must not refuse it.
            let _ = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("net-receiver: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
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
    if let Some(dir) = args.maildir {
        config.maildir = dir;
    }
    if args.server_name.is_some() {
        config.server_name = args.server_name;
    }
    config.quiet |= args.quiet;
    let addrs = config.listeners()?;
    let settings = config.settings()?;
    let maildir = Maildir::open(&config.maildir)
        .with_context(|| format!("cannot use Maildir {}", config.maildir.display()))?;
    let tls = Arc::new(TlsHandle::new(certificate_source(
        &config,
        &settings.server_name,
    )?)?);
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
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let receiver = PrintingReceiver {
            quiet: config.quiet,
        };
        let server = Server::bind(&addrs, settings, receiver)
            .await?
            .with_delivery(maildir)
            .with_tls(Arc::clone(&tls));
        for (addr, spec) in server.local_addrs().into_iter().zip(&addrs) {
            tracing::info!(
                mode = ?spec.mode,
                "listening on {addr}, delivering to {}",
                config.maildir.display()
            );
        }
        tokio::spawn(reload_on_hangup(tls));
        server.run_until(shutdown_signal()).await;
        tracing::info!("shut down");
        Ok(())
    })
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

/// Re-reads the certificate and key on every SIGHUP; open connections are kept.
async fn reload_on_hangup(tls: Arc<TlsHandle>) {
    let Ok(mut hangup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    else {
        return;
    };
    while hangup.recv().await.is_some() {
        match tls.reload() {
            Ok(()) => tracing::info!(
                "SIGHUP: TLS certificate reloaded (SHA-256 {})",
                tls.fingerprint()
            ),
            Err(error) => tracing::error!("SIGHUP: keeping the old TLS certificate: {error}"),
        }
    }
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
