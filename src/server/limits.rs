//! Connection limits: how many connections are open in all and per client (clients
//! in the exceptions, loopback by default, only count in all). A client is an IPv4
//! address or an IPv6 prefix of `ipv6_prefix_length` bits (default 64), as in the
//! lockout ([`crate::lockout::client_network`]). A connection holds a [`Slot`] while
//! it lives; dropping it frees the place.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::Cidr;
use crate::lockout::client_network;

/// Counts open connections against `max_connections` and `max_connections_per_ip`.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionLimits {
    inner: Arc<Mutex<Counts>>,
    max_total: usize,
    max_per_ip: usize,
    exceptions: Arc<[Cidr]>,
    ipv6_prefix_length: u8,
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
            ipv6_prefix_length: 64,
        }
    }

    /// Counts IPv6 clients per prefix of `bits` leading bits (default 64).
    pub(crate) fn with_ipv6_prefix_length(mut self, bits: u8) -> Self {
        self.ipv6_prefix_length = bits;
        self
    }

    /// A slot for a new connection from `ip`, or `None` when a limit is reached.
    pub(crate) fn admit(&self, ip: IpAddr) -> Option<Slot> {
        let exempt = self
            .exceptions
            .iter()
            .any(|net| net.contains(ip.to_canonical()));
        let ip = client_network(ip, self.ipv6_prefix_length);
        let mut counts = self.inner.lock().ok()?;
        let from_ip = counts.per_ip.get(&ip).copied().unwrap_or(0);
        let held_per_ip = from_ip >= self.max_per_ip && !exempt;
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
/// reported with the next line, or, when no further event comes, by a report
/// [`THROTTLE_REPORT_AFTER`] after the first one held back (so a burst that ends
/// within its first second is not swallowed). Clones share the counts.
#[derive(Clone)]
pub(crate) struct LogThrottle {
    state: Arc<ThrottleState>,
    /// Logs "`n` more events held back"; the report of the timer.
    report: Arc<dyn Fn(u64) + Send + Sync>,
}

/// How long after the first held-back event its count is reported, if no line
/// has reported it by then.
pub(crate) const THROTTLE_REPORT_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Debug, Default)]
struct ThrottleState {
    second: AtomicU64,
    suppressed: AtomicU64,
    report_pending: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for LogThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogThrottle")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// The throttle of the "refused: too many connections" line.
impl Default for LogThrottle {
    fn default() -> Self {
        Self::with_report(|held| {
            tracing::warn!(
                "{held} more connections refused: too many connections (not logged one by one)"
            );
        })
    }
}

impl LogThrottle {
    /// A throttle whose timer reports with `report(held back count)`.
    pub(crate) fn with_report(report: impl Fn(u64) + Send + Sync + 'static) -> Self {
        Self {
            state: Arc::default(),
            report: Arc::new(report),
        }
    }

    /// `Some(events suppressed since the last line)` when a line may be logged now.
    /// A suppressed event inside a tokio runtime arms the timer report if none is
    /// pending.
    pub(crate) fn admit(&self) -> Option<u64> {
        let state = &self.state;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = state.second.load(Ordering::Relaxed);
        if last != now
            && state
                .second
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(state.suppressed.swap(0, Ordering::AcqRel));
        }
        state.suppressed.fetch_add(1, Ordering::AcqRel);
        if !state.report_pending.swap(true, Ordering::AcqRel) {
            self.report_later();
        }
        None
    }

    /// After [`THROTTLE_REPORT_AFTER`], reports what is still held back. The
    /// pending flag is cleared before the count is taken: an event in between
    /// arms a new timer, which then finds its count taken and says nothing.
    fn report_later(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime (a unit test): the next line reports the count.
            self.state.report_pending.store(false, Ordering::Release);
            return;
        };
        let throttle = self.clone();
        runtime.spawn(async move {
            tokio::time::sleep(THROTTLE_REPORT_AFTER).await;
            throttle
                .state
                .report_pending
                .store(false, Ordering::Release);
            let held = throttle.state.suppressed.swap(0, Ordering::AcqRel);
            if held > 0 {
                (throttle.report)(held);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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

    #[tokio::test]
    async fn issue19_a_burst_is_reported_without_a_further_event() {
        let (reports, mut reported) = tokio::sync::mpsc::unbounded_channel();
        let throttle = LogThrottle::with_report(move |held| {
            let _ = reports.send(held);
        });
        let burst = 100u64;
        // The lines that may be logged at once, and the counts they carry (a
        // second boundary may fall inside the burst: then two lines).
        let (mut lines, mut counted_in_lines) = (0u64, 0u64);
        for _ in 0..burst {
            if let Some(held) = throttle.admit() {
                lines += 1;
                counted_in_lines += held;
            }
        }
        let held_back = burst - lines - counted_in_lines;
        assert!(held_back > 0, "{lines} lines for {burst} events");
        // No event follows: the timer alone must report every held-back one.
        let mut by_timer = 0;
        while by_timer < held_back {
            let report = tokio::time::timeout(Duration::from_secs(30), reported.recv()).await;
            by_timer += report
                .expect("a report without a further event")
                .expect("open");
        }
        assert_eq!(by_timer, held_back);
    }

    #[test]
    fn ipv6_clients_count_per_prefix() {
        let limits = ConnectionLimits::new(10, 2, &[]);
        let in_one_64 = ["2001:db8::1", "2001:db8::ffff:1:2:3"];
        let _slots: Vec<Slot> = in_one_64
            .iter()
            .map(|ip| limits.admit(ip.parse().unwrap()).unwrap())
            .collect();
        let third: IpAddr = "2001:db8::3".parse().unwrap();
        assert!(limits.admit(third).is_none(), "same /64: one client");
        let next_64: IpAddr = "2001:db8:0:1::1".parse().unwrap();
        assert!(limits.admit(next_64).is_some(), "another /64");
        let per_address = ConnectionLimits::new(10, 1, &[]).with_ipv6_prefix_length(128);
        let _one = per_address.admit("2001:db8::1".parse().unwrap()).unwrap();
        assert!(per_address.admit(third).is_some(), "/128: per address");
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
