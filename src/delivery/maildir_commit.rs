//! The [`Maildir`]'s group commit for deliveries made one at a time (the
//! Maildir mode without a spool, where the 250 means "in the Maildir").
//!
//! A delivery hands its message (the shared buffer, not a copy) to the
//! Maildir's committer thread and waits for its answer. The committer takes
//! every message handed to it since its last round and stores them together,
//! as the spool's batch delivery does ([`Maildir::write_batch`],
//! `maildir_batch.rs`): a file each in `tmp/`, one `syncfs(2)` (or an fsync
//! each), the renames into `new/`, one fsync of `new/`. So one round of
//! flushes covers every message that arrived while the previous round was in
//! flight, and a lone message waits for no one: no delay is added when the
//! disk is idle. A delivery is answered only after the fsync of `new/` that
//! covers its rename; a message that fails leaves nothing behind (the session
//! answers 451/452 and the client retries).
//!
//! One thread writes all the files: measured on a 2-core VM (20 sessions,
//! 4 KiB; `docs/performance.md`, 2026-12-06), writing them in parallel on tokio's blocking
//! pool made the creations in `tmp/` wait on the directory's lock (12 % of
//! the receiver's CPU spinning on it) and ran at 7,300–9,200 msgs/s against
//! 8,500–11,100 here; a writer thread feeding the committer (a pipeline)
//! cost more than it gained (9,218–10,472 against 10,291–12,155), and so
//! did leaving a round's fsync of `new/` to the next round's `syncfs`.

use std::io;
use std::path::PathBuf;
use std::sync::mpsc;

use super::DeliveryError;
use super::maildir::Maildir;
use super::maildir_batch::{Parts, blocking};
use crate::mail::{Mail, trace};

/// A message handed to the committer, with where its answer goes.
struct Job {
    parts: Parts,
    answer: tokio::sync::oneshot::Sender<io::Result<PathBuf>>,
}

/// The handle of a Maildir's committer thread; dropping the last one ends it.
pub(super) struct Committer {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committer").finish_non_exhaustive()
    }
}

impl Committer {
    /// Starts the committer thread of `maildir` (a copy without a committer
    /// of its own, so the thread does not keep itself alive).
    pub(super) fn start(maildir: Maildir) -> io::Result<Self> {
        let (jobs, rounds) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("maildir-commit".into())
            .spawn(move || {
                while let Ok(first) = rounds.recv() {
                    let mut round = vec![first];
                    round.extend(rounds.try_iter());
                    commit_round(&maildir, round);
                }
            })?;
        Ok(Self { jobs })
    }

    /// Hands `parts` to the committer and waits until it is durable in `new/`.
    pub(super) async fn deliver(&self, parts: Parts) -> Result<(), DeliveryError> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        if self.jobs.send(Job { parts, answer }).is_err() {
            return Err(DeliveryError::Temporary(
                "the Maildir's committer stopped".into(),
            ));
        }
        match answered.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(DeliveryError::Io(error)),
            Err(_) => Err(DeliveryError::Temporary(
                "the Maildir's committer stopped".into(),
            )),
        }
    }
}

/// One round: every message written and made durable at once
/// ([`Maildir::write_batch`]), each delivery answered.
fn commit_round(maildir: &Maildir, round: Vec<Job>) {
    let mut answers = Vec::with_capacity(round.len());
    let mut batch = Vec::with_capacity(round.len());
    for job in round {
        answers.push(job.answer);
        batch.push(job.parts);
    }
    let results = maildir.write_batch(&batch);
    for (answer, result) in answers.into_iter().zip(results) {
        // A delivery that stopped waiting (its session ended) has its file
        // in `new/` all the same: at least once.
        let _ = answer.send(result);
    }
}

