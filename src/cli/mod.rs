//! The binary's own parts (not the library's API): command-line flags overlaid on
//! the configuration file, the JSON-lines output, the open-files limit, systemd
//! (socket activation, notifications) and the receiver that prints each mail.

pub(crate) mod generate;
pub(crate) mod json_lines;
pub(crate) mod open_files;
pub(crate) mod systemd;

use std::path::PathBuf;

use std::io::Write as _;

use anyhow::Context as _;
use clap::Parser;
use net_receiver::config::{ListenerConfig, ListenerMode};
use net_receiver::logging::LogFormat;
use net_receiver::{Config, Context, DeliveryError, Receiver, defaults};

use json_lines::JsonLines;

/// A programmable SMTP receiver. With no arguments it listens on 127.0.0.1:2525,
/// stores mail in the Maildir ./mail and prints each mail as a JSON line.
#[derive(Debug, Clone, Parser)]
#[command(name = "net-receiver", version, about)]
pub(crate) struct Args {
    /// TOML configuration file (every key: docs/config.md, installed in
    /// /usr/share/doc/net-receiver).
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Listen for plain SMTP with STARTTLS (repeatable): `127.0.0.1:2525`,
    /// `[::1]:2525`. Any of the three listen flags replaces the config file's
    /// `listening_ports` and `[[listener]]`s.
    #[arg(long = "listen", value_name = "ADDR:PORT")]
    pub(crate) listen: Vec<String>,
    /// Listen for implicit TLS, RFC 8314 (repeatable).
    #[arg(long = "tls-listen", value_name = "ADDR:PORT")]
    pub(crate) tls_listen: Vec<String>,
    /// Listen for message submission: STARTTLS, MAIL needs AUTH (repeatable).
    #[arg(long = "submission-listen", value_name = "ADDR:PORT")]
    pub(crate) submission_listen: Vec<String>,
    /// PEM certificate chain (default: a self-signed certificate generated at start-up).
    #[arg(long, value_name = "FILE", requires = "key")]
    pub(crate) cert: Option<PathBuf>,
    /// PEM private key for --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub(crate) key: Option<PathBuf>,
    /// Maildir for accepted mail (created if missing).
    #[arg(long, value_name = "DIR")]
    pub(crate) maildir: Option<PathBuf>,
    /// Name used in the greeting, EHLO and Received headers.
    #[arg(long, value_name = "NAME")]
    pub(crate) server_name: Option<String>,
    /// Do not print the JSON line of each received mail; also lowers the default
    /// log level from `info` to `warn` (`RUST_LOG`, when set, still decides).
    #[arg(long)]
    pub(crate) quiet: bool,
    /// Append the JSON lines to this file instead of stdout (reopened on SIGHUP).
    #[arg(long, value_name = "FILE")]
    pub(crate) json_file: Option<PathBuf>,
    /// Benchmark mode: receive and fully parse each mail (structure built,
    /// `received` hook called) but store it nowhere, and answer 250 all the same.
    /// Mail is lost: never use it for real traffic.
    #[arg(long, conflicts_with = "maildir")]
    pub(crate) no_deliver: bool,
    /// Spool accepted mail durably in DIR (group commit) and answer 250 from
    /// there; it is delivered to the Maildir afterwards, with retries.
    #[arg(long, value_name = "DIR", conflicts_with = "no_deliver")]
    pub(crate) spool_dir: Option<PathBuf>,
    /// Switch to this user after binding (needs root).
    #[arg(long, value_name = "NAME")]
    pub(crate) user: Option<String>,
    /// Switch to this group after binding (needs root).
    #[arg(long, value_name = "NAME")]
    pub(crate) group: Option<String>,
    /// Change to this directory first; relative paths are relative to it.
    #[arg(long, value_name = "DIR")]
    pub(crate) working_directory: Option<PathBuf>,
    /// Threads serving connections (default: half the CPUs, at least 1).
    #[arg(long, value_name = "N")]
    pub(crate) workers: Option<usize>,
    /// Write the server's pid to this file.
    #[arg(long, value_name = "FILE")]
    pub(crate) pid_file: Option<PathBuf>,
    /// Log to this file, rotated daily, instead of stderr.
    #[arg(long, value_name = "FILE")]
    pub(crate) log_file: Option<PathBuf>,
    /// Detach and run in the background.
    #[arg(long)]
    pub(crate) daemon: bool,
    /// Name server for the DNS checks, ADDR:PORT (repeatable), or `system` for
    /// /etc/resolv.conf. Without it no DNS lookups are made.
    #[arg(long = "dns-server", value_name = "ADDR:PORT")]
    pub(crate) dns_server: Vec<String>,
    /// Dovecot-style passwd file for AUTH (`user:{SCHEME}secret`), re-read on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub(crate) passwd_file: Option<PathBuf>,
    /// Log lines as `seed` (text, the default) or `json` (one object per line).
    #[arg(long, value_name = "FORMAT", value_parser = ["seed", "json"])]
    pub(crate) log_format: Option<String>,
    /// Serve Prometheus metrics at `GET /metrics` on this address.
    #[arg(long, value_name = "ADDR:PORT")]
    pub(crate) metrics_listen: Option<String>,
    /// Call an HTTP stage hook at `data` with the defaults of a `[[hook]]`
    /// table (repeatable; after the config file's hooks), e.g.
    /// `http://127.0.0.1:8080/hook`, or `https://…` (its certificate verified
    /// against the system's CAs; a private CA needs a `[[hook]]` with `tls_ca`).
    #[arg(long = "hook", value_name = "URL")]
    pub(crate) hook: Vec<String>,
    /// Call a milter with the defaults of a `[[milter]]` table (repeatable;
    /// after the config file's milters), e.g. `inet:127.0.0.1:8891` or
    /// `unix:/run/opendkim/opendkim.sock`.
    #[arg(long = "milter", value_name = "ADDR")]
    pub(crate) milter: Vec<String>,
    /// Write the man pages into DIR and exit (for packagers).
    #[arg(long, value_name = "DIR", hide = true)]
    pub(crate) generate_man: Option<PathBuf>,
    /// Write bash, zsh and fish completions into DIR and exit (for packagers).
    #[arg(long, value_name = "DIR", hide = true)]
    pub(crate) generate_completions: Option<PathBuf>,
    #[command(subcommand)]
    pub(crate) command: Option<Subcommand>,
}

