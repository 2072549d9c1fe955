//! The SMTP callouts' metrics (with `sender_callout`/`recipient_callout`
//! only): read from the callout layer's own counters
//! ([`CalloutStats`]) at each scrape, like the spool's.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;

use crate::policy::callout::CalloutStats;

/// The [`Collector`] of the callout metrics.
#[derive(Debug)]
pub(super) struct CalloutCollector(pub(super) Arc<CalloutStats>);

impl Collector for CalloutCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let stats = &self.0;
        let counters = [
            (
                "callout_connections",
                "Connections made (or tried) to exchangers by SMTP callouts",
                stats.connections(),
            ),
            (
                "callout_cache_hits",
                "Callout results answered from the cache (no connection made)",
                stats.cache_hits(),
            ),
            (
                "callout_rate_limited",
                "Callouts not made because of the per-domain rate limit",
                stats.rate_limited(),
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        Ok(())
    }
}
