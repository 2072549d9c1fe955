//! Prometheus metrics: one [`Metrics`] value, shared by `Arc` between the
//! connections (through [`Services`](crate::receiver::Services)) and the
//! `/metrics` endpoint ([`serve`]).
//!
//! Counting is an atomic add on a counter created up front: every label value
//! is a `&'static str` from a closed list, and each (metric, label) pair's
//! counter handle is made once in [`Metrics::new`], so an event never
//! allocates, hashes or locks. The exceptions are a reply code outside the
//! SMTP list that a hook made up and the DNS checks' results (`layers.rs`):
//! they are looked up in their family (a read lock).
//! No label ever holds an address, a name or anything else a client chooses.
//!
//! The endpoint speaks OpenMetrics 1.0 when the scraper's `Accept` asks for
//! `application/openmetrics-text` (Prometheus does), and the Prometheus text
//! format 0.0.4 otherwise ([`to_text_format`]). Every metric is listed in the
//! "Metrics" section of docs/operations.md.

mod callout;
mod http;
mod layers;
mod spool;
mod targets;
#[cfg(test)]
mod tests;
mod text_format;

use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

pub use http::serve;
pub use layers::{DNS_RESULTS, DnsCheck, LayerKind};
pub use targets::TargetMetrics;
pub use text_format::to_text_format;

/// One label, its value from a closed list.
type Label = [(&'static str, &'static str); 1];
/// The reply labels: class (`2xx` …) and code.
type ReplyLabel = (Label, [(&'static str, u16); 1]);

/// Why a connection was refused (`net_receiver_connections_refused_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `max_connections` or `max_connections_per_ip` reached.
    TooManyConnections,
    /// A PROXY listener's client is not in `proxy_trusted_networks`.
    UntrustedProxy,
    /// The PROXY header was missing, bad or late.
    BadProxyHeader,
    /// The client is locked out (421 greeting).
    LockedOut,
}

impl Refused {
    const ALL: [Self; 4] = [
        Self::TooManyConnections,
        Self::UntrustedProxy,
        Self::BadProxyHeader,
        Self::LockedOut,
    ];
    const fn as_str(self) -> &'static str {
        match self {
            Self::TooManyConnections => "too_many_connections",
            Self::UntrustedProxy => "untrusted_proxy",
            Self::BadProxyHeader => "bad_proxy_header",
            Self::LockedOut => "locked_out",
        }
    }
}

/// An SMTP command that reached the session (`net_receiver_commands_total{verb}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Verb {
    Ehlo,
    Helo,
    Mail,
    Rcpt,
    Data,
    Bdat,
    Rset,
    Noop,
    Help,
    Vrfy,
    Expn,
    Quit,
    Auth,
    StartTls,
}

impl Verb {
    const ALL: [Self; 14] = [
        Self::Ehlo,
        Self::Helo,
        Self::Mail,
        Self::Rcpt,
        Self::Data,
        Self::Bdat,
        Self::Rset,
        Self::Noop,
        Self::Help,
        Self::Vrfy,
        Self::Expn,
        Self::Quit,
        Self::Auth,
        Self::StartTls,
    ];
    const fn as_str(self) -> &'static str {
        match self {
            Self::Ehlo => "EHLO",
            Self::Helo => "HELO",
            Self::Mail => "MAIL",
            Self::Rcpt => "RCPT",
            Self::Data => "DATA",
            Self::Bdat => "BDAT",
            Self::Rset => "RSET",
            Self::Noop => "NOOP",
            Self::Help => "HELP",
            Self::Vrfy => "VRFY",
            Self::Expn => "EXPN",
            Self::Quit => "QUIT",
            Self::Auth => "AUTH",
            Self::StartTls => "STARTTLS",
        }
    }
}

