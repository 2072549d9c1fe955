//! Per-recipient outcomes of one delivery: what became of the message for each
//! accepted recipient ([`RecipientOutcome`], collected in a [`DeliveryReport`]),
//! how they are written into the mail structure (`rcptto[].delivered` /
//! `delivery_error`) and how they make the one reply to the final dot
//! ([`DeliveryReport::result`], rules in the [`crate::delivery`] module doc).

use super::DeliveryError;
use crate::mail::{Mail, RcptTo};

/// What became of the message for one accepted recipient.
#[derive(Debug)]
pub struct RecipientOutcome {
    /// The recipient's position in [`Mail::rcptto`] (refused recipients count
    /// too): the record the outcome is written to.
    pub index: usize,
    /// The recipient's address (`rcptto[index].url`), for logs.
    pub recipient: String,
    /// `Ok` once the message is stored for this recipient.
    pub result: Result<(), DeliveryError>,
}

/// The outcomes of one delivery, one per accepted recipient; what
/// [`Deliver::deliver_each`](super::Deliver::deliver_each) returns.
#[derive(Debug, Default)]
pub struct DeliveryReport {
    /// The outcomes, in the order the target produced them.
    pub outcomes: Vec<RecipientOutcome>,
}

/// The recipients a delivery is for: the accepted entries of [`Mail::rcptto`],
/// with their positions (what [`RecipientOutcome::index`] takes).
pub fn accepted_recipients(mail: &Mail) -> impl Iterator<Item = (usize, &RcptTo)> {
    mail.rcptto.iter().enumerate().filter(|(_, r)| r.accepted)
}

impl DeliveryReport {
    /// One result for every accepted recipient: what a whole-message target's
    /// single [`Deliver::deliver`](super::Deliver::deliver) means per recipient.
    pub fn same_for_all(mail: &Mail, result: &Result<(), DeliveryError>) -> DeliveryReport {
        let mut report = DeliveryReport::default();
        for (index, rcpt) in accepted_recipients(mail) {
            report.push(index, rcpt, result.clone());
        }
        report
    }

    /// Adds the outcome for the recipient at `index` of [`Mail::rcptto`].
    pub fn push(&mut self, index: usize, rcpt: &RcptTo, result: Result<(), DeliveryError>) {
        self.outcomes.push(RecipientOutcome {
            index,
            recipient: rcpt.url.clone(),
            result,
        });
    }

    /// The one result for the reply to the final dot:
    /// - every recipient stored → `Ok` (250);
    /// - any transient failure → the first one (451/452: the client retries the
    ///   whole message, so recipients already stored may get it twice);
    /// - otherwise any permanent failure → the first one (554), whether or not
    ///   other recipients were stored (a 250 would need a bounce for the refused
    ///   ones, and this receiver sends none);
    /// - no outcome at all → permanent: there was nobody to deliver to.
    pub fn result(&self) -> Result<(), DeliveryError> {
        let errors = || self.outcomes.iter().filter_map(|o| o.result.as_ref().err());
        if let Some(transient) = errors().find(|e| !e.is_permanent()) {
            return Err(transient.clone());
        }
        if let Some(permanent) = errors().next() {
            return Err(permanent.clone());
        }
        if self.outcomes.is_empty() {
            return Err(DeliveryError::Permanent(
                "no accepted recipient to deliver to".to_owned(),
            ));
        }
        Ok(())
    }

    /// Completes the report against `mail` and writes it into the mail
    /// structure: each accepted recipient's `delivered` / `delivery_error`, then
    /// the whole mail's (`delivered` = every accepted recipient stored). An
    /// accepted recipient the target gave no outcome for counts as a transient
    /// failure (never less than at-least-once); an outcome for a position that is
    /// not an accepted recipient is dropped. Returns [`DeliveryReport::result`].
    pub fn record(mut self, mail: &mut Mail) -> Result<(), DeliveryError> {
        self.outcomes.retain(|o| {
            let known = mail.rcptto.get(o.index).is_some_and(|r| r.accepted);
            if !known {
                tracing::warn!(
                    id = %mail.id,
                    index = o.index,
                    "delivery outcome for no accepted recipient, ignored"
                );
            }
            known
        });
        for (index, rcpt) in accepted_recipients(mail) {
            if !self.outcomes.iter().any(|o| o.index == index) {
                let missing = DeliveryError::Temporary(format!(
                    "the delivery target reported nothing for {}",
                    rcpt.url
                ));
                self.push(index, rcpt, Err(missing));
            }
        }
        for outcome in &self.outcomes {
            if let Some(rcpt) = mail.rcptto.get_mut(outcome.index) {
                // With two outcomes for one recipient, a failure wins.
                if rcpt.delivered != Some(false) {
                    rcpt.delivered = Some(outcome.result.is_ok());
                    rcpt.delivery_error = outcome.result.as_ref().err().map(ToString::to_string);
                }
            }
        }
        let result = self.result();
        mail.delivered = Some(result.is_ok());
        mail.delivery_error = result.as_ref().err().map(ToString::to_string);
        result
    }
}

/// Writes a whole-message result where nothing was recorded yet — what the
/// session does after a `received` hook that did not call
/// [`crate::defaults::received`] (an override that stores the mail itself, or
/// one that failed before delivery): each accepted recipient without an outcome
/// gets `result`; the mail's `delivered` is set when unset or when `result`
/// failed, and its `delivery_error` when unset.
pub fn record_unrecorded(mail: &mut Mail, result: &Result<(), DeliveryError>) {
    let error = result.as_ref().err().map(ToString::to_string);
    for rcpt in mail.rcptto.iter_mut().filter(|r| r.accepted) {
        if rcpt.delivered.is_none() {
            rcpt.delivered = Some(result.is_ok());
            rcpt.delivery_error.clone_from(&error);
        }
    }
    if mail.delivered.is_none() || result.is_err() {
        mail.delivered = Some(result.is_ok());
    }
    if mail.delivery_error.is_none() {
        mail.delivery_error = error;
    }
}

#[cfg(test)]
#[path = "outcome_tests.rs"]
mod tests;