/// What the binary does besides serving.
#[derive(Debug, Clone, clap::Subcommand)]
pub(crate) enum Subcommand {
    /// Read a password on stdin (without echo on a terminal) and print its argon2id
    /// hash, ready for a passwd file line `user:HASH`.
    HashPassword,
    /// Check a configuration file and say what it would do, like `postfix
    /// check`: every key validated, the TLS certificate loaded, and each
    /// delivery target, HTTP hook, AUTH database and Redis lockout store
    /// reached once (nothing bound, nothing delivered). Prints one line per
    /// part; exits 1 when any part fails. Other flags given before the
    /// subcommand apply as when serving.
    CheckConfig {
        /// The TOML configuration file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

/// `net-receiver check-config FILE`: prints what the configuration (with the
/// other flags) would do; `Ok(false)` when a part failed.
pub(crate) fn check_config_command(args: &Args, file: &std::path::Path) -> anyhow::Result<bool> {
    let args = Args {
        config: Some(file.to_owned()),
        command: None,
        ..args.clone()
    };
    let config = configure(&args)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let check = runtime.block_on(net_receiver::server::check_config(&config));
    let failures = check.failures();
    let verdict = if failures == 0 {
        "no problem found".to_owned()
    } else {
        format!("{failures} problem(s) found")
    };
    // Written, not printed: a closed pipe (`| head`) is an error, not a panic.
    let mut out = std::io::stdout().lock();
    write!(out, "{check}")
        .and_then(|()| writeln!(out, "{}: {verdict}", file.display()))
        .and_then(|()| out.flush())
        .context("cannot write the report to stdout")?;
    Ok(failures == 0)
}

/// `net-receiver hash-password`.
pub(crate) fn hash_password_command() -> anyhow::Result<String> {
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
pub(crate) fn configure(args: &Args) -> anyhow::Result<Config> {
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
        config.certificate.clone_from(&args.cert);
        config.private_key.clone_from(&args.key);
    }
    if let Some(dir) = &args.maildir {
        config.maildir.clone_from(dir);
    }
    let optional = [
        (&args.server_name, &mut config.server_name),
        (&args.user, &mut config.user_name),
        (&args.group, &mut config.group_name),
        (&args.metrics_listen, &mut config.metrics_listen),
    ];
    for (flag, option) in optional {
        if flag.is_some() {
            option.clone_from(flag);
        }
    }
    let paths = [
        (&args.working_directory, &mut config.working_directory),
        (&args.pid_file, &mut config.pid_file),
        (&args.log_file, &mut config.log_file),
        (&args.passwd_file, &mut config.passwd_file),
        (&args.json_file, &mut config.json_file),
        (&args.spool_dir, &mut config.spool_dir),
    ];
    for (flag, option) in paths {
        if flag.is_some() {
            option.clone_from(flag);
        }
    }
    if !args.dns_server.is_empty() {
        config.dns_servers.clone_from(&args.dns_server);
    }
    config.hooks.extend(
        args.hook
            .iter()
            .map(net_receiver::policy::HookConfig::with_url),
    );
    config.milters.extend(
        args.milter
            .iter()
            .map(net_receiver::policy::MilterConfig::with_address),
    );
    match args.log_format.as_deref() {
        Some("json") => config.log_format = LogFormat::Json,
        Some(_) => config.log_format = LogFormat::Seed,
        None => {}
    }
    if let Some(workers) = args.workers {
        config.workers = workers;
    }
    config.daemon |= args.daemon;
    config.quiet |= args.quiet;
    config.no_deliver |= args.no_deliver;
    Ok(config)
}

/// The binary's hooks: the defaults, plus a JSON line per delivered mail.
pub(crate) struct PrintingReceiver {
    /// Where each mail's JSON line goes; `None` with `--quiet`.
    pub(crate) lines: Option<JsonLines>,
}

impl Receiver for PrintingReceiver {
    async fn received(&self, cx: &mut Context<'_>) -> Result<(), DeliveryError> {
        defaults::received(cx).await?;
        let from = cx.mail.reverse_path();
        tracing::info!(name: "message_accepted", code = 250u16, id = %cx.mail.id, from = %net_receiver::logging::Escaped(&from), "received mail");
        if let Some(lines) = &self.lines {
            lines.print(cx.mail).await;
        }
        Ok(())
    }
}

/// Raises the open-files soft limit to the hard limit (each connection holds a
/// descriptor) and warns when `max_connections` still cannot fit.
pub(crate) fn check_open_files(max_connections: usize) {
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
