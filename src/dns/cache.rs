//! The DNS caches above the resolver's own: the parsed SPF, DKIM-key and DMARC
//! records, MX sets, addresses and PTR names handed to `mail-auth`, and the
//! findings of whole checks (a domain's MX/addresses, an SPF result), each kept
//! until the earliest DNS TTL it was built from runs out.
//!
//! The hickory resolver under [`super::Dns`] already caches raw answers; these caches
//! spare re-parsing the same records, and re-running the same checks, for every
//! message. They are bounded ([`CAPACITY`] entries each): when one is full, expired
//! entries go first and, if it is still full, everything goes. Locks are held only
//! inside the synchronous calls, never across an `.await`. Every method that
//! compares with the clock also has an `_at` form taking `now`, so the tests run on
//! a virtual clock.
//!
//! The maps are `hashbrown`'s with its default hasher (foldhash, seeded at random
//! per map): a look-up hashes a short key in a few dozen instructions instead of
//! SipHash's hundreds, and takes a borrowed view of a composite key
//! (`SpfKeyRef`, `MessageKeyRef` in `keys.rs`) so that a hit allocates nothing; the owned
//! key is built only to insert.
//!
//! [`Reads`] records what one check read: the earliest expiry of every answer it
//! used, or that some answer could not be kept (a timeout, a server failure, a
//! negative answer without a TTL). A check's findings are cached only when every
//! answer behind them was cacheable, and only until the first of them expires, so
//! a cached finding is what the check would find again from the same answers.

use std::borrow::Borrow;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use hashbrown::{Equivalent, HashMap};

use mail_auth::{MX, Parameters, RecordSet, ResolverCache, SpfResult, Txt};

use super::auth::MessageAuth;
use super::keys::{MessageKey, SpfKey};
use super::lookups::{DomainFindings, EhloFindings, Reverse};

/// Entries per cache before it is pruned.
pub(crate) const CAPACITY: usize = 4096;

/// One bounded map from a key to a value and the instant the value expires.
pub(crate) struct TtlCache<K, V> {
    map: Mutex<HashMap<K, (V, Instant)>>,
    capacity: usize,
}

impl<K: Hash + Eq, V: Clone> TtlCache<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        TtlCache {
            map: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<K, (V, Instant)>> {
        // A panic while holding the lock cannot leave the map inconsistent (each
        // operation is a single HashMap call), so a poisoned lock is still usable.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The value of `key` and when it expires, unless it has expired by `now`
    /// (an expired entry is removed).
    pub(crate) fn entry_at<Q>(&self, key: &Q, now: Instant) -> Option<(V, Instant)>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let mut map = self.lock();
        match map.get(key) {
            Some((value, expires)) if *expires > now => Some((value.clone(), *expires)),
            Some(_) => {
                map.remove(key);
                None
            }
            None => None,
        }
    }

    /// The value of `key` unless it has expired by `now`.
    pub(crate) fn get_at<Q>(&self, key: &Q, now: Instant) -> Option<V>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.entry_at(key, now).map(|(value, _)| value)
    }

    /// Keeps `value` for `key` until `valid_until`; nothing when that is not after
    /// `now`. A full map first loses its expired entries, then everything.
    pub(crate) fn insert_at(&self, key: K, value: V, valid_until: Instant, now: Instant) {
        if valid_until <= now {
            return;
        }
        let mut map = self.lock();
        if map.len() >= self.capacity && !map.contains_key(&key) {
            map.retain(|_, (_, expires)| *expires > now);
            if map.len() >= self.capacity {
                map.clear();
            }
        }
        map.insert(key, (value, valid_until));
    }

    /// The number of entries, expired ones included.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

impl<K: Hash + Eq, V: Clone> ResolverCache<K, V> for TtlCache<K, V> {
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get_at(name, Instant::now())
    }

    fn remove<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.lock().remove(name).map(|(value, _)| value)
    }

    fn insert(&self, key: K, value: V, valid_until: Instant) {
        self.insert_at(key, value, valid_until, Instant::now());
    }
}

