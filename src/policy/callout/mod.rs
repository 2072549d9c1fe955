//! Sender and recipient verification by SMTP callout ("test for live
//! servers"), a built-in policy layer that runs right after the DNS checks:
//! at MAIL FROM (`sender_callout`) and RCPT TO (`recipient_callout`) it asks
//! the address's mail exchanger — or `callout_target`, an internal server —
//! `MAIL FROM:<>` / `RCPT TO:<address>` and QUITs without sending a message,
//! as Exim's `verify = sender/callout` and Postfix's `reject_unverified_sender`
//! do. The finding goes to `mailfrom.callout` / `rcptto[].callout`.
//!
//! Done carelessly a callout makes a site abusive, so: off by default; every
//! result that can be kept is cached ([`cache`]); one probe at a time and
//! `callout_rate_limit` probes a minute per domain ([`limits`]); only the
//! addresses the DNS returned for the domain's MX (or implicit MX) are
//! contacted, never the client's own, at most `callout_max_hosts` of them;
//! every step is bounded by a timeout. The conversation is a sans-IO
//! [`probe::Probe`] driven by [`driver`]; the order of hosts, the cache and the
//! limits are in `verify.rs`.
//!
//! One rule is built in (everything else is the hooks'): a `fail` refuses the
//! sender with 550 5.1.7, a recipient with 550 5.1.1; a `tempfail` defers with
//! 450 4.1.7 (sender) / 450 4.1.1 (recipient) only with
//! `callout_defer_on_tempfail = true` — by default it is recorded and the
//! address accepted. `accept_all` and `error` are recorded only. Authenticated
//! clients' senders, the null sender and addresses without a domain are never
//! probed. See docs/callouts.md.

pub mod cache;
pub mod driver;
pub mod limits;
pub mod probe;
mod verify;

#[cfg(test)]
mod probe_tests;
#[cfg(test)]
mod rule_tests;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{Policy, PolicyFuture, Stage, Verdict};
use crate::dns::Dns;
use crate::mail::{Callout, CalloutResult, MailFrom, RcptTo};
use crate::metrics::LayerKind;
use crate::protocol::Reply;
use crate::receiver::Context;

pub use verify::Role;

/// The callout settings (the `callout_*` configuration keys; docs/config.md).
#[derive(Debug, Clone, PartialEq)]
pub struct CalloutSettings {
    /// Verify MAIL FROM addresses (`sender_callout`).
    pub sender: bool,
    /// Verify RCPT TO addresses (`recipient_callout`).
    pub recipient: bool,
    /// Ask this server about recipients instead of their MX (`callout_target`).
    pub target: Option<SocketAddr>,
    /// The port of the exchangers (`callout_port`, 25; a test/lab setting).
    pub port: u16,
    /// Exchangers tried per callout (`callout_max_hosts`, 2).
    pub max_hosts: usize,
    /// Ask a made-up local part first to detect accept-all domains (`callout_random`).
    pub random: bool,
    /// Defer on `tempfail` (`callout_defer_on_tempfail`).
    pub defer_on_tempfail: bool,
    /// Connect timeout (`callout_connect_timeout`, 30 s).
    pub connect_timeout: Duration,
    /// Per-command timeout (`callout_command_timeout`, 30 s).
    pub command_timeout: Duration,
    /// How long a `pass` (and `accept_all`) is kept (`callout_positive_ttl`, 7 days).
    pub positive_ttl: Duration,
    /// How long a `fail` or `error` is kept (`callout_negative_ttl`, 3 hours).
    pub negative_ttl: Duration,
    /// How long "no exchanger reachable" is kept (`callout_tempfail_ttl`, 10 minutes).
    pub tempfail_ttl: Duration,
    /// Probes per domain per minute (`callout_rate_limit`, 10).
    pub rate_limit: u32,
    /// Share the cache in this Redis (`callout_cache`); `None` = memory only.
    pub redis_url: Option<String>,
}

