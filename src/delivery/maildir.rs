//! Maildir delivery: each message becomes one file, written to `tmp/`,
//! fsynced, renamed into `new/`, and made durable by fsyncing `new/`.
//!
//! The file is our `Return-Path:` header, the `Received:` trace header(s) in
//! `mail.data.received`, then the message bytes exactly as received. File
//! names follow the Maildir convention:
//! `<secs>.M<micros>P<pid>Q<counter>.<hostname>,S=<size>`.
//!
//! A process killed mid-delivery leaves at most a file in `tmp/`, never one in
//! `new/`; [`Maildir::open`] removes such leftovers (see [`Maildir::clean_tmp`]).
//!
//! A message a policy layer quarantined (`mail.quarantine`) goes to the
//! Maildir++ folder [`QUARANTINE_FOLDER`] (`root/.Quarantine/{tmp,new,cur}`,
//! created on first use) instead of `new/`, the same way.
//!
//! A whole-message target: one stored copy serves every recipient, so it keeps
//! the default [`Deliver::deliver_each`] (the one result for all of them).
//! Deliveries made at the same time share their flushes: those made one by
//! one ([`Deliver::deliver`], the Maildir mode without a spool) through the
//! Maildir's committer thread (`maildir_commit.rs`), a batch
//! ([`Deliver::deliver_batch`], the spool's delivery thread) in one pass
//! (`maildir_batch.rs`); either way one `syncfs` and one fsync of `new/`
//! cover many messages.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use super::maildir_commit::Committer;
use super::tmp_cleanup::{self, TmpCleanup};
use super::{BatchFuture, Deliver, DeliverFuture};
use crate::mail::Mail;
use crate::mail::trace;

/// Process-wide counter for the `Q<counter>` part of file names.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The Maildir++ folder that quarantined mail goes to (an IMAP server shows it
/// as the folder `Quarantine`).
pub const QUARANTINE_FOLDER: &str = ".Quarantine";

/// How many names to try when a tmp file name is already taken.
const NAME_ATTEMPTS: usize = 8;

/// A Maildir (`root/{tmp,new,cur}`) that accepted mail is delivered into.
#[derive(Debug, Clone)]
pub struct Maildir {
    pub(super) root: PathBuf,
    /// This host's name, made safe for file names.
    pub(super) hostname: String,
    /// The group commit of one-by-one deliveries, started at the first.
    pub(super) committer: Arc<OnceLock<Option<Committer>>>,
}

