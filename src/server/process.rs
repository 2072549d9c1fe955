//! Unix process duties — net-server's `user_name`, `group_name`,
//! `working_directory`, `pid_file` and `daemon` options — done correctly.
//!
//! The seed kept root's supplementary groups, wrote the pid file after
//! `Process.daemon` had moved to `/` (a relative `pid_file` became `/pid`), never
//! checked for a running instance and never checked the privilege drop. Here:
//! * [`resolve_identity`] + [`drop_privileges`]: supplementary groups become
//!   exactly the target's, then gid, then uid; the result is verified;
//! * [`PidFile`]: refuses a live holder, replaces a stale file, appears
//!   atomically and is removed on drop only while it still holds our pid;
//! * [`daemonize`]: no `fork` (the crate forbids `unsafe`): the binary re-executes
//!   itself in a new session and the parent waits until the child is ready.
//!   Relative paths mean the same in the daemon as in the foreground.
//!
//! Start-up order: [`enter_working_directory`], bind the listeners, [`PidFile`],
//! [`drop_privileges`], then [`notify_ready`].

use std::ffi::{CString, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::unistd::{Gid, Group, Pid, Uid, User, getegid, geteuid, getgid, getuid};

/// A start-up error naming its culprit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// `user_name` names no user (and is no usable numeric uid).
    #[error("unknown user {0:?}")]
    UnknownUser(String),
    /// `group_name` names no group (and is no numeric gid).
    #[error("unknown group {0:?}")]
    UnknownGroup(String),
    /// The user or group database could not be read.
    #[error("cannot look up {name:?}")]
    Lookup {
        /// The user or group name.
        name: String,
        /// Why.
        source: nix::Error,
    },
    /// A change of user or group was asked for, but we are not root.
    #[error("changing to uid {} gid {} needs root", .0.uid, .0.gid)]
    NotRoot(Identity),
    /// The OS refused a step of the privilege drop.
    #[error("cannot drop privileges: {what} failed")]
    Drop {
        /// The call (`setgroups`, `setgid`, ...).
        what: &'static str,
        /// Why.
        source: nix::Error,
    },
    /// The drop reported success but the process still holds something it should not.
    #[error("privilege drop did not take: {0}")]
    DropDidNotTake(String),
    /// The pid file names a live process: another instance runs.
    #[error("pid file {path} names the running process {pid}")]
    PidFileInUse {
        /// The pid file.
        path: PathBuf,
        /// The live process.
        pid: i32,
    },
    /// The pid file could not be read or written.
    #[error("pid file {path}")]
    PidFile {
        /// The pid file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// `working_directory` could not be entered.
    #[error("cannot enter working directory {path}")]
    WorkingDirectory {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The daemon could not be started, or the child could not set itself up.
    #[error("cannot start the daemon: {0}")]
    Daemon(io::Error),
    /// The daemon reported a start-up error, exited early or was not ready in
    /// 30 s (then it was killed).
    #[error("the daemon failed to start: {0}")]
    DaemonFailed(String),
}

/// Changes the current directory; call it before any relative path is resolved.
pub fn enter_working_directory(dir: &Path) -> Result<(), ProcessError> {
    std::env::set_current_dir(dir).map_err(|source| ProcessError::WorkingDirectory {
        path: dir.to_owned(),
        source,
    })
}

/// Who to become.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user id.
    pub uid: Uid,
    /// The group id (also the only supplementary group when `user` is `None`).
    pub gid: Gid,
    /// The user's name, whose groups become the supplementary groups.
    pub user: Option<String>,
}

/// Resolves `user_name` / `group_name` (names, or numeric ids) into an [`Identity`].
///
/// Only a user: their primary group. Only a group: the uid stays ours. Neither:
/// `None`. A numeric uid without a passwd entry is accepted only with a group.
pub fn resolve_identity(
    user: Option<&str>,
    group: Option<&str>,
) -> Result<Option<Identity>, ProcessError> {
    let gid = group.map(find_group).transpose()?;
    let Some(user) = user else {
        return Ok(gid.map(|gid| Identity {
            uid: getuid(),
            gid,
            user: None,
        }));
    };
    let lookup = |r: nix::Result<Option<User>>| r.map_err(lookup_failed(user));
    let numeric = user.parse::<u32>().ok().map(Uid::from_raw);
    let entry = match lookup(User::from_name(user))? {
        Some(entry) => Some(entry),
        None => match numeric {
            Some(uid) => lookup(User::from_uid(uid))?,
            None => None,
        },
    };
    match (entry, numeric, gid) {
        (Some(entry), _, gid) => Ok(Some(Identity {
            uid: entry.uid,
            gid: gid.unwrap_or(entry.gid),
            user: Some(entry.name),
        })),
        (None, Some(uid), Some(gid)) => Ok(Some(Identity {
            uid,
            gid,
            user: None,
        })),
        (None, _, _) => Err(ProcessError::UnknownUser(user.to_owned())),
    }
}

fn lookup_failed(name: &str) -> impl FnOnce(nix::Error) -> ProcessError + '_ {
    |source| ProcessError::Lookup {
        name: name.to_owned(),
        source,
    }
}