impl Default for CalloutSettings {
    fn default() -> Self {
        Self {
            sender: false,
            recipient: false,
            target: None,
            port: 25,
            max_hosts: 2,
            random: false,
            defer_on_tempfail: false,
            connect_timeout: Duration::from_secs(30),
            command_timeout: Duration::from_secs(30),
            positive_ttl: Duration::from_secs(7 * 86_400),
            negative_ttl: Duration::from_secs(3 * 3600),
            tempfail_ttl: Duration::from_secs(600),
            rate_limit: 10,
            redis_url: None,
        }
    }
}

impl CalloutSettings {
    /// Whether any callout is on.
    pub fn enabled(&self) -> bool {
        self.sender || self.recipient
    }
}

/// Counts of what the callouts did (also in the log).
#[derive(Debug, Default)]
pub struct CalloutStats {
    /// Connections made (or tried) to exchangers.
    pub connections: AtomicU64,
    /// Results answered from the cache.
    pub cache_hits: AtomicU64,
    /// Callouts not made because of the per-domain rate limit.
    pub rate_limited: AtomicU64,
}

impl CalloutStats {
    /// Connections made so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Cache hits so far.
    pub fn cache_hits(&self) -> u64 {
        self.cache_hits.load(Ordering::Relaxed)
    }

    /// Callouts not made because of the rate limit so far.
    pub fn rate_limited(&self) -> u64 {
        self.rate_limited.load(Ordering::Relaxed)
    }
}

/// The callout layer; added by `Server::from_config` after the DNS checks.
pub struct Callouts {
    verifier: verify::Verifier,
}

impl std::fmt::Debug for Callouts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the settings whole: the Redis URL may hold a password.
        f.debug_struct("Callouts")
            .field("describe", &self.describe())
            .finish_non_exhaustive()
    }
}

/// Why the layer cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CalloutError {
    /// A callout needs the MX and no resolver is configured.
    #[error("{0} needs dns_servers (the exchangers come from the MX records){hint}", hint = if *.0 == "recipient_callout" { " or callout_target" } else { "" })]
    NoDns(&'static str),
    /// The Redis URL of `callout_cache` is not usable.
    #[error("callout_cache: {0}")]
    Cache(String),
    /// The TLS client could not be made.
    #[error("callout TLS client: {0}")]
    Tls(String),
}

impl CalloutError {
    /// The configuration key the error is about.
    pub fn key(&self) -> &'static str {
        match self {
            CalloutError::NoDns(key) => key,
            CalloutError::Tls(_) => "sender_callout",
            CalloutError::Cache(_) => "callout_cache",
        }
    }
}

impl Callouts {
    /// What is verified where, for the start-up log line.
    pub fn describe(&self) -> String {
        let s = &self.verifier.settings;
        let mut parts = Vec::new();
        if s.sender {
            parts.push("senders at their MX".to_owned());
        }
        if s.recipient {
            parts.push(match s.target {
                Some(target) => format!("recipients at {target}"),
                None => "recipients at their MX".to_owned(),
            });
        }
        let cache = if s.redis_url.is_some() {
            "memory and Redis"
        } else {
            "memory"
        };
        format!("{}; cache in {cache}", parts.join(", "))
    }

    /// The layer with `settings`, asking `dns` for exchangers (needed unless
    /// only recipients are verified against `callout_target`); `helo_name` is
    /// what it says in EHLO (`server_name`).
    pub fn new(
        settings: CalloutSettings,
        dns: Option<Arc<Dns>>,
        helo_name: &str,
    ) -> Result<Self, CalloutError> {
        if dns.is_none() {
            if settings.sender {
                return Err(CalloutError::NoDns("sender_callout"));
            }
            if settings.recipient && settings.target.is_none() {
                return Err(CalloutError::NoDns("recipient_callout"));
            }
        }
        let cache =
            cache::CalloutCache::new(settings.redis_url.as_deref()).map_err(CalloutError::Cache)?;
        let tls = driver::opportunistic_tls().map_err(|e| CalloutError::Tls(e.to_string()))?;
        Ok(Self {
            verifier: verify::Verifier {
                limits: limits::DomainLimits::new(settings.rate_limit),
                settings,
                dns,
                helo_name: helo_name.to_owned(),
                cache,
                tls,
                stats: Arc::new(CalloutStats::default()),
            },
        })
    }

