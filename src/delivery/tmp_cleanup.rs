//! What a killed process leaves in a Maildir's `tmp/`, and which of it is safe
//! to remove (done by [`Maildir::open`](super::Maildir::open)).
//!
//! A delivery writes `tmp/<name>`, fsyncs it and renames it into `new/`; a
//! process killed before the rename leaves the tmp file behind, never a partial
//! file in `new/`. Such a file was never acknowledged (the 250 is sent after
//! the rename), so removing it loses nothing. Removed are:
//!
//! * files with our own name pattern (`<secs>.M<micros>P<pid>Q<n>.<host>,S=<size>`)
//!   and this host's name whose writer is gone: no process `<pid>` exists, or
//!   `<pid>` is this process's own and the name is older than this process's
//!   first use of a Maildir (a restart that got the same pid, e.g. pid 1 in a
//!   container);
//! * any regular file untouched (atime, mtime and ctime) for 36 hours, the
//!   Maildir convention, which also covers other writers and other hosts.
//!
//! Everything else (a live writer's file, a recent name we do not know,
//! directories) is kept.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

/// A file in `tmp/` untouched this long is anyone's leftover (the Maildir
/// convention).
pub(super) const STALE_AFTER: Duration = Duration::from_secs(36 * 60 * 60);

/// No tmp file of this process is older than this: it is fixed before the
/// first Maildir is opened and before the first file name is made.
static PROCESS_EPOCH: LazyLock<SystemTime> = LazyLock::new(SystemTime::now);

/// The time before which this process wrote nothing into any `tmp/`.
pub(super) fn process_epoch() -> SystemTime {
    *PROCESS_EPOCH
}

/// What a clean-up of a Maildir's `tmp/` found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TmpCleanup {
    /// Files removed: left by a process that is gone, or untouched for 36 hours.
    pub removed: usize,
    /// Files kept: a live process may still be writing them.
    pub kept: usize,
    /// Files that were due to go but could not be removed (each is logged).
    pub failed: usize,
}

/// The writer of a tmp file with our name pattern.
#[derive(Debug, PartialEq, Eq)]
struct Writer {
    pid: i32,
    created: SystemTime,
}

/// Parses `<secs>.M<micros>P<pid>Q<counter>.<hostname>,S=<size>`; `None` unless
/// every part is there and `<hostname>` is `ours`.
fn our_writer(name: &str, ours: &str) -> Option<Writer> {
    let (secs, rest) = name.split_once('.')?;
    let (micros, rest) = rest.strip_prefix('M')?.split_once('P')?;
    let (pid, rest) = rest.split_once('Q')?;
    let (counter, rest) = rest.split_once('.')?;
    let (hostname, size) = rest.rsplit_once(",S=")?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if hostname != ours || ![secs, micros, pid, counter, size].into_iter().all(digits) {
        return None;
    }
    let pid = pid.parse().ok().filter(|&pid: &i32| pid > 0)?;
    let created = UNIX_EPOCH
        .checked_add(Duration::from_secs(secs.parse().ok()?))?
        .checked_add(Duration::from_micros(micros.parse().ok()?))?;
    Some(Writer { pid, created })
}

/// Whether a process `pid` exists (one of another user counts: `EPERM`).
fn process_exists(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None) != Err(Errno::ESRCH)
}

impl Writer {
    /// The process that wrote the file is no longer running.
    fn is_gone(&self, own_pid: i32, epoch: SystemTime) -> bool {
        if self.pid == own_pid {
            self.created < epoch
        } else {
            !process_exists(self.pid)
        }
    }
}

