//! The in-process [`LockoutStore`]: bounded, entries expire, O(1) per call.
//!
//! Entries live in a `HashMap`; two queues hold them in the order their expiry was last
//! set — one for subjects that are only counting, one for locked subjects. Under one
//! period (what [`super::Lockout`] uses for all its policies) an entry's expiry is "the
//! time it was queued + period", so each queue's front is its entry that expires first. When the store is full,
//! a new subject takes the place of, in this order: an expired entry, the oldest counting
//! entry, the oldest locked entry — so a flood of new addresses pushes out counters
//! before it pushes out locks. Queue items made stale by a later update are skipped when
//! met and compacted away when a queue grows past twice the capacity: amortised O(1).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{LockoutStore, Policy, Status, StoreError, StoreFuture, Subject};

/// A source of the current time, to be injected in tests.
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// In-process store: bounded (`capacity` entries; when full, expired entries go first,
/// then the oldest counting entries, then the oldest locked ones), entries expire, O(1)
/// per call. Not shared between processes: use [`super::RedisStore`] for that.
pub struct MemoryStore {
    inner: Mutex<Inner>,
    clock: Clock,
    capacity: usize,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Entry {
    failures: u32,
    /// End of the counting window.
    window_end: Instant,
    locked_until: Option<Instant>,
    /// Which queue item is current for this entry.
    generation: u64,
}

impl Entry {
    fn locked(&self, now: Instant) -> bool {
        self.locked_until.is_some_and(|until| now < until)
    }

    fn expired(&self, now: Instant) -> bool {
        now >= self.window_end && !self.locked(now)
    }

    fn status(&self, now: Instant) -> Status {
        Status {
            failures: if now < self.window_end {
                self.failures
            } else {
                0
            },
            locked: self.locked(now),
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<Subject, Entry>,
    /// Entries that are counting, in the order their window started.
    counting: VecDeque<(Subject, u64)>,
    /// Entries that are locked, in the order their lock was (last) set.
    locked: VecDeque<(Subject, u64)>,
    next_generation: u64,
}

/// Which queue.
#[derive(Clone, Copy)]
enum Queue {
    Counting,
    Locked,
}

impl Inner {
    fn queue(&mut self, which: Queue) -> &mut VecDeque<(Subject, u64)> {
        match which {
            Queue::Counting => &mut self.counting,
            Queue::Locked => &mut self.locked,
        }
    }

    fn queue_ref(&self, which: Queue) -> &VecDeque<(Subject, u64)> {
        match which {
            Queue::Counting => &self.counting,
            Queue::Locked => &self.locked,
        }
    }

    /// Drops stale items at the front of a queue; returns whether a live one is there.
    fn clean_front(&mut self, which: Queue) -> bool {
        loop {
            let live = match self.queue_ref(which).front() {
                None => return false,
                Some((subject, generation)) => self
                    .map
                    .get(subject)
                    .is_some_and(|entry| entry.generation == *generation),
            };
            if live {
                return true;
            }
            self.queue(which).pop_front();
        }
    }

    /// Whether the live entry at the front of `which` has expired.
    fn front_expired(&mut self, which: Queue, now: Instant) -> bool {
        if !self.clean_front(which) {
            return false;
        }
        let Some((subject, _)) = self.queue_ref(which).front() else {
            return false;
        };
        self.map
            .get(subject)
            .is_some_and(|entry| entry.expired(now))
    }

    /// Removes the live entry at the front of `which`; returns whether one was there.
    fn evict_front(&mut self, which: Queue) -> bool {
        if !self.clean_front(which) {
            return false;
        }
        match self.queue(which).pop_front() {
            Some((subject, _)) => {
                self.map.remove(&subject);
                true
            }
            None => false,
        }
    }

    /// Removes up to `budget` expired entries from the queue fronts.
    fn purge_expired(&mut self, now: Instant, budget: usize) {
        for _ in 0..budget {
            if self.front_expired(Queue::Counting, now) {
                self.evict_front(Queue::Counting);
            } else if self.front_expired(Queue::Locked, now) {
                self.evict_front(Queue::Locked);
            } else {
                return;
            }
        }
    }

    /// Frees one place: an expired entry, else the oldest counting, else the oldest locked.
    fn evict_one(&mut self, now: Instant) {
        let which = if self.front_expired(Queue::Counting, now) {
            Queue::Counting
        } else if self.front_expired(Queue::Locked, now) || !self.clean_front(Queue::Counting) {
            Queue::Locked
        } else {
            Queue::Counting
        };
        self.evict_front(which);
    }

    /// Queues `subject` (whose entry exists) at the back of `which`, making older items
    /// for it stale.
    fn requeue(&mut self, subject: &Subject, which: Queue, capacity: usize) {
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        if let Some(entry) = self.map.get_mut(subject) {
            entry.generation = generation;
            self.queue(which).push_back((subject.clone(), generation));
        }
        let limit = capacity.saturating_mul(2).saturating_add(16);
        if self.queue(which).len() > limit {
            let map = &self.map;
            let keep = |(subject, generation): &(Subject, u64)| {
                map.get(subject)
                    .is_some_and(|entry| entry.generation == *generation)
            };
            match which {
                Queue::Counting => self.counting.retain(keep),
                Queue::Locked => self.locked.retain(keep),
            }
        }
    }
}

/// `now + period`, never overflowing.
fn deadline(now: Instant, period: Duration) -> Instant {
    now.checked_add(period)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 86_400)))
        .unwrap_or(now)
}