/// Why a complete or partial message was not taken
/// (`net_receiver_messages_refused_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageRefused {
    /// Over `max_message_size`.
    TooLarge,
    /// A bare CR or LF under `bare_line_ending = "reject"`.
    BareLineEnding,
    /// A line over `max_text_line`.
    LineTooLong,
    /// A header section over `max_header_size`.
    HeaderTooLarge,
    /// A policy layer (DNS checks, hooks) refused it.
    Policy,
    /// `received` failed (delivery or the hook).
    DeliveryFailed,
}

impl MessageRefused {
    const ALL: [Self; 6] = [
        Self::TooLarge,
        Self::BareLineEnding,
        Self::LineTooLong,
        Self::HeaderTooLarge,
        Self::Policy,
        Self::DeliveryFailed,
    ];
    const fn as_str(self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::BareLineEnding => "bare_line_ending",
            Self::LineTooLong => "line_too_long",
            Self::HeaderTooLarge => "header_too_large",
            Self::Policy => "policy",
            Self::DeliveryFailed => "delivery_failed",
        }
    }
}

/// How `received` failed (`net_receiver_delivery_failures_total{kind}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryFailure {
    /// A temporary failure (451).
    Temporary,
    /// The store is full (452).
    Storage,
    /// A permanent refusal (554).
    Permanent,
}

/// The reply codes of SMTP (RFC 5321, 4954, 3207, 7504) whose counters exist
/// from the start (at 0, so that a rate over them never starts from nothing).
const SMTP_CODES: [u16; 33] = [
    211, 214, 220, 221, 235, 250, 251, 252, 334, 354, 421, 450, 451, 452, 454, 455, 500, 501, 502,
    503, 504, 521, 530, 534, 535, 538, 550, 551, 552, 553, 554, 555, 556,
];

/// A hand on `net_receiver_sessions_open`: one more while it lives.
#[derive(Debug)]
pub struct OpenSession(Gauge);

impl Drop for OpenSession {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Every metric of the receiver, and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    accepted: Counter,
    refused: [Counter; Refused::ALL.len()],
    sessions_open: Gauge,
    commands: [Counter; Verb::ALL.len()],
    reply_family: Family<ReplyLabel, Counter>,
    /// Index: code - 200, for the codes of [`SMTP_CODES`].
    reply_codes: Box<[Option<Counter>]>,
    recipients_accepted: Counter,
    recipients_refused: Counter,
    messages_accepted: Counter,
    messages_refused: [Counter; MessageRefused::ALL.len()],
    bytes_received: Counter,
    delivery_duration: Histogram,
    delivery_failures: [Counter; 3],
    auth_success: Counter,
    auth_failure: Counter,
    lockouts: Counter,
    tls_versions: [Counter; 2],
    tls_failures: [Counter; 2],
    layers: layers::LayerMetrics,
    targets: TargetMetrics,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Registers a family with one label and makes a counter for each value.
fn labelled<const N: usize>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    key: &'static str,
    values: [&'static str; N],
) -> [Counter; N] {
    let family = Family::<Label, Counter>::default();
    registry.register(name, help, family.clone());
    values.map(|value| family.get_or_create_owned(&[(key, value)]))
}

fn reply_class(code: u16) -> &'static str {
    match code / 100 {
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        5 => "5xx",
        _ => "other",
    }
}

