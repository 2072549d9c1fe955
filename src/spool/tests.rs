//! Spool tests on real files: group commit, refusal when full, recovery with
//! and without done marks, a torn tail, segment deletion.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::delivery::{Deliver, DeliverFuture, DeliveryError};
use crate::mail::{Address, Data, RcptTo};

fn mail(id: &str) -> Mail {
    let mut mail = Mail {
        id: id.into(),
        rcptto: vec![RcptTo::from(Address {
            url: "<rcpt@example.com>".into(),
            accepted: true,
            ..Address::default()
        })],
        ..Mail::default()
    };
    mail.data = Some(Data::from_message(
        format!("Subject: {id}\r\n\r\nbody of {id}\r\n").into_bytes(),
        "Received: test\r\n".into(),
    ));
    mail
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_covers_many_appends_per_flush() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, pending) = Spool::open(&SpoolOptions::new(dir.path())).unwrap();
    assert!(pending.is_empty());
    let appends: Vec<_> = (0..400)
        .map(|i| {
            let spool = spool.clone();
            tokio::spawn(async move { spool.append(&mail(&format!("ID{i}"))).await })
        })
        .collect();
    let mut places = Vec::new();
    for append in appends {
        places.push(append.await.unwrap().unwrap());
    }
    places.sort();
    places.dedup();
    assert_eq!(places.len(), 400, "every message has a place of its own");
    let stats = spool.stats();
    assert_eq!(stats.messages, 400);
    eprintln!(
        "group commit: {} messages, {} fdatasyncs ({:.3} per message)",
        stats.messages,
        stats.flushes,
        stats.flushes as f64 / stats.messages as f64
    );
    assert!(
        stats.flushes < stats.messages / 2,
        "{stats:?}: at most one flush per two messages"
    );
    drop(spool);
    let (_, pending) = Spool::open(&SpoolOptions::new(dir.path())).unwrap();
    assert_eq!(pending.len(), 400);
}

#[tokio::test]
async fn an_idle_spool_flushes_a_lone_message_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = SpoolOptions::new(dir.path());
    // A commit delay no test could wait out: only a flush under load may use it.
    options.commit_delay = Duration::from_secs(3600);
    let (spool, _) = Spool::open(&options).unwrap();
    for i in 0..3 {
        let lone = mail(&format!("LONE{i}"));
        tokio::time::timeout(Duration::from_secs(30), spool.append(&lone))
            .await
            .expect("a lone message waits for no other")
            .unwrap();
    }
    assert_eq!(spool.stats().flushes, 3, "one flush each");
}

#[tokio::test]
async fn finished_segments_are_deleted_while_the_spool_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = SpoolOptions::new(dir.path());
    options.segment_bytes = 1; // a new segment after every batch
    let (spool, _) = Spool::open(&options).unwrap();
    for i in 0..8 {
        let place = spool.append(&mail(&format!("SEG{i}"))).await.unwrap();
        spool.mark_done(place);
    }
    spool.append(&mail("LAST")).await.unwrap();
    // The writer stops (and waits for its reclaim thread) once the spool is dropped.
    drop(spool);
    let mut left = Vec::new();
    for _ in 0..500 {
        left = segments(dir.path());
        if left.len() <= 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(left.len() <= 3, "finished segments stayed: {left:?}");
    let (_, pending) = Spool::open(&options).unwrap();
    let ids: Vec<&str> = pending.iter().map(|(_, m)| m.id.as_str()).collect();
    assert_eq!(ids, ["LAST"]);
}

#[test]
fn a_spool_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let options = SpoolOptions::new(dir.path());
    let (spool, _) = Spool::open(&options).unwrap();
    let error = Spool::open(&options).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::WouldBlock, "{error}");
    drop(spool);
    // The writer thread lets go of the lock once the last handle is gone.
    Spool::open(&options).unwrap();
}

