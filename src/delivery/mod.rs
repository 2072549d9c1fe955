//! Durable delivery of accepted mail: the [`Deliver`] trait the server calls
//! before it may answer 250 to the final dot, its error type, and the
//! built-in [`Maildir`] implementation.

use std::future::Future;
use std::pin::Pin;

use crate::mail::Mail;

pub mod maildir;
pub use maildir::Maildir;

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
    /// An I/O error while storing the mail (a temporary failure to the client).
    #[error("delivery I/O error: {0}")]
    Io(#[from] std::io::Error),
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
            (std::io::Error::other("c").into(), "delivery I/O error: c"),
        ] {
            assert_eq!(e.to_string(), want);
        }
    }
}
