//! The [`Maildir`]'s batch delivery, what the spool's delivery thread uses
//! ([`Deliver::deliver_batch`](super::Deliver::deliver_batch)): the group
//! commit of the Maildir. Every message of the batch is written to its own
//! file in `tmp/`; then the files are made durable together — one `syncfs(2)`
//! of the Maildir's filesystem for a batch of several (Linux 5.8 and later,
//! where it reports writeback errors), else an fsync each, over a few threads
//! at once (see [`sync_files`]); then all are renamed into `new/`
//! in one pass; then `new/` is fsynced **once** for the whole batch. A message
//! is reported stored only after that last fsync, so whoever acts on the
//! report (the spool writes its done mark) acts on a durable file.
//!
//! A message that fails on its own (its write, fsync or rename) fails alone
//! and leaves nothing behind; if the fsync of `new/` fails, no rename of the
//! batch is known durable, so every file renamed by it is removed again and
//! each of its messages fails (the spool retries them).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::PathBuf;

use bytes::Bytes;

use super::{DeliveryError, DeliveryReport, Maildir, accepted_recipients};
use crate::mail::{Mail, trace};

/// What goes into one Maildir file: our `Return-Path:` header, the trace
/// header(s) and the message as received (shared, not copied).
#[derive(Debug, Clone)]
pub(super) struct Parts {
    pub(super) return_path: String,
    pub(super) received: String,
    pub(super) raw: Bytes,
}

/// A message on its way through the batch.
enum Stage {
    /// Written (and later fsynced) in `tmp/` under this name.
    Tmp(String, File),
    /// Renamed to `new/` under this name.
    New(String),
    /// Failed; nothing of it is left.
    Failed(io::Error),
}

impl Maildir {
    /// What [`Deliver::deliver_batch`](super::Deliver::deliver_batch) does for
    /// the Maildir: [`Maildir::write_batch`] on the blocking pool; each mail's
    /// one result goes to all its accepted recipients. A mail without a
    /// message is refused for good; one without accepted recipients gets an
    /// empty report.
    pub(super) async fn deliver_batch_reports(&self, mails: &[&Mail]) -> Vec<DeliveryReport> {
        let parts = Self::batch_parts(mails);
        let this = self.clone();
        let batch: Vec<Parts> = parts.iter().map(|(_, p)| p.clone()).collect();
        let written = blocking(move || this.write_batch(&batch)).await;
        let mut results: Vec<Option<Result<(), DeliveryError>>> =
            (0..mails.len()).map(|_| None).collect();
        for (n, (index, _)) in parts.iter().enumerate() {
            let result = match &written {
                Ok(each) => match each.get(n) {
                    Some(Ok(_)) => Ok(()),
                    Some(Err(error)) => Err(DeliveryError::Io(io::Error::new(
                        error.kind(),
                        error.to_string(),
                    ))),
                    None => Err(DeliveryError::Temporary("no result".into())),
                },
                Err(error) => Err(error.clone()),
            };
            results[*index] = Some(result);
        }
        let mut reports = Vec::with_capacity(mails.len());
        for (mail, result) in mails.iter().zip(results) {
            reports.push(match result {
                Some(result) => DeliveryReport::same_for_all(mail, &result),
                // Quarantined mail goes to its folder on its own (rare).
                None if mail.quarantine.is_some() => {
                    use super::Deliver as _;
                    self.deliver_each(mail).await
                }
                None if mail.data.is_none() => DeliveryReport::same_for_all(
                    mail,
                    &Err(DeliveryError::Permanent("no message".into())),
                ),
                None => DeliveryReport::default(),
            });
        }
        reports
    }

    /// The batch of [`Deliver::deliver_batch`]: the parts of each mail that
    /// has accepted recipients and a message and is not quarantined (those go
    /// to their folder one by one), with its index in `mails`.
    fn batch_parts(mails: &[&Mail]) -> Vec<(usize, Parts)> {
        mails
            .iter()
            .enumerate()
            .filter(|(_, mail)| accepted_recipients(mail).next().is_some())
            .filter(|(_, mail)| mail.quarantine.is_none())
            .filter_map(|(index, mail)| {
                let data = mail.data.as_ref()?;
                Some((
                    index,
                    Parts {
                        return_path: trace::return_path_header(&mail.reverse_path()),
                        received: data.received.clone(),
                        raw: data.raw.clone(),
                    },
                ))
            })
            .collect()
    }
}

/// Runs `work` on tokio's blocking pool (inline without a runtime).
pub(super) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, DeliveryError> {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle
            .spawn_blocking(work)
            .await
            .map_err(|e| DeliveryError::Temporary(format!("delivery task failed: {e}"))),
        Err(_) => Ok(work()),
    }
}