/// What one check read from the DNS: the earliest expiry of the answers it used,
/// and whether each of them could be kept at all. Shared by the concurrent
/// lookups of one check (hence the lock; it is never contended across checks).
#[derive(Debug, Default)]
pub(crate) struct Reads {
    state: Mutex<ReadState>,
}

#[derive(Debug, Default)]
struct ReadState {
    /// The earliest expiry seen; `None` before any answer.
    earliest: Option<Instant>,
    /// Some answer cannot be kept: the findings must not be cached.
    uncacheable: bool,
    /// Record-cache look-ups that found nothing, and inserts that followed: a
    /// miss without its insert was an answer `mail-auth` did not cache (an
    /// error, or a negative answer).
    misses: usize,
    inserts: usize,
}

impl Reads {
    fn state(&self) -> MutexGuard<'_, ReadState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An answer valid until `until` was used.
    pub(crate) fn saw(&self, until: Instant) {
        let mut state = self.state();
        state.earliest = Some(state.earliest.map_or(until, |e| e.min(until)));
    }

    /// An answer that cannot be kept was used (or a lookup did not finish).
    pub(crate) fn uncacheable(&self) {
        self.state().uncacheable = true;
    }

    /// Until when findings built from these reads may be reused: `None` when
    /// one of the answers cannot be kept, or when there was none to date them.
    pub(crate) fn valid_until(&self) -> Option<Instant> {
        let state = self.state();
        if state.uncacheable || state.misses > state.inserts {
            return None;
        }
        state.earliest
    }
}

/// A record cache seen through one check's [`Reads`]: every hit and insert
/// dates the check's findings, every miss must be followed by an insert.
pub(crate) struct Tracked<'a, K, V> {
    cache: &'a TtlCache<K, V>,
    reads: &'a Reads,
}

impl<K: Hash + Eq, V: Clone> ResolverCache<K, V> for Tracked<'_, K, V> {
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match self.cache.entry_at(name, Instant::now()) {
            Some((value, expires)) => {
                self.reads.saw(expires);
                Some(value)
            }
            None => {
                self.reads.state().misses += 1;
                None
            }
        }
    }

    fn remove<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.cache.remove(name)
    }

    fn insert(&self, key: K, value: V, valid_until: Instant) {
        self.reads.state().inserts += 1;
        self.reads.saw(valid_until);
        self.cache.insert(key, value, valid_until);
    }
}

/// The five caches `mail-auth` can use, shared by all sessions.
pub(crate) struct Caches {
    txt: TtlCache<Box<str>, Txt>,
    mx: TtlCache<Box<str>, RecordSet<MX>>,
    ptr: TtlCache<IpAddr, RecordSet<Box<str>>>,
    ipv4: TtlCache<Box<str>, RecordSet<Ipv4Addr>>,
    ipv6: TtlCache<Box<str>, RecordSet<Ipv6Addr>>,
}

/// `mail-auth` parameters carrying [`Caches`].
pub(crate) type Cached<'x, P> = Parameters<
    'x,
    P,
    TtlCache<Box<str>, Txt>,
    TtlCache<Box<str>, RecordSet<MX>>,
    TtlCache<Box<str>, RecordSet<Ipv4Addr>>,
    TtlCache<Box<str>, RecordSet<Ipv6Addr>>,
    TtlCache<IpAddr, RecordSet<Box<str>>>,
>;

/// [`Caches`] seen through one check's [`Reads`].
pub(crate) struct TrackedCaches<'a> {
    txt: Tracked<'a, Box<str>, Txt>,
    mx: Tracked<'a, Box<str>, RecordSet<MX>>,
    ptr: Tracked<'a, IpAddr, RecordSet<Box<str>>>,
    ipv4: Tracked<'a, Box<str>, RecordSet<Ipv4Addr>>,
    ipv6: Tracked<'a, Box<str>, RecordSet<Ipv6Addr>>,
}

/// `mail-auth` parameters carrying [`TrackedCaches`].
pub(crate) type TrackedParameters<'x, 'a, P> = Parameters<
    'x,
    P,
    Tracked<'a, Box<str>, Txt>,
    Tracked<'a, Box<str>, RecordSet<MX>>,
    Tracked<'a, Box<str>, RecordSet<Ipv4Addr>>,
    Tracked<'a, Box<str>, RecordSet<Ipv6Addr>>,
    Tracked<'a, IpAddr, RecordSet<Box<str>>>,