    /// The counters, shared (for tests and metrics).
    pub fn stats(&self) -> Arc<CalloutStats> {
        Arc::clone(&self.verifier.stats)
    }

    /// Verifies `address` (without brackets) as `role` for a client at
    /// `client`: the cache, else a probe. The layer's stages call this; it is
    /// public for programs that want a callout from their own hooks.
    pub async fn verify(&self, address: &str, role: Role, client: Option<IpAddr>) -> Callout {
        self.verifier.verify(address, role, client).await
    }
}

/// The refusal the built-in rule makes of `found` for `role`, if any.
pub fn built_in_rule(found: &Callout, role: Role, defer_on_tempfail: bool) -> Option<Reply> {
    let host = found
        .host
        .as_deref()
        .map(|h| format!("host {h} said: "))
        .unwrap_or_default();
    let said: String = format!("{host}{}", found.text).chars().take(300).collect();
    match (found.result, role) {
        (CalloutResult::Fail, Role::Sender) => Some(Reply::new(
            550,
            (5, 1, 7),
            format!("Sender address rejected: undeliverable address: {said}"),
        )),
        (CalloutResult::Fail, Role::Recipient) => Some(Reply::new(
            550,
            (5, 1, 1),
            format!("Recipient address rejected: undeliverable address: {said}"),
        )),
        (CalloutResult::Tempfail, Role::Sender) if defer_on_tempfail => Some(Reply::new(
            450,
            (4, 1, 7),
            format!("Sender address verification failed for now: {said}"),
        )),
        (CalloutResult::Tempfail, Role::Recipient) if defer_on_tempfail => Some(Reply::new(
            450,
            (4, 1, 1),
            format!("Recipient address verification failed for now: {said}"),
        )),
        _ => None,
    }
}

/// Counts one callout in the layer metrics: its time (a cache hit's too), and
/// an error when no exchanger could be asked.
fn count(cx: &Context<'_>, stage: Stage, started: Instant, found: &Callout) {
    if let Some(metrics) = cx.metrics() {
        let failed = found.result == CalloutResult::Error;
        metrics.layer_call(LayerKind::Callout, stage, started.elapsed(), failed);
    }
}

fn client_ip(cx: &Context<'_>) -> Option<IpAddr> {
    cx.mail.remote_ip.parse().ok()
}

impl Policy for Callouts {
    fn name(&self) -> &'static str {
        "callout"
    }

    fn mail_from<'a>(
        &'a self,
        cx: &'a mut Context<'_>,
        from: &'a mut MailFrom,
    ) -> PolicyFuture<'a> {
        Box::pin(async move {
            let settings = &self.verifier.settings;
            if !settings.sender || cx.mail.authenticated.is_some() || from.domain.is_none() {
                return Verdict::Continue;
            }
            let started = Instant::now();
            let found = self.verify(&from.url, Role::Sender, client_ip(cx)).await;
            count(cx, Stage::MailFrom, started, &found);
            let refusal = built_in_rule(&found, Role::Sender, settings.defer_on_tempfail);
            from.callout = Some(found);
            refusal.map_or(Verdict::Continue, Verdict::Refuse)
        })
    }

    fn rcpt_to<'a>(&'a self, cx: &'a mut Context<'_>, to: &'a mut RcptTo) -> PolicyFuture<'a> {
        Box::pin(async move {
            let settings = &self.verifier.settings;
            if !settings.recipient || to.domain.is_none() {
                return Verdict::Continue;
            }
            let started = Instant::now();
            let found = self.verify(&to.url, Role::Recipient, client_ip(cx)).await;
            count(cx, Stage::RcptTo, started, &found);
            let refusal = built_in_rule(&found, Role::Recipient, settings.defer_on_tempfail);
            to.callout = Some(found);
            refusal.map_or(Verdict::Continue, Verdict::Refuse)
        })
    }
}