impl MemoryStore {
    /// The capacity [`super::store_from_config`] uses: 100 000 subjects (some tens of MB
    /// at most).
    pub const DEFAULT_CAPACITY: usize = 100_000;

    /// A store of at most `capacity` subjects (at least 1), on the real clock.
    pub fn new(capacity: usize) -> Self {
        Self::with_clock(capacity, Arc::new(Instant::now))
    }

    /// A store of at most `capacity` subjects (at least 1) reading the time from `clock`.
    pub fn with_clock(capacity: usize, clock: Clock) -> Self {
        MemoryStore {
            inner: Mutex::new(Inner::default()),
            clock,
            capacity: capacity.max(1),
        }
    }

    /// The most subjects kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Subjects kept now (expired ones included until they are purged).
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether no subject is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queue items held, stale ones included (to test that they stay bounded).
    #[cfg(test)]
    pub(super) fn queued(&self) -> usize {
        let inner = self.lock();
        inner.counting.len() + inner.locked.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Nothing panics while the lock is held; a poisoned lock still holds sound data.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, subject: &Subject, policy: &Policy) -> Status {
        let now = (self.clock)();
        let period = policy.effective_period();
        let mut inner = self.lock();
        inner.purge_expired(now, 2);

        let fresh = match inner.map.get(subject) {
            Some(entry) if !entry.expired(now) => false,
            Some(_) => {
                inner.map.remove(subject);
                true
            }
            None => true,
        };
        if fresh {
            while inner.map.len() >= self.capacity {
                let before = inner.map.len();
                inner.evict_one(now);
                if inner.map.len() == before {
                    break; // nothing evictable: cannot happen while len >= 1
                }
            }
            inner.map.insert(
                subject.clone(),
                Entry {
                    failures: 0,
                    window_end: now,
                    locked_until: None,
                    generation: 0,
                },
            );
        }

        let Some(entry) = inner.map.get_mut(subject) else {
            return Status::default();
        };
        let was_locked = entry.locked(now);
        let mut requeue = None;
        if now >= entry.window_end {
            entry.failures = 0;
            entry.window_end = deadline(now, period);
            requeue = Some(if was_locked {
                Queue::Locked
            } else {
                Queue::Counting
            });
        }
        entry.failures = entry.failures.saturating_add(1);
        if policy.locks_at(entry.failures) {
            entry.locked_until = Some(deadline(now, period));
            requeue = Some(Queue::Locked);
        }
        let status = entry.status(now);
        if let Some(which) = requeue {
            inner.requeue(subject, which, self.capacity);
        }
        status
    }

    fn current(&self, subject: &Subject) -> Status {
        let now = (self.clock)();
        self.lock()
            .map
            .get(subject)
            .map(|entry| entry.status(now))
            .unwrap_or_default()
    }

    fn forget(&self, subject: &Subject) {
        // Queue items for it become stale and are skipped later.
        self.lock().map.remove(subject);
    }
}

impl LockoutStore for MemoryStore {
    fn record_failure<'a>(
        &'a self,
        subject: &'a Subject,
        policy: &'a Policy,
    ) -> StoreFuture<'a, Status> {
        let status = self.record(subject, policy);
        Box::pin(std::future::ready(Ok::<_, StoreError>(status)))
    }

    fn status<'a>(&'a self, subject: &'a Subject) -> StoreFuture<'a, Status> {
        let status = self.current(subject);
        Box::pin(std::future::ready(Ok(status)))
    }

    fn clear<'a>(&'a self, subject: &'a Subject) -> StoreFuture<'a, ()> {
        self.forget(subject);
        Box::pin(std::future::ready(Ok(())))
    }
}
