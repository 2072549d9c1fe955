//! A chain of delivery targets (`[[deliver]]` tables): every target gets the
//! message, all at once, and the outcome per recipient is what the
//! **required** targets say together.
//!
//! For each accepted recipient: stored when every required target stored it;
//! otherwise a transient failure of any required target wins (the message is
//! tried again, so targets that already have it may get it twice: at least
//! once, never less), then a permanent one. An optional target's failure is
//! logged with its name and changes nothing. A chain has at least one required
//! target (checked when it is built).

use std::sync::Arc;
use std::time::Instant;

use futures_util::future::join_all;

use super::{
    BatchFuture, CheckFuture, Deliver, DeliverFuture, DeliveryError, DeliveryReport, ReportFuture,
    RetrySchedule, accepted_recipients,
};
use crate::mail::Mail;
use crate::metrics::TargetMetrics;

/// One link of a [`Chain`].
pub struct Link {
    /// The name in logs, e.g. `lmtp unix:/run/dovecot/lmtp`.
    pub name: String,
    /// The target.
    pub target: Arc<dyn Deliver>,
    /// Whether the outcome waits for it.
    pub required: bool,
}

/// Targets delivered to together (see the module doc).
pub struct Chain {
    links: Vec<Link>,
    metrics: Option<TargetMetrics>,
}

impl Chain {
    /// A chain of these links, in order; `Err` when none is required.
    pub fn new(links: Vec<Link>) -> Result<Self, String> {
        if !links.iter().any(|l| l.required) {
            return Err("a delivery chain needs at least one required target".to_owned());
        }
        Ok(Self {
            links,
            metrics: None,
        })
    }

    /// Counts each link's time and outcomes (`net_receiver_delivery_target_*`,
    /// by the kind in the link's name: its first word).
    pub fn with_metrics(mut self, metrics: TargetMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Its links, in order.
    pub fn links(&self) -> &[Link] {
        &self.links
    }

    /// What the chain delivers to, for the start-up log line.
    pub fn describe(&self) -> String {
        let names: Vec<String> = self
            .links
            .iter()
            .map(|l| {
                if l.required {
                    l.name.clone()
                } else {
                    format!("{} (optional)", l.name)
                }
            })
            .collect();
        names.join(", ")
    }
}

impl Chain {
    /// One mail's outcome per recipient from every link's report (in link order).
    fn combine(&self, mail: &Mail, reports: &[&DeliveryReport]) -> DeliveryReport {
        let mut combined = DeliveryReport::default();
        for (index, rcpt) in accepted_recipients(mail) {
            let mut transient: Option<DeliveryError> = None;
            let mut permanent: Option<DeliveryError> = None;
            for (link, report) in self.links.iter().zip(reports) {
                let outcome = report.outcomes.iter().find(|o| o.index == index);
                let error = match outcome.map(|o| &o.result) {
                    Some(Ok(())) => continue,
                    Some(Err(error)) => error.clone(),
                    None => DeliveryError::Temporary(format!(
                        "{} gave no outcome for this recipient",
                        link.name
                    )),
                };
                if !link.required {
                    tracing::warn!(
                        id = %mail.id,
                        target = %link.name,
                        recipient = %crate::logging::Escaped(&rcpt.url),
                        "optional delivery target failed: {error}"
                    );
                    continue;
                }
                if error.is_permanent() {
                    permanent.get_or_insert(error);
                } else {
                    transient.get_or_insert(error);
                }
            }
            let result = match transient.or(permanent) {
                Some(error) => Err(error),
                None => Ok(()),
            };
            combined.push(index, rcpt, result);
        }
        combined
    }
}

impl Deliver for Chain {
    fn deliver<'a>(&'a self, mail: &'a Mail) -> DeliverFuture<'a> {
        Box::pin(async move { self.deliver_each(mail).await.result() })
    }

    fn deliver_each<'a>(&'a self, mail: &'a Mail) -> ReportFuture<'a> {
        Box::pin(async move {
            let reports = join_all(self.links.iter().map(|link| async move {
                let started = Instant::now();
                let report = link.target.deliver_each(mail).await;
                if let Some(metrics) = &self.metrics {
                    metrics.observe(&link.name, started.elapsed(), [&report]);
                }
                report
            }))
            .await;
            let reports: Vec<&DeliveryReport> = reports.iter().collect();
            self.combine(mail, &reports)
        })
    }

