//! Delivery: where accepted mail goes before the server may answer 250 to the
//! final dot.
//!
//! ## The seam
//!
//! A delivery target is a type implementing [`Deliver`], handed to the server
//! with [`Server::with_delivery`](crate::Server::with_delivery); the default
//! `received` hook ([`crate::defaults::received`]) calls it. A target says what
//! became of the message **per accepted recipient**
//! ([`Deliver::deliver_each`] → [`DeliveryReport`] of [`RecipientOutcome`]s):
//!
//! - a *whole-message* target (the [`Maildir`]: one stored copy serves every
//!   recipient) implements only [`Deliver::deliver`]; the default
//!   `deliver_each` calls it once and gives its result to every recipient;
//! - a *per-recipient* target (LMTP answers once per recipient after the final
//!   dot; a webhook or a queue may refuse one address) also overrides
//!   `deliver_each`, and its `deliver` answers for the message as a whole.
//!
//! The outcomes are written into the mail structure, each recipient's
//! `rcptto[].delivered` / `delivery_error`, and the whole mail's `delivered`
//! (true when every accepted recipient was stored) / `delivery_error`.
//!
//! ## One reply for many recipients
//!
//! After DATA, SMTP has a single reply for the whole message
//! ([`DeliveryReport::result`]):
//!
//! | outcomes | reply | why |
//! |---|---|---|
//! | every recipient stored | `250 2.0.0` | |
//! | any transient failure ([`DeliveryError::is_permanent`] false) | `451 4.3.0`, or `452 4.3.1` when the store is full | the client retries the whole message: recipients already stored may get a second copy — at least once, never less |
//! | every recipient refused permanently | `554 5.3.0` | |
//! | some stored, the rest refused permanently | `554 5.3.0` | a 250 would silently lose the refused recipients' copy unless a bounce is sent; the client retrying gives the stored ones a second copy |
//!
//! A 554 names the recipients it was refused for and counts those that got
//! the message; the reason stays in the log and `rcptto[].delivery_error`.
//!
//! With the spool (`crate::spool`) the 250 comes once the message is durable
//! there, before any target sees it; a target's later permanent refusal makes
//! the message a dead letter in the spool's `dead/` directory (logged, never
//! dropped; the receiver sends no bounce).
//!
//! ## Where things go
//!
//! One target per file in this folder: `maildir.rs` (with its group commit in
//! `maildir_commit.rs` and its batch delivery in `maildir_batch.rs`) and `lmtp.rs` (here now: [`Maildir`], [`Lmtp`] — a
//! per-recipient target speaking the sans-IO [`crate::protocol::lmtp`]
//! client) and `nats.rs` ([`Nats`], JetStream), and `webhook/` ([`Webhook`],
//! a signed HTTP POST) — each a type implementing
//! [`Deliver`] plus its config table; nothing else should need to change. A
//! target may bring its own retry schedule ([`Deliver::retry_schedule`],
//! `retry.rs`) and a start-up probe ([`Deliver::check`], for
//! `net-receiver check-config`).
//! Durability (a
//! spool that keeps the message until every required target acknowledged it,
//! and retries) sits below the targets, in `spool/`; targets never answer the
//! client themselves. [`TmpCleanup`] is the Maildir's start-up clean-up of what
//! crashed processes left in its `tmp/`.

use std::future::Future;
use std::pin::Pin;

use crate::mail::Mail;

pub mod chain;
mod checks;
pub mod lmtp;
pub mod maildir;
mod maildir_batch;
mod maildir_commit;
pub mod nats;
mod outcome;
mod retry;
mod tmp_cleanup;
pub mod webhook;
pub use chain::{Chain, Link};
pub use lmtp::{Lmtp, LmtpAddress};
pub use maildir::Maildir;
pub use nats::Nats;
pub use outcome::{DeliveryReport, RecipientOutcome, accepted_recipients, record_unrecorded};
pub use retry::RetrySchedule;
pub use tmp_cleanup::TmpCleanup;
pub use webhook::Webhook;

