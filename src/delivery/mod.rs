//! Durable delivery of accepted mail: the [`Deliver`] trait the server calls
//! before it may answer 250 to the final dot, its error type, and the
//! built-in [`Maildir`] implementation (with the start-up clean-up of what
//! crashed processes left in its `tmp/`).

use std::future::Future;
use std::pin::Pin;

use crate::mail::Mail;

pub mod maildir;
mod tmp_cleanup;
pub use maildir::Maildir;
pub use tmp_cleanup::TmpCleanup;

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

/// The future returned by [`Deliver::deliver`].
pub type DeliverFuture<'a> = Pin<Box<dyn Future<Output = Result<(), DeliveryError>> + Send + 'a>>;

/// Where accepted mail goes. Object-safe (the server stores `Arc<dyn Deliver>`).
pub trait Deliver: Send + Sync + 'static {
    /// Store the mail durably; return `Ok` only once it is safe (this is what
    /// allows the 250 reply).
    fn deliver<'a>(&'a self, mail: &'a Mail) -> DeliverFuture<'a>;
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
