//! Connection limits: how many connections are open in all and per client IP
//! (clients in the exceptions, loopback by default, only count in all). A
//! connection holds a [`Slot`] while it lives; dropping it frees the place.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::Cidr;

/// Counts open connections against `max_connections` and `max_connections_per_ip`.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionLimits {
    inner: Arc<Mutex<Counts>>,
    max_total: usize,
    max_per_ip: usize,
    exceptions: Arc<[Cidr]>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// One admitted connection; frees its place when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    limits: ConnectionLimits,
    ip: IpAddr,
}

impl ConnectionLimits {
    pub(crate) fn new(max_total: usize, max_per_ip: usize, exceptions: &[Cidr]) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Counts::default())),
            max_total,
            max_per_ip,
            exceptions: exceptions.into(),
        }
    }

    /// A slot for a new connection from `ip`, or `None` when a limit is reached.
    pub(crate) fn admit(&self, ip: IpAddr) -> Option<Slot> {
        let ip = ip.to_canonical();
        let mut counts = self.inner.lock().ok()?;
        let from_ip = counts.per_ip.get(&ip).copied().unwrap_or(0);
        let held_per_ip =
            from_ip >= self.max_per_ip && !self.exceptions.iter().any(|net| net.contains(ip));
        if counts.total >= self.max_total || held_per_ip {
            return None;
        }
        counts.total += 1;
        counts.per_ip.insert(ip, from_ip + 1);
        Some(Slot {
            limits: self.clone(),
            ip,
        })
    }

    #[cfg(test)]
    fn open(&self) -> usize {
        self.inner.lock().map(|c| c.total).unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Ok(mut counts) = self.limits.inner.lock() else {
            return;
        };
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.per_ip.remove(&self.ip);
            }
        }
    }
}

/// At most one log line per second for a repeated event (a flood of refused
/// connections must not become a flood of log lines); the others are counted and
/// reported with the next line.
#[derive(Debug, Default)]
pub(crate) struct LogThrottle {
    second: AtomicU64,
    suppressed: AtomicU64,
}

impl LogThrottle {
    /// `Some(events suppressed since the last line)` when a line may be logged now.
    pub(crate) fn admit(&self) -> Option<u64> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.second.load(Ordering::Relaxed);
        if last != now
            && self
                .second
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_total_and_per_ip() {
        let limits = ConnectionLimits::new(3, 2, &[]);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "::ffff:10.0.0.2".parse().unwrap();
        let a1 = limits.admit(a).unwrap();
        let _a2 = limits.admit(a).unwrap();
        assert!(limits.admit(a).is_none(), "per-IP limit");
        let _b1 = limits.admit(b).unwrap();
        assert!(
            limits.admit("10.0.0.2".parse().unwrap()).is_none(),
            "total limit"
        );
        drop(a1);
        assert_eq!(limits.open(), 2);
        assert!(limits.admit(a).is_some());
        assert_eq!(limits.open(), 2, "the new slot was dropped at once");
    }

    #[test]
    fn exceptions_count_only_in_all() {
        let loopback = Cidr::parse("127.0.0.0/8").unwrap();
        let limits = ConnectionLimits::new(3, 1, &[loopback]);
        let local: IpAddr = "127.0.0.2".parse().unwrap();
        let slots: Vec<Slot> = (0..3).map(|_| limits.admit(local).unwrap()).collect();
        assert!(limits.admit(local).is_none(), "the total still counts");
        drop(slots);
        let remote: IpAddr = "192.0.2.1".parse().unwrap();
        let _one = limits.admit(remote).unwrap();
        assert!(limits.admit(remote).is_none(), "others keep their limit");
    }

    #[test]
    fn a_throttled_log_speaks_once_per_second_and_counts_the_rest() {
        let throttle = LogThrottle::default();
        assert_eq!(throttle.admit(), Some(0));
        let spoken = (0..1000).filter(|_| throttle.admit().is_some()).count();
        // A second boundary may fall inside the loop: at most one more line.
        assert!(spoken <= 1, "{spoken}");
    }
}
