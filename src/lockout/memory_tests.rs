//! Tests of [`MemoryStore`] (on an injected clock), of [`Subject`] and [`Policy`], and of
//! the fail-open [`Lockout`] wrapper.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::*;

/// A clock that moves only when told to.
struct ManualClock {
    offset_ms: Arc<AtomicU64>,
}

impl ManualClock {
    fn new() -> (Self, Clock) {
        let base = Instant::now();
        let offset_ms = Arc::new(AtomicU64::new(0));
        let read = Arc::clone(&offset_ms);
        let clock: Clock =
            Arc::new(move || base + Duration::from_millis(read.load(Ordering::SeqCst)));
        (ManualClock { offset_ms }, clock)
    }

    fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap();
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

fn store(capacity: usize) -> (ManualClock, MemoryStore) {
    let (manual, clock) = ManualClock::new();
    (manual, MemoryStore::with_clock(capacity, clock))
}

fn ip(last: u8) -> Subject {
    Subject::ip(IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)))
}

const PERIOD: Duration = Duration::from_secs(600);

fn policy() -> Policy {
    Policy::new(3, PERIOD)
}

#[tokio::test]
async fn n_minus_one_failures_do_not_lock_the_nth_does() {
    let (_clock, store) = store(16);
    super::store_tests::the_third_failure_locks(&store, &ip(1)).await;
}

#[tokio::test]
async fn lock_lasts_the_period_then_expires() {
    let (clock, store) = store(16);
    let subject = ip(2);
    for _ in 0..3 {
        store.record_failure(&subject, &policy()).await.unwrap();
    }
    clock.advance(PERIOD - Duration::from_millis(1));
    assert!(store.status(&subject).await.unwrap().locked);
    clock.advance(Duration::from_millis(1));
    assert_eq!(store.status(&subject).await.unwrap(), Status::default());
    // Counting starts again from one.
    let after = store.record_failure(&subject, &policy()).await.unwrap();
    assert_eq!(
        after,
        Status {
            failures: 1,
            locked: false
        }
    );
}

#[tokio::test]
async fn window_expiry_resets_the_count() {
    let (clock, store) = store(16);
    let subject = ip(3);
    store.record_failure(&subject, &policy()).await.unwrap();
    store.record_failure(&subject, &policy()).await.unwrap();
    clock.advance(PERIOD);
    assert_eq!(store.status(&subject).await.unwrap().failures, 0);
    let status = store.record_failure(&subject, &policy()).await.unwrap();
    assert_eq!(
        status,
        Status {
            failures: 1,
            locked: false
        }
    );
    // The window is fixed from its first failure: two more within it lock.
    clock.advance(PERIOD / 2);
    store.record_failure(&subject, &policy()).await.unwrap();
    assert!(
        store
            .record_failure(&subject, &policy())
            .await
            .unwrap()
            .locked
    );
}

#[tokio::test]
async fn failures_at_or_over_the_limit_start_the_lock_again() {
    let (clock, store) = store(16);
    let subject = ip(4);
    for _ in 0..3 {
        store.record_failure(&subject, &policy()).await.unwrap();
    }
    clock.advance(PERIOD / 2);
    let fourth = store.record_failure(&subject, &policy()).await.unwrap();
    assert_eq!(
        fourth,
        Status {
            failures: 4,
            locked: true
        }
    );
    clock.advance(PERIOD / 2 + Duration::from_secs(1));
    assert!(
        store.status(&subject).await.unwrap().locked,
        "lock restarted"
    );
    clock.advance(PERIOD / 2);
    assert!(!store.status(&subject).await.unwrap().locked);
}

#[tokio::test]
async fn other_subjects_are_unaffected_and_login_differs_from_ip() {
    let (_clock, store) = store(16);
    let locked = ip(5);
    for _ in 0..3 {
        store.record_failure(&locked, &policy()).await.unwrap();
    }
    assert!(store.status(&locked).await.unwrap().locked);
    assert_eq!(store.status(&ip(6)).await.unwrap(), Status::default());
    // A login spelled like the address is another subject.
    let login = Subject::login("192.0.2.5");
    assert_eq!(store.status(&login).await.unwrap(), Status::default());
    for _ in 0..3 {
        store
            .record_failure(&Subject::login("alice"), &policy())
            .await
            .unwrap();
    }
    assert!(store.status(&Subject::login("alice")).await.unwrap().locked);
    assert!(!store.status(&Subject::login("bob")).await.unwrap().locked);
    assert!(!store.status(&ip(6)).await.unwrap().locked);
}

