//! Configuration: the TOML file (raw [`Config`], the seed's option names) validated
//! into [`Settings`], what the running server uses.
//!
//! Every field documents its default. Unknown keys and bad values are errors that
//! name the key; relative paths are taken as they are (relative to the directory
//! the server runs in).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::dns::DnsConfig;
use crate::lockout::Policy;
use crate::protocol::machine::ehlo_keywords;
use crate::protocol::{BareLineEnding, Limits};

/// The most worker threads `workers` may ask for.
pub const MAX_WORKERS: usize = 1024;

/// The configuration file, as written. Keys are the Ruby gem's option names where
/// it had one; every key is in docs/config.md.
///
/// ```
/// use net_receiver::Config;
///
/// let config = Config::parse(
///     r#"
///     server_name = "mx.example.com"
///     listening_ports = ["127.0.0.1:2525", "127.0.0.1:4650"]
///     max_recipients = 50
///     "#,
/// )?;
/// assert_eq!(config.max_recipients, 50);
/// // The mode follows the well-known port: 4650 is no SMTPS port, 465 would be.
/// assert_eq!(config.listeners()?.len(), 2);
/// assert_eq!(config.settings()?.server_name, "mx.example.com");
///
/// // A mistake names its place and key.
/// let error = Config::parse("max_recipients = \"many\"").unwrap_err();
/// assert!(error.contains("max_recipients"), "{error}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Name in the greeting, EHLO reply and trace headers (seed `server_name`).
    /// Default: this machine's host name.
    pub server_name: Option<String>,
    /// Where to listen (seed `listening_ports`): `PORT` (all addresses, IPv4 and
    /// IPv6), `ADDR:PORT` or `[IPV6]:PORT`. Default: `["127.0.0.1:2525"]`.
    pub listening_ports: Vec<String>,
    /// Maildir that receives accepted mail. Default: `mail`.
    pub maildir: PathBuf,
    /// Record `bad_characters`/`wrong_dot_usage` for MAIL FROM (seed option). Default: true.
    pub sender_character_check: bool,
    /// Record `bad_characters`/`wrong_dot_usage` for RCPT TO (seed option). Default: true.
    pub recipient_character_check: bool,
    /// Largest message in octets, advertised in EHLO SIZE. Default: 26214400 (25 MiB).
    pub max_message_size: u64,
    /// Largest header section in octets (up to the first empty line); a bigger
    /// one gets 552 5.3.4 after the end of data, nothing delivered. 0 = no limit.
    /// Default: 1048576 (Exim's `header_maxsize`).
    pub max_header_size: usize,
    /// Accepted recipients per transaction; more get 452 4.5.3. Default: 100.
    pub max_recipients: usize,
    /// Error replies per session before 421 4.7.0 and close. Default: 10.
    pub max_errors: u32,
    /// Longest command line in octets, CRLF included; longer get 500 5.5.6. Default: 512.
    pub max_command_line: usize,
    /// Longest line of message text in octets, CRLF included; a message with a longer
    /// line gets 500 5.5.6. 0 = no limit. Default: 1000.
    pub max_text_line: usize,
    /// Seconds a client may take to send one command (then 421 4.4.2). Default: 300.
    pub command_timeout: f64,
    /// Seconds of silence allowed while receiving message data (then 421 4.4.2).
    /// Default: 600.
    pub data_timeout: f64,
    /// A bare CR or LF in DATA: `reject` (550 5.6.2, default) or `normalize` (to CRLF).
    pub bare_line_ending: LineEndingPolicy,
    /// Do not print each received mail as a JSON line on stdout; also lowers the
    /// default log level from `info` to `warn` (`RUST_LOG`, when set, decides). Default:
    /// false. Read by the `net-receiver` binary only (a library program prints what it likes).
    pub quiet: bool,
    /// Benchmark mode: receive and fully parse each mail but store it nowhere, and
    /// answer 250 all the same. Mail is lost: never for real traffic. Default: false.
    pub no_deliver: bool,
    /// Spool directory (`--spool-dir`): each accepted mail is made durable there
    /// with group commit, 250 is sent, and it goes on to the Maildir afterwards
    /// (see docs/delivery.md, "Spool"). Default: none — 250 only once in the Maildir.
    pub spool_dir: Option<PathBuf>,
    /// Bytes of spool on disk beyond which mail gets 452 4.3.1. Default: 1073741824.
    pub spool_max_bytes: u64,
    /// Seconds a spool flush waits under load (the last flush held two messages
    /// or more), so more messages share its fdatasync (see [`SpoolOptions::commit_delay`](crate::spool::SpoolOptions::commit_delay)).
    /// 0 turns it off; at most 0.1. Default: 0.0003.
    pub spool_commit_delay: f64,
    /// The delivery chain (`[[deliver]]` tables: `kind = "maildir" | "lmtp"`, see
    /// [`DeliverConfig`]). Default: none — the Maildir at `maildir`.
    #[serde(rename = "deliver")]
    pub deliver: Vec<DeliverConfig>,
    /// Append each received mail's JSON line to this file instead of stdout;
    /// reopened on SIGHUP (for log rotation). Read by the binary only. Default:
    /// none (stdout; a daemon's stdout is `/dev/null`).
    pub json_file: Option<PathBuf>,
    /// Listeners with an explicit mode (`[[listener]]` tables), in addition to
    /// `listening_ports`.
    #[serde(rename = "listener")]
    pub listeners: Vec<ListenerConfig>,
    /// PEM certificate chain for TLS (seed `certificate`). Default: a self-signed
    /// certificate for `server_name` generated at start-up.
    pub certificate: Option<PathBuf>,
    /// PEM private key for `certificate` (seed `private_key`).
    pub private_key: Option<PathBuf>,
    /// Keep a generated certificate in the working directory and reuse it, so it
    /// stays the same across restarts. Default: false.
    pub keep_generated_certificate: bool,
    /// Seconds allowed for a TLS handshake. Default: 30.
    pub tls_handshake_timeout: f64,
    /// Connections open at once; more get 421 4.7.0 and are closed. Default:
    /// 10000 (an idle session costs a few KiB).
    pub max_connections: usize,
    /// Connections open at once from one IP address; more get 421 4.7.0. Default: 50
    /// (Postfix's `smtpd_client_connection_count_limit`).
    pub max_connections_per_ip: usize,
    /// Clients (CIDRs) not held to `max_connections_per_ip` and never locked out by
    /// IP — local software such as content filters and webmail, like Postfix's
    /// `smtpd_client_event_limit_exceptions` (`$mynetworks`); their failed AUTHs still
    /// wait and still count per login. Default: loopback, `["127.0.0.0/8", "::1/128"]`.
    pub per_ip_limit_exceptions: Vec<String>,
    /// Leading bits of an IPv6 address that make one client for
    /// `max_connections_per_ip` and the lockout (one IPv6 client usually holds a
    /// whole /64); IPv4 counts per address. 0..=128. Default: 64.
    pub ipv6_prefix_length: u8,
    /// Seconds a message in progress may take to finish after SIGTERM/SIGINT.
    /// Default: 30.
    pub shutdown_grace: f64,
    /// Threads serving connections, each with a single-threaded runtime of its
    /// own (thread per core). 0 = half the CPUs, at least 1. Default: 0.
    pub workers: usize,
    /// Peers allowed to send a PROXY protocol header (CIDRs, e.g. `10.0.0.0/8`).
    pub proxy_trusted_networks: Vec<String>,
    /// Switch to this user after binding (seed `user_name`).
    pub user_name: Option<String>,
    /// Switch to this group after binding (seed `group_name`).
    pub group_name: Option<String>,
    /// Change to this directory first; relative paths are relative to it (seed
    /// `working_directory`). Default: the current directory.
    pub working_directory: Option<PathBuf>,
    /// Write the server's pid here after binding (seed `pid_file`; the seed
    /// defaulted to `pid`, we write none unless asked).
    pub pid_file: Option<PathBuf>,
    /// Detach and run in the background (seed `daemon`). Default: false. Done by
    /// the binary before its runtime starts; `Server::from_config` refuses it.
    pub daemon: bool,
    /// Log to this file (rotated daily) instead of stderr. Read by the binary only
    /// (a library program installs its own `tracing` subscriber).
    pub log_file: Option<PathBuf>,
    /// Log lines as `seed` (the gem's text lines, default) or `json` (one object
    /// per line, stable field names) (`--log-format`). Read by the binary only.
    pub log_format: crate::logging::LogFormat,
    /// Failures within `lockout_period` that lock a client IP out, or a login out for
    /// one client, for `lockout_period` (seed option; the seed never read it); `0`
    /// turns the lockout off. Default: 3.
    pub max_failed_msgs_per_period: u32,
    /// Seconds: the window failures are counted in, and how long a lock lasts.
    /// Default: 600.
    pub lockout_period: f64,
    /// Where failures are counted: `memory` (default, this process) or a Redis URL
    /// (`redis://127.0.0.1:6379/`) shared by several receivers.
    pub lockout_store: Option<String>,
    /// Offer SMTP AUTH (PLAIN, LOGIN). Default: on when `passwd_file` or
    /// `password_db` is set.
    pub auth: Option<bool>,
    /// Also offer AUTH without TLS (test set-ups, TLS-terminating proxies); else
    /// plaintext AUTH gets 538 5.7.11. Default: false.
    pub allow_plaintext_auth: bool,
    /// Dovecot-style passwd file (`user:{SCHEME}secret` or `user:$argon2id$…`),
    /// re-read on SIGHUP.
    pub passwd_file: Option<PathBuf>,
    /// Database of users: an SQLite file, or a `postgres://…`, `mysql://…` or
    /// `mariadb://…` URL (table `users (username, password)`; docs/security.md, AUTH).
    pub password_db: Option<PathBuf>,
    /// The query for `password_db`; the user name is `?1` (SQLite), `$1`
    /// (PostgreSQL) or `?` (MySQL). Default: `SELECT password FROM users WHERE
    /// username = ?1` (`$1`, `?`).
    pub password_query: Option<String>,
    /// Seconds a lookup in a PostgreSQL/MySQL `password_db` may take; longer, or
    /// the database down, answers AUTH with 454 4.7.0. Default: 5.
    pub password_db_timeout: f64,
    /// Seconds the reply to the first failed AUTH of a session waits; each further
    /// failure doubles it (1, 2, 4, … up to 30). Default: 1.
    pub auth_failure_delay: f64,
    /// Name servers for the DNS checks, `ADDR:PORT` or `ADDR` (port 53), or
    /// `"system"` for `/etc/resolv.conf` (`--dns-server`). Default: none — no DNS
    /// lookups at all, and the DNS fields stay `null`.
    pub dns_servers: Vec<String>,
    /// Seconds one DNS lookup may take. Default: 5.
    pub dns_timeout: f64,
    /// DNSBL zones the client IP is looked up in (recorded only). Default: none.
    pub dnsbl_zones: Vec<String>,
    /// Refuse an EHLO/HELO name that does not resolve to the client's IP with
    /// 550 5.7.1 (seed option). Default: false.
    pub ehlo_validation_check: bool,
    /// Look up the MAIL FROM domain's MX and addresses (seed option). Default: on
    /// when `dns_servers` is set; `true` without `dns_servers` does nothing and
    /// says so at start.
    pub sender_mx_check: Option<bool>,
    /// Look up each RCPT TO domain's MX and addresses (seed option). Default: on
    /// when `dns_servers` is set; `true` without `dns_servers` does nothing and
    /// says so at start.
    pub recipient_mx_check: Option<bool>,
    /// What counts as a failure: `auth` (failed AUTH), `mail`, `rcpt`, `data` (a
    /// transaction refused at that step by a hook that called
    /// `Context::count_failure`; once per transaction — a hook's policy refusal
    /// alone does not count), `abuse` (the session was closed after
    /// `max_errors` error replies). Default: all five.
    pub lockout_counts: Vec<FailureKind>,
    /// `ADDR:PORT` that serves Prometheus metrics at `GET /metrics`
    /// (`--metrics-listen`). Default: none — no metrics endpoint.
    pub metrics_listen: Option<String>,
    /// HTTP stage hooks (`[[hook]]` tables; `--hook URL` adds one), called in
    /// this order after the built-in checks (see [`crate::policy::HookConfig`]).
    /// Default: none.
    #[serde(rename = "hook")]
    pub hooks: Vec<crate::policy::HookConfig>,
    /// Verify MAIL FROM addresses by SMTP callout to their MX (docs/callouts.md);
    /// needs `dns_servers`. Default: false.
    pub sender_callout: bool,
    /// Verify RCPT TO addresses by SMTP callout (to their MX, or to
    /// `callout_target`). Default: false.
    pub recipient_callout: bool,
    /// `ADDR:PORT` of an internal server asked about recipients instead of
    /// their MX (a receiver in front of it). Default: none.
    pub callout_target: Option<String>,
    /// The port exchangers are asked on; a test/lab setting. Default: 25.
    pub callout_port: u16,
    /// Exchangers (MX hosts, in preference order) tried per callout. Default: 2.
    pub callout_max_hosts: usize,
    /// Ask a made-up local part first to detect accept-all domains. Default: false.
    pub callout_random: bool,
    /// Defer (450 4.1.7 / 4.1.1) when a callout has no answer; else accept and
    /// record. Default: false.
    pub callout_defer_on_tempfail: bool,
    /// Seconds to connect to one exchanger. Default: 30.
    pub callout_connect_timeout: f64,
    /// Seconds for each reply (and the TLS handshake). Default: 30.
    pub callout_command_timeout: f64,
    /// Seconds a `pass` or `accept_all` is cached. Default: 604800 (7 days).
    pub callout_positive_ttl: f64,
    /// Seconds a `fail` or `error` is cached. Default: 10800 (3 hours).
    pub callout_negative_ttl: f64,
    /// Seconds "no exchanger answered" is cached for the domain. Default: 600.
    pub callout_tempfail_ttl: f64,
    /// Callouts per domain per minute; more get `tempfail`. Default: 10.
    pub callout_rate_limit: u32,
    /// Where results are cached: `memory` or a Redis URL shared by several
    /// receivers. Default: `memory`.
    pub callout_cache: Option<String>,
    /// Milters (`[[milter]]` tables; `--milter ADDR` adds one), called in this
    /// order after the HTTP hooks (see [`crate::policy::MilterConfig`]).
    /// Default: none.
    #[serde(rename = "milter")]
    pub milters: Vec<crate::policy::MilterConfig>,
}

