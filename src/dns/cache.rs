//! The caches handed to `mail-auth`: parsed SPF, DKIM-key and DMARC records, MX sets,
//! addresses and PTR names, each kept until its DNS TTL runs out.
//!
//! The hickory resolver under [`super::Dns`] already caches raw answers; these caches
//! spare `mail-auth` re-parsing the same records for every message. They are bounded
//! ([`CAPACITY`] entries each): when one is full, expired entries go first and, if it
//! is still full, everything goes. Locks are held only inside the synchronous
//! [`ResolverCache`] calls, never across an `.await`.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use mail_auth::{MX, Parameters, RecordSet, ResolverCache, Txt};

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
        let mut map = self.lock();
        match map.get(name) {
            Some((value, expires)) if *expires > Instant::now() => Some(value.clone()),
            Some(_) => {
                map.remove(name);
                None
            }
            None => None,
        }
    }

    fn remove<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.lock().remove(name).map(|(value, _)| value)
    }

    fn insert(&self, key: K, value: V, valid_until: Instant) {
        let now = Instant::now();
        if valid_until <= now {
            return;
        }
        let mut map = self.lock();
        if map.len() >= self.capacity {
            map.retain(|_, (_, expires)| *expires > now);
            if map.len() >= self.capacity {
                map.clear();
            }
        }
        map.insert(key, (value, valid_until));
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
}
