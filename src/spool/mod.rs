//! The spool: a crash-safe, append-only log of accepted messages in a directory
//! (`spool_dir`), so the server may answer 250 as soon as a message is durable
//! there, and hand it to its delivery target (the Maildir) afterwards.
//!
//! ## On disk
//!
//! The directory holds a `lock` file (locked with `flock` by the process that
//! has the spool open; a second one is refused) and segment files named by their number in 16 hex digits,
//! `0000000000000001.seg`, each a sequence of records (the codec is in
//! `record.rs`):
//!
//! ```text
//! record  = magic "NRS1" | kind u8 | len u32 LE | crc32 u32 LE | payload
//!           (CRC-32 of kind, len and payload)
//! message = json_len u32 LE | the mail structure as JSON | the raw message
//! done    = segment u64 LE | offset u64 LE   (the message record it finishes)
//! ```
//!
//! A process appends only to its own newest segment and starts a new one at
//! start-up and every `segment_bytes` (64 MiB by default). A segment is deleted
//! once every message in it and in every older segment is done (by the
//! writer's reclaim thread, off the path of the flushes).
//!
//! ## Group commit
//!
//! One writer thread (`writer.rs`) owns the files. [`Spool::append`] queues the
//! encoded record (its head; the raw message is shared, not copied) and waits; the thread writes everything queued as one batch
//! and calls `fdatasync` once for it; requests that arrive meanwhile form the
//! next batch. An idle disk flushes a lone message at once; under load (the
//! last flush held two messages or more) a flush first sleeps `commit_delay`
//! (300 µs) so more can share it, as PostgreSQL's `commit_delay` does, and a
//! busy disk covers many messages per flush ([`FlushStats`], logged at `info`). An appender
//! hears back only after the flush holding its record; a failed write or flush
//! fails the whole batch (`452 4.3.1` for `ENOSPC`/`EDQUOT`, else `451 4.3.0`)
//! and is cut off the file. Beyond `spool_max_bytes` on disk appends are
//! refused with [`DeliveryError::InsufficientStorage`] (`452 4.3.1`).
//!
//! ## Recovery and delivery
//!
//! [`Spool::open`] reads every segment back (`recover.rs`): a torn tail is cut
//! off and logged, and each message without a done mark is returned for
//! delivery again — at least once; a crash between the target storing a message
//! and its done mark being durable repeats it, with the same mail id. A
//! recipient a target refuses for good makes the message a dead letter, kept
//! in `dead/` (`dead.rs`) before its done mark: never dropped silently.
//! [`Spooled`] (`spooled.rs`) is the [`crate::Deliver`] that puts it together.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::delivery::DeliveryError;
use crate::mail::Mail;

mod dead;
mod record;
mod recover;
mod spooled;
mod writer;

pub use record::Place;
pub use spooled::Spooled;
use writer::{Counters, Request, Writer};

/// How a spool is set up.
#[derive(Debug, Clone)]
pub struct SpoolOptions {
    /// The spool directory (created, mode 0700, if missing).
    pub dir: PathBuf,
    /// Bytes of segments on disk beyond which appends are refused with
    /// `452 4.3.1`. Default: 1 GiB.
    pub max_bytes: u64,
    /// A new segment is started once the current one is this big. Default: 64 MiB.
    pub segment_bytes: u64,
    /// First wait before a transient delivery failure is retried; it doubles
    /// up to `retry_max`. Default: 1 s.
    pub retry_min: Duration,
    /// Longest wait between delivery attempts. Default: 5 minutes.
    pub retry_max: Duration,
    /// How often the flush statistics are logged (when there were flushes).
    /// Default: 60 s.
    pub stats_interval: Duration,
    /// Under load (the last flush held two messages or more), how long a
    /// flush first sleeps so that more messages share it (every session
    /// waiting for that flush waits this long too); an idle spool flushes a
    /// lone message at once. Zero turns it off. Measured here: no change in
    /// msgs/s from 0 to 300 µs (fewer fdatasyncs), slower from 600 µs on.
    /// Default: 300 µs (the binary's `spool_commit_delay`).
    pub commit_delay: Duration,
}

impl SpoolOptions {
    /// The defaults for a spool in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            max_bytes: 1 << 30,
            segment_bytes: 64 << 20,
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            stats_interval: Duration::from_secs(60),
            commit_delay: Duration::from_micros(300),
        }
    }
}

/// Counters of the group commit since the spool was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushStats {
    /// `fdatasync` calls that succeeded.
    pub flushes: u64,
    /// Messages made durable by them.
    pub messages: u64,
    /// Done marks written.
    pub done: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Delivery attempts that failed transiently and were scheduled again.
    pub retries: u64,
    /// Batches handed to the target by the delivery thread.
    pub delivery_batches: u64,
    /// Messages some recipient of which was refused for good, kept in `dead/`.
    pub dead_letters: u64,
    /// Messages in the spool not yet done (the spool's depth), now.
    pub pending: u64,
    /// Bytes of the segments on disk (what `spool_max_bytes` limits), now.
    pub disk_bytes: u64,
}

/// A read-only view of a spool's [`FlushStats`] that does not keep the spool
/// open (for the metrics endpoint).
#[derive(Debug, Clone)]
pub struct StatsHandle(Arc<Counters>);

impl StatsHandle {
    /// The counters now.
    pub fn stats(&self) -> FlushStats {
        self.0.snapshot()
    }
}