>;

impl Caches {
    pub(crate) fn new(capacity: usize) -> Self {
        Caches {
            txt: TtlCache::new(capacity),
            mx: TtlCache::new(capacity),
            ptr: TtlCache::new(capacity),
            ipv4: TtlCache::new(capacity),
            ipv6: TtlCache::new(capacity),
        }
    }

    /// `params` wrapped with all five caches, for any `mail-auth` verify call.
    pub(crate) fn parameters<P>(&self, params: P) -> Cached<'_, P> {
        Parameters::new(params)
            .with_txt_cache(&self.txt)
            .with_mx_cache(&self.mx)
            .with_ptr_cache(&self.ptr)
            .with_ipv4_cache(&self.ipv4)
            .with_ipv6_cache(&self.ipv6)
    }

    /// The caches seen through `reads`, to be handed to [`TrackedCaches::parameters`].
    pub(crate) fn tracked<'a>(&'a self, reads: &'a Reads) -> TrackedCaches<'a> {
        TrackedCaches {
            txt: Tracked {
                cache: &self.txt,
                reads,
            },
            mx: Tracked {
                cache: &self.mx,
                reads,
            },
            ptr: Tracked {
                cache: &self.ptr,
                reads,
            },
            ipv4: Tracked {
                cache: &self.ipv4,
                reads,
            },
            ipv6: Tracked {
                cache: &self.ipv6,
                reads,
            },
        }
    }

    /// The TXT record cache (for negative answers `mail-auth` itself does not keep).
    pub(crate) fn txt(&self) -> &TtlCache<Box<str>, Txt> {
        &self.txt
    }
}

impl<'a> TrackedCaches<'a> {
    /// `params` wrapped with the tracked caches.
    pub(crate) fn parameters<'x, P>(&'x self, params: P) -> TrackedParameters<'x, 'a, P> {
        Parameters::new(params)
            .with_txt_cache(&self.txt)
            .with_mx_cache(&self.mx)
            .with_ptr_cache(&self.ptr)
            .with_ipv4_cache(&self.ipv4)
            .with_ipv6_cache(&self.ipv6)
    }
}

/// The findings of whole checks, shared by all sessions, each kept as long as
/// the answers it was built from (see [`Reads`]).
pub(crate) struct Findings {
    /// [`super::Dns::domain`], by the normalized domain.
    pub(crate) domains: TtlCache<Box<str>, DomainFindings>,
    /// [`super::Dns::reverse`], by client IP.
    pub(crate) reverse: TtlCache<IpAddr, Reverse>,
    /// [`super::Dns::ehlo`], by the trimmed name and the client IP.
    pub(crate) ehlo: TtlCache<(Box<str>, IpAddr), EhloFindings>,
    /// One SPF `check_host()`, by everything its result can depend on.
    pub(crate) spf: TtlCache<SpfKey, SpfResult>,
    /// [`super::Dns::authenticate_message`] of a message without DKIM or ARC
    /// fields, by everything else its result can depend on.
    pub(crate) messages: TtlCache<MessageKey, MessageAuth>,
}

