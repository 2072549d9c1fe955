//! Running password verifications off the async threads, a bounded number at a
//! time: what `defaults::authenticate` uses, and what an `authenticate` hook of
//! your own should use too.
//!
//! Verifying a hash is deliberately slow and memory-hungry (argon2id with the
//! default parameters: tens of milliseconds of CPU and 19 MiB per check). Handed to
//! `spawn_blocking` one per AUTH, a storm of failing AUTHs filled tokio's whole
//! blocking pool (512 threads): 512 hashes at once, ~18 GiB of memory in a
//! measured storm of 1,000 sessions, both CPUs busy for 40 s, and every other use of
//! the pool (Maildir delivery, SQLite lookups) queued behind them.
//!
//! Here verifications run on a few threads of their own, one per CPU, started on
//! first use and kept; the rest wait in a FIFO queue as sleeping tasks (no
//! thread, no memory beyond the task). So the hashing never takes more than the
//! CPUs the machine has, tokio's blocking pool stays free for deliveries, and the
//! argon2 memory stays with those few threads (each keeps its 19 MiB for its next
//! check; allocated and freed per check on the blocking pool's changing threads,
//! the allocator kept ~0.5 GiB of them). A storm of AUTHs slows other AUTHs (they
//! queue), not other clients. A verification nobody waits for any more (its
//! connection task was dropped, e.g. at the end of the shutdown grace) is
//! skipped; a client that merely disconnects is not noticed until its AUTH is
//! answered, so the queue holds at most one check per open connection
//! (`max_connections`).

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, OnceLock, mpsc};

use tokio::sync::oneshot;

use super::password::verify_password_evenly;
use crate::protocol::Secret;

/// One queued verification.
type Job = Box<dyn FnOnce() + Send>;

/// The server-wide verification threads (`None`: none could be started, and
/// verifications run on tokio's blocking pool instead).
static VERIFIERS: OnceLock<Option<Verifiers>> = OnceLock::new();

/// How many verifications may run at once: one per CPU this process may use
/// (1 if that cannot be found out).
pub fn max_concurrent_verifications() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// [`verify_password_evenly`] on one of [`max_concurrent_verifications`] threads
/// shared by the whole process (callers beyond that wait their turn, in order): a
/// failure costs at least an argon2id check whatever `stored` is (check an unknown
/// user against [`super::UNKNOWN_USER_SECRET`]). Needs a tokio runtime. False when
/// the verification could not run.
pub async fn verify_password_bounded(stored: String, supplied: Secret) -> bool {
    let job = move || verify_password_evenly(Some(&stored), supplied.expose());
    let verifiers = VERIFIERS.get_or_init(|| Verifiers::start(max_concurrent_verifications()));
    match verifiers {
        Some(verifiers) => verifiers.run(job).await,
        None => tokio::task::spawn_blocking(job).await.ok(),
    }
    .unwrap_or(false)
}

/// A fixed set of threads taking jobs from one queue.
struct Verifiers {
    queue: mpsc::Sender<Job>,
}

impl Verifiers {
    /// Starts `threads` threads (at least one); `None` if not even one could be
    /// started.
    fn start(threads: usize) -> Option<Self> {
        let (queue, jobs) = mpsc::channel::<Job>();
        let jobs = Arc::new(Mutex::new(jobs));
        let mut started = 0;
        for n in 0..threads.max(1) {
            let jobs = Arc::clone(&jobs);
            let spawned = std::thread::Builder::new()
                .name(format!("auth-verify-{n}"))
                .spawn(move || take_jobs(&jobs));
            match spawned {
                Ok(_) => started += 1,
                Err(error) => {
                    tracing::warn!("cannot start a password verification thread: {error}")
                }
            }
        }
        (started > 0).then_some(Self { queue })
    }

    /// Queues `job` and waits for its result; `None` if it panicked. Skipped when
    /// the caller stopped waiting before its turn came.
    async fn run<T: Send + 'static>(&self, job: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            if !done.is_closed() {
                let _ = done.send(job());
            }
        });
        self.queue.send(job).ok()?;
        result.await.ok()
    }
}

/// A verification thread: runs jobs until the queue is gone.
fn take_jobs(jobs: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        // The lock is held only while waiting for the next job, not while running it.
        let next = match jobs.lock() {
            Ok(jobs) => jobs.recv(),
            Err(_) => return,
        };
        let Ok(job) = next else { return };
        // A panicking job drops its sender: its caller gets `None`, the thread lives on.
        let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_most_the_started_threads_run_jobs_at_once() {
        let verifiers = Arc::new(Verifiers::start(2).expect("threads"));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..12 {
            let (verifiers, running, most) = (verifiers.clone(), running.clone(), most.clone());
            tasks.spawn(async move {
                verifiers
                    .run(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                        running.fetch_sub(1, Ordering::SeqCst);
                        i
                    })
                    .await
            });
        }
        let mut results = Vec::new();
        while let Some(result) = tasks.join_next().await {
            results.push(result.expect("task").expect("job ran"));
        }
        results.sort_unstable();
        assert_eq!(results, (0..12).collect::<Vec<_>>());
        assert_eq!(most.load(Ordering::SeqCst), 2, "never more than 2 at once");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_job_gives_none_and_the_thread_carries_on() {
        let verifiers = Verifiers::start(1).expect("thread");
        let panicked = verifiers.run(|| -> bool { panic!("job failed") }).await;
        assert_eq!(panicked, None);
        assert_eq!(verifiers.run(|| 7).await, Some(7));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_job_whose_caller_left_is_skipped() {
        let verifiers = Arc::new(Verifiers::start(1).expect("thread"));
        let ran = Arc::new(AtomicUsize::new(0));
        let (release, blocked) = std::sync::mpsc::channel::<()>();
        // Occupies the only thread until released.
        let occupier = Arc::clone(&verifiers);
        let first = tokio::spawn(async move {
            occupier
                .run(move || blocked.recv_timeout(Duration::from_secs(10)).is_ok())
                .await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let counter = Arc::clone(&ran);
        let abandoned = verifiers.run(move || counter.fetch_add(1, Ordering::SeqCst));
        // Queued, then given up on (a client that disconnected).
        assert!(
            tokio::time::timeout(Duration::from_millis(50), abandoned)
                .await
                .is_err()
        );
        release.send(()).expect("release");
        assert_eq!(first.await.expect("task"), Some(true));
        let counter = Arc::clone(&ran);
        assert_eq!(
            verifiers.run(move || counter.load(Ordering::SeqCst)).await,
            Some(0)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bounded_verification_checks_the_password() {
        assert!(max_concurrent_verifications() >= 1);
        let stored = "{PLAIN}s3cret".to_owned();
        let supplied = |text: &str| Secret::new(text.to_owned());
        assert!(verify_password_bounded(stored.clone(), supplied("s3cret")).await);
        assert!(!verify_password_bounded(stored, supplied("wrong")).await);
    }
}
