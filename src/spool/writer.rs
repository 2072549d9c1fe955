//! The spool's single writer thread and its group commit.
//!
//! Every append and done mark is a [`Request`] on one channel. The thread takes
//! the first request, then everything already queued behind it, writes them to
//! the current segment with `writev` (each message's encoded head and its raw
//! bytes as they are: the body is never copied) and makes them durable with one
//! `fdatasync`; only then does each appender hear back. Requests that arrive
//! while that `fdatasync` runs wait in the channel and make the next batch — so
//! one flush covers every message that finished during the previous one, and an
//! idle disk adds no delay at all. Under load a flush first sleeps `commit_delay`
//! for more messages (see `Writer::gather`). A failed write or flush fails every appender
//! of that batch and cuts the segment back to where the batch began (nothing
//! half-acknowledged); if the cut cannot be made, nothing more is written to
//! that segment (the next batch starts a new one, or fails too). The thread
//! also rolls segments over, deletes the oldest segments once every message in
//! them is done, and logs the flush statistics.
//!
//! The segment is opened for each batch and closed after it: between flushes
//! the spool holds no file open for writing, so its file system can be
//! remounted read-only (`mount -o remount,ro` refuses while a file is open for
//! writing) — the next batch then fails with `EROFS` (`451 4.3.0`) until it is
//! writable again. An `open` costs microseconds next to an `fdatasync`.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::record::{self, Kind, Place};
use super::{FlushStats, create_segment, segment_path, sync_dir};
use crate::delivery::DeliveryError;

/// What the writer thread is asked to do.
pub(crate) enum Request {
    /// Append an encoded message record; answer with its place once durable.
    Append {
        /// The record up to the raw message (`record::encode_message`).
        head: Vec<u8>,
        /// The raw message, shared with the session (not copied).
        body: Bytes,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<Place, DeliveryError>>,
    },
    /// Record that the message at this place is done.
    Done(Place),
}

/// The counters behind [`FlushStats`], shared with the [`super::Spool`] handles.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) flushes: AtomicU64,
    pub(crate) messages: AtomicU64,
    pub(crate) done: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) delivery_batches: AtomicU64,
    pub(crate) dead_letters: AtomicU64,
    /// Messages in the spool not yet done (a gauge the writer sets).
    pub(crate) pending: AtomicU64,
    /// Bytes of the segments on disk (a gauge the writer sets).
    pub(crate) disk_bytes: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> FlushStats {
        FlushStats {
            flushes: self.flushes.load(Ordering::Relaxed),
            messages: self.messages.load(Ordering::Relaxed),
            done: self.done.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            delivery_batches: self.delivery_batches.load(Ordering::Relaxed),
            dead_letters: self.dead_letters.load(Ordering::Relaxed),
            pending: self.pending.load(Ordering::Relaxed),
            disk_bytes: self.disk_bytes.load(Ordering::Relaxed),
        }
    }
}

/// A segment still on disk: its size and how many of its messages are not done.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Segment {
    pub(crate) bytes: u64,
    pub(crate) pending: u64,
}

/// The writer thread's state.
pub(crate) struct Writer {
    pub(crate) dir: PathBuf,
    /// The segment appended to.
    pub(crate) segment: u64,
    /// Its length as far as records go (the next record's offset).
    pub(crate) len: u64,
    /// True when a failed batch could not be cut off the current segment:
    /// its tail is not at `len`, so it takes no more records.
    pub(crate) tail_unknown: bool,
    pub(crate) segment_bytes: u64,
    pub(crate) max_bytes: u64,
    /// Every segment on disk, oldest first; the current one included.
    pub(crate) live: BTreeMap<u64, Segment>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) stats_interval: Duration,
    /// Done marks whose batch failed, written with the next one.
    pub(crate) carried: Vec<Place>,
    /// Done marks written but not yet flushed.
    pub(crate) unsynced: bool,
    /// How long a flush under load may wait for more messages to share it.
    pub(crate) commit_delay: Duration,
    /// Messages in the last batch that held any.
    pub(crate) last_appends: usize,
    /// Where finished segments go to be deleted, and the thread deleting them
    /// (while `run` runs).
    pub(crate) reclaim: Option<(mpsc::Sender<Vec<PathBuf>>, std::thread::JoinHandle<()>)>,
}

/// How long written done marks may wait for a message flush to carry them
/// before they get one of their own.
const DONE_SYNC_DELAY: Duration = Duration::from_millis(200);

