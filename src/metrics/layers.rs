//! The policy layers' metrics: how long each kind of layer took at each stage
//! (`net_receiver_policy_duration_seconds{layer,stage}`), its failures
//! (`net_receiver_policy_errors_total{layer}`: a hook or milter that did not
//! answer usably, so its `on_error`/`default_action` applied) and what the DNS
//! checks found (`net_receiver_dns_results_total{check,result}`), and the
//! messages a layer discarded (`net_receiver_messages_discarded_total`).
//!
//! The histograms and error counters are made up front for every
//! [`LayerKind`] and [`Stage`], so a layer's call never allocates or locks.
//! DNS results are counted in their family (a read lock): their values come
//! from the closed lists of [`DNS_RESULTS`], anything else counts as `other`.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::policy::Stage;

/// The kind of a policy layer (the `layer` label): a closed list, so the
/// label never holds a URL or an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerKind {
    /// The built-in DNS checks (their time is the DNS lookups' time).
    Dns,
    /// The built-in sender/recipient callouts.
    Callout,
    /// An HTTP stage hook (`[[hook]]`).
    Hook,
    /// A milter (`[[milter]]`).
    Milter,
    /// A layer of the library user's own.
    Custom,
}

impl LayerKind {
    const ALL: [Self; 5] = [
        Self::Dns,
        Self::Callout,
        Self::Hook,
        Self::Milter,
        Self::Custom,
    ];

    /// The label value: `dns`, `callout`, `hook`, `milter`, `custom`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Dns => "dns",
            Self::Callout => "callout",
            Self::Hook => "hook",
            Self::Milter => "milter",
            Self::Custom => "custom",
        }
    }
}

/// Which DNS check a result is of (the `check` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsCheck {
    /// The client's PTR, forward-confirmed: the iprev result.
    Iprev,
    /// One DNSBL zone: `listed`, `not_listed` or the error kind.
    Dnsbl,
    /// The EHLO name: `found` or the error kind.
    Ehlo,
    /// A MAIL FROM or RCPT TO domain's MX/addresses: `found`, `null_mx` or the error kind.
    Domain,
    /// SPF (the MAIL FROM identity): the SPF result.
    Spf,
    /// One DKIM signature: its result.
    Dkim,
    /// DMARC: its result.
    Dmarc,
    /// The ARC chain: its result.
    Arc,
}

impl DnsCheck {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Iprev => "iprev",
            Self::Dnsbl => "dnsbl",
            Self::Ehlo => "ehlo",
            Self::Domain => "domain",
            Self::Spf => "spf",
            Self::Dkim => "dkim",
            Self::Dmarc => "dmarc",
            Self::Arc => "arc",
        }
    }
}

/// Every value the `result` label of `net_receiver_dns_results_total` takes:
/// the RFC 8601 result words, the lookups' error kinds, and `other`.
pub const DNS_RESULTS: [&str; 21] = [
    "found",
    "null_mx",
    "listed",
    "not_listed",
    "pass",
    "fail",
    "softfail",
    "neutral",
    "none",
    "policy",
    "temperror",
    "permerror",
    "nxdomain",
    "nodata",
    "timeout",
    "servfail",
    "refused",
    "invalid-name",
    "network",
    "error",
    "other",
];

type Labels2 = [(&'static str, &'static str); 2];
type Label1 = [(&'static str, &'static str); 1];

/// Buckets from 100 µs (a cached DNS answer) to 30 s (a milter's content timeout).
const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0,
];

/// The layers' metrics, part of [`super::Metrics`].
pub(super) struct LayerMetrics {
    /// Index: kind, then stage.
    durations: [[Histogram; Stage::ALL.len()]; LayerKind::ALL.len()],
    errors: [Counter; LayerKind::ALL.len()],
    dns_results: Family<Labels2, Counter>,
    discarded: Counter,
}

impl LayerMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let histograms =
            Family::<Labels2, Histogram, fn() -> Histogram>::new_with_constructor(|| {
                Histogram::new(BUCKETS)
            });
        registry.register(
            "policy_duration_seconds",
            "Time a policy layer took at a stage (for the DNS checks: their lookups)",
            histograms.clone(),
        );
        let durations = LayerKind::ALL.map(|kind| {
            Stage::ALL.map(|stage| {
                histograms
                    .get_or_create_owned(&[("layer", kind.as_str()), ("stage", stage.as_str())])
            })
        });
        let error_family = Family::<Label1, Counter>::default();
        registry.register(
            "policy_errors",
            "Policy layer calls that failed (no usable answer: on_error/default_action applied)",
            error_family.clone(),
        );
        let errors = LayerKind::ALL
            .map(|kind| error_family.get_or_create_owned(&[("layer", kind.as_str())]));
        let dns_results = Family::<Labels2, Counter>::default();
        registry.register(
            "dns_results",
            "What the DNS checks found, by check and result",
            dns_results.clone(),
        );
        let discarded = Counter::default();
        registry.register(
            "messages_discarded",
            "Messages a policy layer discarded (answered 250, stored nowhere)",
            discarded.clone(),
        );
        Self {
            durations,
            errors,
            dns_results,
            discarded,
        }
    }

    pub(super) fn call(&self, kind: LayerKind, stage: Stage, took: Duration, failed: bool) {
        let stage_index = Stage::ALL.iter().position(|s| *s == stage).unwrap_or(0);
        if let Some(histogram) = self.durations[kind as usize].get(stage_index) {
            histogram.observe(took.as_secs_f64());
        }
        if failed {
            self.errors[kind as usize].inc();
        }
    }

    pub(super) fn discarded(&self) {
        self.discarded.inc();
    }

    pub(super) fn dns_result(&self, check: DnsCheck, result: &str) {
        let result = DNS_RESULTS
            .iter()
            .find(|known| known.eq_ignore_ascii_case(result))
            .copied()
            .unwrap_or("other");
        self.dns_results
            .get_or_create(&[("check", check.as_str()), ("result", result)])
            .inc();
    }
}