impl Metrics {
    /// Every metric, registered under the `net_receiver_` prefix, at 0.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("net_receiver");
        registry.register(
            "build",
            "The running version",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        let accepted = Counter::default();
        registry.register(
            "connections_accepted",
            "Connections admitted (past the connection limits and the PROXY header)",
            accepted.clone(),
        );
        let refused = labelled(
            &mut registry,
            "connections_refused",
            "Connections refused, by reason",
            "reason",
            Refused::ALL.map(Refused::as_str),
        );
        let sessions_open = Gauge::default();
        registry.register(
            "sessions_open",
            "SMTP sessions open now",
            sessions_open.clone(),
        );
        let commands = labelled(
            &mut registry,
            "commands",
            "SMTP commands that reached the session, by verb",
            "verb",
            Verb::ALL.map(Verb::as_str),
        );
        let reply_family = Family::<ReplyLabel, Counter>::default();
        registry.register(
            "replies",
            "Replies sent, by class and code (each multi-line reply once)",
            reply_family.clone(),
        );
        let mut reply_codes: Box<[Option<Counter>]> = vec![None; 400].into_boxed_slice();
        for code in SMTP_CODES {
            let counter = reply_family
                .get_or_create_owned(&([("class", reply_class(code))], [("code", code)]));
            if let Some(slot) = reply_codes.get_mut(usize::from(code - 200)) {
                *slot = Some(counter);
            }
        }
        let [recipients_accepted, recipients_refused] = labelled(
            &mut registry,
            "recipients",
            "RCPT TO answered, by result",
            "result",
            ["accepted", "refused"],
        );
        let messages_accepted = Counter::default();
        registry.register(
            "messages_accepted",
            "Messages taken (250 after the final dot or BDAT LAST)",
            messages_accepted.clone(),
        );
        let messages_refused = labelled(
            &mut registry,
            "messages_refused",
            "Messages not taken after their data, by reason",
            "reason",
            MessageRefused::ALL.map(MessageRefused::as_str),
        );
        let bytes_received = Counter::default();
        registry.register(
            "received_bytes",
            "Bytes read from clients (after TLS decryption)",
            bytes_received.clone(),
        );
        let delivery_duration = Histogram::new([
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ]);
        registry.register(
            "delivery_duration_seconds",
            "Time the received hook (delivery included) took per message",
            delivery_duration.clone(),
        );
        let delivery_failures = labelled(
            &mut registry,
            "delivery_failures",
            "Messages whose delivery failed, by kind",
            "kind",
            ["temporary", "storage", "permanent"],
        );
        let [auth_success, auth_failure] = labelled(
            &mut registry,
            "auth",
            "AUTH attempts, by result",
            "result",
            ["success", "failure"],
        );
        let lockouts = Counter::default();
        registry.register(
            "lockouts",
            "Clients locked out after repeated failures",
            lockouts.clone(),
        );
        let tls_versions = labelled(
            &mut registry,
            "tls_handshakes",
            "TLS handshakes completed (STARTTLS and implicit TLS), by version",
            "version",
            ["TLSv1.2", "TLSv1.3"],
        );
        let tls_failures = labelled(
            &mut registry,
            "tls_handshake_failures",
            "TLS handshakes that failed, by reason",
            "reason",
            ["error", "timeout"],
        );
        let layers = layers::LayerMetrics::register(&mut registry);
        let targets = TargetMetrics::register(&mut registry);
        Self {
            registry,
            accepted,
            refused,
            sessions_open,
            commands,
            reply_family,
            reply_codes,
            recipients_accepted,
            recipients_refused,
            messages_accepted,
            messages_refused,
            bytes_received,
            delivery_duration,
            delivery_failures,
            auth_success,
            auth_failure,
            lockouts,
            tls_versions,
            tls_failures,
            layers,
            targets,
        }
    }

    /// Handles on the delivery targets' metrics, for a
    /// [`Chain::with_metrics`](crate::delivery::Chain::with_metrics).
    pub fn targets(&self) -> TargetMetrics {
        self.targets.clone()
    }

    /// Adds the spool's metrics (`net_receiver_spool_*`, see docs/operations.md),
    /// read from `spool` at each scrape.
    pub fn register_spool(&mut self, spool: crate::spool::StatsHandle) {
        self.registry
            .register_collector(Box::new(spool::SpoolCollector(spool)));
    }

    /// Adds the SMTP callouts' metrics (`net_receiver_callout_*`, see
    /// docs/operations.md), read from `stats` at each scrape.
    pub fn register_callouts(
        &mut self,
        stats: std::sync::Arc<crate::policy::callout::CalloutStats>,
    ) {
        self.registry
            .register_collector(Box::new(callout::CalloutCollector(stats)));
    }

