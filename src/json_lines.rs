//! Mail structures printed as JSON lines by a thread of its own: a slow reader
//! of the output never stalls the threads that serve sessions, and each line is
//! streamed to the writer (a 25 MiB message is never held twice as JSON text).

use std::io::Write;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::mail::Mail;

/// Mails waiting to be printed before senders wait for room.
const QUEUE: usize = 64;

/// The sending side: cheap to share, one per receiver.
#[derive(Debug)]
pub struct JsonLines {
    queue: tokio::sync::mpsc::Sender<Box<Mail>>,
}

/// The printing thread; [`JsonLinesWriter::finish`] waits until every queued
/// line is written.
#[derive(Debug)]
pub struct JsonLinesWriter {
    thread: JoinHandle<()>,
}

impl JsonLines {
    /// Starts the printing thread writing to `out` (e.g. `std::io::stdout()`).
    pub fn spawn<W: Write + Send + 'static>(
        out: W,
    ) -> std::io::Result<(JsonLines, JsonLinesWriter)> {
        let (queue, mut lines) = tokio::sync::mpsc::channel::<Box<Mail>>(QUEUE);
        let thread = std::thread::Builder::new()
            .name("json-lines".to_owned())
            .spawn(move || {
                let mut out = std::io::BufWriter::new(out);
                while let Some(mail) = lines.blocking_recv() {
                    let written = serde_json::to_writer(&mut out, &*mail)
                        .map_err(std::io::Error::from)
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
    pub async fn print(&self, mail: &Mail) {
        // An error means the printing thread is gone; the mail is stored anyway.
        let _ = self.queue.send(Box::new(mail.clone())).await;
    }
}

impl JsonLinesWriter {
    /// Waits at most `limit` for the queued lines to be written (once every
    /// [`JsonLines`] is dropped); true if they all were.
    pub fn finish(self, limit: Duration) -> bool {
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
}
