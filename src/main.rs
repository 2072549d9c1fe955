//! The `net-receiver` binary: command-line flags and the config file in, a running
//! receiver out. Each accepted mail is stored in a Maildir and printed as one JSON
//! line on stdout (the seed's sample printed `mail.pretty_inspect`); logs go to
//! stderr.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use net_receiver::{Config, Context, DeliveryError, Maildir, Receiver, Server, defaults};

/// A programmable SMTP receiver. With no arguments it listens on 127.0.0.1:2525,
/// stores mail in the Maildir ./mail and prints each mail as a JSON line.
#[derive(Debug, Parser)]
#[command(name = "net-receiver", version, about)]
struct Args {
    /// TOML configuration file (keys: see README).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Listen on this address (repeatable); replaces `listening_ports`.
    #[arg(long = "listen", value_name = "ADDR:PORT")]
    listen: Vec<String>,
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
    if !args.listen.is_empty() {
        config.listening_ports = args.listen.clone();
    }
    if let Some(dir) = args.maildir {
        config.maildir = dir;
    }
    if args.server_name.is_some() {
        config.server_name = args.server_name;
    }
    config.quiet |= args.quiet;
    let addrs = config.listen_addrs()?;
    let settings = config.settings()?;
    let maildir = Maildir::open(&config.maildir)
        .with_context(|| format!("cannot use Maildir {}", config.maildir.display()))?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let receiver = PrintingReceiver {
            quiet: config.quiet,
        };
        let server = Server::bind(&addrs, settings, receiver)
            .await?
            .with_delivery(maildir);
        for addr in server.local_addrs() {
            tracing::info!(
                "listening on {addr}, delivering to {}",
                config.maildir.display()
            );
        }
        server.run_until(shutdown_signal()).await;
        tracing::info!("shut down");
        Ok(())
    })
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
