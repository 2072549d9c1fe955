//! [`Spooled`]: the [`Deliver`] that makes a message durable in the [`Spool`]
//! (what allows the 250) and hands it to the real target afterwards, on a
//! thread of its own.
//!
//! The delivery thread runs a small current-thread runtime and delivers in
//! batches, the way the writer flushes: it takes every message queued, and
//! what arrives within 10 ms of the first (up to 64 messages or 32 MiB), and
//! gives them to the target at once
//! with [`Deliver::deliver_batch`] — the Maildir writes every file, fsyncs
//! them, renames them in one pass and fsyncs `new/` once — while the messages
//! that arrive meanwhile make the next batch. A batch that takes over 100 ms
//! (a slow target: a webhook answering only at its `timeout`) gets the next
//! one started beside it, up to 8 at once: it delays its own messages, not
//! the ones after it. Recipients stored or refused for good are settled;
//! while any recipient failed transiently the message goes back to the queue
//! (for those recipients) after a wait that doubles from
//! `retry_min` to `retry_max`, for as long as the process runs — unless the
//! target brings its own [`RetrySchedule`] ([`Deliver::retry_schedule`], a
//! webhook's `retry_initial`, `retry_max`, `retry_for`): then its waits, and
//! once a message is older than its `give_up_after` (counted from the mail's
//! `time`, so across restarts) the recipients still pending are refused for
//! good with the last error and the message becomes a dead letter. A message's
//! done mark is written only once the target reported every recipient settled,
//! which for the Maildir is after the fsync of `new/`. A recipient refused for
//! good makes the message a dead letter (`dead.rs`: kept in `dead/`, logged
//! at `error`, no bounce) before it is done. Messages found in the spool at
//! start-up are delivered first.
//!
//! Dropping the [`Spooled`] (at shutdown) lets the batches being delivered
//! finish (waiting at most 10 s) and stops; what is still queued
//! or waiting for a retry stays in the spool for the next start.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;

use super::dead::{self, Refusal};
use super::{Place, Spool, SpoolOptions};
use crate::delivery::{Deliver, DeliverFuture, DeliveryError, DeliveryReport, RetrySchedule};
use crate::mail::Mail;

/// Messages handed to the target in one batch at most.
const BATCH_MESSAGES: usize = 64;
/// Message bytes in one batch at most (a batch holds at least one message).
const BATCH_BYTES: usize = 32 << 20;
/// How long the delivery thread waits, after a batch's first message, for
/// more to deliver with it (the 250s are given already).
const BATCH_GATHER: Duration = Duration::from_millis(10);
/// Batches being delivered at once at most (each up to [`BATCH_MESSAGES`]).
const BATCHES_IN_FLIGHT: usize = 8;
/// How long a batch may take before the next one starts beside it.
const BATCH_STALL: Duration = Duration::from_millis(100);
/// How long a drop waits for the batches in progress.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(10);

/// One spooled message on its way to the target.
struct Job {
    place: Place,
    mail: Mail,
    /// The wait before its next attempt, should this one fail.
    wait: Duration,
    /// When it was accepted (its retries may end some time after).
    accepted_at: SystemTime,
}

impl Job {
    fn new(place: Place, mail: Mail, wait: Duration) -> Self {
        let accepted_at = accepted_at(&mail);
        Self {
            place,
            mail,
            wait,
            accepted_at,
        }
    }
}

/// When `mail` was accepted: its `time` (the session's start, so a message
/// recovered after a restart keeps its age), or now when that cannot be read.
fn accepted_at(mail: &Mail) -> SystemTime {
    unix_seconds(&mail.time)
        .and_then(|secs| u64::try_from(secs).ok())
        .map_or_else(SystemTime::now, |secs| {
            SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
        })
}