/// A kind of failure that counts toward the lockout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureKind {
    /// A failed AUTH.
    Auth,
    /// MAIL refused with 5xx.
    Mail,
    /// RCPT refused with 5xx.
    Rcpt,
    /// DATA or the message refused with 5xx.
    Data,
    /// Protocol abuse: the session was closed for too many errors (`max_errors`).
    Abuse,
}

/// The `bare_line_ending` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LineEndingPolicy {
    /// Refuse the message after end-of-data with 550 5.6.2.
    #[default]
    Reject,
    /// Turn each bare CR or LF into CRLF.
    Normalize,
}

/// What the running server and the hooks see.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Name in the greeting, EHLO reply and trace headers.
    pub server_name: String,
    /// This machine's host name (`local_hostname` in the mail structure).
    pub local_hostname: String,
    /// Record the local-part analysis for MAIL FROM.
    pub sender_character_check: bool,
    /// Record the local-part analysis for RCPT TO.
    pub recipient_character_check: bool,
    /// Protocol limits.
    pub limits: Arc<Limits>,
    /// Seconds allowed for a TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
    /// Connections open at once from one IP address.
    pub max_connections_per_ip: usize,
    /// Time a message in progress may take to finish after a shutdown signal.
    pub shutdown_grace: Duration,
    /// Peers allowed to send a PROXY protocol header.
    pub proxy_trusted_networks: Vec<Cidr>,
    /// Clients not held to `max_connections_per_ip` nor locked out by IP.
    pub per_ip_limit_exceptions: Vec<Cidr>,
    /// Leading bits of an IPv6 address counted as one client (at most 128).
    pub ipv6_prefix_length: u8,
    /// When failures lock a client out.
    pub lockout_policy: Policy,
    /// What counts as a failure.
    pub lockout_counts: Vec<FailureKind>,
    /// Refuse EHLO names that do not resolve to the client (550 5.7.1).
    pub ehlo_validation_check: bool,
    /// Look up MAIL FROM domains.
    pub sender_mx_check: bool,
    /// Look up RCPT TO domains.
    pub recipient_mx_check: bool,
    /// Offer SMTP AUTH.
    pub auth: bool,
    /// Offer AUTH without TLS too.
    pub allow_plaintext_auth: bool,
    /// Wait before the reply to the first failed AUTH of a session (doubling).
    pub auth_failure_delay: Duration,
    pub(crate) ehlo_keywords: Arc<[String]>,
}