fn refused(what: &'static str) -> impl FnOnce(nix::Error) -> ProcessError {
    move |source| ProcessError::Drop { what, source }
}

fn find_group(name: &str) -> Result<Gid, ProcessError> {
    match (
        Group::from_name(name).map_err(lookup_failed(name))?,
        name.parse(),
    ) {
        (Some(group), _) => Ok(group.gid),
        (None, Ok(gid)) => Ok(Gid::from_raw(gid)),
        (None, Err(_)) => Err(ProcessError::UnknownGroup(name.to_owned())),
    }
}

/// Drops privileges to `identity`: supplementary groups (exactly the user's, or
/// just the gid when there is no user; never root's), then gid, then uid; then
/// verifies the real/effective (and on Linux saved) ids, the groups, and that
/// `setuid(0)` now fails. glibc and musl apply each change to every thread.
///
/// Not root: `Ok` if we already are `identity`, else [`ProcessError::NotRoot`].
pub fn drop_privileges(identity: &Identity) -> Result<(), ProcessError> {
    let (uid, gid) = (identity.uid, identity.gid);
    if !geteuid().is_root() {
        if getuid() == uid && geteuid() == uid && getgid() == gid && getegid() == gid {
            return Ok(());
        }
        return Err(ProcessError::NotRoot(identity.clone()));
    }
    let groups = target_groups(identity)?;
    nix::unistd::setgroups(&groups).map_err(refused("setgroups"))?;
    nix::unistd::setgid(gid).map_err(refused("setgid"))?;
    nix::unistd::setuid(uid).map_err(refused("setuid"))?;
    verify_drop(uid, gid, &groups)
}

fn target_groups(identity: &Identity) -> Result<Vec<Gid>, ProcessError> {
    let Some(user) = &identity.user else {
        return Ok(vec![identity.gid]);
    };
    let name = CString::new(user.as_str()).map_err(|_| refused("getgrouplist")(Errno::EINVAL))?;
    nix::unistd::getgrouplist(&name, identity.gid).map_err(refused("getgrouplist"))
}

fn raw_set(groups: &[Gid]) -> Vec<u32> {
    let mut raw: Vec<u32> = groups.iter().map(|g| g.as_raw()).collect();
    raw.sort_unstable();
    raw.dedup();
    raw
}