impl Maildir {
    /// Delivers every message of `batch` durably into `new/` (see the module
    /// doc); one result per message, in order: its path in `new/`, or why it
    /// failed.
    pub(super) fn write_batch(&self, batch: &[Parts]) -> Vec<io::Result<PathBuf>> {
        // Opened before the files are written: syncfs reports any writeback
        // error of the filesystem since this open (Linux 5.8 and later).
        let filesystem = (batch.len() > 1 && syncfs_reports_errors())
            .then(|| File::open(self.root()).ok())
            .flatten();
        let mut stages: Vec<Stage> = batch.iter().map(|parts| self.write_tmp(parts)).collect();
        let tmp = self.root().join("tmp");
        let new = self.root().join("new");
        let files: Vec<&File> = stages
            .iter()
            .filter_map(|stage| match stage {
                Stage::Tmp(_, file) => Some(file),
                _ => None,
            })
            .collect();
        let mut synced = match &filesystem {
            // One syncfs makes every file of the batch durable at once.
            Some(root) if files.len() > 1 => {
                let result = nix::unistd::syncfs(root);
                files
                    .iter()
                    .map(|_| result.map_err(|errno| io::Error::from_raw_os_error(errno as i32)))
                    .collect()
            }
            _ => sync_files(&files),
        }
        .into_iter();
        for stage in &mut stages {
            if let Stage::Tmp(name, _) = stage
                && let Some(Err(error)) = synced.next()
            {
                let _ = fs::remove_file(tmp.join(&*name));
                *stage = Stage::Failed(error);
            }
        }
        for stage in &mut stages {
            if let Stage::Tmp(name, _) = stage {
                let name = std::mem::take(name);
                *stage = match fs::rename(tmp.join(&name), new.join(&name)) {
                    Ok(()) => Stage::New(name),
                    Err(error) => {
                        let _ = fs::remove_file(tmp.join(&name));
                        Stage::Failed(error)
                    }
                };
            }
        }
        let renamed = stages.iter().any(|s| matches!(s, Stage::New(_)));
        let dir_synced = if renamed {
            File::open(&new).and_then(|dir| dir.sync_all())
        } else {
            Ok(())
        };
        stages
            .into_iter()
            .map(|stage| match (stage, &dir_synced) {
                (Stage::New(name), Ok(())) => Ok(new.join(name)),
                (Stage::New(name), Err(error)) => {
                    // Not durable, so not delivered: the spool tries again.
                    let _ = fs::remove_file(new.join(name));
                    Err(io::Error::new(error.kind(), error.to_string()))
                }
                (Stage::Failed(error), _) => Err(error),
                // Every staged file was renamed or failed above.
                (Stage::Tmp(name, _), _) => {
                    let _ = fs::remove_file(tmp.join(name));
                    Err(io::Error::other("left in tmp/"))
                }
            })
            .collect()
    }

    /// Writes one message into a new file in `tmp/` (not yet fsynced).
    fn write_tmp(&self, parts: &Parts) -> Stage {
        let size = parts.return_path.len() + parts.received.len() + parts.raw.len();
        let (name, mut file) = match self.create_tmp(self.root(), size) {
            Ok(created) => created,
            Err(error) => return Stage::Failed(error),
        };
        let written = write_all_of(
            &mut file,
            [
                parts.return_path.as_bytes(),
                parts.received.as_bytes(),
                &parts.raw,
            ],
        );
        match written {
            Ok(()) => Stage::Tmp(name, file),
            Err(error) => {
                drop(file);
                let _ = fs::remove_file(self.root().join("tmp").join(&name));
                Stage::Failed(error)
            }
        }
    }
}