/// Why a delivery failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// Try again later (maps to `451 4.3.0` in the protocol layer).
    #[error("temporary delivery failure: {0}")]
    Temporary(String),
    /// Refuse for good (maps to `554 5.3.0` in the protocol layer).
    #[error("permanent delivery failure: {0}")]
    Permanent(String),
    /// The store is out of space or over its quota (maps to `452 4.3.1`, a
    /// temporary failure: the client keeps the mail and retries later).
    #[error("insufficient storage: {0}")]
    InsufficientStorage(String),
    /// An I/O error while storing the mail: `452 4.3.1` when it is
    /// `ENOSPC`/`EDQUOT` (see [`DeliveryError::is_insufficient_storage`]),
    /// otherwise `451 4.3.0`; temporary either way.
    #[error("delivery I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl DeliveryError {
    /// True for [`DeliveryError::Permanent`]: retrying will not help. Every other
    /// error is transient (the client keeps the mail and retries).
    pub fn is_permanent(&self) -> bool {
        matches!(self, DeliveryError::Permanent(_))
    }

    /// True when the store is full: [`DeliveryError::InsufficientStorage`], or
    /// an I/O error of kind [`std::io::ErrorKind::StorageFull`] (`ENOSPC`) or
    /// [`std::io::ErrorKind::QuotaExceeded`] (`EDQUOT`).
    pub fn is_insufficient_storage(&self) -> bool {
        match self {
            DeliveryError::InsufficientStorage(_) => true,
            DeliveryError::Io(error) => matches!(
                error.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            ),
            DeliveryError::Temporary(_) | DeliveryError::Permanent(_) => false,
        }
    }
}

/// A copy for each recipient of one whole-message result. An I/O error keeps
/// its OS error code (or its kind and text), so
/// [`DeliveryError::is_insufficient_storage`] answers the same for the copy.
impl Clone for DeliveryError {
    fn clone(&self) -> Self {
        match self {
            DeliveryError::Temporary(s) => DeliveryError::Temporary(s.clone()),
            DeliveryError::Permanent(s) => DeliveryError::Permanent(s.clone()),
            DeliveryError::InsufficientStorage(s) => DeliveryError::InsufficientStorage(s.clone()),
            DeliveryError::Io(error) => DeliveryError::Io(match error.raw_os_error() {
                Some(code) => std::io::Error::from_raw_os_error(code),
                None => std::io::Error::new(error.kind(), error.to_string()),
            }),
        }
    }
}

/// The future returned by [`Deliver::deliver`].
pub type DeliverFuture<'a> = Pin<Box<dyn Future<Output = Result<(), DeliveryError>> + Send + 'a>>;

/// The future returned by [`Deliver::deliver_each`].
pub type ReportFuture<'a> = Pin<Box<dyn Future<Output = DeliveryReport> + Send + 'a>>;

/// The future returned by [`Deliver::deliver_batch`]: one report per mail, in order.
pub type BatchFuture<'a> = Pin<Box<dyn Future<Output = Vec<DeliveryReport>> + Send + 'a>>;

/// The future returned by [`Deliver::check`]: what was checked, or what is wrong.
pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>>;

/// A delivery target: where accepted mail goes (see the module doc). Object-safe
/// (the server stores `Arc<dyn Deliver>`).
pub trait Deliver: Send + Sync + 'static {
    /// Store the mail durably for all its accepted recipients; return `Ok` only
    /// once it is safe (this is what allows the 250 reply).
    fn deliver<'a>(&'a self, mail: &'a Mail) -> DeliverFuture<'a>;

    /// Store the mail and say what became of it for each accepted recipient
    /// ([`accepted_recipients`]); an `Ok` outcome only once the message is safe
    /// for that recipient. The default calls [`Deliver::deliver`] once and gives
    /// its result to every accepted recipient (with none, it stores nothing and
    /// reports nothing). A target that can refuse one recipient and keep the
    /// others (LMTP, a webhook) overrides this.
    fn deliver_each<'a>(&'a self, mail: &'a Mail) -> ReportFuture<'a> {
        Box::pin(async move {
            if accepted_recipients(mail).next().is_none() {
                return DeliveryReport::default();
            }
            let result = self.deliver(mail).await;
            DeliveryReport::same_for_all(mail, &result)
        })
    }

    /// [`Deliver::deliver_each`] for several mails at once, one report per
    /// mail in their order (the spool's delivery thread hands over what it
    /// has queued this way). The default runs `deliver_each` for all of them
    /// concurrently; a target that can share the cost of durability across
    /// messages overrides it (the [`Maildir`]: one `fsync` of `new/` per
    /// batch).
    fn deliver_batch<'a>(&'a self, mails: &'a [&'a Mail]) -> BatchFuture<'a> {
        Box::pin(futures_util::future::join_all(
            mails.iter().map(|mail| self.deliver_each(mail)),
        ))
    }

    /// How the spool retries a message this target failed transiently, and
    /// when it gives up ([`RetrySchedule`]); `None` (the default): the
    /// spool's own schedule, for as long as it takes.
    fn retry_schedule(&self) -> Option<RetrySchedule> {
        None
    }

    /// Reaches the target once without delivering anything (a connection, a
    /// greeting, a writable directory) and says what was checked, or why it
    /// cannot be reached; `net-receiver check-config` calls it. The default
    /// checks nothing.
    fn check(&self) -> CheckFuture<'_> {
        Box::pin(std::future::ready(Ok("nothing to check".to_owned())))
    }
}