#[tokio::test]
async fn a_lone_append_is_flushed_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(&SpoolOptions::new(dir.path())).unwrap();
    tokio::time::timeout(Duration::from_secs(5), spool.append(&mail("A")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((spool.stats().flushes, spool.stats().messages), (1, 1));
}

#[tokio::test]
async fn full_spool_refuses_with_insufficient_storage() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = SpoolOptions::new(dir.path());
    let one = record::message_payload(&mail("FIRST")).unwrap().len() + record::HEADER;
    options.max_bytes = one as u64 + 10;
    let (spool, _) = Spool::open(&options).unwrap();
    spool.append(&mail("FIRST")).await.unwrap();
    let error = spool.append(&mail("SECOND")).await.unwrap_err();
    assert!(error.is_insufficient_storage(), "{error}");
    assert_eq!(spool.stats().messages, 1);
}

#[tokio::test]
async fn recovery_redelivers_what_is_not_done() {
    let dir = tempfile::tempdir().unwrap();
    let options = SpoolOptions::new(dir.path());
    let (spool, _) = Spool::open(&options).unwrap();
    let done = spool.append(&mail("DONE")).await.unwrap();
    spool.append(&mail("NOT-DONE")).await.unwrap();
    spool.mark_done(done);
    // A done mark is flushed with the next batch: this append makes sure of it.
    spool.append(&mail("LAST")).await.unwrap();
    drop(spool);
    let (spool, pending) = Spool::open(&options).unwrap();
    let ids: Vec<&str> = pending.iter().map(|(_, m)| m.id.as_str()).collect();
    assert_eq!(ids, ["NOT-DONE", "LAST"]);
    assert_eq!(pending[0].1, mail("NOT-DONE"), "the whole mail comes back");
    for (place, _) in &pending {
        spool.mark_done(*place);
    }
    spool.append(&mail("FLUSH")).await.unwrap();
    drop(spool);
    let (_, pending) = Spool::open(&options).unwrap();
    let ids: Vec<&str> = pending.iter().map(|(_, m)| m.id.as_str()).collect();
    assert_eq!(ids, ["FLUSH"]);
    // The first segments (everything in them done) are gone.
    assert_eq!(segments(dir.path()).len(), 2, "{:?}", segments(dir.path()));
}

#[tokio::test]
async fn torn_tail_is_cut_and_not_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let options = SpoolOptions::new(dir.path());
    let (spool, _) = Spool::open(&options).unwrap();
    spool.append(&mail("WHOLE")).await.unwrap();
    spool.append(&mail("TORN")).await.unwrap();
    drop(spool);
    let path = segments(dir.path()).pop().unwrap();
    let len = std::fs::metadata(&path).unwrap().len();
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(len - 3).unwrap();
    drop(file);
    let (_, pending) = Spool::open(&options).unwrap();
    let ids: Vec<&str> = pending.iter().map(|(_, m)| m.id.as_str()).collect();
    assert_eq!(ids, ["WHOLE"]);
    let record = record::HEADER as u64;
    assert!(std::fs::metadata(&path).unwrap().len() < len - record);
}

/// A target that fails the first `fail` attempts, then collects the ids.
struct Flaky {
    fail: Mutex<usize>,
    stored: Mutex<Vec<String>>,
}

impl Deliver for Flaky {
    fn deliver<'a>(&'a self, mail: &'a Mail) -> DeliverFuture<'a> {
        Box::pin(async move {
            let mut fail = self.fail.lock().unwrap();
            if *fail > 0 {
                *fail -= 1;
                return Err(DeliveryError::Temporary("not now".into()));
            }
            self.stored.lock().unwrap().push(mail.id.clone());
            Ok(())
        })
    }
}