fn verify_drop(uid: Uid, gid: Gid, groups: &[Gid]) -> Result<(), ProcessError> {
    let fail = |what: String| Err(ProcessError::DropDidNotTake(what));
    if getuid() != uid || geteuid() != uid {
        return fail(format!("uid {}/{} instead of {uid}", getuid(), geteuid()));
    }
    if getgid() != gid || getegid() != gid {
        return fail(format!("gid {}/{} instead of {gid}", getgid(), getegid()));
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let u = nix::unistd::getresuid().map_err(refused("getresuid"))?;
        let g = nix::unistd::getresgid().map_err(refused("getresgid"))?;
        if u.saved != uid || g.saved != gid {
            return fail(format!("saved uid/gid {}/{}", u.saved, g.saved));
        }
    }
    let now = nix::unistd::getgroups().map_err(refused("getgroups"))?;
    let (now, want) = (raw_set(&now), raw_set(groups));
    if now != want {
        return fail(format!("supplementary groups {now:?} instead of {want:?}"));
    }
    if !uid.is_root() && nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
        return fail("setuid(0) still succeeds".to_owned());
    }
    Ok(())
}

/// True if we are root, no identity was given and a port is below 1024. The
/// caller then logs a loud warning and keeps running as root (the seed exited
/// instead; the ports were bound as root, which is the usual reason to be root).
pub fn should_warn_running_as_root(identity: Option<&Identity>, ports: &[u16]) -> bool {
    geteuid().is_root() && identity.is_none() && ports.iter().any(|&p| p < 1024)
}

/// Pid files held by this process (absolute paths), so that a second
/// [`PidFile::create`] here is refused while a leftover file that merely holds
/// our pid (a container restarted as pid 1) is stale.
static HELD: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn held() -> MutexGuard<'static, Vec<PathBuf>> {
    HELD.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The pid file: our pid and `\n`. Create it after binding the listeners (two
/// instances on the same ports cannot both get this far); it is removed on drop.
/// After [`drop_privileges`] that needs a directory the new user may write; if
/// removal fails, a warning is logged and the next start finds the file stale.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    pid: i32,
}

enum Holder {
    Nobody,
    Stale,
    Live(i32),
}

impl PidFile {
    /// Writes the pid file. A file naming a live process (ours included, when
    /// this process already holds it) is [`ProcessError::PidFileInUse`]; a dead
    /// pid or garbage is stale and replaced. The content appears atomically (a
    /// temporary file in the same directory, then link or rename).
    pub fn create(path: &Path) -> Result<Self, ProcessError> {
        let io_err = |source| ProcessError::PidFile {
            path: path.to_owned(),
            source,
        };
        let path = absolute(path).map_err(io_err)?;
        let io_err = |source| ProcessError::PidFile {
            path: path.clone(),
            source,
        };
        let pid = nix::unistd::getpid().as_raw();
        let check = |path: &Path| match holder(path, pid) {
            Ok(Holder::Live(pid)) => Err(ProcessError::PidFileInUse {
                path: path.to_owned(),
                pid,
            }),
            Ok(_) => Ok(()),
            Err(source) => Err(io_err(source)),
        };
        check(&path)?;
        let temp = write_temp(&path, pid).map_err(io_err)?;
        let placed = match fs::hard_link(&temp, &path) {
            // Exclusive: nobody created the file since we looked.
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                check(&path).and_then(|()| fs::rename(&temp, &path).map_err(io_err))
            }
            // No hard links on this file system: replace.
            Err(_) => fs::rename(&temp, &path).map_err(io_err),
        };
        let _ = fs::remove_file(&temp);
        placed?;
        held().push(path.clone());
        Ok(Self { path, pid })
    }

    /// The pid file's absolute path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        held().retain(|p| p != &self.path);
        match fs::read_to_string(&self.path) {
            Ok(text) if parse_pid(&text) == Some(self.pid) => {
                if let Err(error) = fs::remove_file(&self.path) {
                    tracing::warn!("cannot remove pid file {}: {error}", self.path.display());
                }
            }
            Ok(_) => tracing::warn!(
                "pid file {} no longer holds our pid; left in place",
                self.path.display()
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(error) => tracing::warn!("cannot read pid file {}: {error}", self.path.display()),
        }
    }
}

/// The path with its directory resolved, so a later chdir does not move it.
fn absolute(path: &Path) -> io::Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    Ok(fs::canonicalize(dir)?.join(name))
}