/// The latest of the file's access, modification and change times.
fn last_touched(meta: &fs::Metadata) -> SystemTime {
    let secs = meta.atime().max(meta.mtime()).max(meta.ctime());
    UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

/// Removes from `tmp` what the rules above allow, judging age against `now`
/// and names against `hostname` (ours, as in our file names).
pub(super) fn clean(tmp: &Path, hostname: &str, now: SystemTime) -> io::Result<TmpCleanup> {
    let own_pid = i32::try_from(std::process::id()).unwrap_or(0);
    let epoch = process_epoch();
    let mut found = TmpCleanup::default();
    for entry in fs::read_dir(tmp)? {
        let entry = entry?;
        let path = entry.path();
        let Ok(meta) = path.symlink_metadata() else {
            continue; // gone meanwhile
        };
        if !meta.file_type().is_file() {
            continue;
        }
        let writer_gone = entry
            .file_name()
            .to_str()
            .and_then(|name| our_writer(name, hostname))
            .is_some_and(|writer| writer.is_gone(own_pid, epoch));
        let stale = last_touched(&meta) + STALE_AFTER <= now;
        if !writer_gone && !stale {
            found.kept += 1;
            continue;
        }
        match fs::remove_file(&path) {
            Ok(()) => found.removed += 1,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => {
                tracing::warn!("cannot remove the leftover {}: {error}", path.display());
                found.failed += 1;
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    const HOST: &str = "mx.example";

    /// The pid of a process that has exited (and been reaped).
    fn dead_pid() -> i32 {
        let mut child = Command::new("true").spawn().expect("run true");
        child.wait().expect("wait for true");
        i32::try_from(child.id()).expect("pid")
    }

    fn name(secs: u64, pid: i32, host: &str) -> String {
        format!("{secs}.M12345P{pid}Q7.{host},S=42")
    }

    fn unix_secs(time: SystemTime) -> u64 {
        time.duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_secs()
    }

    fn remaining(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("read tmp")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn parses_only_complete_names_of_this_host() {
        let writer = our_writer("1700000000.M5P42Q9.mx.example,S=100", HOST);
        let created = UNIX_EPOCH + Duration::new(1_700_000_000, 5_000);
        assert_eq!(writer, Some(Writer { pid: 42, created }));
        for other in [
            "1700000000.M5P42Q9.other.example,S=100",
            "1700000000.M5P42Q9.mx.example",
            "1700000000.M5P+42Q9.mx.example,S=100",
            "1700000000.M5P0Q9.mx.example,S=100",
            "1700000000.M5PQ9.mx.example,S=100",
            "x.M5P42Q9.mx.example,S=100",
            ".probe.42.0",
            "",
        ] {
            assert_eq!(our_writer(other, HOST), None, "{other}");
        }
    }

    #[test]
    fn removes_files_of_gone_processes_and_stale_files_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tmp = dir.path();
        let epoch = process_epoch();
        let now = SystemTime::now();
        let dead = dead_pid();
        let alive = i32::try_from(std::os::unix::process::parent_id()).expect("pid");
        let own = i32::try_from(std::process::id()).expect("pid");
        let recent = unix_secs(now);
        let gone = [
            name(recent, dead, HOST),
            // Our pid, but from before this process: an earlier process with it.
            name(unix_secs(epoch) - 10, own, HOST),
        ];
        let kept = [
            name(recent, alive, HOST),
            name(unix_secs(epoch) + 1, own, HOST),
            // Another host's pids mean nothing here.
            name(recent, dead, "other.example"),
            "1700000000.M1P1Q1.unknown-writer".to_owned(),
        ];
        for file in gone.iter().chain(&kept) {
            fs::write(tmp.join(file), b"partial").expect("write");
        }
        fs::create_dir(tmp.join("a-directory")).expect("mkdir");

        let found = clean(tmp, HOST, now).expect("clean");
        assert_eq!((found.removed, found.kept, found.failed), (2, 4, 0));
        let mut want: Vec<String> = kept.to_vec();
        want.push("a-directory".to_owned());
        want.sort();
        assert_eq!(remaining(tmp), want);

        // 36 hours later everything that is a file goes, whoever wrote it.
        let later = now + STALE_AFTER + Duration::from_secs(60);
        let found = clean(tmp, HOST, later).expect("clean");
        assert_eq!((found.removed, found.kept, found.failed), (4, 0, 0));
        assert_eq!(remaining(tmp), ["a-directory"]);
    }

    #[test]
    fn missing_directory_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing");
        assert!(clean(&missing, HOST, SystemTime::now()).is_err());
    }
}
