//! The delivery targets' metrics: how long each kind of target took per call
//! (`net_receiver_delivery_target_duration_seconds{target}`: one message, or
//! one batch behind the spool) and what it said per recipient
//! (`net_receiver_delivery_target_outcomes_total{target,result}`).
//!
//! The handles are made up front for every kind, so counting is an atomic add;
//! a [`TargetMetrics`] is a cheap clone of them that the delivery
//! [`Chain`](crate::delivery::Chain) keeps.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::delivery::DeliveryReport;

/// The `target` label's values: a link's kind, the first word of its name
/// (`maildir /var/mail`, `lmtp 127.0.0.1:24` …); anything else is `other`.
const KINDS: [&str; 5] = ["maildir", "lmtp", "nats", "webhook", "other"];

/// The `result` label's values, per recipient.
const RESULTS: [&str; 3] = ["delivered", "temporary", "permanent"];

type Label1 = [(&'static str, &'static str); 1];
type Label2 = [(&'static str, &'static str); 2];

/// Handles on the delivery targets' metrics (see the module doc).
#[derive(Clone)]
pub struct TargetMetrics {
    durations: [Histogram; KINDS.len()],
    outcomes: [[Counter; RESULTS.len()]; KINDS.len()],
}

impl std::fmt::Debug for TargetMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetMetrics").finish_non_exhaustive()
    }
}

impl TargetMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let histograms =
            Family::<Label1, Histogram, fn() -> Histogram>::new_with_constructor(|| {
                Histogram::new([
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    10.0, 60.0,
                ])
            });
        registry.register(
            "delivery_target_duration_seconds",
            "Time a delivery target took per call (one message, or one batch behind the spool)",
            histograms.clone(),
        );
        let outcomes = Family::<Label2, Counter>::default();
        registry.register(
            "delivery_target_outcomes",
            "What delivery targets said per recipient, by target kind and result",
            outcomes.clone(),
        );
        Self {
            durations: KINDS.map(|kind| histograms.get_or_create_owned(&[("target", kind)])),
            outcomes: KINDS.map(|kind| {
                RESULTS.map(|result| {
                    outcomes.get_or_create_owned(&[("target", kind), ("result", result)])
                })
            }),
        }
    }

    /// The link named `link` took `took` for `reports` (one per message of the call).
    pub fn observe<'r>(
        &self,
        link: &str,
        took: Duration,
        reports: impl IntoIterator<Item = &'r DeliveryReport>,
    ) {
        let kind = kind_index(link);
        self.durations[kind].observe(took.as_secs_f64());
        for report in reports {
            for outcome in &report.outcomes {
                let result = match &outcome.result {
                    Ok(()) => 0,
                    Err(error) if error.is_permanent() => 2,
                    Err(_) => 1,
                };
                self.outcomes[kind][result].inc();
            }
        }
    }
}

fn kind_index(link: &str) -> usize {
    let first = link.split(' ').next().unwrap_or_default();
    KINDS
        .iter()
        .position(|kind| *kind == first)
        .unwrap_or(KINDS.len() - 1)
}