/// A positive pid alone on its line; `0` and negatives (process groups) are garbage.
fn parse_pid(text: &str) -> Option<i32> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|&pid| pid > 0)
}

fn holder(path: &Path, ours: i32) -> io::Result<Holder> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Holder::Nobody),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => return Ok(Holder::Stale),
        Err(e) => return Err(e),
    };
    let Some(pid) = parse_pid(&text) else {
        return Ok(Holder::Stale);
    };
    if pid == ours {
        let mine = held().iter().any(|p| p == path);
        return Ok(if mine {
            Holder::Live(pid)
        } else {
            Holder::Stale
        });
    }
    Ok(match nix::sys::signal::kill(Pid::from_raw(pid), None) {
        Err(Errno::ESRCH) => Holder::Stale,
        // Alive (EPERM: someone else's), or we cannot tell: do not steal it.
        Ok(()) | Err(_) => Holder::Live(pid),
    })
}

fn write_temp(path: &Path, pid: i32) -> io::Result<PathBuf> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temp = path.with_file_name(format!(".{name}.{pid}.tmp"));
    let _ = fs::remove_file(&temp);
    let mut options = OpenOptions::new();
    let written =
        (options.write(true).create_new(true).mode(0o644).open(&temp)).and_then(|mut file| {
            file.write_all(format!("{pid}\n").as_bytes())
                .and(file.sync_all())
        });
    written.map(|()| temp.clone()).inspect_err(|_| {
        let _ = fs::remove_file(&temp);
    })
}

/// Set to `1` in the re-executed daemon child.
pub const DAEMON_CHILD_ENV: &str = "NET_RECEIVER_DAEMON_CHILD";
/// The status file the daemon child reports into.
pub const DAEMON_STATUS_ENV: &str = "NET_RECEIVER_DAEMON_STATUS";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

/// The parent's view of a daemon that reported ready.
#[derive(Debug)]
pub struct DaemonParent {
    child: Child,
}

impl DaemonParent {
    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Starts the daemon: re-executes this binary with `args` (without the program
/// name) in the environment plus [`DAEMON_CHILD_ENV`]`=1`, stdin and stdout on
/// `/dev/null`, stderr on `/dev/null` or appended to `stderr_log`; then waits
/// (at most 30 s) until the child reports ready. On `Ok` the parent exits 0; on
/// `Err` it prints the error and exits 1 (a child that timed out is killed).
///
/// Protocol: an empty status file in a fresh private (0700) directory, named in
/// [`DAEMON_STATUS_ENV`]. The child opens it at once (so it can still write after
/// dropping privileges) and writes one line, `ready <pid>` or `error <message>`;
/// the parent polls every 50 ms and only reads a line once its `\n` is there.
pub fn daemonize(
    args: &[OsString],
    stderr_log: Option<&Path>,
) -> Result<DaemonParent, ProcessError> {
    let exe = std::env::current_exe().map_err(ProcessError::Daemon)?;
    let stderr = match stderr_log {
        None => Stdio::null(),
        Some(path) => (OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(path))
        .map_err(|e| {
            let log = format!("log file {}: {e}", path.display());
            ProcessError::Daemon(io::Error::new(e.kind(), log))
        })?
        .into(),
    };
    let dir = StatusDir::create().map_err(ProcessError::Daemon)?;
    let status = dir.0.join("status");
    (OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&status))
    .map_err(ProcessError::Daemon)?;
    let mut child = Command::new(exe)
        .args(args)
        .env(DAEMON_CHILD_ENV, "1")
        .env(DAEMON_STATUS_ENV, &status)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(ProcessError::Daemon)?;
    wait_ready(&mut child, &status, READY_TIMEOUT)?;
    Ok(DaemonParent { child })
}

/// A private temporary directory, removed on drop.
struct StatusDir(PathBuf);

impl StatusDir {
    /// Fails (rather than reuse it) if the name exists: nobody else may own it.
    fn create() -> io::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!("net-receiver-daemon-{}-{nanos}", std::process::id());
        let dir = std::env::temp_dir().join(name);
        fs::DirBuilder::new().mode(0o700).create(&dir)?;
        Ok(Self(dir))
    }
}