impl Config {
    /// Reads and parses a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses TOML text; the error is the parser's one-line message after where
    /// it is: `line 3, column 10, key daemon: invalid type: string "yes",
    /// expected a boolean` (see [`describe_toml_error`]).
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| describe_toml_error(text, &e))
    }

    /// Every listener: `listening_ports` (mode from the well-known port number)
    /// followed by the `[[listener]]` tables.
    pub fn listeners(&self) -> Result<Vec<ListenerSpec>, ConfigError> {
        let mut specs: Vec<ListenerSpec> = Vec::new();
        for text in &self.listening_ports {
            let addr = listen_addr("listening_ports", text)?;
            specs.push(ListenerSpec::new(addr, ListenerMode::for_port(addr.port())));
        }
        for listener in &self.listeners {
            let addr = listen_addr(
                "listener.address (a [[listener]] table or a --listen, --tls-listen or \
                 --submission-listen flag)",
                &listener.address,
            )?;
            specs.push(ListenerSpec {
                addr,
                mode: listener.mode,
                proxy_protocol: listener.proxy_protocol,
            });
        }
        if specs.is_empty() {
            return Err(invalid("listening_ports", "no address to listen on".into()));
        }
        if specs.iter().any(|s| s.proxy_protocol) && self.proxy_trusted_networks.is_empty() {
            return Err(invalid(
                "proxy_trusted_networks",
                "a listener expects PROXY headers but no network is trusted to send them".into(),
            ));
        }
        Ok(specs)
    }

    /// Where to serve `/metrics`, if anywhere.
    pub fn metrics_listen(&self) -> Result<Option<SocketAddr>, ConfigError> {
        let key = "metrics_listen";
        self.metrics_listen
            .as_deref()
            .map(|a| listen_addr(key, a))
            .transpose()
    }

    /// `password_db_timeout`, checked.
    pub fn password_db_timeout(&self) -> Result<Duration, ConfigError> {
        seconds("password_db_timeout", self.password_db_timeout)
    }

    /// The DNS set-up, or `None` when no name server is configured (no lookups).
    pub fn dns(&self) -> Result<Option<DnsConfig>, ConfigError> {
        if self.dns_servers.is_empty() {
            return Ok(None);
        }
        let mut servers = Vec::new();
        for text in &self.dns_servers {
            if text.trim().eq_ignore_ascii_case("system") {
                continue;
            }
            let addr = text
                .parse::<SocketAddr>()
                .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                .map_err(|_| {
                    invalid(
                        "dns_servers",
                        format!("{text:?} is not ADDR, ADDR:PORT or \"system\""),
                    )
                })?;
            servers.push(addr);
        }
        Ok(Some(DnsConfig {
            servers,
            timeout: seconds("dns_timeout", self.dns_timeout)?,
            dnsbl_zones: self.dnsbl_zones.clone(),
        }))
    }

    /// Validates the values and builds the settings.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let limits = Limits {
            server_name: self.server_name(),
            max_command_line: at_least("max_command_line", self.max_command_line, 64)?,
            max_text_line: if self.max_text_line == 0 {
                0
            } else {
                at_least("max_text_line", self.max_text_line, 80)?
            },
            max_message_size: at_least("max_message_size", self.max_message_size, 1)?,
            max_header_size: self.max_header_size,
            max_recipients: at_least("max_recipients", self.max_recipients, 1)?,
            max_errors: at_least("max_errors", self.max_errors, 1)?,
            command_timeout: seconds("command_timeout", self.command_timeout)?,
            data_timeout: seconds("data_timeout", self.data_timeout)?,
            bare_line_ending: match self.bare_line_ending {
                LineEndingPolicy::Reject => BareLineEnding::Reject,
                LineEndingPolicy::Normalize => BareLineEnding::Normalize,
            },
        };
        if limits.server_name.is_empty()
            || !limits
                .server_name
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'(' && b != b')')
        {
            return Err(invalid(
                "server_name",
                format!("{:?} must be a host name", limits.server_name),
            ));
        }
        self.spool_commit_delay()?;
        if self.workers > MAX_WORKERS {
            return Err(invalid(
                "workers",
                format!("{} is more than {MAX_WORKERS} threads", self.workers),
            ));
        }
        let proxy_trusted_networks = cidrs("proxy_trusted_networks", &self.proxy_trusted_networks)?;
        let per_ip_limit_exceptions =
            cidrs("per_ip_limit_exceptions", &self.per_ip_limit_exceptions)?;
        Ok(Settings {
            server_name: limits.server_name.clone(),
            local_hostname: local_hostname(),
            sender_character_check: self.sender_character_check,
            recipient_character_check: self.recipient_character_check,
            ehlo_keywords: ehlo_keywords(&limits),
            limits: Arc::new(limits),
            tls_handshake_timeout: seconds("tls_handshake_timeout", self.tls_handshake_timeout)?,
            max_connections: at_least("max_connections", self.max_connections, 1)?,
            max_connections_per_ip: at_least(
                "max_connections_per_ip",
                self.max_connections_per_ip,
                1,
            )?,
            shutdown_grace: seconds("shutdown_grace", self.shutdown_grace)?,
            proxy_trusted_networks,
            per_ip_limit_exceptions,
            ipv6_prefix_length: at_most_128("ipv6_prefix_length", self.ipv6_prefix_length)?,
            lockout_policy: Policy::new(
                self.max_failed_msgs_per_period,
                seconds("lockout_period", self.lockout_period)?,
            ),
            lockout_counts: self.lockout_counts.clone(),
            auth: self
                .auth
                .unwrap_or(self.passwd_file.is_some() || self.password_db.is_some()),
            allow_plaintext_auth: self.allow_plaintext_auth,
            ehlo_validation_check: self.ehlo_validation_check,
            sender_mx_check: self.sender_mx_check.unwrap_or(true),
            recipient_mx_check: self.recipient_mx_check.unwrap_or(true),
            auth_failure_delay: Duration::try_from_secs_f64(self.auth_failure_delay).map_err(
                |_| {
                    invalid(
                        "auth_failure_delay",
                        format!("{} is not a number of seconds", self.auth_failure_delay),
                    )
                },
            )?,
        })
    }

    /// The DNS checks asked for that cannot run because no `dns_servers` is set,
    /// each with the fix (logged as warnings at start).
    pub fn checks_without_dns(&self) -> Vec<String> {
        if !self.dns_servers.is_empty() {
            return Vec::new();
        }
        [
            ("ehlo_validation_check", Some(self.ehlo_validation_check)),
            ("sender_mx_check", self.sender_mx_check),
            ("recipient_mx_check", self.recipient_mx_check),
        ]
        .into_iter()
        .filter(|(_, on)| *on == Some(true))
        .map(|(key, _)| {
            format!(
                "{key} = true does nothing without dns_servers: set dns_servers \
                 (e.g. [\"system\"] or [\"127.0.0.1:53\"], flag --dns-server) or remove {key}"
            )
        })
        .collect()
    }

    fn server_name(&self) -> String {
        self.server_name.clone().unwrap_or_else(local_hostname)
    }
}

