//! Mail structures printed as JSON lines by a thread of its own: a slow reader
//! of the output never stalls the threads that serve sessions, and each line is
//! streamed to the writer (a 25 MiB message is never held twice as JSON text).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use net_receiver::server::process;
use net_receiver::{Config, Mail};

/// Mails waiting to be printed before senders wait for room.
const QUEUE: usize = 64;

/// The sending side: cheap to share, one per receiver.
#[derive(Debug)]
pub(crate) struct JsonLines {
    queue: tokio::sync::mpsc::Sender<Box<Mail>>,
}

/// The printing thread; [`JsonLinesWriter::finish`] waits until every queued
/// line is written.
#[derive(Debug)]
pub(crate) struct JsonLinesWriter {
    thread: JoinHandle<()>,
}

impl JsonLines {
    /// Starts the printing thread writing to `out` (e.g. `std::io::stdout()`).
    pub(crate) fn spawn<W: Write + Send + 'static>(
        out: W,
    ) -> std::io::Result<(JsonLines, JsonLinesWriter)> {
        let (queue, mut lines) = tokio::sync::mpsc::channel::<Box<Mail>>(QUEUE);
        let thread = std::thread::Builder::new()
            .name("json-lines".to_owned())
            .spawn(move || {
                let mut out = std::io::BufWriter::new(out);
                while let Some(mail) = lines.blocking_recv() {
                    // Streamed: the line is never built whole.
                    let written = mail
                        .write_json(&mut out)
                        .and_then(|()| out.write_all(b"\n"))
                        .and_then(|()| out.flush());
                    if let Err(error) = written {
                        // The mail is stored already; only its line is lost.
                        tracing::warn!(id = %mail.id, "cannot print the mail: {error}");
                    }
                }
            })?;
        Ok((JsonLines { queue }, JsonLinesWriter { thread }))
    }

    /// Queues `mail` for printing; waits (without blocking the thread) while the
    /// queue is full. The message bytes are shared, not copied.
    pub(crate) async fn print(&self, mail: &Mail) {
        // An error means the printing thread is gone; the mail is stored anyway.
        let _ = self.queue.send(Box::new(mail.clone())).await;
    }
}

impl JsonLinesWriter {
    /// Waits at most `limit` for the queued lines to be written (once every
    /// [`JsonLines`] is dropped); true if they all were.
    pub(crate) fn finish(self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while !self.thread.is_finished() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.thread.join().is_ok()
    }
}

/// A JSON-lines file (`json_file`) opened for appending (0640) and reopened on
/// the next write after [`ReopenHandle::reopen`], so that a log rotator can move
/// it away and send SIGHUP.
#[derive(Debug)]
pub(crate) struct JsonFile {
    path: PathBuf,
    file: std::fs::File,
    reopen: Arc<AtomicBool>,
}

/// Asks a [`JsonFile`] to reopen its path before its next line.
#[derive(Debug, Clone)]
pub(crate) struct ReopenHandle(Arc<AtomicBool>);

impl ReopenHandle {
    /// The next line goes to a freshly opened file of the same name.
    pub(crate) fn reopen(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl JsonFile {
    /// Opens (creating) `path` for appending.
    pub(crate) fn open(path: &Path) -> std::io::Result<(JsonFile, ReopenHandle)> {
        let reopen = Arc::new(AtomicBool::new(false));
        let file = JsonFile {
            path: path.to_owned(),
            file: open_append(path)?,
            reopen: Arc::clone(&reopen),
        };
        Ok((file, ReopenHandle(reopen)))
    }
}

fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

impl Write for JsonFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.reopen.swap(false, Ordering::Relaxed) {
            match open_append(&self.path) {
                Ok(file) => self.file = file,
                // Keep writing to the old file rather than losing lines.
                Err(error) => tracing::error!(
                    "cannot reopen {}: {error}; still writing to the old file",
                    self.path.display()
                ),
            }
        }
        self.file.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// The JSON-lines printer: none with `quiet`, else `json_file` or stdout.
pub(crate) fn json_output(
    config: &Config,
) -> anyhow::Result<(
    Option<JsonLines>,
    Option<JsonLinesWriter>,
    Option<ReopenHandle>,
)> {
    if config.quiet {
        return Ok((None, None, None));
    }
    let started = match &config.json_file {
        Some(path) => {
            let (file, reopen) = JsonFile::open(path)
                .with_context(|| format!("cannot open json_file {}", path.display()))?;
            (JsonLines::spawn(file), Some(reopen))
        }
        None => (JsonLines::spawn(std::io::stdout()), None),
    };
    let (lines, writer) = started.0.context("cannot start the output thread")?;
    Ok((Some(lines), Some(writer), started.1))
}

/// Where the JSON lines go, and a warning when nobody can read them.
pub(crate) fn json_destination(config: &Config) -> (String, Option<String>) {
    match (&config.json_file, config.quiet) {
        (_, true) => ("nowhere (quiet)".to_owned(), None),
        (Some(file), false) => (file.display().to_string(), None),
        (None, false) if config.daemon || process::is_daemon_child() => (
            "/dev/null".to_owned(),
            Some(
                "JSON lines are discarded: a daemon's stdout is /dev/null; \
                 set json_file (--json-file) to keep them"
                    .to_owned(),
            ),
        ),
        (None, false) => ("stdout".to_owned(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn every_mail_is_one_line_in_order() {
        let out = Shared::default();
        let (lines, writer) = JsonLines::spawn(out.clone()).expect("thread");
        for n in 0..200 {
            let mail = Mail {
                id: format!("id-{n}"),
                ..Mail::default()
            };
            lines.print(&mail).await;
        }
        drop(lines);
        assert!(writer.finish(Duration::from_secs(10)));
        let text = String::from_utf8(out.0.lock().expect("lock").clone()).expect("UTF-8");
        let ids: Vec<String> = text
            .lines()
            .map(|line| serde_json::from_str::<Mail>(line).expect("JSON").id)
            .collect();
        let expected: Vec<String> = (0..200).map(|n| format!("id-{n}")).collect();
        assert_eq!(ids, expected);
    }

    #[tokio::test]
    async fn a_json_file_is_reopened_after_rotation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mail.json");
        let (file, reopen) = JsonFile::open(&path).expect("open");
        let (lines, writer) = JsonLines::spawn(file).expect("thread");
        let mail = |id: &str| Mail {
            id: id.to_owned(),
            ..Mail::default()
        };
        lines.print(&mail("before")).await;
        // Wait until the first line is out, then rotate as logrotate does.
        for _ in 0..500 {
            if std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) > 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        std::fs::rename(&path, dir.path().join("mail.json.1")).expect("rotate");
        reopen.reopen();
        lines.print(&mail("after")).await;
        drop(lines);
        assert!(writer.finish(Duration::from_secs(10)));
        let old = std::fs::read_to_string(dir.path().join("mail.json.1")).expect("old");
        let new = std::fs::read_to_string(&path).expect("new");
        assert!(
            old.contains("\"before\"") && !old.contains("\"after\""),
            "{old}"
        );
        assert!(
            new.contains("\"after\"") && !new.contains("\"before\""),
            "{new}"
        );
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(
            mode & 0o027,
            0,
            "not writable by the group, nothing for others: {mode:o}"
        );
    }
}