impl Drop for StatusDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn wait_ready(child: &mut Child, status: &Path, timeout: Duration) -> Result<(), ProcessError> {
    let deadline = Instant::now() + timeout;
    loop {
        // Look at the exit first, so a status written just before it is seen.
        let exited = child.try_wait().map_err(ProcessError::Daemon)?;
        match parse_status(&fs::read_to_string(status).unwrap_or_default()) {
            Status::Ready(_) => return Ok(()),
            Status::Failed(message) => return Err(ProcessError::DaemonFailed(message)),
            Status::Pending => {}
        }
        if let Some(exit) = exited {
            let why = format!("it exited before it was ready ({exit})");
            return Err(ProcessError::DaemonFailed(why));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let why = format!("not ready within {} s; stopped", timeout.as_secs_f32());
            return Err(ProcessError::DaemonFailed(why));
        }
        std::thread::sleep(POLL);
    }
}

/// A daemon child's report.
#[derive(Debug, PartialEq, Eq)]
enum Status {
    Pending,
    Ready(u32),
    Failed(String),
}

fn status_line(status: &Status) -> String {
    match status {
        Status::Pending => String::new(),
        Status::Ready(pid) => format!("ready {pid}\n"),
        Status::Failed(message) => format!("error {}\n", message.replace(['\r', '\n'], " ")),
    }
}

fn parse_status(text: &str) -> Status {
    let Some((line, _)) = text.split_once('\n') else {
        return Status::Pending;
    };
    if let Some(pid) = line.strip_prefix("ready ").and_then(|p| p.parse().ok()) {
        return Status::Ready(pid);
    }
    match line.strip_prefix("error ") {
        Some(message) => Status::Failed(message.to_owned()),
        None => Status::Failed(format!("unreadable daemon status {line:?}")),
    }
}

/// The status file, opened by [`become_daemon_child`].
static STATUS: Mutex<Option<File>> = Mutex::new(None);

/// True in the daemon child started by [`daemonize`].
pub fn is_daemon_child() -> bool {
    std::env::var_os(DAEMON_CHILD_ENV).is_some_and(|v| v == "1")
}

/// In the daemon child (else a no-op), first thing in `main`, before any thread
/// starts: opens the status file, then `setsid()` (a child spawned by
/// [`daemonize`] is never a process-group leader, so this works). After an
/// `Err`, report it with [`notify_failed`] and exit 1.
pub fn become_daemon_child() -> Result<(), ProcessError> {
    if !is_daemon_child() {
        return Ok(());
    }
    let path = std::env::var_os(DAEMON_STATUS_ENV).ok_or_else(|| {
        ProcessError::Daemon(io::Error::other(format!("{DAEMON_STATUS_ENV} is not set")))
    })?;
    let file = OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(ProcessError::Daemon)?;
    *STATUS.lock().unwrap_or_else(PoisonError::into_inner) = Some(file);
    nix::unistd::setsid().map_err(|e| ProcessError::Daemon(e.into()))?;
    Ok(())
}

/// In the daemon child, once listening, the pid file written and privileges
/// dropped: the parent may exit 0. Only the first report counts.
pub fn notify_ready() {
    notify(&Status::Ready(std::process::id()));
}

/// In the daemon child, on a start-up error: the parent prints `message` and
/// exits 1. Only the first report counts.
pub fn notify_failed(message: &str) {
    notify(&Status::Failed(message.to_owned()));
}

fn notify(status: &Status) {
    let taken = STATUS.lock().unwrap_or_else(PoisonError::into_inner).take();
    if let Some(mut file) = taken
        && let Err(error) = file.write_all(status_line(status).as_bytes())
    {
        tracing::warn!("cannot report to the daemon parent: {error}");
    }
}

#[cfg(test)]
#[path = "process_tests.rs"]
mod tests;
