//! The spool's metrics (with `spool_dir` only): read from the spool's own
//! counters ([`StatsHandle`]) at each scrape, so the writer and delivery
//! threads count with the atomic adds they already do and nothing is
//! registered when there is no spool.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::spool::StatsHandle;

/// The [`Collector`] of the spool's metrics.
#[derive(Debug)]
pub(super) struct SpoolCollector(pub(super) StatsHandle);

impl Collector for SpoolCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let stats = self.0.stats();
        let counters = [
            (
                "spool_flushes",
                "fdatasync calls of the spool's group commit",
                stats.flushes,
            ),
            (
                "spool_messages",
                "Messages made durable in the spool (each answered 250)",
                stats.messages,
            ),
            (
                "spool_written_bytes",
                "Bytes written to the spool's segments",
                stats.bytes,
            ),
            (
                "spool_done",
                "Spooled messages settled for every recipient (done marks written)",
                stats.done,
            ),
            (
                "spool_delivery_batches",
                "Batches the spool's delivery thread handed to the target",
                stats.delivery_batches,
            ),
            (
                "spool_delivery_retries",
                "Deliveries from the spool that failed transiently and were scheduled again",
                stats.retries,
            ),
            (
                "spool_dead_letters",
                "Spooled messages refused for good by a recipient's target, kept in dead/",
                stats.dead_letters,
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
        let gauges = [
            (
                "spool_pending_messages",
                "Messages in the spool not yet delivered (the spool's depth)",
                stats.pending,
            ),
            (
                "spool_bytes",
                "Bytes of spool segments on disk (limited by spool_max_bytes)",
                stats.disk_bytes,
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}
