//! [`Spooled`]: the [`Deliver`] that makes a message durable in the [`Spool`]
//! (what allows the 250) and hands it to the real target afterwards, on a
//! thread of its own.
//!
//! The delivery thread runs a small current-thread runtime. Each message is
//! given to the target with [`Deliver::deliver_each`]; recipients stored or
//! refused for good are settled, and while any recipient failed transiently the
//! message is tried again (for those recipients) after a wait that doubles from
//! `retry_min` to `retry_max`, for as long as the process runs. Only then is the
//! done mark written. A permanent refusal is logged at `error` (no bounce is
//! sent yet). Messages found in the spool at start-up are delivered first.

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};

use super::{Place, Spool, SpoolOptions};
use crate::delivery::{Deliver, DeliverFuture, DeliveryError};
use crate::mail::Mail;

/// Messages handed to the target at once.
const CONCURRENT_DELIVERIES: usize = 16;

/// One spooled message on its way to the target.
struct Job {
    place: Place,
    mail: Mail,
}

/// A [`Deliver`] that answers once the message is in the spool; see the module
/// doc. Build it with [`Spooled::start`].
pub struct Spooled {
    spool: Spool,
    jobs: mpsc::UnboundedSender<Job>,
}

impl std::fmt::Debug for Spooled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spooled")
            .field("spool", &self.spool)
            .finish_non_exhaustive()
    }
}

impl Spooled {
    /// Opens the spool ([`Spool::open`]: recovery included) and starts the
    /// delivery thread, which begins with the messages recovered.
    pub fn start(options: &SpoolOptions, target: Arc<dyn Deliver>) -> std::io::Result<Self> {
        let (spool, pending) = Spool::open(options)?;
        let (jobs, queue) = mpsc::unbounded_channel();
        for (place, mail) in pending {
            // The receiver is alive: it is moved into the thread below.
            let _ = jobs.send(Job { place, mail });
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()?;
        let worker = Worker {
            spool: spool.clone(),
            target,
            retry_min: options.retry_min,
            retry_max: options.retry_max.max(options.retry_min),
        };
        std::thread::Builder::new()
            .name("spool-delivery".into())
            .spawn(move || runtime.block_on(worker.run(queue)))?;
        Ok(Self { spool, jobs })
    }

    /// The spool underneath (for its [`Spool::stats`]).
    pub fn spool(&self) -> &Spool {
        &self.spool
    }
}

impl Drop for Spooled {
    /// Logs the flush statistics of the whole run (at shutdown).
    fn drop(&mut self) {
        super::writer::log_stats(&self.spool.stats(), &super::FlushStats::default());
    }
}

impl Deliver for Spooled {
    /// Appends the mail to the spool and returns once the flush holding it is
    /// done; the delivery to the target follows on the delivery thread.
    fn deliver<'a>(&'a self, mail: &'a Mail) -> DeliverFuture<'a> {
        Box::pin(async move {
            let place = self.spool.append(mail).await?;
            if self
                .jobs
                .send(Job {
                    place,
                    mail: mail.clone(),
                })
                .is_err()
            {
                // Durable all the same: delivered after the next start.
                tracing::error!(id = %mail.id, "spool delivery thread stopped; delivery waits for a restart");
            }
            Ok(())
        })
    }
}

/// The delivery thread's state.
#[derive(Clone)]
struct Worker {
    spool: Spool,
    target: Arc<dyn Deliver>,
    retry_min: std::time::Duration,
    retry_max: std::time::Duration,
}

impl Worker {
    async fn run(self, mut queue: mpsc::UnboundedReceiver<Job>) {
        let slots = Arc::new(Semaphore::new(CONCURRENT_DELIVERIES));
        while let Some(job) = queue.recv().await {
            let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                break;
            };
            let worker = self.clone();
            tokio::spawn(async move {
                worker.deliver(job).await;
                drop(slot);
            });
        }
    }

    /// Delivers one message until no recipient is left to retry, then marks it done.
    async fn deliver(&self, job: Job) {
        let Job { place, mut mail } = job;
        let mut wait = self.retry_min;
        loop {
            let report = self.target.deliver_each(&mail).await;
            let mut retry: Option<DeliveryError> = None;
            for outcome in report.outcomes {
                match outcome.result {
                    Ok(()) => {}
                    Err(error) if error.is_permanent() => tracing::error!(
                        id = %mail.id,
                        recipient = %crate::logging::Escaped(&outcome.recipient),
                        "spooled message refused for good: {error}"
                    ),
                    Err(error) => {
                        retry.get_or_insert(error);
                        continue;
                    }
                }
                // Settled for this recipient: not delivered again.
                if let Some(rcpt) = mail.rcptto.get_mut(outcome.index) {
                    rcpt.accepted = false;
                }
            }
            let Some(error) = retry else { break };
            tracing::warn!(
                id = %mail.id,
                "spooled message not delivered ({error}); retrying in {:?}",
                wait
            );
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(self.retry_max);
        }
        self.spool.mark_done(place);
    }
}