    /// A connection was admitted; the session counts as open while the
    /// returned value lives.
    pub fn connection_accepted(&self) -> OpenSession {
        self.accepted.inc();
        self.sessions_open.inc();
        OpenSession(self.sessions_open.clone())
    }

    /// A connection was refused.
    pub fn connection_refused(&self, reason: Refused) {
        self.refused[reason as usize].inc();
    }

    /// A command reached the session.
    pub fn command(&self, verb: Verb) {
        self.commands[verb as usize].inc();
    }

    /// One reply with `code` was sent.
    pub fn reply(&self, code: u16) {
        match code
            .checked_sub(200)
            .and_then(|i| self.reply_codes.get(usize::from(i)))
        {
            Some(Some(counter)) => {
                counter.inc();
            }
            _ => {
                self.reply_family
                    .get_or_create(&([("class", reply_class(code))], [("code", code)]))
                    .inc();
            }
        }
    }

    /// Counts the replies in `wire` (the bytes about to be sent): one per line
    /// that starts with three digits and a space (the last line of a reply).
    pub fn replies_in(&self, wire: &[u8]) {
        for line in wire.split(|&b| b == b'\n') {
            if let [a, b, c, b' ' | b'\r', ..] = *line
                && a.is_ascii_digit()
                && b.is_ascii_digit()
                && c.is_ascii_digit()
            {
                let code =
                    u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0');
                self.reply(code);
            }
        }
    }

    /// A RCPT TO was answered.
    pub fn recipient(&self, accepted: bool) {
        if accepted {
            self.recipients_accepted.inc();
        } else {
            self.recipients_refused.inc();
        }
    }

    /// A message was taken.
    pub fn message_accepted(&self) {
        self.messages_accepted.inc();
    }

    /// A message was not taken.
    pub fn message_refused(&self, reason: MessageRefused) {
        self.messages_refused[reason as usize].inc();
    }

    /// `bytes` were read from a client.
    pub fn bytes_received(&self, bytes: usize) {
        self.bytes_received.inc_by(bytes as u64);
    }

    /// The `received` hook took `took`; `failure` when it failed.
    pub fn delivery(&self, took: Duration, failure: Option<DeliveryFailure>) {
        self.delivery_duration.observe(took.as_secs_f64());
        if let Some(failure) = failure {
            self.delivery_failures[failure as usize].inc();
        }
    }

    /// An AUTH attempt ended.
    pub fn auth(&self, success: bool) {
        if success {
            self.auth_success.inc();
        } else {
            self.auth_failure.inc();
        }
    }

    /// A client was locked out.
    pub fn lockout(&self) {
        self.lockouts.inc();
    }

    /// A TLS handshake completed with `version` (`TLSv1.2`, `TLSv1.3`).
    pub fn tls_handshake(&self, version: Option<&str>) {
        match version {
            Some("TLSv1.2") => self.tls_versions[0].inc(),
            _ => self.tls_versions[1].inc(),
        };
    }

    /// A TLS handshake failed, or `timed_out`.
    pub fn tls_handshake_failed(&self, timed_out: bool) {
        self.tls_failures[usize::from(timed_out)].inc();
    }

    /// A policy layer of `kind` was called at `stage` and took `took`;
    /// `failed` when it got no usable answer (its error action applied).
    pub fn layer_call(
        &self,
        kind: LayerKind,
        stage: crate::policy::Stage,
        took: Duration,
        failed: bool,
    ) {
        self.layers.call(kind, stage, took, failed);
    }

    /// A policy layer discarded a message (250 sent, nothing stored).
    pub fn message_discarded(&self) {
        self.layers.discarded();
    }

    /// A DNS check found `result` (a word of [`DNS_RESULTS`]; others count as `other`).
    pub fn dns_result(&self, check: DnsCheck, result: &str) {
        self.layers.dns_result(check, result);
    }

    /// Every metric in OpenMetrics 1.0 text (ends with `# EOF`).
    pub fn openmetrics(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