impl Maildir {
    /// Creates `root/{tmp,new,cur}` (mode 0700) as needed, checks the
    /// Maildir is writable by creating and removing a probe file in `tmp/`,
    /// then removes what earlier processes left in `tmp/` ([`Maildir::clean_tmp`];
    /// the outcome is logged, a failed clean-up does not fail the open).
    /// The `io::Error` returned names no path; the caller adds it.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<Self> {
        tmp_cleanup::process_epoch();
        let root = root.into();
        let mut builder = DirBuilder::new();
        builder.recursive(true).mode(0o700);
        for sub in ["tmp", "new", "cur"] {
            let dir = root.join(sub);
            builder
                .create(&dir)
                .map_err(|error| name_the_non_directory(&dir, error))?;
        }
        let probe = root.join("tmp").join(format!(
            ".probe.{}.{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&probe)?;
        fs::remove_file(&probe)?;
        let maildir = Maildir {
            root,
            hostname: local_hostname(),
            committer: Arc::default(),
        };
        log_cleanup(&maildir.root.join("tmp"), maildir.clean_tmp());
        // The quarantine folder's leftovers, when it exists.
        let quarantine_tmp = maildir.root.join(QUARANTINE_FOLDER).join("tmp");
        if quarantine_tmp.is_dir() {
            let now = SystemTime::now();
            let found = tmp_cleanup::clean(&quarantine_tmp, &maildir.hostname, now);
            log_cleanup(&quarantine_tmp, found);
        }
        Ok(maildir)
    }

    /// Removes the files in `tmp/` that no delivery is writing any more: those
    /// with our name pattern and this host's name whose process is gone, and
    /// any file untouched for 36 hours (the Maildir convention). A file in
    /// `tmp/` was never acknowledged, so nothing accepted is lost. Files of
    /// live processes, recent files of other writers and directories stay.
    pub fn clean_tmp(&self) -> io::Result<TmpCleanup> {
        tmp_cleanup::clean(&self.root.join("tmp"), &self.hostname, SystemTime::now())
    }
}

/// Logs what a clean-up of `tmp` found.
fn log_cleanup(tmp: &Path, cleanup: io::Result<TmpCleanup>) {
    match cleanup {
        Ok(found) => {
            if found.removed > 0 {
                tracing::info!(
                    "removed {} leftover file(s) from {} (their writers are gone)",
                    found.removed,
                    tmp.display()
                );
            }
            if found.kept > 0 {
                tracing::info!(
                    "kept {} file(s) in {} (their writers may be running)",
                    found.kept,
                    tmp.display()
                );
            }
            if found.failed > 0 {
                tracing::warn!(
                    "could not remove {} leftover file(s) from {}",
                    found.failed,
                    tmp.display()
                );
            }
        }
        Err(error) => tracing::warn!("cannot clean {}: {error}", tmp.display()),
    }
}

impl Maildir {
    /// The Maildir's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Delivers one message synchronously: writes the `Return-Path` header,
    /// `mail.data.received` and `mail.data.raw` into `tmp/<unique>`, fsyncs
    /// the file, renames it into `new/<unique>` and fsyncs `new/`. On any
    /// error nothing is left behind. Returns the path in `new/`.
    ///
    /// Fails with [`io::ErrorKind::InvalidInput`] when `mail.data` is `None`.
    pub fn deliver_sync(&self, mail: &Mail) -> io::Result<PathBuf> {
        let data = mail
            .data
            .as_ref()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no message"))?;
        let return_path = trace::return_path_header(&mail.reverse_path());
        let dir = self.folder(mail.quarantine.is_some())?;
        self.write_message(&dir, &return_path, &data.received, &data.raw)
    }

    /// Where mail goes: the root, or for quarantined mail the quarantine
    /// folder (its directories created as needed).
    pub(super) fn folder(&self, quarantined: bool) -> io::Result<PathBuf> {
        if !quarantined {
            return Ok(self.root.clone());
        }
        let folder = self.root.join(QUARANTINE_FOLDER);
        let mut builder = DirBuilder::new();
        builder.recursive(true).mode(0o700);
        for sub in ["tmp", "new", "cur"] {
            builder.create(folder.join(sub))?;
        }
        Ok(folder)
    }

    /// Writes the three parts of a message into `dir/new/` durably.
    pub(super) fn write_message(
        &self,
        dir: &Path,
        return_path: &str,
        received: &str,
        raw: &[u8],
    ) -> io::Result<PathBuf> {
        let size = return_path.len() + received.len() + raw.len();
        let (name, mut file) = self.create_tmp(dir, size)?;
        let tmp = dir.join("tmp").join(&name);
        let new = dir.join("new").join(&name);

        let written = super::maildir_batch::write_all_of(
            &mut file,
            [return_path.as_bytes(), received.as_bytes(), raw],
        )
        .and_then(|()| file.sync_all());
        drop(file);
        if let Err(e) = written.and_then(|()| fs::rename(&tmp, &new)) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        if let Err(e) = File::open(dir.join("new")).and_then(|dir| dir.sync_all()) {
            // Not durable, so not delivered: the client will be told to retry.
            let _ = fs::remove_file(&new);
            return Err(e);
        }
        Ok(new)
    }