impl Writer {
    /// Serves requests until every sender is gone, logging the statistics every
    /// `stats_interval`; then flushes the done marks still waiting.
    pub(crate) fn run(mut self, requests: Receiver<Request>) {
        self.start_reclaimer();
        let mut logged = self.counters.snapshot();
        let mut logged_at = Instant::now();
        loop {
            let wait = if self.unsynced {
                DONE_SYNC_DELAY
            } else {
                self.stats_interval
            };
            match requests.recv_timeout(wait) {
                Ok(first) => {
                    let mut batch = vec![first];
                    batch.extend(requests.try_iter());
                    self.gather(&requests, &mut batch);
                    self.commit(batch);
                }
                Err(RecvTimeoutError::Timeout) if self.unsynced => self.sync_done_marks(),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if logged_at.elapsed() >= self.stats_interval {
                let now = self.counters.snapshot();
                log_stats(&now, &logged);
                (logged, logged_at) = (now, Instant::now());
            }
        }
        // Shutting down: the done marks a failed batch kept, and those not
        // yet flushed, go to disk now (else a restart repeats their deliveries).
        if !self.carried.is_empty() {
            self.commit(Vec::new());
        }
        if self.unsynced {
            self.sync_done_marks();
        }
        self.stop_reclaimer();
    }

    /// Under load — the last flush held at least two messages — sleeps
    /// `commit_delay`, then takes every request queued meanwhile into this
    /// flush (PostgreSQL's `commit_delay` with `commit_siblings`). A lone
    /// message on an idle spool is flushed at once: the last batch held one.
    ///
    /// A sleep, not a wait on the channel: waking for each message as it
    /// arrived cost 0.7–0.85 writer wake-ups per message, and each one
    /// preempted the thread running the sessions (1.1–1.2 involuntary context
    /// switches per message on the `smtp-worker`; 0.3 since).
    fn gather(&mut self, requests: &Receiver<Request>, batch: &mut Vec<Request>) {
        let appends = |requests: &[Request]| {
            requests
                .iter()
                .filter(|r| matches!(r, Request::Append { .. }))
                .count()
        };
        let mut count = appends(batch);
        if count > 0 && self.last_appends >= 2 && !self.commit_delay.is_zero() {
            std::thread::sleep(self.commit_delay);
            let seen = batch.len();
            batch.extend(requests.try_iter());
            count += appends(&batch[seen..]);
        }
        if count > 0 {
            self.last_appends = count;
        }
    }

    /// Writes one batch with one flush and answers its appenders.
    fn commit(&mut self, batch: Vec<Request>) {
        if let Err(error) = self.clean_tail() {
            self.refuse(batch, &error);
            return;
        }
        let start = self.len;
        let used = self.used();
        // The batch as it goes to the file: each message's head and its shared
        // body, then the done marks; `batch_len` bytes in all.
        let mut pieces: Vec<Bytes> = Vec::new();
        let mut batch_len = 0_u64;
        let mut waiters = Vec::new();
        let mut done = std::mem::take(&mut self.carried);
        for request in batch {
            match request {
                Request::Append { head, body, reply } => {
                    let record_len = (head.len() + body.len()) as u64;
                    if used + batch_len + record_len > self.max_bytes {
                        let _ = reply.send(Err(DeliveryError::InsufficientStorage(format!(
                            "spool {} is full (spool_max_bytes {})",
                            self.dir.display(),
                            self.max_bytes
                        ))));
                        continue;
                    }
                    let place = Place {
                        segment: self.segment,
                        offset: start + batch_len,
                    };
                    batch_len += record_len;
                    pieces.push(Bytes::from(head));
                    pieces.push(body);
                    waiters.push((place, reply));
                }
                Request::Done(place) => done.push(place),
            }
        }
        if !done.is_empty() {
            let mut marks = Vec::new();
            for place in &done {
                record::encode(Kind::Done, &record::done_payload(*place), &mut marks);
            }
            batch_len += marks.len() as u64;
            pieces.push(Bytes::from(marks));
        }
        if batch_len == 0 {
            return;
        }
        // Done marks alone are not worth an fdatasync of their own: they ride on
        // the next message flush (or a late one of their own). Losing one to a
        // crash only repeats a delivery.
        let sync = !waiters.is_empty();
        let written = self.open_current().and_then(|mut file| {
            write_all_vectored(&mut file, &pieces)?;
            if sync { file.sync_data() } else { Ok(()) }
        });
        drop(pieces);
        match written {
            Ok(()) => {
                self.unsynced = !sync;
                self.len += batch_len;
                let current = self.live.entry(self.segment).or_default();
                current.bytes += batch_len;
                current.pending += waiters.len() as u64;
                if sync {
                    self.counters.flushes.fetch_add(1, Ordering::Relaxed);
                }
                self.counters
                    .messages
                    .fetch_add(waiters.len() as u64, Ordering::Relaxed);
                self.counters
                    .done
                    .fetch_add(done.len() as u64, Ordering::Relaxed);
                self.counters.bytes.fetch_add(batch_len, Ordering::Relaxed);
                let pending = self.counters.pending.load(Ordering::Relaxed);
                self.counters.pending.store(
                    (pending + waiters.len() as u64).saturating_sub(done.len() as u64),
                    Ordering::Relaxed,
                );
                for (place, reply) in waiters {
                    let _ = reply.send(Ok(place));
                }
                for place in done {
                    if let Some(segment) = self.live.get_mut(&place.segment) {
                        segment.pending = segment.pending.saturating_sub(1);
                    }
                }
                self.delete_done_segments();
                if self.len >= self.segment_bytes {
                    self.roll();
                }
            }
            Err(error) => {
                tracing::error!(
                    "spool: cannot write or flush {}: {error}; {} message(s) refused",
                    segment_path(&self.dir, self.segment).display(),
                    waiters.len()
                );
                let failure = DeliveryError::Io(error);
                for (_, reply) in waiters {
                    let _ = reply.send(Err(failure.clone()));
                }
                let full = failure.is_insufficient_storage();
                self.carried = done;
                // Cut the batch off (it was never acknowledged); if that fails,
                // what follows goes to a new segment.
                if self.cut(start).is_err() {
                    self.tail_unknown = true;
                    self.roll();
                } else if full && self.live.get(&self.segment).is_some_and(|s| s.pending == 0) {
                    // Every message here is done: a new segment lets this one
                    // go, and its space with it.
                    self.roll();
                }
            }
        }
    }

    /// Publishes the bytes on disk (after a change).
    pub(crate) fn publish_disk_bytes(&self) {
        self.counters
            .disk_bytes
            .store(self.used(), Ordering::Relaxed);
    }

    /// Answers every appender of `batch` with `error` (done marks are carried).
    fn refuse(&mut self, batch: Vec<Request>, error: &io::Error) {
        tracing::error!(
            "spool: {} has an unknown tail and no new segment can be started: {error}",
            segment_path(&self.dir, self.segment).display()
        );
        for request in batch {
            match request {
                Request::Append { reply, .. } => {
                    let failure =
                        DeliveryError::Io(io::Error::new(error.kind(), error.to_string()));
                    let _ = reply.send(Err(failure));
                }
                Request::Done(place) => self.carried.push(place),
            }
        }
    }

    /// Opens the current segment for appending.
    fn open_current(&self) -> io::Result<File> {
        OpenOptions::new()
            .append(true)
            .open(segment_path(&self.dir, self.segment))
    }

    /// Cuts the current segment back to `len` and checks it.
    fn cut(&self, len: u64) -> io::Result<()> {
        let file = self.open_current()?;
        file.set_len(len)?;
        match file.metadata()?.len() {
            now if now == len => Ok(()),
            now => Err(io::Error::other(format!(
                "length {now} after a cut to {len}"
            ))),
        }
    }

    /// Makes sure the current segment ends where its records do: cuts it, or
    /// starts a new segment; fails when neither works.
    fn clean_tail(&mut self) -> io::Result<()> {
        if !self.tail_unknown {
            return Ok(());
        }
        if self.cut(self.len).is_ok() {
            self.tail_unknown = false;
            return Ok(());
        }
        self.roll();
        if self.tail_unknown {
            return Err(io::Error::other("cannot cut a failed batch off"));
        }
        Ok(())
    }

    /// Flushes done marks no message flush has carried.
    fn sync_done_marks(&mut self) {
        match self.open_current().and_then(|file| file.sync_data()) {
            Ok(()) => {
                self.unsynced = false;
                self.counters.flushes.fetch_add(1, Ordering::Relaxed);
            }
            // Tried again after the next batch; a lost mark only repeats a delivery.
            Err(error) => tracing::warn!("spool: cannot flush done marks: {error}"),
        }
    }

    /// The bytes of every segment on disk.
    fn used(&self) -> u64 {
        self.live.values().map(|s| s.bytes).sum()
    }

    /// Continues in a new segment.
    fn roll(&mut self) {
        let next = self.segment + 1;
        match create_segment(&self.dir, next) {
            Ok(()) => {
                if self.unsynced {
                    self.sync_done_marks();
                }
                self.segment = next;
                self.len = 0;
                self.tail_unknown = false;
                self.live.insert(next, Segment::default());
                self.delete_done_segments();
            }
            Err(error) => tracing::error!(
                "spool: cannot start segment {}: {error}; continuing in the current one",
                segment_path(&self.dir, next).display()
            ),
        }
    }

    /// Deletes the oldest segments, before the current one, whose every message
    /// is done. Oldest first only: a done mark lives in the segment written after
    /// its message, so a segment whose marks name older, still-live segments
    /// stays until those are gone. While the writer runs, the files are removed
    /// by its reclaim thread: removing a 64 MiB segment took ext4 24 ms here,
    /// which every session waiting for a flush would have waited out.
    pub(crate) fn delete_done_segments(&mut self) {
        let mut finished = Vec::new();
        while let Some((&number, segment)) = self.live.first_key_value() {
            if number == self.segment || segment.pending > 0 {
                break;
            }
            self.live.remove(&number);
            finished.push(segment_path(&self.dir, number));
        }
        if !finished.is_empty() {
            match &self.reclaim {
                Some((paths, _)) => {
                    if let Err(back) = paths.send(finished) {
                        delete_segments(&self.dir, back.0);
                    }
                }
                None => {
                    delete_segments(&self.dir, finished);
                }
            }
        }
        self.publish_disk_bytes();
    }

    /// Starts the reclaim thread (segment files are then removed on it).
    fn start_reclaimer(&mut self) {
        let (paths, finished) = mpsc::channel::<Vec<PathBuf>>();
        let dir = self.dir.clone();
        match std::thread::Builder::new()
            .name("spool-reclaim".into())
            .spawn(move || {
                // Oldest first across batches too: once a segment stays, no
                // newer one goes before the next start.
                let mut stuck = false;
                for batch in finished {
                    stuck = stuck || !delete_segments(&dir, batch);
                }
            }) {
            Ok(thread) => self.reclaim = Some((paths, thread)),
            Err(error) => {
                tracing::debug!("spool: no reclaim thread, segments are deleted inline: {error}")
            }
        }
    }

    /// Waits until the reclaim thread has removed every segment handed to it.
    fn stop_reclaimer(&mut self) {
        if let Some((paths, thread)) = self.reclaim.take() {
            drop(paths);
            if thread.join().is_err() {
                tracing::error!("spool: the reclaim thread panicked");
            }
        }
    }
}

/// Removes the segment files `paths`, oldest first, then flushes `dir`. A file
/// that cannot be removed stops it (the newer ones may hold the done marks of
/// its messages) and makes it return false; the next start removes what is
/// left.
fn delete_segments(dir: &Path, paths: Vec<PathBuf>) -> bool {
    for path in &paths {
        if let Err(error) = std::fs::remove_file(path)
            && error.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(
                "spool: cannot delete {}: {error}; the next start deletes it",
                path.display()
            );
            return false;
        }
    }
    if let Err(error) = sync_dir(dir) {
        tracing::warn!("spool: cannot flush {}: {error}", dir.display());
    }
    true
}