impl Findings {
    pub(crate) fn new(capacity: usize) -> Self {
        Findings {
            domains: TtlCache::new(capacity),
            reverse: TtlCache::new(capacity),
            ehlo: TtlCache::new(capacity),
            spf: TtlCache::new(capacity),
            messages: TtlCache::new(capacity),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn entries_expire_and_the_map_stays_bounded() {
        let cache: TtlCache<Box<str>, u32> = TtlCache::new(3);
        let later = Instant::now() + Duration::from_secs(60);
        cache.insert("a.".into(), 1, later);
        assert_eq!(cache.get("a."), Some(1));
        // Already expired: not stored at all.
        cache.insert("b.".into(), 2, Instant::now());
        assert_eq!(cache.get("b."), None);
        cache.insert("c.".into(), 3, later);
        cache.insert("d.".into(), 4, later);
        cache.insert("e.".into(), 5, later);
        assert!(cache.len() <= 3);
        assert_eq!(cache.get("e."), Some(5));
        assert_eq!(cache.remove("e."), Some(5));
        assert_eq!(cache.get("e."), None);
    }

    #[test]
    fn an_entry_lives_exactly_until_its_ttl_on_a_virtual_clock() {
        let cache: TtlCache<Box<str>, u32> = TtlCache::new(8);
        let t0 = Instant::now();
        cache.insert_at("a.".into(), 1, t0 + 300 * SECOND, t0);
        assert_eq!(cache.get_at("a.", t0), Some(1));
        assert_eq!(
            cache.entry_at("a.", t0 + 299 * SECOND),
            Some((1, t0 + 300 * SECOND))
        );
        // At its expiry it is gone, and removed from the map.
        assert_eq!(cache.get_at("a.", t0 + 300 * SECOND), None);
        assert_eq!(cache.len(), 0);
        // A TTL that has run out by the time of the insert keeps nothing.
        cache.insert_at("b.".into(), 2, t0 + SECOND, t0 + 2 * SECOND);
        assert_eq!(cache.get_at("b.", t0), None);
    }

    #[test]
    fn a_full_cache_drops_the_expired_entries_first_then_everything() {
        let cache: TtlCache<u32, u32> = TtlCache::new(4);
        let t0 = Instant::now();
        cache.insert_at(1, 1, t0 + SECOND, t0);
        cache.insert_at(2, 2, t0 + 100 * SECOND, t0);
        cache.insert_at(3, 3, t0 + SECOND, t0);
        cache.insert_at(4, 4, t0 + 100 * SECOND, t0);
        // Full: at t0 + 10 s, 1 and 3 have expired and make room.
        let now = t0 + 10 * SECOND;
        cache.insert_at(5, 5, t0 + 100 * SECOND, now);
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get_at(&2, now), Some(2));
        assert_eq!(cache.get_at(&5, now), Some(5));
        // Replacing a key of a full cache keeps the others.
        cache.insert_at(6, 6, t0 + 100 * SECOND, now);
        cache.insert_at(6, 7, t0 + 100 * SECOND, now);
        assert_eq!(cache.len(), 4);
        assert_eq!(cache.get_at(&6, now), Some(7));
        // Full of live entries: everything goes, the new one stays.
        cache.insert_at(8, 8, t0 + 100 * SECOND, now);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get_at(&8, now), Some(8));
        // However many keys go in, the map never holds more than its capacity.
        for key in 0..1000 {
            cache.insert_at(key, key, t0 + 100 * SECOND, now);
            assert!(cache.len() <= 4);
        }
    }

    #[test]
    fn reads_date_findings_by_their_earliest_answer() {
        let t0 = Instant::now();
        let reads = Reads::default();
        assert_eq!(reads.valid_until(), None, "no answer, nothing to date");
        reads.saw(t0 + 60 * SECOND);
        reads.saw(t0 + 30 * SECOND);
        reads.saw(t0 + 90 * SECOND);
        assert_eq!(reads.valid_until(), Some(t0 + 30 * SECOND));
        reads.uncacheable();
        assert_eq!(reads.valid_until(), None);
    }

    #[test]
    fn a_tracked_miss_without_an_insert_makes_the_findings_uncacheable() {
        let later = Instant::now() + Duration::from_secs(60);
        let sooner = Instant::now() + Duration::from_secs(30);
        let cache: TtlCache<Box<str>, u32> = TtlCache::new(8);
        cache.insert("hit.".into(), 1, later);

        let reads = Reads::default();
        let tracked = Tracked {
            cache: &cache,
            reads: &reads,
        };
        assert_eq!(tracked.get("hit."), Some(1));
        // A miss that the caller fills in (an answer mail-auth caches).
        assert_eq!(tracked.get("new."), None);
        tracked.insert("new.".into(), 2, sooner);
        assert_eq!(reads.valid_until(), Some(sooner));
        assert_eq!(cache.get("new."), Some(2), "inserts reach the shared cache");

        // A miss never filled in: an answer that was not kept (an error).
        assert_eq!(tracked.get("error."), None);
        assert_eq!(reads.valid_until(), None);
    }
}
