//! The `net-receiver` binary: flags and the config file in, a running receiver
//! out. The serving is one library call, [`Server::from_config`]; this file does
//! only what a process must do for itself: detach (`--daemon`), enter the working
//! directory, set up logging and the JSON-lines output, handle signals
//! (SIGTERM/SIGINT stop, SIGHUP reloads), and speak to systemd (sockets passed
//! by socket activation, `READY=1`, `STOPPING=1`, watchdog pings).
//!
//! Each accepted mail is stored in a Maildir and printed as one JSON line on
//! stdout or to `json_file` (the seed's sample printed `mail.pretty_inspect`);
//! logs go to stderr or `log_file`. Benchmark mode: `--no-deliver` (see the flag).
//! `net-receiver check-config FILE` checks a configuration without serving
//! ([`net_receiver::server::check_config`]).

mod cli;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use net_receiver::server::{InheritedListener, process};
use net_receiver::{Config, Server, logging};

use cli::json_lines::{self, ReopenHandle};
use cli::{Args, PrintingReceiver, Subcommand, systemd};

fn main() -> ExitCode {
    let args = Args::parse();
    if args.generate_man.is_some() || args.generate_completions.is_some() {
        return generate(&args);
    }
    if let Some(Subcommand::HashPassword) = args.command {
        return match cli::hash_password_command() {
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
    if let Some(Subcommand::CheckConfig { file }) = &args.command {
        return match cli::check_config_command(&args, file) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(error) => {
                eprintln!("net-receiver: error: {error:#}");
                ExitCode::FAILURE
            }
        };
    }
    // Taken while this is the only thread: it edits the environment.
    let inherited = match cli::systemd::inherited_listeners() {
        Ok(inherited) => inherited,
        Err(error) => {
            eprintln!("net-receiver: error: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    // A daemon child leaves its parent's session before anything else happens.
    if let Err(error) = process::become_daemon_child() {
        eprintln!("net-receiver: error: {error}");
        return ExitCode::FAILURE;
    }
    match run(&args, inherited) {
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

/// `--generate-man DIR`, `--generate-completions DIR`: writes them, names each file.
fn generate(args: &Args) -> ExitCode {
    let man = args.generate_man.as_deref().map(cli::generate::man_pages);
    let completions = args
        .generate_completions
        .as_deref()
        .map(cli::generate::completions);
    for result in [man, completions].into_iter().flatten() {
        match result {
            Ok(files) => files.iter().for_each(|f| println!("{}", f.display())),
            Err(error) => {
                eprintln!("net-receiver: error: {error:#}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

/// Process duties in the order that keeps them right — detach (still in the
/// directory we were started from, so a relative `--config` names the same file
/// for the daemon), enter the working directory, log — then the server.
fn run(args: &Args, inherited: Vec<InheritedListener>) -> anyhow::Result<()> {
    let mut config = cli::configure(args)?;
    if config.daemon && !inherited.is_empty() {
        anyhow::bail!(
            "daemon = true cannot keep the sockets of socket activation: \
             let the service manager run it in the foreground"
        );
    }
    if config.daemon && !process::is_daemon_child() {
        let log_file = config
            .log_file
            .as_deref()
            .map(|f| in_working_dir(&config, f));
        if let Some(file) = &log_file {
            logging::prepare_log_dir(file)
                .with_context(|| format!("cannot create the directory of {}", file.display()))?;
        }
        let arguments: Vec<_> = std::env::args_os().skip(1).collect();
        let daemon = process::daemonize(&arguments, log_file.as_deref())?;
        println!("net-receiver: running as daemon, pid {}", daemon.pid());
        if let Some(note) = json_lines::json_destination(&config).1 {
            println!("net-receiver: {note}");
        }
        return Ok(());
    }
    config.daemon = false;
    if let Some(dir) = config.working_directory.take() {
        process::enter_working_directory(&dir)?;
    }
    let default_log = if config.quiet { "warn" } else { "info" };
    let _log = logging::init(config.log_file.as_deref(), default_log, config.log_format)
        .with_context(|| {
            let file = config.log_file.as_deref().unwrap_or(Path::new("-"));
            format!("cannot open log file {}", file.display())
        })?;
    cli::check_open_files(config.max_connections);
    // Signals, reloads and start-up run here; connections on the worker threads.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(config, inherited))
}

/// Starts the output, builds the server from the configuration and serves until
/// SIGTERM or SIGINT.
async fn serve(config: Config, inherited: Vec<InheritedListener>) -> anyhow::Result<()> {
    let (lines, writer, reopen) = json_lines::json_output(&config)?;
    // Signal handlers are in place before anyone can learn we are listening
    // (`from_config` logs it).
    let shutdown = net_receiver::server::stop_signal().context("cannot handle SIGTERM/SIGINT")?;
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot handle SIGHUP")?;
    let server =
        Server::from_config_with_listeners(&config, PrintingReceiver { lines }, inherited).await?;
    let (destination, warning) = json_lines::json_destination(&config);
    match warning {
        Some(warning) => tracing::warn!("{warning}"),
        None => tracing::info!("JSON lines go to {destination}"),
    }
    tokio::spawn(reload_on_hangup(hangup, server.reloader(), reopen));
    process::notify_ready();
    systemd::notify_ready();
    systemd::spawn_watchdog();
    server
        .run_until(async {
            shutdown.await;
            systemd::notify_stopping();
        })
        .await;
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
}

/// `path` as seen from `working_directory` (for the daemon parent, which has not
/// entered it).
fn in_working_dir(config: &Config, path: &Path) -> PathBuf {
    match &config.working_directory {
        Some(dir) if path.is_relative() => dir.join(path),
        _ => path.to_owned(),
    }
}

/// On every SIGHUP: certificate, key and password store re-read (open
/// connections keep theirs), and the JSON-lines file reopened.
async fn reload_on_hangup(
    mut hangup: tokio::signal::unix::Signal,
    reloader: net_receiver::server::Reloader,
    json_file: Option<ReopenHandle>,
) {
    while hangup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading");
        reloader.reload();
        if let Some(json_file) = &json_file {
            json_file.reopen();
        }
    }
}