/// The seconds since the Unix epoch of a `time` in the seed's form
/// (`2016-10-05 14:51:46 +0000`, chrono's `%Y-%m-%d %H:%M:%S %z`). The form
/// the session writes is read directly (chrono parsed its format string for
/// each message: about 2,900 instructions on the sessions' thread, 3 % of a
/// spooled message's there); anything else — a `time` a hook changed, a
/// leap second, a date that does not exist — goes to chrono, so the result is
/// always chrono's.
fn unix_seconds(time: &str) -> Option<i64> {
    seed_form_seconds(time.as_bytes()).or_else(|| {
        chrono::DateTime::parse_from_str(time, "%Y-%m-%d %H:%M:%S %z")
            .ok()
            .map(|time| time.timestamp())
    })
}

/// [`unix_seconds`] of exactly `YYYY-MM-DD hh:mm:ss +hhmm` with every field
/// in range (the day within its month; no leap second); `None` for anything
/// else.
fn seed_form_seconds(time: &[u8]) -> Option<i64> {
    let &[
        y0,
        y1,
        y2,
        y3,
        b'-',
        m0,
        m1,
        b'-',
        d0,
        d1,
        b' ',
        h0,
        h1,
        b':',
        n0,
        n1,
        b':',
        s0,
        s1,
        b' ',
        sign,
        oh0,
        oh1,
        om0,
        om1,
    ] = time
    else {
        return None;
    };
    let digits = |pair: &[u8]| -> Option<i64> {
        pair.iter().try_fold(0_i64, |n, &b| {
            b.is_ascii_digit().then(|| n * 10 + i64::from(b - b'0'))
        })
    };
    let year = digits(&[y0, y1, y2, y3])?;
    let (month, day) = (digits(&[m0, m1])?, digits(&[d0, d1])?);
    let (hour, minute, second) = (digits(&[h0, h1])?, digits(&[n0, n1])?, digits(&[s0, s1])?);
    let (offset_hours, offset_minutes) = (digits(&[oh0, oh1])?, digits(&[om0, om1])?);
    let sign = match sign {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if !(1..=12).contains(&month)
        || !(1..=month_days).contains(&day)
        || hour > 23
        || minute > 59
        || second > 59
        || offset_hours > 23
        || offset_minutes > 59
    {
        return None;
    }
    let local = days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second;
    Some(local - sign * (offset_hours * 3_600 + offset_minutes * 60))
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar
/// (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// A [`Deliver`] that answers once the message is in the spool; see the module
/// doc. Build it with [`Spooled::start`].
pub struct Spooled {
    spool: Spool,
    jobs: mpsc::UnboundedSender<Job>,
    retry_min: Duration,
    /// Tells the delivery thread to stop after its current batch.
    stop: Arc<Notify>,
    /// Closed when the delivery thread has ended.
    ended: Mutex<std::sync::mpsc::Receiver<()>>,
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
        let schedule = target.retry_schedule().unwrap_or(RetrySchedule {
            initial: options.retry_min,
            max: options.retry_max.max(options.retry_min),
            give_up_after: None,
        });
        let (jobs, queue) = mpsc::unbounded_channel();
        for (place, mail) in pending {
            // The receiver is alive: it is moved into the thread below.
            let _ = jobs.send(Job::new(place, mail, schedule.initial));
        }
        // Time and I/O: a target may make its connections on this thread (the
        // webhook's HTTP client spawns them here).
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let stop = Arc::new(Notify::new());
        let worker = Worker {
            spool: spool.clone(),
            target,
            schedule,
            requeue: jobs.downgrade(),
            dead_letters: options.dir.join("dead"),
        };
        let (ending, ended) = std::sync::mpsc::channel::<()>();
        let stopping = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("spool-delivery".into())
            .spawn(move || {
                runtime.block_on(worker.run(queue, &stopping));
                drop(ending);
            })?;
        Ok(Self {
            spool,
            jobs,
            retry_min: schedule.initial,
            stop,
            ended: Mutex::new(ended),
        })
    }

    /// The spool underneath (for its [`Spool::stats`]).
    pub fn spool(&self) -> &Spool {
        &self.spool
    }
}

impl Drop for Spooled {
    /// Stops the delivery thread after its batches in flight (waiting at most
    /// `SHUTDOWN_LIMIT`) and logs the flush statistics of the whole run.
    fn drop(&mut self) {
        self.stop.notify_one();
        // Nothing is ever sent: the channel closes when the thread ends.
        if let Ok(ended) = self.ended.lock()
            && let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                ended.recv_timeout(SHUTDOWN_LIMIT)
        {
            tracing::warn!(
                "spool delivery still busy after {SHUTDOWN_LIMIT:?}: its messages \
                 are delivered again at the next start"
            );
        }
        super::writer::log_stats(&self.spool.stats(), &super::FlushStats::default());
    }
}

impl Deliver for Spooled {
    /// Appends the mail to the spool and returns once the flush holding it is
    /// done; the delivery to the target follows on the delivery thread.
    fn deliver<'a>(&'a self, mail: &'a Mail) -> DeliverFuture<'a> {
        Box::pin(async move {
            // One copy of the structure, for the delivery thread; the
            // record is encoded from it.
            let mut queued = mail.clone();
            let place = self.spool.append_mut(&mut queued).await?;
            if self
                .jobs
                .send(Job::new(place, queued, self.retry_min))
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
struct Worker {
    spool: Spool,
    target: Arc<dyn Deliver>,
    /// The waits between attempts, and when to give up.
    schedule: RetrySchedule,
    /// Where a message goes back for its retry (weak: the queue ends when the
    /// [`Spooled`] is gone, whatever waits for a retry).
    requeue: mpsc::WeakUnboundedSender<Job>,
    /// Where dead letters go (`<spool_dir>/dead`).
    dead_letters: PathBuf,
}

impl Worker {
    /// Delivers batch after batch until stopped or the queue ends. The next
    /// batch starts when the last one is done — or, when a target is slow (a
    /// webhook taking its whole `timeout`), once the last one has taken
    /// [`BATCH_STALL`], up to [`BATCHES_IN_FLIGHT`] at once: a held-up batch
    /// delays its own messages, not the ones after it, while a target that
    /// keeps up gets one batch at a time (the biggest batches, the fewest
    /// flushes). When stopped, the batches in flight finish; nothing new starts.
    async fn run(self, mut queue: mpsc::UnboundedReceiver<Job>, stop: &Notify) {
        let worker = Arc::new(self);
        let mut in_flight = JoinSet::new();
        let mut last_started = tokio::time::Instant::now();
        loop {
            while in_flight.try_join_next().is_some() {}
            let may_start = if in_flight.is_empty() {
                tokio::time::Instant::now()
            } else {
                last_started + BATCH_STALL
            };
            let next = tokio::select! {
                biased;
                () = stop.notified() => break,
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => continue,
                job = async {
                    tokio::time::sleep_until(may_start).await;
                    queue.recv().await
                }, if in_flight.len() < BATCHES_IN_FLIGHT => job,
            };
            let Some(first) = next else { break };
            last_started = tokio::time::Instant::now();
            let batch = gather(first, &mut queue).await;
            let worker = Arc::clone(&worker);
            in_flight.spawn(async move { worker.deliver(batch).await });
        }
        while in_flight.join_next().await.is_some() {}
    }

    /// Delivers one batch; settles, retries or marks done each message.
    async fn deliver(&self, batch: Vec<Job>) {
        self.spool.count_delivery_batch();
        let mails: Vec<&Mail> = batch.iter().map(|job| &job.mail).collect();
        let reports = self.target.deliver_batch(&mails).await;
        drop(mails);
        let mut reports = reports.into_iter();
        for mut job in batch {
            let retry = match reports.next() {
                Some(report) => {
                    let (mut refused, retry) = settle(&mut job.mail, report);
                    let retry = match retry {
                        Some((error, pending)) if self.out_of_time(&job) => {
                            refused.extend(self.given_up(pending, &error));
                            None
                        }
                        other => other.map(|(error, _)| error),
                    };
                    match self.bury(&mut job, refused).await {
                        Ok(()) => retry,
                        Err(error) => Some(retry.unwrap_or(error)),
                    }
                }
                None => Some(DeliveryError::Temporary(
                    "the target reported on fewer messages than it was given".into(),
                )),
            };
            match retry {
                None => self.spool.mark_done(job.place),
                Some(error) => self.retry_later(job, &error),
            }
        }
    }

    /// Keeps `job`'s message as a dead letter for the recipients `refused`
    /// for good (nothing to do when there are none) and settles them; on
    /// failure they stay pending, to be tried again.
    async fn bury(&self, job: &mut Job, refused: Vec<Refusal>) -> Result<(), DeliveryError> {
        if refused.is_empty() {
            return Ok(());
        }
        let refusals = refused.clone();
        let (dir, place, mail) = (self.dead_letters.clone(), job.place, job.mail.clone());
        let written =
            tokio::task::spawn_blocking(move || dead::write(&dir, place, &mail, &refusals))
                .await
                .map_err(|e| DeliveryError::Temporary(format!("dead letter task failed: {e}")))?;
        match written {
            Ok(path) => {
                for refusal in &refused {
                    tracing::error!(
                        id = %job.mail.id,
                        recipient = %crate::logging::Escaped(&refusal.recipient),
                        "spooled message refused for good: {}; kept as the dead letter {}",
                        crate::logging::Escaped(&refusal.reason),
                        path.display()
                    );
                    if let Some(rcpt) = job.mail.rcptto.get_mut(refusal.index) {
                        rcpt.accepted = false;
                    }
                }
                self.spool.count_dead_letter();
                Ok(())
            }
            Err(error) => {
                tracing::error!(
                    id = %job.mail.id,
                    "spooled message refused for good by {} recipient(s), and its dead \
                     letter cannot be written in {}: {error}; trying again later",
                    refused.len(),
                    self.dead_letters.display()
                );
                Err(DeliveryError::Io(error))
            }
        }
    }

    /// Whether `job` is past its schedule's `give_up_after`.
    fn out_of_time(&self, job: &Job) -> bool {
        self.schedule
            .give_up_after
            .is_some_and(|limit| self.age(job) >= limit)
    }

    fn age(&self, job: &Job) -> Duration {
        SystemTime::now()
            .duration_since(job.accepted_at)
            .unwrap_or_default()
    }

    /// The recipients still pending when the schedule gives up, as refusals
    /// that say so and give the last error.
    fn given_up(&self, pending: Vec<Refusal>, error: &DeliveryError) -> Vec<Refusal> {
        let limit = self.schedule.give_up_after.unwrap_or_default();
        pending
            .into_iter()
            .map(|refusal| Refusal {
                reason: format!("not delivered within {limit:?}, giving up; last error: {error}"),
                ..refusal
            })
            .collect()
    }

    /// Puts `job` back on the queue after its wait, which then doubles (the
    /// last wait ends when the schedule gives up, for one final attempt).
    fn retry_later(&self, mut job: Job, error: &DeliveryError) {
        self.spool.count_retry();
        let mut wait = job.wait;
        if let Some(limit) = self.schedule.give_up_after {
            wait = wait.min(limit.saturating_sub(self.age(&job)));
        }
        tracing::warn!(
            id = %job.mail.id,
            "spooled message not delivered ({error}); retrying in {wait:?}"
        );
        job.wait = self.schedule.next_wait(job.wait);
        let requeue = self.requeue.clone();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            // Gone at shutdown: the message stays in the spool for the next start.
            if let Some(queue) = requeue.upgrade() {
                let _ = queue.send(job);
            }
        });
    }
}

/// A batch begun with `first`: what is queued and what arrives within
/// [`BATCH_GATHER`] (up to [`BATCH_MESSAGES`] or [`BATCH_BYTES`]). Its 250s are
/// given already, and a bigger batch shares the target's flushes (the
/// Maildir's syncfs and fsync of `new/`). The gather is slept out, then the
/// queue taken: waking for each message as it arrived preempted the sessions'
/// thread each time.
async fn gather(first: Job, queue: &mut mpsc::UnboundedReceiver<Job>) -> Vec<Job> {
    let mut bytes = message_bytes(&first);
    let mut batch = vec![first];
    let gathered_by = tokio::time::Instant::now() + BATCH_GATHER;
    let mut slept = false;
    loop {
        while batch.len() < BATCH_MESSAGES && bytes < BATCH_BYTES {
            let Ok(job) = queue.try_recv() else { break };
            bytes += message_bytes(&job);
            batch.push(job);
        }
        if slept || batch.len() >= BATCH_MESSAGES || bytes >= BATCH_BYTES {
            return batch;
        }
        tokio::time::sleep_until(gathered_by).await;
        slept = true;
    }
}

/// The octets of a job's message.
fn message_bytes(job: &Job) -> usize {
    job.mail.data.as_ref().map_or(0, |data| data.raw.len())
}

/// Applies a report to `mail`: recipients stored are settled (no longer
/// accepted, so not delivered again). Returns the recipients refused for good
/// (settled once their dead letter is written) and, when some recipient is to
/// be tried again, the first transient failure and those recipients.
fn settle(
    mail: &mut Mail,
    report: DeliveryReport,
) -> (Vec<Refusal>, Option<(DeliveryError, Vec<Refusal>)>) {
    let mut refused = Vec::new();
    let mut retry: Option<(DeliveryError, Vec<Refusal>)> = None;
    for outcome in report.outcomes {
        match outcome.result {
            Ok(()) => {
                if let Some(rcpt) = mail.rcptto.get_mut(outcome.index) {
                    rcpt.accepted = false;
                }
            }
            Err(error) if error.is_permanent() => refused.push(Refusal {
                index: outcome.index,
                recipient: outcome.recipient,
                reason: error.to_string(),
            }),
            Err(error) => {
                let pending = Refusal {
                    index: outcome.index,
                    recipient: outcome.recipient,
                    reason: error.to_string(),
                };
                retry
                    .get_or_insert_with(|| (error, Vec::new()))
                    .1
                    .push(pending);
            }
        }
    }
    (refused, retry)
}

#[cfg(test)]
mod time_tests {
    use super::*;
    use proptest::prelude::*;

    fn chrono_seconds(time: &str) -> Option<i64> {
        chrono::DateTime::parse_from_str(time, "%Y-%m-%d %H:%M:%S %z")
            .ok()
            .map(|time| time.timestamp())
    }

    proptest! {
        /// Read directly or by chrono, the seconds are chrono's, for every
        /// field in and out of range.
        #[test]
        fn the_seconds_are_chronos(
            year in 0_u32..=9999, month in 0_u32..=13, day in 0_u32..=32,
            hour in 0_u32..=24, minute in 0_u32..=60, second in 0_u32..=61,
            sign in prop::sample::select(vec!['+', '-']), offset_hours in 0_u32..=24,
            offset_minutes in 0_u32..=60,
        ) {
            let time = format!(
                "{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02} \
                 {sign}{offset_hours:02}{offset_minutes:02}"
            );
            prop_assert_eq!(unix_seconds(&time), chrono_seconds(&time), "{}", time);
        }
    }

    #[test]
    fn the_sessions_form_is_read_directly_and_the_rest_by_chrono() {
        for (time, direct) in [
            ("1970-01-01 00:00:00 +0000", true),
            ("2016-10-05 14:51:46 +0000", true),
            ("2026-12-05 14:23:20 -0930", true),
            ("2024-02-29 12:00:00 +1400", true),
            ("2026-12-31 23:59:59 -0000", true),
            ("2023-02-29 12:00:00 +0000", false),
            ("2026-12-05 23:59:60 +0000", false),
            ("2026-12-05 14:23:20 +00:00", false),
            ("2026-12-05T14:23:20 +0000", false),
            ("+10000-01-01 00:00:00 +0000", false),
            ("", false),
        ] {
            assert_eq!(
                seed_form_seconds(time.as_bytes()).is_some(),
                direct,
                "{time}"
            );
            assert_eq!(unix_seconds(time), chrono_seconds(time), "{time}");
        }
        assert_eq!(unix_seconds("1970-01-01 01:00:00 +0100"), Some(0));
        assert_eq!(
            unix_seconds("2016-10-05 14:51:46 +0000"),
            Some(1_475_679_106)
        );
    }
}
