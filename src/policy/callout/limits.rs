//! What keeps callouts polite: one probe at a time per domain (a second session
//! asking about the same domain waits, then finds the first one's result in the
//! cache) and at most `callout_rate_limit` probes per domain per minute (more
//! are not made: the result is `tempfail`). Both maps are bounded: entries of
//! idle domains are dropped when a map grows past [`MAX_DOMAINS`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

/// Domains tracked before idle entries are swept.
pub const MAX_DOMAINS: usize = 10_000;
/// The rate limit's window.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);

/// The per-domain locks and probe counts.
#[derive(Debug)]
pub struct DomainLimits {
    locks: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
    rates: Mutex<HashMap<String, (Instant, u32)>>,
    per_window: u32,
}

impl DomainLimits {
    /// Limits allowing `per_window` probes per domain per [`RATE_WINDOW`].
    pub fn new(per_window: u32) -> Self {
        Self {
            locks: Mutex::new(HashMap::new()),
            rates: Mutex::new(HashMap::new()),
            per_window,
        }
    }

    /// The domain's lock (the same one for every caller while any holds it).
    pub fn lock_for(&self, domain: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(lock) = locks.get(domain).and_then(Weak::upgrade) {
            return lock;
        }
        if locks.len() >= MAX_DOMAINS {
            locks.retain(|_, lock| lock.strong_count() > 0);
        }
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        locks.insert(domain.to_owned(), Arc::downgrade(&lock));
        lock
    }

    /// Takes one probe from the domain's allowance at `now`; false when the
    /// allowance of this window is spent.
    pub fn try_probe(&self, domain: &str, now: Instant) -> bool {
        let mut rates = self.rates.lock().unwrap_or_else(PoisonError::into_inner);
        if rates.len() >= MAX_DOMAINS && !rates.contains_key(domain) {
            rates.retain(|_, (start, _)| now.saturating_duration_since(*start) < RATE_WINDOW);
        }
        let entry = rates.entry(domain.to_owned()).or_insert((now, 0));
        if now.saturating_duration_since(entry.0) >= RATE_WINDOW {
            *entry = (now, 0);
        }
        if entry.1 >= self.per_window {
            return false;
        }
        entry.1 += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allowance_is_per_domain_and_per_window() {
        let limits = DomainLimits::new(2);
        let t0 = Instant::now();
        assert!(limits.try_probe("a.example", t0));
        assert!(limits.try_probe("a.example", t0));
        assert!(!limits.try_probe("a.example", t0 + Duration::from_secs(59)));
        assert!(limits.try_probe("b.example", t0));
        assert!(limits.try_probe("a.example", t0 + RATE_WINDOW));
    }

    #[test]
    fn zero_allows_nothing() {
        let limits = DomainLimits::new(0);
        assert!(!limits.try_probe("a.example", Instant::now()));
    }

    #[test]
    fn one_lock_per_domain_while_held() {
        let limits = DomainLimits::new(1);
        let a = limits.lock_for("a.example");
        let again = limits.lock_for("a.example");
        assert!(Arc::ptr_eq(&a, &again));
        assert!(!Arc::ptr_eq(&a, &limits.lock_for("b.example")));
        drop((a, again));
        // Unheld: a new one, and the old entry is gone with it.
        let fresh = limits.lock_for("a.example");
        assert!(fresh.try_lock().is_ok());
    }

    #[test]
    fn the_maps_stay_bounded() {
        let limits = DomainLimits::new(1);
        let t0 = Instant::now();
        for i in 0..MAX_DOMAINS + 10 {
            let _lock = limits.lock_for(&format!("d{i}.example"));
            limits.try_probe(&format!("d{i}.example"), t0);
        }
        let later = t0 + RATE_WINDOW;
        limits.try_probe("new.example", later);
        let locks = limits.locks.lock().unwrap().len();
        let rates = limits.rates.lock().unwrap().len();
        assert!(locks <= MAX_DOMAINS, "{locks}");
        assert!(rates <= MAX_DOMAINS, "{rates}");
    }
}
