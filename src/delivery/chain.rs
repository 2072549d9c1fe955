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

use futures_util::future::join_all;

use super::{
    Deliver, DeliverFuture, DeliveryError, DeliveryReport, ReportFuture, accepted_recipients,
};
use crate::mail::Mail;

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
}

impl Chain {
    /// A chain of these links, in order; `Err` when none is required.
    pub fn new(links: Vec<Link>) -> Result<Self, String> {
        if !links.iter().any(|l| l.required) {
            return Err("a delivery chain needs at least one required target".to_owned());
        }
        Ok(Self { links })
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

impl Deliver for Chain {
    fn deliver<'a>(&'a self, mail: &'a Mail) -> DeliverFuture<'a> {
        Box::pin(async move { self.deliver_each(mail).await.result() })
    }

    fn deliver_each<'a>(&'a self, mail: &'a Mail) -> ReportFuture<'a> {
        Box::pin(async move {
            let reports = join_all(self.links.iter().map(|l| l.target.deliver_each(mail))).await;
            let mut combined = DeliveryReport::default();
            for (index, rcpt) in accepted_recipients(mail) {
                let mut transient: Option<DeliveryError> = None;
                let mut permanent: Option<DeliveryError> = None;
                for (link, report) in self.links.iter().zip(&reports) {
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
        })
    }
}
