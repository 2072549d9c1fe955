//! A full or unwritable Maildir at run time, against the real binary (issue 7).
//! On a 2 MiB tmpfs filled up, the final dot gets 452 4.3.1 (never 250) and no
//! partial file is left in `tmp/` or `new/`; once space is freed the next
//! message gets 250 on the same connection. With the tmpfs remounted read-only
//! the final dot gets 451 4.3.0; remounted writable, 250 again, on the same
//! connection and on a new one. The receiver keeps running throughout.
//!
//! Mounting needs root (CAP_SYS_ADMIN). Without it, a Maildir whose `new/` and
//! `tmp/` are chmod 0555 checks the 451 case; where even that cannot bind (root
//! without CAP_SYS_ADMIN), the test prints that it was skipped.

use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::common::{Client, Reply, files_in, split_stored};
use crate::support::running::{Binary, listening_command};

/// The size of the tmpfs the Maildir lives on.
const TMPFS_SIZE: &str = "2m";
/// Body octets of a message that fills the tmpfs in a few steps.
const BIG: usize = 256 * 1024;
/// Messages sent at most while filling the tmpfs (2 MiB / 256 KiB = 8).
const MAX_FILL: usize = 12;

/// Runs `program args` to its end within 10 s, without panicking; `Err` holds
/// what went wrong (for a skip message or a log line).
fn run_quietly(program: &str, args: &[&str]) -> Result<(), String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{program} {args:?} did not finish"));
            }
        }
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    if status.success() {
        Ok(())
    } else {
        let first_line = stderr.lines().next().unwrap_or("").trim();
        Err(format!("{program} {args:?}: {status}: {first_line}"))
    }
}

