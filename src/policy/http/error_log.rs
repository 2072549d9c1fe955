//! Hook failures in the log at most once per [`REPORT_EVERY`] per hook, with
//! the count of the ones held back: a dead hook under load writes one line
//! every ten seconds, not one per message. The clock is an argument, so the
//! rule is tested without waiting.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The shortest time between two log lines about one hook.
pub(crate) const REPORT_EVERY: Duration = Duration::from_secs(10);

/// One hook's failure log state.
#[derive(Debug, Default)]
pub(crate) struct ErrorLog {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    last_report: Option<Instant>,
    held_back: u64,
}

impl ErrorLog {
    /// A failure at `now`: `Some(n)` when it is to be logged, `n` being the
    /// failures held back since the last line; `None` when it is held back.
    pub(crate) fn note(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let due = state
            .last_report
            .is_none_or(|last| now.saturating_duration_since(last) >= REPORT_EVERY);
        if due {
            state.last_report = Some(now);
            Some(std::mem::take(&mut state.held_back))
        } else {
            state.held_back = state.held_back.saturating_add(1);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_ten_seconds_with_the_count() {
        let log = ErrorLog::default();
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        assert_eq!(log.note(at(0)), Some(0));
        assert_eq!(log.note(at(1)), None);
        assert_eq!(log.note(at(9_999)), None);
        assert_eq!(log.note(at(10_000)), Some(2));
        assert_eq!(log.note(at(10_001)), None);
        assert_eq!(log.note(at(60_000)), Some(1));
        assert_eq!(log.note(at(70_000)), Some(0));
    }
}