#[tokio::test]
async fn spooled_retries_then_marks_done() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = SpoolOptions::new(dir.path());
    options.retry_min = Duration::from_millis(10);
    let target = Arc::new(Flaky {
        fail: Mutex::new(3),
        stored: Mutex::new(Vec::new()),
    });
    let spooled = Spooled::start(&options, target.clone()).unwrap();
    spooled.deliver(&mail("RETRIED")).await.unwrap();
    for _ in 0..500 {
        if spooled.spool().stats().done == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(*target.stored.lock().unwrap(), ["RETRIED"]);
    assert_eq!(spooled.spool().stats().done, 1);
    drop(spooled);
    let (_, pending) = Spool::open(&options).unwrap();
    assert!(pending.is_empty(), "done is not delivered again");
}

/// The Maildir behind the spool gets its messages in batches, and each done
/// mark follows its file into `new/`: after the last done mark every message
/// is there once, and a reopened spool has nothing left to deliver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spooled_delivers_to_the_maildir_in_batches() {
    let dir = tempfile::tempdir().unwrap();
    let options = SpoolOptions::new(dir.path().join("spool"));
    let maildir = crate::delivery::Maildir::open(dir.path().join("Maildir")).unwrap();
    let spooled = Arc::new(Spooled::start(&options, Arc::new(maildir)).unwrap());
    let appends: Vec<_> = (0..300)
        .map(|i| {
            let spooled = Arc::clone(&spooled);
            tokio::spawn(async move { spooled.deliver(&mail(&format!("B{i}"))).await })
        })
        .collect();
    for append in appends {
        append.await.unwrap().unwrap();
    }
    for _ in 0..1000 {
        if spooled.spool().stats().done == 300 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stats = spooled.spool().stats();
    assert_eq!(stats.done, 300, "{stats:?}");
    let new = std::fs::read_dir(dir.path().join("Maildir/new"))
        .unwrap()
        .count();
    assert_eq!(new, 300);
    eprintln!(
        "delivery: 300 messages in {} batches",
        stats.delivery_batches
    );
    assert!(
        stats.delivery_batches < 150,
        "{stats:?}: at least two messages per batch on average"
    );
    drop(spooled);
    let (_, pending) = Spool::open(&options).unwrap();
    assert!(pending.is_empty(), "{} not done", pending.len());
}

/// [`Spooled::start`] hands the recovered messages to the target.
#[tokio::test]
async fn spooled_delivers_recovered_messages() {
    let dir = tempfile::tempdir().unwrap();
    let options = SpoolOptions::new(dir.path());
    let (spool, _) = Spool::open(&options).unwrap();
    spool.append(&mail("LEFT-OVER")).await.unwrap();
    drop(spool);
    let target = Arc::new(Flaky {
        fail: Mutex::new(0),
        stored: Mutex::new(Vec::new()),
    });
    let spooled = Spooled::start(&options, target.clone()).unwrap();
    for _ in 0..500 {
        if !target.stored.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(*target.stored.lock().unwrap(), ["LEFT-OVER"]);
    drop(spooled);
}

/// A tmpfs of `size` on `dir`, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts it, or panics saying why: the test needs root (CI runs it as
    /// root) and never passes without checking anything.
    fn mount(dir: &Path, size: &str) -> Self {
        let output = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "nr-spool-full",
            ])
            .arg(dir)
            .output()
            .unwrap_or_else(|e| panic!("cannot run mount: {e}"));
        assert!(
            output.status.success(),
            "this test mounts a tmpfs and needs root: mount failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Tmpfs(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_fails_the_whole_batch_and_keeps_going() {
    let dir = tempfile::tempdir().unwrap();
    let _tmpfs = Tmpfs::mount(dir.path(), "256k");
    let options = SpoolOptions::new(dir.path());
    let (spool, _) = Spool::open(&options).unwrap();
    let big = |id: &str| {
        let mut m = mail(id);
        m.data = Some(Data::from_message(
            format!("Subject: {id}\r\n\r\n{}\r\n", "z".repeat(30_000)).into_bytes(),
            String::new(),
        ));
        m
    };
    let mut acked = 0;
    for i in 0..3 {
        spool.append(&big(&format!("FIRST{i}"))).await.unwrap();
        acked += 1;
    }
    let appends: Vec<_> = (0..12)
        .map(|i| {
            let spool = spool.clone();
            let m = big(&format!("BIG{i}"));
            tokio::spawn(async move { spool.append(&m).await })
        })
        .collect();
    let mut full = 0;
    for append in appends {
        match append.await.unwrap() {
            Ok(_) => acked += 1,
            Err(error) => {
                assert!(error.is_insufficient_storage(), "{error}");
                full += 1;
            }
        }
    }
    assert!(full > 0, "acked {acked}, full {full}");
    // The failed batch was cut off: a small message fits again.
    spool.append(&mail("SMALL")).await.unwrap();
    drop(spool);
    let (_, pending) = Spool::open(&options).unwrap();
    assert_eq!(pending.len(), acked + 1, "exactly the acknowledged ones");
}