/// Writes `pieces` one after another with as few `writev(2)` calls as the
/// kernel allows (one, for a message of a few KiB): fewer calls, and a page
/// written whole is not zeroed first.
pub(super) fn write_all_of(file: &mut File, pieces: [&[u8]; 3]) -> io::Result<()> {
    let mut slices = pieces.map(io::IoSlice::new);
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match file.write_vectored(rest) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(written) => io::IoSlice::advance_slices(&mut rest, written),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Whether `syncfs(2)` reports writeback errors (Linux 5.8 and later: the
/// error sequence of the filesystem is sampled when a file is opened). On an
/// older kernel, or when the release cannot be read, each file is fsynced.
fn syncfs_reports_errors() -> bool {
    static REPORTS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *REPORTS.get_or_init(|| {
        let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut numbers = release
            .trim()
            .split(|c: char| !c.is_ascii_digit())
            .map(|n| n.parse::<u32>().unwrap_or(0));
        let version = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
        version >= (5, 8)
    })
}

/// Threads that fsync a batch's files at once at most.
const FSYNC_THREADS: usize = 16;

/// fsyncs `files`, spread over up to [`FSYNC_THREADS`] threads: one fsync
/// after another costs a disk cache flush each, while fsyncs in flight
/// together share them (measured on this VM's ext4: 64 files in ~320 ms one
/// by one, ~10–60 ms over 8 threads). One result per file, in order.
fn sync_files(files: &[&File]) -> Vec<io::Result<()>> {
    if files.len() <= 1 {
        return files.iter().map(|file| file.sync_all()).collect();
    }
    let per_thread = files.len().div_ceil(FSYNC_THREADS);
    std::thread::scope(|scope| {
        let running: Vec<_> = files
            .chunks(per_thread)
            .map(|chunk| {
                let spawned = std::thread::Builder::new()
                    .name("maildir-fsync".into())
                    .spawn_scoped(scope, move || {
                        chunk.iter().map(|file| file.sync_all()).collect::<Vec<_>>()
                    });
                (chunk, spawned)
            })
            .collect();
        running
            .into_iter()
            .flat_map(|(chunk, spawned)| match spawned {
                Ok(thread) => thread.join().unwrap_or_else(|_| {
                    chunk
                        .iter()
                        .map(|_| Err(io::Error::other("an fsync thread panicked")))
                        .collect()
                }),
                // No thread to be had: fsync them here.
                Err(_) => chunk.iter().map(|file| file.sync_all()).collect(),
            })
            .collect()
    })
}

#[cfg(test)]
pub(super) mod tests {
    use crate::delivery::{Deliver, DeliveryError, Maildir};
    use crate::mail::{Address, Data, Mail, MailFrom, RcptTo};
    use std::path::Path;

    /// A mail `id` from `from@example.com` to `recipients` accepted
    /// recipients, with a short message naming `id`.
    pub(in crate::delivery) fn mail(id: &str, recipients: usize) -> Mail {
        Mail {
            id: id.into(),
            mailfrom: Some(MailFrom {
                address: Address {
                    url: "from@example.com".into(),
                    ..Address::default()
                },
                ..MailFrom::default()
            }),
            rcptto: (0..recipients)
                .map(|n| {
                    RcptTo::from(Address {
                        url: format!("<r{n}@example.com>"),
                        accepted: true,
                        ..Address::default()
                    })
                })
                .collect(),
            data: Some(Data::from_message(
                format!("Subject: {id}\r\n\r\nbody of {id}\r\n").into_bytes(),
                "Received: test\r\n".into(),
            )),
            ..Mail::default()
        }
    }

    /// A Maildir in a new temporary directory whose `new/` is a file, so
    /// that every rename into it fails (even for root).
    pub(in crate::delivery) fn maildir_without_new() -> (tempfile::TempDir, Maildir) {
        let dir = tempfile::tempdir().unwrap();
        let maildir = Maildir::open(dir.path()).unwrap();
        std::fs::remove_dir(dir.path().join("new")).unwrap();
        std::fs::write(dir.path().join("new"), b"").unwrap();
        (dir, maildir)
    }

    /// The contents of every file in `dir`, sorted.
    pub(in crate::delivery) fn files(dir: &Path) -> Vec<String> {
        let mut found: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect();
        found.sort();
        found
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_lands_in_new_with_one_report_per_mail() {
        let dir = tempfile::tempdir().unwrap();
        let maildir = Maildir::open(dir.path()).unwrap();
        let mails: Vec<Mail> = (0..20).map(|n| mail(&format!("M{n:02}"), 2)).collect();
        let no_recipients = mail("NOBODY", 0);
        let no_message = Mail {
            data: None,
            ..mail("EMPTY", 1)
        };
        let mut batch: Vec<&Mail> = mails.iter().collect();
        batch.insert(5, &no_recipients);
        batch.push(&no_message);
        let reports = maildir.deliver_batch(&batch).await;
        assert_eq!(reports.len(), 22);
        for (mail, report) in batch.iter().zip(&reports) {
            match mail.id.as_str() {
                "NOBODY" => assert!(report.outcomes.is_empty()),
                "EMPTY" => assert!(matches!(
                    report.outcomes[0].result,
                    Err(DeliveryError::Permanent(_))
                )),
                _ => {
                    assert_eq!(report.outcomes.len(), 2, "{}", mail.id);
                    assert!(report.outcomes.iter().all(|o| o.result.is_ok()));
                }
            }
        }
        let mut want: Vec<String> = (0..20)
            .map(|n| {
                format!(
                    "Return-Path: <from@example.com>\r\nReceived: test\r\n\
                     Subject: M{n:02}\r\n\r\nbody of M{n:02}\r\n"
                )
            })
            .collect();
        want.sort();
        assert_eq!(files(&dir.path().join("new")), want);
        assert!(files(&dir.path().join("tmp")).is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_that_cannot_reach_new_fails_whole_and_leaves_nothing() {
        let (dir, maildir) = maildir_without_new();
        let mails: Vec<Mail> = (0..5).map(|n| mail(&format!("F{n}"), 1)).collect();
        let batch: Vec<&Mail> = mails.iter().collect();
        let reports = maildir.deliver_batch(&batch).await;
        for report in &reports {
            let error = report.outcomes[0].result.as_ref().unwrap_err();
            assert!(!error.is_permanent(), "{error}");
        }
        assert!(files(&dir.path().join("tmp")).is_empty());
    }
}