/// A tmpfs mounted on a directory; unmounted when dropped (the spool's
/// power-cut tests use it too).
pub(super) struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` on `dir` (which must exist).
    pub(super) fn mount(dir: &Path, size: &str) -> Result<Self, String> {
        let options = format!("size={size},mode=0700");
        let target = dir.to_str().ok_or("non-UTF-8 path")?;
        run_quietly(
            "mount",
            &["-t", "tmpfs", "-o", &options, "nr-disk-full", target],
        )?;
        Ok(Tmpfs {
            dir: dir.to_owned(),
        })
    }

    /// `mount -o remount,<mode>`: `ro` or `rw`.
    pub(super) fn remount(&self, mode: &str) {
        self.try_remount(mode)
            .unwrap_or_else(|e| panic!("remount {mode}: {e}"));
    }

    /// [`Tmpfs::remount`] that says why it failed (`ro` is refused while a
    /// file is open for writing on it).
    pub(super) fn try_remount(&self, mode: &str) -> Result<(), String> {
        let target = self.dir.to_str().ok_or("non-UTF-8 path")?;
        run_quietly("mount", &["-o", &format!("remount,{mode}"), target])
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let Some(target) = self.dir.to_str() else {
            return;
        };
        if let Err(error) = run_quietly("umount", &[target]) {
            eprintln!("disk_full: {error}; detaching lazily");
            let _ = run_quietly("umount", &["-l", target]);
        }
    }
}

/// The message for `token`: a Subject naming it and a body of at least `size`
/// octets in 78-octet lines.
fn message(token: &str, size: usize) -> Vec<u8> {
    let mut text = format!("Subject: {token}\r\n\r\n");
    let line = format!("{token} {}\r\n", "y".repeat(76 - token.len() - 1));
    while text.len() < size {
        text.push_str(&line);
    }
    text.into_bytes()
}

/// Sends one message on `client`; returns the reply to the final dot.
fn send(client: &mut Client, token: &str, size: usize) -> Reply {
    client.start_data("full@client.test", "inbox@bin.test");
    let mut data = message(token, size);
    data.extend_from_slice(b".\r\n");
    client.send(&data);
    client.reply()
}

/// Asserts `tmp/` is empty and `new/` holds exactly the complete messages
/// `want` (token, size), nothing partial.
fn expect_stored(maildir: &Path, want: &[(String, usize)]) {
    let tmp = files_in(&maildir.join("tmp"));
    assert!(tmp.is_empty(), "left in tmp/: {tmp:?}");
    let mut found: Vec<String> = Vec::new();
    for path in files_in(&maildir.join("new")) {
        let file = std::fs::read(&path).expect("read a message");
        let stored = split_stored(&file);
        let subject = String::from_utf8_lossy(stored.body)
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("Subject: "))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("{}: no Subject", path.display()));
        let size = want
            .iter()
            .find(|(token, _)| *token == subject)
            .unwrap_or_else(|| panic!("{}: {subject} was never acknowledged", path.display()))
            .1;
        assert!(
            stored.body == message(&subject, size).as_slice(),
            "{}: partial ({} octets)",
            path.display(),
            stored.body.len()
        );
        found.push(subject);
    }
    found.sort();
    let mut want: Vec<&String> = want.iter().map(|(token, _)| token).collect();
    want.sort();
    assert_eq!(found.iter().collect::<Vec<_>>(), want);
}

/// The binary on 127.0.0.1, quiet, delivering into `maildir`.
fn start(maildir: &Path) -> Binary {
    Binary::spawn(listening_command(maildir).arg("--quiet"), 1)
}

#[test]
fn full_or_read_only_maildir_defers_and_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let maildir = dir.path().join("Maildir");
    std::fs::create_dir(&maildir).expect("mkdir");
    let tmpfs = match Tmpfs::mount(&maildir, TMPFS_SIZE) {
        Ok(tmpfs) => tmpfs,
        Err(why) => return unwritable_without_mount(&maildir, &why),
    };
    let mut running = start(&maildir);
    let mut client = Client::ehlo(running.addr().port());

    // Fill it: 250s, then 452 4.3.1 for the message that does not fit.
    let mut acked: Vec<(String, usize)> = Vec::new();
    let full = (0..MAX_FILL)
        .find_map(|n| {
            let token = format!("fill-{n:02}");
            let reply = send(&mut client, &token, BIG);
            match reply.code {
                250 => {
                    acked.push((token, BIG));
                    None
                }
                _ => Some(reply),
            }
        })
        .expect("the tmpfs never filled up");
    full.assert_enhanced(452, "4.3.1");
    assert!(acked.len() > 2, "only {} messages fitted", acked.len());
    let fitted = acked.len();
    expect_stored(&maildir, &acked);
    assert!(running.try_wait().is_none(), "the receiver died");

    // The session goes on; space returns, the next message is taken.
    client.cmd("NOOP", 250);
    for (token, _) in acked.drain(..2) {
        let path = files_in(&maildir.join("new"))
            .into_iter()
            .find(|p| {
                let subject = format!("Subject: {token}\r\n");
                std::fs::read(p)
                    .is_ok_and(|f| crate::support::common::contains(&f, subject.as_bytes()))
            })
            .expect("a stored message");
        std::fs::remove_file(path).expect("free space");
    }
    send(&mut client, "after-free", BIG).assert_enhanced(250, "2.0.0");
    acked.push(("after-free".to_owned(), BIG));
    expect_stored(&maildir, &acked);

    // Read-only: 451 4.3.0, and back to 250 once writable again.
    tmpfs.remount("ro");
    send(&mut client, "read-only", 1000).assert_enhanced(451, "4.3.0");
    client.cmd("RSET", 250);
    expect_stored(&maildir, &acked);
    assert!(running.try_wait().is_none(), "the receiver died");
    tmpfs.remount("rw");
    send(&mut client, "writable-again", 1000).assert_enhanced(250, "2.0.0");
    acked.push(("writable-again".to_owned(), 1000));
    let mut second = Client::ehlo(running.addr().port());
    send(&mut second, "new-connection", 1000).assert_enhanced(250, "2.0.0");
    acked.push(("new-connection".to_owned(), 1000));
    second.quit();
    client.quit();
    expect_stored(&maildir, &acked);
    running.terminate();
    println!(
        "disk_full: tmpfs {TMPFS_SIZE}: 452 after {fitted} messages of {BIG} octets, \
         451 read-only, 250 again after each"
    );
}

/// Without a tmpfs: `new/` and `tmp/` chmod 0555 mid-run give 451 4.3.0, and
/// 250 once writable again; skipped where permissions do not bind.
fn unwritable_without_mount(maildir: &Path, why: &str) {
    let mut running = start(maildir);
    let mut client = Client::ehlo(running.addr().port());
    send(&mut client, "before", 1000).assert_enhanced(250, "2.0.0");
    let set_mode = |mode| {
        for sub in ["new", "tmp"] {
            std::fs::set_permissions(maildir.join(sub), std::fs::Permissions::from_mode(mode))
                .expect("chmod");
        }
    };
    set_mode(0o555);
    let probe = maildir.join("tmp").join("probe");
    if std::fs::write(&probe, b"").is_ok() {
        let _ = std::fs::remove_file(&probe);
        set_mode(0o700);
        println!(
            "disk_full: skipped: needs root for tmpfs ({why}); permissions do not bind either"
        );
        return;
    }
    send(&mut client, "read-only", 1000).assert_enhanced(451, "4.3.0");
    client.cmd("RSET", 250);
    set_mode(0o700);
    send(&mut client, "after", 1000).assert_enhanced(250, "2.0.0");
    client.quit();
    expect_stored(
        maildir,
        &[("before".to_owned(), 1000), ("after".to_owned(), 1000)],
    );
    running.terminate();
    println!("disk_full: no tmpfs ({why}): checked the unwritable case with chmod 0555 only");
}