/// Writes every piece, in order, with as few `writev` calls as the kernel
/// allows (each takes up to 1024 pieces); the pieces are not copied.
fn write_all_vectored(file: &mut File, pieces: &[Bytes]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = pieces
        .iter()
        .filter(|piece| !piece.is_empty())
        .map(|piece| IoSlice::new(piece))
        .collect();
    let mut rest = slices.as_mut_slice();
    while !rest.is_empty() {
        match file.write_vectored(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => IoSlice::advance_slices(&mut rest, written),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Logs what happened since `before`: flushes, messages, bytes and fsyncs per
/// message of the group commit, and the delivery side's progress.
pub(crate) fn log_stats(now: &FlushStats, before: &FlushStats) {
    let flushes = now.flushes - before.flushes;
    let messages = now.messages - before.messages;
    if flushes == 0 {
        return;
    }
    tracing::info!(
        flushes,
        messages,
        bytes = now.bytes - before.bytes,
        done = now.done - before.done,
        delivery_batches = now.delivery_batches - before.delivery_batches,
        retries = now.retries - before.retries,
        dead_letters = now.dead_letters - before.dead_letters,
        pending = now.pending,
        "spool: {:.2} messages per fdatasync ({:.3} fdatasyncs per message)",
        messages as f64 / flushes as f64,
        flushes as f64 / messages.max(1) as f64
    );
}