/// This machine's host name, or `localhost` when it has none.
pub fn local_hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

pub(super) fn invalid(key: &'static str, reason: String) -> ConfigError {
    ConfigError::Invalid { key, reason }
}

fn at_least<T: PartialOrd + std::fmt::Display + Copy>(
    key: &'static str,
    value: T,
    min: T,
) -> Result<T, ConfigError> {
    if value < min {
        return Err(invalid(key, format!("{value} is below the minimum {min}")));
    }
    Ok(value)
}

fn at_most_128(key: &'static str, value: u8) -> Result<u8, ConfigError> {
    if value > 128 {
        return Err(invalid(key, format!("{value} is more than 128 bits")));
    }
    Ok(value)
}

fn seconds(key: &'static str, value: f64) -> Result<Duration, ConfigError> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero() && d.as_secs() < 86_400 * 365)
        .ok_or_else(|| invalid(key, format!("{value} is not a positive number of seconds")))
}

mod callout;
mod defaults;
mod deliver;
mod errors;
pub use deliver::DeliverConfig;
pub use errors::{ConfigError, describe_toml_error};

mod network;
mod spool;
pub use network::{Cidr, ListenerConfig, ListenerMode, ListenerSpec, parse_listen_addr};
use network::{cidrs, listen_addr};
pub use spool::MAX_COMMIT_DELAY;

#[cfg(test)]
mod reference_tests;
#[cfg(test)]
mod tests;