#[tokio::test]
async fn clear_unlocks_and_resets() {
    let (_clock, store) = store(16);
    let subject = Subject::login("carol");
    for _ in 0..3 {
        store.record_failure(&subject, &policy()).await.unwrap();
    }
    assert!(store.status(&subject).await.unwrap().locked);
    store.clear(&subject).await.unwrap();
    assert_eq!(store.status(&subject).await.unwrap(), Status::default());
    let next = store.record_failure(&subject, &policy()).await.unwrap();
    assert_eq!(
        next,
        Status {
            failures: 1,
            locked: false
        }
    );
    store.clear(&ip(9)).await.unwrap(); // unknown: no error
}

#[tokio::test]
async fn capacity_holds_under_ten_times_as_many_subjects() {
    let capacity = 64;
    let (clock, store) = store(capacity);
    for i in 0..(10 * capacity as u32) {
        let subject = Subject::ip(IpAddr::V6(Ipv6Addr::from(u128::from(i) + 1)));
        store.record_failure(&subject, &policy()).await.unwrap();
        assert!(store.len() <= capacity, "len {} > {capacity}", store.len());
        if i % 50 == 0 {
            clock.advance(Duration::from_secs(7));
        }
    }
    assert_eq!(store.len(), capacity);
    assert!(store.queued() <= 2 * (2 * capacity + 16));
}

#[tokio::test]
async fn a_full_store_drops_expired_then_counting_entries_before_locks() {
    let capacity = 8;
    let (clock, store) = store(capacity);
    let locked: Vec<Subject> = (0..4)
        .map(|i| Subject::login(format!("locked{i}")))
        .collect();
    for subject in &locked {
        for _ in 0..3 {
            store.record_failure(subject, &policy()).await.unwrap();
        }
    }
    // A flood of new addresses, each failing once: only counters are pushed out.
    for i in 0..100 {
        store.record_failure(&ip(i), &policy()).await.unwrap();
        assert!(store.len() <= capacity);
    }
    for subject in &locked {
        assert!(
            store.status(subject).await.unwrap().locked,
            "{subject} kept"
        );
    }
    clock.advance(PERIOD);
    let young = Subject::login("young");
    store.record_failure(&young, &policy()).await.unwrap();
    assert!(store.len() <= capacity);
    assert_eq!(store.status(&young).await.unwrap().failures, 1);
}

#[tokio::test]
async fn a_full_store_drops_an_expired_lock_before_a_live_counter() {
    let (clock, store) = store(2);
    for _ in 0..3 {
        store.record_failure(&ip(1), &policy()).await.unwrap();
    }
    clock.advance(PERIOD / 2);
    store.record_failure(&ip(2), &policy()).await.unwrap();
    clock.advance(PERIOD / 2); // ip(1)'s lock and window are over, ip(2)'s window is not
    store.record_failure(&ip(3), &policy()).await.unwrap();
    assert_eq!(store.len(), 2);
    assert_eq!(
        store.status(&ip(2)).await.unwrap().failures,
        1,
        "live counter kept"
    );
    assert_eq!(store.status(&ip(3)).await.unwrap().failures, 1);
}

#[tokio::test]
async fn a_full_store_of_locks_drops_the_oldest_lock() {
    let capacity = 4;
    let (clock, store) = store(capacity);
    for i in 0..5 {
        for _ in 0..3 {
            store.record_failure(&ip(i), &policy()).await.unwrap();
        }
        clock.advance(Duration::from_secs(1));
        assert!(store.len() <= capacity);
    }
    assert!(
        !store.status(&ip(0)).await.unwrap().locked,
        "oldest lock dropped"
    );
    for i in 1..5 {
        assert!(store.status(&ip(i)).await.unwrap().locked);
    }
}

#[tokio::test]
async fn repeated_updates_keep_the_queues_bounded() {
    let capacity = 4;
    let (clock, store) = store(capacity);
    for _ in 0..1_000 {
        store.record_failure(&ip(1), &policy()).await.unwrap();
        clock.advance(PERIOD / 2);
    }
    assert!(
        store.queued() <= 2 * (2 * capacity + 16),
        "{}",
        store.queued()
    );
    assert_eq!(store.len(), 1);
}

#[tokio::test]
async fn zero_max_failures_never_locks_and_a_zero_capacity_keeps_one() {
    let (_clock, store) = store(0);
    assert_eq!(store.capacity(), 1);
    let never = Policy::new(0, PERIOD);
    for _ in 0..10 {
        assert!(!store.record_failure(&ip(1), &never).await.unwrap().locked);
    }
    assert_eq!(store.status(&ip(1)).await.unwrap().failures, 10);
}