/// A handle on an open spool (cheap to clone; the writer thread ends when the
/// last handle is dropped).
#[derive(Clone)]
pub struct Spool {
    requests: mpsc::Sender<Request>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Spool {
    /// Opens (or creates) the spool in `options.dir`, recovers it (see the
    /// module doc) and starts its writer thread. Returns the messages not yet
    /// done, oldest first, each with its place for [`Spool::mark_done`].
    /// Blocking: call it at start-up or on a blocking thread.
    /// Fails with [`io::ErrorKind::WouldBlock`] when the spool stays open
    /// elsewhere for a second (its `lock` file is locked: another process, or
    /// handles of this one not yet dropped).
    pub fn open(options: &SpoolOptions) -> io::Result<(Spool, Vec<(Place, Mail)>)> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&options.dir)?;
        let lock = lock(&options.dir)?;
        let found = recover::recover(&options.dir)?;
        create_segment(&options.dir, found.next_segment)?;
        let mut live = found.live;
        live.insert(found.next_segment, writer::Segment::default());
        let counters = Arc::new(Counters::default());
        counters.pending.store(
            found.pending.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        let mut writer = Writer {
            dir: options.dir.clone(),
            segment: found.next_segment,
            len: 0,
            tail_unknown: false,
            segment_bytes: options.segment_bytes.max(1),
            max_bytes: options.max_bytes,
            live,
            counters: Arc::clone(&counters),
            stats_interval: options.stats_interval,
            carried: Vec::new(),
            unsynced: false,
            commit_delay: options.commit_delay,
            last_appends: 0,
            reclaim: None,
        };
        writer.delete_done_segments();
        let (requests, receiver) = mpsc::channel();
        std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || {
                writer.run(receiver);
                drop(lock);
            })?;
        if !found.pending.is_empty() {
            tracing::info!(
                "spool {}: {} message(s) not yet delivered, delivering them again",
                options.dir.display(),
                found.pending.len()
            );
        }
        Ok((Spool { requests, counters }, found.pending))
    }

    /// Appends `mail` (envelope, structure and raw message) and returns once it
    /// is durable, with its place. Never blocks the calling thread.
    pub async fn append(&self, mail: &Mail) -> Result<Place, DeliveryError> {
        self.append_mut(&mut mail.clone()).await
    }

    /// [`Spool::append`] for a mail the caller owns: its message-derived
    /// headers and text are taken out while the record is encoded and put
    /// back, so the structure is not copied.
    pub(crate) async fn append_mut(&self, mail: &mut Mail) -> Result<Place, DeliveryError> {
        // The raw message is shared with the writer, not copied: the session's
        // buffer is the only copy of the body (issue 18, 25 MiB messages).
        let (head, body) = record::encode_message(mail)
            .map_err(|e| DeliveryError::Temporary(format!("cannot encode the mail: {e}")))?;
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Append { head, body, reply })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Records that the message at `place` is delivered for good (written with
    /// the next flush; not waited for).
    pub fn mark_done(&self, place: Place) {
        if self.requests.send(Request::Done(place)).is_err() {
            tracing::warn!("spool writer stopped: done mark for {place:?} not written");
        }
    }

    /// Counts a batch handed to the target.
    pub(crate) fn count_delivery_batch(&self) {
        self.counters
            .delivery_batches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Counts a message kept as a dead letter.
    pub(crate) fn count_dead_letter(&self) {
        self.counters
            .dead_letters
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Counts a delivery attempt that will be retried.
    pub(crate) fn count_retry(&self) {
        self.counters
            .retries
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The group-commit counters so far.
    pub fn stats(&self) -> FlushStats {
        self.counters.snapshot()
    }

    /// A view of [`Spool::stats`] that outlives the spool without keeping it open.
    pub fn stats_handle(&self) -> StatsHandle {
        StatsHandle(Arc::clone(&self.counters))
    }
}

fn stopped() -> DeliveryError {
    DeliveryError::Temporary("the spool writer has stopped".into())
}

/// Locks `dir/lock` (released when the lock is dropped or the process ends):
/// two receivers on one spool would deliver each other's mail. A spool just
/// closed in this process is let go by its writer thread shortly after, so the
/// lock is tried for a second.
fn lock(dir: &Path) -> io::Result<nix::fcntl::Flock<File>> {
    use nix::fcntl::{Flock, FlockArg};
    let path = dir.join("lock");
    // Created, then held open read-only (flock needs no write access), so
    // the spool's file system may still be remounted read-only.
    if let Err(error) = OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&path)
        && error.kind() != io::ErrorKind::AlreadyExists
    {
        return Err(error);
    }
    let mut file = File::open(&path)?;
    for _ in 0..50 {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(lock),
            Err((back, nix::errno::Errno::EWOULDBLOCK)) => {
                file = back;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err((_, errno)) => return Err(io::Error::from(errno)),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::WouldBlock,
        format!("{} is locked: the spool is in use", path.display()),
    ))
}

/// The file of segment `number` in `dir`.
pub(crate) fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:016x}.seg"))
}

/// Creates segment `number` (empty, mode 0600) and makes its name durable.
pub(crate) fn create_segment(dir: &Path, number: u64) -> io::Result<()> {
    DirBuilder::new().recursive(true).create(dir)?;
    OpenOptions::new()
        .append(true)
        .create_new(true)
        .mode(0o600)
        .open(segment_path(dir, number))?;
    sync_dir(dir)
}

/// fsyncs a directory (its entries become durable).
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests;
