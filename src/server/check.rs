//! `net-receiver check-config`: what a configuration would do, checked part by
//! part the way [`Server::from_config`](super::Server::from_config) builds it —
//! without binding a port, dropping privileges or starting the spool (a
//! running server keeps all three) — and with each outside service reached
//! once: every delivery target ([`Deliver::check`]), each HTTP hook (a TCP
//! connection; for https also a TLS handshake that verifies the certificate,
//! as a call would), the AUTH database, the Redis lockout store. Like `postfix
//! check` or `exim -bV`, it prints one line per part and fails when any part
//! would stop the server or lose mail.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use super::TlsHandle;
use super::build::{certificate_source, delivery_links, password_store};
use super::process;
use crate::config::{Config, DeliverConfig};
use crate::delivery::{Deliver as _, Maildir};
use crate::lockout::{Subject, store_from_config};
use crate::policy::{HttpHook, OnError, Policy as _};

/// The longest one outside service may take to answer.
const CHECK_LIMIT: Duration = Duration::from_secs(10);

/// How one part fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckStatus {
    /// As it should be.
    Ok,
    /// Works, but probably not as meant.
    Warn,
    /// Would stop the server, or lose or hold mail.
    Fail,
}

/// One part of the configuration and what was found.
#[derive(Debug, Clone)]
pub struct CheckLine {
    /// How it fared.
    pub status: CheckStatus,
    /// The part: `listener`, `deliver`, `hook`...
    pub part: &'static str,
    /// What would happen, or what is wrong.
    pub text: String,
}

/// Everything [`check_config`] found, in the order the server uses the parts.
#[derive(Debug, Clone, Default)]
pub struct ConfigCheck {
    /// One line per part.
    pub lines: Vec<CheckLine>,
}

impl ConfigCheck {
    fn push(&mut self, status: CheckStatus, part: &'static str, text: impl Into<String>) {
        self.lines.push(CheckLine {
            status,
            part,
            text: text.into(),
        });
    }

    fn result<E: fmt::Display>(&mut self, part: &'static str, result: Result<String, E>) {
        match result {
            Ok(text) => self.push(CheckStatus::Ok, part, text),
            Err(error) => self.push(CheckStatus::Fail, part, error.to_string()),
        }
    }

    /// The parts that failed.
    pub fn failures(&self) -> usize {
        self.lines
            .iter()
            .filter(|l| l.status == CheckStatus::Fail)
            .count()
    }
}

impl fmt::Display for ConfigCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.lines {
            let status = match line.status {
                CheckStatus::Ok => "ok  ",
                CheckStatus::Warn => "warn",
                CheckStatus::Fail => "FAIL",
            };
            writeln!(f, "{status} {:<9} {}", line.part, line.text)?;
        }
        Ok(())
    }
}

/// Checks `config` (see the module doc). Enters `working_directory` first
/// (process-wide), as the server would.
pub async fn check_config(config: &Config) -> ConfigCheck {
    let mut check = ConfigCheck::default();
    if let Some(dir) = &config.working_directory {
        let entered = process::enter_working_directory(dir)
            .map(|()| format!("working directory {}", dir.display()));
        check.result("process", entered);
    }
    if config.daemon {
        check.push(CheckStatus::Ok, "process", "detaches (daemon = true)");
    }
    match config.listeners() {
        Ok(listeners) => {
            for spec in &listeners {
                let proxy = if spec.proxy_protocol { ", PROXY" } else { "" };
                let text = format!("{} ({}{proxy})", spec.addr, spec.mode.as_str());
                check.push(CheckStatus::Ok, "listener", text);
            }
        }
        Err(error) => check.push(CheckStatus::Fail, "listener", error.to_string()),
    }
    let server_name = match config.settings() {
        Ok(settings) => {
            check.push(
                CheckStatus::Ok,
                "settings",
                format!("server name {}", settings.server_name),
            );
            settings.server_name
        }
        Err(error) => {
            check.push(CheckStatus::Fail, "settings", error.to_string());
            config
                .server_name
                .clone()
                .unwrap_or_else(|| "localhost".to_owned())
        }
    };
    for warning in config.checks_without_dns() {
        check.push(CheckStatus::Warn, "settings", warning);
    }
    let identity =
        process::resolve_identity(config.user_name.as_deref(), config.group_name.as_deref()).map(
            |id| match id {
                Some(id) => format!("runs as uid {} gid {} after binding", id.uid, id.gid),
                None => "keeps the user it is started as".to_owned(),
            },
        );
    check.result("process", identity);
    let tls = certificate_source(config, &server_name)
        .and_then(|source| Ok(TlsHandle::new(source)?))
        .map(|tls| match tls.source() {
            super::CertificateSource::Files { certificate, .. } => format!(
                "certificate {} (SHA-256 {})",
                certificate.display(),
                tls.fingerprint()
            ),
            super::CertificateSource::Generated { .. } => {
                "self-signed certificate, generated at start (no certificate/private_key)"
                    .to_owned()
            }
        });
    check.result("tls", tls);
    let passwords = password_store(config).await.map(|store| match store {
        Some((_, what)) => what,
        None => "no AUTH password store: AUTH is refused".to_owned(),
    });
    check.result("auth", passwords);
    policy_layers(config, &mut check).await;
    check.result(
        "metrics",
        config.metrics_listen().map(|addr| match addr {
            Some(addr) => format!("Prometheus metrics on http://{addr}/metrics"),
            None => "no metrics listener".to_owned(),
        }),
    );
    delivery(config, &server_name, &mut check).await;
    check
}