    /// Creates a new, uniquely named file in `dir/tmp/`.
    pub(super) fn create_tmp(&self, dir: &Path, size: usize) -> io::Result<(String, File)> {
        let mut last_err = io::Error::new(io::ErrorKind::AlreadyExists, "no unique name");
        for _ in 0..NAME_ATTEMPTS {
            let name = unique_name(&self.hostname, size);
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(dir.join("tmp").join(&name))
            {
                Ok(file) => return Ok((name, file)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_err = e,
                Err(e) => return Err(e),
            }
        }
        Err(last_err)
    }
}

impl Deliver for Maildir {
    /// Within a tokio runtime, the group commit (`maildir_commit.rs`): the
    /// message handed to the Maildir's committer thread, which writes and
    /// flushes it in one round with every other delivery of the moment;
    /// quarantined mail alone on tokio's blocking pool. Without a runtime,
    /// [`Maildir::deliver_sync`] inline. No message → `Permanent`; a
    /// stopped committer or a failed blocking task → `Temporary`; an I/O
    /// error → `Io`.
    fn deliver<'a>(&'a self, mail: &'a Mail) -> DeliverFuture<'a> {
        Box::pin(self.deliver_one(mail))
    }

    /// Writes the whole batch with one fsync of `new/` (`maildir_batch.rs`) on
    /// the blocking pool; each mail's one result goes to all its accepted
    /// recipients. A mail without a message is refused for good; one without
    /// accepted recipients gets an empty report.
    /// A file written and removed in `tmp/` (`checks.rs`).
    fn check(&self) -> super::CheckFuture<'_> {
        Box::pin(super::checks::maildir(self.root()))
    }

    fn deliver_batch<'a>(&'a self, mails: &'a [&'a Mail]) -> BatchFuture<'a> {
        Box::pin(self.deliver_batch_reports(mails))
    }
}

/// `<secs>.M<micros>P<pid>Q<counter>.<hostname>,S=<size>`.
fn unique_name(hostname: &str, size: usize) -> String {
    // Fixed before any name exists, so no name of ours is older.
    tmp_cleanup::process_epoch();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{}.M{}P{}Q{}.{},S={}",
        now.as_secs(),
        now.subsec_micros(),
        crate::mail::id::process_id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        hostname,
        size
    )
}

/// This host's name made safe for a Maildir file name.
fn local_hostname() -> String {
    let name = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = if name.is_empty() { "localhost" } else { &name };
    sanitize_hostname(name)
}

/// `/` → `\057`, `:` → `\072` (the Maildir convention).
fn sanitize_hostname(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '/' => out.push_str("\\057"),
            ':' => out.push_str("\\072"),
            c => out.push(c),
        }
    }
    out
}