/// A per-recipient target (LMTP's shape): refuses for good every recipient
/// whose address contains `bad`, stores the others.
#[derive(Default)]
struct RefusesBad {
    stored: Mutex<Vec<(String, String)>>,
}

impl Deliver for RefusesBad {
    fn deliver<'a>(&'a self, _mail: &'a Mail) -> DeliverFuture<'a> {
        Box::pin(async { Err(DeliveryError::Temporary("per recipient only".into())) })
    }

    fn deliver_each<'a>(&'a self, mail: &'a Mail) -> crate::delivery::ReportFuture<'a> {
        Box::pin(async move {
            let mut report = crate::delivery::DeliveryReport::default();
            for (index, rcpt) in crate::delivery::accepted_recipients(mail) {
                let result = if rcpt.url.contains("bad") {
                    Err(DeliveryError::Permanent(
                        "550 5.1.1 no such user\r\nX".into(),
                    ))
                } else {
                    self.stored
                        .lock()
                        .unwrap()
                        .push((mail.id.clone(), rcpt.url.clone()));
                    Ok(())
                };
                report.push(index, rcpt, result);
            }
            report
        })
    }
}

fn mail_to(id: &str, recipients: &[&str]) -> Mail {
    let mut mail = mail(id);
    mail.rcptto = recipients
        .iter()
        .map(|url| {
            RcptTo::from(Address {
                url: (*url).into(),
                accepted: true,
                ..Address::default()
            })
        })
        .collect();
    mail
}