/// The lockout store, then the policy layers in their order.
async fn policy_layers(config: &Config, check: &mut ConfigCheck) {
    match store_from_config(config.lockout_store.as_deref()) {
        Ok(store) => {
            let subject = Subject::ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
            let asked = tokio::time::timeout(CHECK_LIMIT, store.status(&subject)).await;
            match asked {
                Ok(Ok(_)) => {
                    let text = match config.lockout_store.as_deref().map(str::trim) {
                        None | Some("") => "in memory (this process only)".to_owned(),
                        Some(m) if m.eq_ignore_ascii_case("memory") => {
                            "in memory (this process only)".to_owned()
                        }
                        Some(_) => "the Redis store answers".to_owned(),
                    };
                    check.push(CheckStatus::Ok, "lockout", text)
                }
                Ok(Err(error)) => check.push(
                    CheckStatus::Warn,
                    "lockout",
                    format!("{error} (the lockout fails open: AUTH goes on unlocked)"),
                ),
                Err(_) => check.push(
                    CheckStatus::Warn,
                    "lockout",
                    "the lockout store does not answer (the lockout fails open)",
                ),
            }
        }
        Err(error) => check.push(CheckStatus::Fail, "lockout", error.to_string()),
    }
    let mut order = 0;
    match config.dns() {
        Ok(Some(dns)) => {
            order += 1;
            let text = format!(
                "{order}. built-in DNS checks, name servers {:?}",
                dns.servers
            );
            check.push(CheckStatus::Ok, "policy", text);
        }
        Ok(None) => {}
        Err(error) => check.push(CheckStatus::Fail, "policy", error.to_string()),
    }
    for table in &config.hooks {
        order += 1;
        match HttpHook::new(table) {
            Ok(hook) => {
                let stages: Vec<&str> = table.stages.iter().map(|s| s.as_str()).collect();
                let reached = hook.reach(CHECK_LIMIT).await;
                // A hook that fails open only warns.
                let status = match (&reached, table.on_error) {
                    (Ok(_), _) => CheckStatus::Ok,
                    (Err(_), OnError::Accept) => CheckStatus::Warn,
                    (Err(_), OnError::Tempfail) => CheckStatus::Fail,
                };
                let how = reached.unwrap_or_else(|e| e);
                let text = format!(
                    "{order}. HTTP hook {} at {}: {how}",
                    hook.name(),
                    stages.join(", ")
                );
                check.push(status, "policy", text);
            }
            Err(error) => check.push(CheckStatus::Fail, "policy", error.to_string()),
        }
    }
    check.push(
        CheckStatus::Ok,
        "policy",
        format!("{}. the receiver's hooks", order + 1),
    );
}

/// The delivery: the spool, then each target, reached once.
async fn delivery(config: &Config, server_name: &str, check: &mut ConfigCheck) {
    if config.no_deliver {
        check.push(
            CheckStatus::Warn,
            "deliver",
            "no_deliver: mail is accepted and stored nowhere",
        );
        return;
    }
    if let Some(dir) = &config.spool_dir {
        // An invalid delay is the settings line's failure.
        let delay = config.spool_commit_delay().map_or_else(
            |_| "invalid, see settings".to_owned(),
            |d| format!("{} ms", d.as_secs_f64() * 1000.0),
        );
        let text = format!(
            "250 once durable in the spool {}, then delivered with retries \
             (452 beyond {} bytes; commit delay under load {delay})",
            dir.display(),
            config.spool_max_bytes
        );
        check.push(CheckStatus::Ok, "spool", text);
    }
    if config.deliver.is_empty() {
        let path = &config.maildir;
        let result = match Maildir::open(path) {
            Ok(maildir) => maildir.check().await,
            Err(error) => Err(format!("cannot open: {error}")),
        };
        let result = result.map(|text| format!("maildir {} (required): {text}", path.display()));
        return check.result(
            "deliver",
            result.map_err(|e| format!("maildir {}: {e}", path.display())),
        );
    }
    let links = match delivery_links(config, server_name).await {
        Ok(links) => links,
        Err(error) => return check.push(CheckStatus::Fail, "deliver", error.to_string()),
    };
    if !links.iter().any(|l| l.required) {
        check.push(
            CheckStatus::Fail,
            "deliver",
            "a delivery chain needs at least one required target",
        );
    }
    let spooled = config.spool_dir.is_some();
    let results = futures_util::future::join_all(links.iter().map(|l| l.target.check())).await;
    for ((link, table), outcome) in links.iter().zip(&config.deliver).zip(results) {
        let required = if link.required {
            "required"
        } else {
            "optional"
        };
        let status = match (&outcome, link.required) {
            (Ok(_), _) => CheckStatus::Ok,
            (Err(_), true) => CheckStatus::Fail,
            (Err(_), false) => CheckStatus::Warn,
        };
        let text = match outcome {
            Ok(text) => format!(
                "{} ({required}): {text}; {}",
                link.name,
                retries(table, spooled)
            ),
            Err(error) => format!("{} ({required}): {error}", link.name),
        };
        check.push(status, "deliver", text);
    }
}

/// What a transient failure of this target leads to.
fn retries(table: &DeliverConfig, spooled: bool) -> String {
    match (table, spooled) {
        (_, false) => "a transient failure answers 451 (the client retries)".to_owned(),
        (
            DeliverConfig::Webhook {
                retry_initial,
                retry_max,
                retry_for,
                ..
            },
            true,
        ) => format!(
            "the spool retries after {retry_initial} s, doubling to {retry_max} s, for {retry_for} s, then keeps a dead letter"
        ),
        (_, true) => "the spool retries on its own schedule until delivered".to_owned(),
    }
}