/// When creating or opening `path` failed with `File exists` or `Not a
/// directory` because `path` or a directory above it is something else (a
/// file, a socket), an error that names it: `/srv/mail/new exists and is not
/// a directory`. Any other error is returned as it is.
pub fn name_the_non_directory(path: &Path, error: io::Error) -> io::Error {
    let kind = error.kind();
    if !matches!(
        kind,
        io::ErrorKind::AlreadyExists | io::ErrorKind::NotADirectory
    ) {
        return error;
    }
    // At most one component can exist as a non-directory: below it, nothing exists.
    let culprit = path
        .ancestors()
        .filter(|p| !p.as_os_str().is_empty())
        .find(|p| fs::metadata(p).is_ok_and(|m| !m.is_dir()));
    match culprit {
        Some(culprit) => io::Error::new(
            kind,
            format!("{} exists and is not a directory", culprit.display()),
        ),
        None => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::DeliveryError;
    use crate::mail::{Address, Data, MailFrom};
    use std::os::unix::fs::PermissionsExt;
    use std::task::{Context, Poll, Waker};

    fn mail(from: &str, body: &[u8]) -> Mail {
        Mail {
            mailfrom: Some(MailFrom {
                address: Address {
                    url: from.into(),
                    ..Address::default()
                },
                ..MailFrom::default()
            }),
            data: Some(Data::from_message(
                body.to_vec(),
                "Received: from x\r\n\tby y; now\r\n".into(),
            )),
            ..Mail::default()
        }
    }

    fn list(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    }

    /// Whether permissions bind us: root (or CAP_DAC_OVERRIDE) can write
    /// into a read-only directory. (nix's `geteuid` needs a feature the
    /// crate does not enable, so this probes instead.)
    fn permissions_enforced(read_only_dir: &Path) -> bool {
        let probe = read_only_dir.join("probe");
        let bypassed = fs::write(&probe, b"").is_ok();
        let _ = fs::remove_file(&probe);
        !bypassed
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn delivers_two_mails() {
        let dir = tempfile::tempdir().unwrap();
        let md = Maildir::open(dir.path().join("Maildir")).unwrap();
        assert_eq!(md.root(), dir.path().join("Maildir"));
        let mails = [
            mail("a@example.com", b"Subject: one\r\n\r\nbody\r\n"),
            mail("<>", b"Subject: two\r\n\r\n\x00\xff 8-bit\r\nno final crlf"),
        ];
        for m in &mails {
            md.deliver(m).await.unwrap();
        }
        let new = list(&md.root().join("new"));
        assert_eq!(new.len(), 2);
        assert!(list(&md.root().join("tmp")).is_empty());
        assert!(list(&md.root().join("cur")).is_empty());
        assert_ne!(new[0], new[1]);

        let mut contents: Vec<Vec<u8>> = new.iter().map(|p| fs::read(p).unwrap()).collect();
        contents.sort();
        let mut want: Vec<Vec<u8>> = [("a@example.com", &mails[0]), ("", &mails[1])]
            .iter()
            .map(|(rp, m)| {
                let d = m.data.as_ref().unwrap();
                let mut w = format!("Return-Path: <{rp}>\r\n{}", d.received).into_bytes();
                w.extend_from_slice(&d.raw);
                w
            })
            .collect();
        want.sort();
        assert_eq!(contents, want);

        for p in &new {
            let meta = fs::metadata(p).unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, 0o600);
            let name = p.file_name().unwrap().to_str().unwrap();
            let size: u64 = name.rsplit_once(",S=").unwrap().1.parse().unwrap();
            assert_eq!(size, meta.len());
            let (secs, rest) = name.split_once(".M").unwrap();
            assert!(secs.parse::<u64>().is_ok(), "{name}");
            assert!(
                rest.contains(&format!("P{}Q", std::process::id())),
                "{name}"
            );
            assert!(!name.contains('/') && !name.contains(':'), "{name}");
        }
    }

    #[test]
    fn deliver_sync_returns_path_in_new() {
        let dir = tempfile::tempdir().unwrap();
        let md = Maildir::open(dir.path()).unwrap();
        let m = mail("x@y", b"hi");
        let p = md.deliver_sync(&m).unwrap();
        assert_eq!(p.parent().unwrap(), dir.path().join("new"));
        assert_eq!(
            fs::read(&p).unwrap(),
            b"Return-Path: <x@y>\r\nReceived: from x\r\n\tby y; now\r\nhi"
        );
        let names: std::collections::HashSet<PathBuf> =
            (0..200).map(|_| md.deliver_sync(&m).unwrap()).collect();
        assert_eq!(names.len(), 200);
    }

    #[test]
    fn no_message_is_permanent_without_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let md = Maildir::open(dir.path()).unwrap();
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);

        let empty = Mail::default();
        let mut fut = md.deliver(&empty);
        assert!(matches!(
            fut.as_mut().poll(&mut cx),
            Poll::Ready(Err(DeliveryError::Permanent(_)))
        ));
        let err = md.deliver_sync(&empty).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);

        // Outside a tokio runtime the delivery runs inline.
        let m = mail("", b"x");
        let mut fut = md.deliver(&m);
        assert!(matches!(fut.as_mut().poll(&mut cx), Poll::Ready(Ok(()))));
        assert_eq!(list(&dir.path().join("new")).len(), 1);
    }

    #[test]
    fn open_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        Maildir::open(dir.path()).unwrap();
        Maildir::open(dir.path()).unwrap();
        assert!(list(&dir.path().join("tmp")).is_empty());
    }

    #[test]
    fn open_fails_on_file_or_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        fs::write(&file, b"").unwrap();
        assert!(Maildir::open(&file).is_err());
        assert!(Maildir::open(file.join("below")).is_err());

        // tmp/ is a file.
        let bad = dir.path().join("bad");
        fs::create_dir(&bad).unwrap();
        fs::write(bad.join("tmp"), b"").unwrap();
        assert!(Maildir::open(&bad).is_err());

        // Read-only parent, and a Maildir whose tmp/ is read-only.
        let ro = dir.path().join("ro");
        fs::create_dir(&ro).unwrap();
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o500)).unwrap();
        let ro_result = Maildir::open(ro.join("Maildir"));
        let md = dir.path().join("md");
        Maildir::open(&md).unwrap();
        fs::set_permissions(md.join("tmp"), fs::Permissions::from_mode(0o500)).unwrap();
        let ro_tmp_result = Maildir::open(&md);
        if permissions_enforced(&ro) {
            assert!(ro_result.is_err());
            assert!(ro_tmp_result.is_err());
        }
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o700)).unwrap();
    }

    #[test]
    fn a_file_in_the_way_is_named() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("new"), b"").unwrap();
        let error = Maildir::open(dir.path()).unwrap_err();
        let new = dir.path().join("new");
        assert_eq!(
            error.to_string(),
            format!("{} exists and is not a directory", new.display())
        );
        // The root under a file: the file is named, not the root.
        let error = Maildir::open(new.join("Maildir")).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("{} exists and is not a directory", new.display())
        );
    }

    #[test]
    fn failed_rename_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let md = Maildir::open(dir.path()).unwrap();
        // Replace new/ by a file so the rename fails (even for root).
        fs::remove_dir(dir.path().join("new")).unwrap();
        fs::write(dir.path().join("new"), b"").unwrap();
        assert!(md.deliver_sync(&mail("a@b", b"x")).is_err());
        assert!(list(&dir.path().join("tmp")).is_empty());
    }

    #[test]
    fn open_removes_what_a_killed_process_left_in_tmp() {
        let dir = tempfile::tempdir().unwrap();
        let md = Maildir::open(dir.path()).unwrap();
        md.deliver_sync(&mail("a@b", b"kept")).unwrap();
        let mut true_process = std::process::Command::new("true").spawn().unwrap();
        true_process.wait().unwrap();
        let leftover = format!(
            "1700000000.M1P{}Q3.{},S=99",
            true_process.id(),
            local_hostname()
        );
        fs::write(dir.path().join("tmp").join(&leftover), b"half a mess").unwrap();
        fs::write(dir.path().join("tmp").join("someone-elses"), b"x").unwrap();

        let again = Maildir::open(dir.path()).unwrap();
        assert_eq!(
            list(&dir.path().join("tmp")),
            [dir.path().join("tmp").join("someone-elses")]
        );
        assert_eq!(list(&dir.path().join("new")).len(), 1);
        let found = again.clean_tmp().unwrap();
        assert_eq!((found.removed, found.kept, found.failed), (0, 1, 0));
    }

    #[test]
    fn quarantined_mail_goes_to_its_folder_and_its_leftovers_are_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let md = Maildir::open(dir.path()).unwrap();
        let mut quarantined = mail("a@b", b"odd");
        quarantined.quarantine = Some("hook said so".into());
        let path = md.deliver_sync(&quarantined).unwrap();
        let folder = dir.path().join(QUARANTINE_FOLDER);
        assert_eq!(path.parent(), Some(folder.join("new").as_path()));
        assert!(list(&dir.path().join("new")).is_empty());
        let mut true_process = std::process::Command::new("true").spawn().unwrap();
        true_process.wait().unwrap();
        let leftover = format!(
            "1700000000.M1P{}Q3.{},S=9",
            true_process.id(),
            local_hostname()
        );
        fs::write(folder.join("tmp").join(&leftover), b"half").unwrap();
        Maildir::open(dir.path()).unwrap();
        assert!(list(&folder.join("tmp")).is_empty());
        assert_eq!(list(&folder.join("new")), [path]);
    }

    #[test]
    fn hostname_sanitizing() {
        for (input, want) in [
            ("mx.example.com", "mx.example.com"),
            ("a/b:c", "a\\057b\\072c"),
            ("::", "\\072\\072"),
        ] {
            assert_eq!(sanitize_hostname(input), want);
        }
        assert!(!local_hostname().is_empty());
    }
}