/// A shared target is a target (a chain's links, the spool's target).
impl<D: Deliver + ?Sized> Deliver for std::sync::Arc<D> {
    fn deliver<'a>(&'a self, mail: &'a Mail) -> DeliverFuture<'a> {
        (**self).deliver(mail)
    }

    fn deliver_each<'a>(&'a self, mail: &'a Mail) -> ReportFuture<'a> {
        (**self).deliver_each(mail)
    }

    fn deliver_batch<'a>(&'a self, mails: &'a [&'a Mail]) -> BatchFuture<'a> {
        (**self).deliver_batch(mails)
    }

    fn retry_schedule(&self) -> Option<RetrySchedule> {
        (**self).retry_schedule()
    }

    fn check(&self) -> CheckFuture<'_> {
        (**self).check()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A test double proving the trait is object-safe and usable behind Arc.
    struct Collect(Mutex<Vec<String>>);

    impl Deliver for Collect {
        fn deliver<'a>(&'a self, mail: &'a Mail) -> DeliverFuture<'a> {
            Box::pin(async move {
                if mail.id.is_empty() {
                    return Err(DeliveryError::Permanent("no id".into()));
                }
                self.0
                    .lock()
                    .map_err(|e| DeliveryError::Temporary(e.to_string()))?
                    .push(mail.id.clone());
                Ok(())
            })
        }
    }

    #[tokio::test]
    async fn object_safe_and_errors_display() {
        let c = Arc::new(Collect(Mutex::new(Vec::new())));
        let d: Arc<dyn Deliver> = c.clone();
        let mail = Mail {
            id: "X".into(),
            ..Mail::default()
        };
        d.deliver(&mail).await.unwrap();
        assert!(matches!(
            d.deliver(&Mail::default()).await,
            Err(DeliveryError::Permanent(_))
        ));
        assert_eq!(*c.0.lock().unwrap(), ["X"]);

        for (e, want) in [
            (
                DeliveryError::Temporary("a".into()),
                "temporary delivery failure: a",
            ),
            (
                DeliveryError::Permanent("b".into()),
                "permanent delivery failure: b",
            ),
            (
                DeliveryError::InsufficientStorage("d".into()),
                "insufficient storage: d",
            ),
            (std::io::Error::other("c").into(), "delivery I/O error: c"),
        ] {
            assert_eq!(e.to_string(), want);
        }
    }

    #[test]
    fn full_and_over_quota_are_insufficient_storage() {
        use nix::errno::Errno;
        let io =
            |errno: Errno| DeliveryError::from(std::io::Error::from_raw_os_error(errno as i32));
        for full in [
            io(Errno::ENOSPC),
            io(Errno::EDQUOT),
            DeliveryError::InsufficientStorage("quota".into()),
        ] {
            assert!(full.is_insufficient_storage(), "{full}");
        }
        for other in [
            io(Errno::EROFS),
            io(Errno::EACCES),
            io(Errno::EIO),
            DeliveryError::Temporary("x".into()),
            DeliveryError::Permanent("y".into()),
        ] {
            assert!(!other.is_insufficient_storage(), "{other}");
        }
    }
}