async fn wait_for_done(spooled: &Spooled, done: u64) {
    for _ in 0..1000 {
        if spooled.spool().stats().done >= done {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never {done} done: {:?}", spooled.spool().stats());
}

fn dead_letters(spool: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(spool.join("dead")) else {
        return Vec::new();
    };
    let mut found: Vec<String> = entries
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    found.sort();
    found
}

/// A recipient refused for good: the others get the message, the message is
/// kept in `dead/` naming the refused recipient and why, counted, and done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_refusal_makes_a_dead_letter_then_the_message_is_done() {
    let dir = tempfile::tempdir().unwrap();
    let options = SpoolOptions::new(dir.path());
    let target = Arc::new(RefusesBad::default());
    let spooled = Spooled::start(&options, target.clone()).unwrap();
    let two = mail_to("MIXED", &["<good@example.com>", "<bad@example.com>"]);
    spooled.deliver(&two).await.unwrap();
    spooled
        .deliver(&mail_to("ALLGOOD", &["<ok@example.com>"]))
        .await
        .unwrap();
    wait_for_done(&spooled, 2).await;
    let mut stored = target.stored.lock().unwrap().clone();
    stored.sort();
    assert_eq!(
        stored,
        [
            ("ALLGOOD".to_owned(), "<ok@example.com>".to_owned()),
            ("MIXED".to_owned(), "<good@example.com>".to_owned())
        ]
    );
    let dead = dead_letters(dir.path());
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(
        dead[0].starts_with(
            "X-Net-Receiver-Dead-Letter: <bad@example.com>; \
             permanent delivery failure: 550 5.1.1 no such user??X\r\nReturn-Path: <>\r\n\
             Received: test\r\nSubject: MIXED\r\n"
        ),
        "{:?}",
        dead[0]
    );
    assert_eq!(spooled.spool().stats().dead_letters, 1);
    drop(spooled);
    let (_, pending) = Spool::open(&options).unwrap();
    assert!(pending.is_empty(), "{} not done", pending.len());
}

/// While the dead letter cannot be written, the message is not done: the
/// refused recipient is tried again until it can, and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_dead_letter_keeps_the_message_until_it_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = SpoolOptions::new(dir.path());
    options.retry_min = Duration::from_millis(20);
    options.retry_max = Duration::from_millis(40);
    // dead/ is a file: no dead letter can be written (even by root).
    std::fs::write(dir.path().join("dead"), b"in the way").unwrap();
    let target = Arc::new(RefusesBad::default());
    let spooled = Spooled::start(&options, target.clone()).unwrap();
    let mixed = mail_to("STUCK", &["<good@example.com>", "<bad@example.com>"]);
    spooled.deliver(&mixed).await.unwrap();
    for _ in 0..1000 {
        if spooled.spool().stats().retries >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stats = spooled.spool().stats();
    assert!(stats.retries >= 2, "{stats:?}");
    assert_eq!((stats.done, stats.dead_letters), (0, 0), "{stats:?}");
    std::fs::remove_file(dir.path().join("dead")).unwrap();
    wait_for_done(&spooled, 1).await;
    assert_eq!(dead_letters(dir.path()).len(), 1);
    // The good recipient got it once: retries only go to the refused one.
    assert_eq!(
        *target.stored.lock().unwrap(),
        [("STUCK".to_owned(), "<good@example.com>".to_owned())]
    );
    drop(spooled);
    let (_, pending) = Spool::open(&options).unwrap();
    assert!(pending.is_empty());
}

/// Fails every delivery transiently, on a schedule of its own.
struct AlwaysLater(crate::delivery::RetrySchedule);

impl Deliver for AlwaysLater {
    fn deliver<'a>(&'a self, _mail: &'a Mail) -> DeliverFuture<'a> {
        Box::pin(async { Err(DeliveryError::Temporary("try later".into())) })
    }

    fn retry_schedule(&self) -> Option<crate::delivery::RetrySchedule> {
        Some(self.0)
    }
}

/// A target's `give_up_after` counts from the mail's `time`: a mail accepted
/// two hours ago (as after a restart) is a dead letter at its first failure,
/// a new one after its retries; the dead letter says why, with the last error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_schedule_gives_up_counted_from_the_mail_time() {
    let dir = tempfile::tempdir().unwrap();
    let options = SpoolOptions::new(dir.path());
    let schedule = crate::delivery::RetrySchedule {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(20),
        // Well over the second the mail's `time` is truncated to, so the new
        // mail is retried before it is given up.
        give_up_after: Some(Duration::from_millis(2500)),
    };
    let spooled = Spooled::start(&options, Arc::new(AlwaysLater(schedule))).unwrap();
    let mut old = mail("OLD");
    old.time = (chrono::Utc::now() - chrono::Duration::hours(2))
        .format("%Y-%m-%d %H:%M:%S %z")
        .to_string();
    spooled.deliver(&old).await.unwrap();
    wait_for_done(&spooled, 1).await;
    assert_eq!(spooled.spool().stats().retries, 0);
    let mut new = mail("NEW");
    new.time = chrono::Utc::now()
        .format("%Y-%m-%d %H:%M:%S %z")
        .to_string();
    spooled.deliver(&new).await.unwrap();
    wait_for_done(&spooled, 2).await;
    assert!(spooled.spool().stats().retries >= 2);
    let dead = dead_letters(dir.path());
    assert_eq!(dead.len(), 2);
    for letter in &dead {
        assert!(
            letter.starts_with(
                "X-Net-Receiver-Dead-Letter: <rcpt@example.com>; not delivered within 2.5s, \
                 giving up; last error: temporary delivery failure: try later\r\n"
            ),
            "{letter:?}"
        );
    }
}