#[tokio::test]
async fn a_zero_period_counts_as_one_millisecond() {
    let (clock, store) = store(4);
    let tiny = Policy::new(1, Duration::ZERO);
    assert!(store.record_failure(&ip(1), &tiny).await.unwrap().locked);
    clock.advance(Duration::from_millis(1));
    assert!(!store.status(&ip(1)).await.unwrap().locked);
    let huge = Policy::new(1, Duration::MAX);
    assert!(store.record_failure(&ip(2), &huge).await.unwrap().locked);
}

#[test]
fn ipv4_mapped_addresses_count_as_ipv4() {
    let v4 = Ipv4Addr::new(198, 51, 100, 7);
    let mapped = IpAddr::V6(v4.to_ipv6_mapped());
    assert_eq!(Subject::ip(mapped), Subject::Ip(IpAddr::V4(v4)));
    let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    assert_eq!(Subject::ip(v6), Subject::Ip(v6));
}

#[test]
fn default_policy_is_the_seed_one() {
    let policy = Policy::default();
    assert_eq!(policy.max_failures, 3);
    assert_eq!(policy.period, Duration::from_secs(600));
}

/// A store that always errs, or never answers.
struct BrokenStore {
    hang: bool,
}

impl BrokenStore {
    fn answer<T: Send + 'static>(&self) -> StoreFuture<'_, T> {
        if self.hang {
            Box::pin(std::future::pending())
        } else {
            Box::pin(std::future::ready(Err(StoreError::Unavailable(
                "broken on purpose".to_owned(),
            ))))
        }
    }
}

impl LockoutStore for BrokenStore {
    fn record_failure<'a>(&'a self, _: &'a Subject, _: &'a Policy) -> StoreFuture<'a, Status> {
        self.answer()
    }
    fn status<'a>(&'a self, _: &'a Subject) -> StoreFuture<'a, Status> {
        self.answer()
    }
    fn clear<'a>(&'a self, _: &'a Subject) -> StoreFuture<'a, ()> {
        self.answer()
    }
}

#[tokio::test]
async fn lockout_fails_open_on_store_errors() {
    let lockout = Lockout::new(
        Arc::new(BrokenStore { hang: false }),
        Policy::new(1, PERIOD),
    );
    for _ in 0..5 {
        assert_eq!(lockout.record_failure(&ip(1)).await, Status::default());
    }
    assert!(!lockout.is_locked(&ip(1)).await);
    assert_eq!(lockout.status(&ip(1)).await, Status::default());
    lockout.clear(&ip(1)).await;
    assert_eq!(lockout.store_errors(), 8);
}

#[tokio::test]
async fn lockout_cuts_off_a_store_that_never_answers() {
    let lockout = Lockout::new(Arc::new(BrokenStore { hang: true }), policy())
        .with_call_timeout(Duration::from_millis(50));
    let started = Instant::now();
    assert!(!lockout.is_locked(&ip(1)).await);
    assert_eq!(lockout.record_failure(&ip(1)).await, Status::default());
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(lockout.store_errors(), 2);
}

#[tokio::test]
async fn lockout_over_memory_locks_and_clears() {
    let lockout = Lockout::in_memory(policy());
    assert_eq!(lockout.policy(), policy());
    let subject = Subject::login("dave");
    assert!(!lockout.record_failure(&subject).await.locked);
    assert!(!lockout.record_failure(&subject).await.locked);
    assert!(lockout.record_failure(&subject).await.locked);
    assert!(lockout.is_locked(&subject).await);
    assert!(!lockout.is_locked(&ip(1)).await);
    lockout.clear(&subject).await;
    assert!(!lockout.is_locked(&subject).await);
    assert_eq!(lockout.store_errors(), 0);
}

#[test]
fn store_from_config_accepts_memory_and_redis_urls_only() {
    assert!(store_from_config(None).is_ok());
    assert!(store_from_config(Some("memory")).is_ok());
    assert!(store_from_config(Some(" Memory ")).is_ok());
    // No Redis there: not an error until a call is made.
    assert!(store_from_config(Some("redis://127.0.0.1:1/")).is_ok());
    let error = store_from_config(Some("http://user:secret@host/"))
        .err()
        .unwrap();
    assert!(matches!(error, StoreError::InvalidConfig(_)));
    assert!(!error.to_string().contains("secret"), "{error}");
    let error = RedisStore::new("redis://user:secret@:notaport/", Duration::from_millis(100))
        .err()
        .unwrap();
    assert!(!error.to_string().contains("secret"), "{error}");
}