    /// Each link gets the whole batch (so a Maildir link keeps its one
    /// `syncfs` per batch behind the spool), then each mail's outcomes are
    /// combined as for one.
    fn deliver_batch<'a>(&'a self, mails: &'a [&'a Mail]) -> BatchFuture<'a> {
        Box::pin(async move {
            let per_link = join_all(self.links.iter().map(|link| async move {
                let started = Instant::now();
                let reports = link.target.deliver_batch(mails).await;
                if let Some(metrics) = &self.metrics {
                    metrics.observe(&link.name, started.elapsed(), &reports);
                }
                reports
            }))
            .await;
            mails
                .iter()
                .enumerate()
                .map(|(n, mail)| {
                    let empty = DeliveryReport::default();
                    let reports: Vec<&DeliveryReport> = per_link
                        .iter()
                        .map(|reports| reports.get(n).unwrap_or(&empty))
                        .collect();
                    self.combine(mail, &reports)
                })
                .collect()
        })
    }

    /// The required links' schedules together ([`RetrySchedule::combine`]);
    /// `None` when none has one.
    fn retry_schedule(&self) -> Option<RetrySchedule> {
        self.links
            .iter()
            .filter(|l| l.required)
            .filter_map(|l| l.target.retry_schedule())
            .reduce(RetrySchedule::combine)
    }

    /// Every link's check; an error when a required one fails (an optional
    /// one's failure is reported in the text).
    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            let results = join_all(self.links.iter().map(|l| l.target.check())).await;
            let mut lines = Vec::new();
            let mut failed = false;
            for (link, result) in self.links.iter().zip(results) {
                match result {
                    Ok(text) => lines.push(format!("{}: {text}", link.name)),
                    Err(error) => {
                        failed |= link.required;
                        lines.push(format!("{}: FAILED: {error}", link.name));
                    }
                }
            }
            let text = lines.join("; ");
            if failed { Err(text) } else { Ok(text) }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::Maildir;
    use crate::mail::{Address, Data, RcptTo};

    fn mail(body: &[u8]) -> Mail {
        Mail {
            rcptto: vec![RcptTo {
                address: Address {
                    accepted: true,
                    url: "a@b.example".into(),
                    ..Address::default()
                },
                ..RcptTo::default()
            }],
            data: Some(Data::from_message(body.to_vec(), "Received: x\r\n".into())),
            ..Mail::default()
        }
    }

    fn link(name: &str, target: impl Deliver, required: bool) -> Link {
        Link {
            name: name.to_owned(),
            target: Arc::new(target),
            required,
        }
    }

    fn count(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir.join("new")).map_or(0, Iterator::count)
    }

    #[tokio::test]
    async fn a_batch_reaches_every_link_and_only_required_ones_decide() {
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let chain = Chain::new(vec![
            link("first", Maildir::open(one.path()).unwrap(), true),
            link("archive", Maildir::open(two.path()).unwrap(), false),
        ])
        .unwrap();
        let mails = [mail(b"one\r\n"), mail(b"two\r\n"), mail(b"three\r\n")];
        let refs: Vec<&Mail> = mails.iter().collect();
        let reports = chain.deliver_batch(&refs).await;
        assert_eq!(reports.len(), 3);
        assert!(reports.iter().all(|r| r.result().is_ok()));
        assert_eq!((count(one.path()), count(two.path())), (3, 3));

        // The optional link failing (its Maildir gone) changes no outcome;
        // the required one failing does.
        std::fs::remove_dir_all(two.path().join("new")).unwrap();
        assert!(chain.deliver_each(&mails[0]).await.result().is_ok());
        let reports = chain.deliver_batch(&refs).await;
        assert!(reports.iter().all(|r| r.result().is_ok()), "{reports:?}");
        std::fs::remove_dir_all(one.path().join("new")).unwrap();
        let reports = chain.deliver_batch(&refs).await;
        assert!(reports.iter().all(|r| r.result().is_err()), "{reports:?}");
        assert!(chain.deliver_each(&mails[0]).await.result().is_err());
    }

    #[test]
    fn the_spool_schedule_comes_from_the_required_links() {
        let dir = tempfile::tempdir().unwrap();
        let webhook = || {
            crate::delivery::Webhook::new(
                "http://127.0.0.1:9/",
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                std::time::Duration::from_secs(1),
                1,
            )
            .unwrap()
        };
        let maildir = || Maildir::open(dir.path()).unwrap();
        let chain = Chain::new(vec![link("m", maildir(), true), link("w", webhook(), true)]);
        assert_eq!(
            chain.unwrap().retry_schedule(),
            Some(crate::delivery::Webhook::DEFAULT_RETRY)
        );
        let optional = Chain::new(vec![
            link("m", maildir(), true),
            link("w", webhook(), false),
        ]);
        assert_eq!(optional.unwrap().retry_schedule(), None);
        assert_eq!(
            Chain::new(vec![link("m", maildir(), true)])
                .unwrap()
                .retry_schedule(),
            None
        );
    }

    #[test]
    fn a_chain_needs_a_required_link() {
        let dir = tempfile::tempdir().unwrap();
        let only_optional = vec![link("archive", Maildir::open(dir.path()).unwrap(), false)];
        assert!(Chain::new(only_optional).is_err());
    }
}