impl Maildir {
    /// [`Deliver::deliver`](super::Deliver::deliver) for the Maildir (see
    /// there).
    pub(super) async fn deliver_one(&self, mail: &Mail) -> Result<(), DeliveryError> {
        let Some(data) = mail.data.as_ref() else {
            return Err(DeliveryError::Permanent("no message".into()));
        };
        // Bytes: a reference-counted handle, the message is not copied.
        let parts = Parts {
            return_path: trace::return_path_header(&mail.reverse_path()),
            received: data.received.clone(),
            raw: data.raw.clone(),
        };
        let quarantined = mail.quarantine.is_some();
        if tokio::runtime::Handle::try_current().is_err() {
            let dir = self.folder(quarantined)?;
            self.write_message(&dir, &parts.return_path, &parts.received, &parts.raw)?;
            return Ok(());
        }
        if !quarantined && let Some(committer) = self.committer() {
            return committer.deliver(parts).await;
        }
        let this = self.clone();
        blocking(move || {
            let dir = this.folder(quarantined)?;
            this.write_message(&dir, &parts.return_path, &parts.received, &parts.raw)
        })
        .await?
        .map(|_| ())
        .map_err(DeliveryError::Io)
    }

    /// The committer, started at the first call; none if its thread could
    /// not be started (each delivery then fsyncs on its own).
    fn committer(&self) -> Option<&Committer> {
        self.committer
            .get_or_init(|| {
                let plain = Maildir {
                    committer: Default::default(),
                    ..self.clone()
                };
                match Committer::start(plain) {
                    Ok(committer) => Some(committer),
                    Err(error) => {
                        tracing::warn!(%error, "no Maildir committer thread; each delivery fsyncs alone");
                        None
                    }
                }
            })
            .as_ref()
    }
}

#[cfg(test)]
mod tests {
    use crate::delivery::maildir_batch::tests::{files, mail, maildir_without_new};
    use crate::delivery::{Deliver, DeliveryError, Maildir};
    use crate::mail::Mail;

    /// Delivers a mail for each of `ids` at once, each from its own task.
    async fn deliver_at_once(
        maildir: &Maildir,
        ids: Vec<String>,
    ) -> Vec<Result<(), DeliveryError>> {
        let tasks: Vec<_> = ids
            .into_iter()
            .map(|id| {
                let maildir = maildir.clone();
                tokio::spawn(async move { maildir.deliver(&mail(&id, 1)).await })
            })
            .collect();
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.unwrap());
        }
        results
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deliveries_at_once_share_rounds_and_each_lands_whole() {
        let dir = tempfile::tempdir().unwrap();
        let maildir = Maildir::open(dir.path()).unwrap();
        let ids = (0..60).map(|n| format!("M{n:02}")).collect();
        for result in deliver_at_once(&maildir, ids).await {
            result.unwrap();
        }
        let want: Vec<String> = (0..60)
            .map(|n| {
                format!(
                    "Return-Path: <from@example.com>\r\nReceived: test\r\n\
                     Subject: M{n:02}\r\n\r\nbody of M{n:02}\r\n"
                )
            })
            .collect();
        assert_eq!(files(&dir.path().join("new")), want);
        assert!(files(&dir.path().join("tmp")).is_empty());
        // One committer for the Maildir and all its clones.
        let committer = maildir.committer.get().unwrap().as_ref().unwrap();
        let clone = maildir.clone();
        let cloned = clone.committer.get().unwrap().as_ref().unwrap();
        assert!(std::ptr::eq(committer, cloned));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_round_that_cannot_reach_new_fails_each_delivery_for_now() {
        let (dir, maildir) = maildir_without_new();
        let ids = (0..10).map(|n| format!("F{n}")).collect();
        for result in deliver_at_once(&maildir, ids).await {
            let error = result.unwrap_err();
            assert!(matches!(error, DeliveryError::Io(_)), "{error}");
            assert!(!error.is_permanent(), "{error}");
        }
        assert!(files(&dir.path().join("tmp")).is_empty());
    }

    #[tokio::test]
    async fn a_mail_without_a_message_is_refused_for_good() {
        let dir = tempfile::tempdir().unwrap();
        let maildir = Maildir::open(dir.path()).unwrap();
        let error = maildir
            .deliver(&Mail {
                data: None,
                ..mail("EMPTY", 1)
            })
            .await
            .unwrap_err();
        assert!(error.is_permanent(), "{error}");
        assert!(
            maildir.committer.get().is_none(),
            "no committer for nothing"
        );
    }
}
