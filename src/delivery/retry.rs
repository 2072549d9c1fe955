//! A target's own retry schedule ([`RetrySchedule`]): how the spool
//! (`crate::spool`) waits between attempts at a message the target failed
//! transiently, and when it gives up and keeps the message as a dead letter.
//!
//! A target that has no say ([`Deliver::retry_schedule`](super::Deliver::retry_schedule)
//! is `None`, the Maildir, LMTP, NATS) is retried on the spool's own schedule
//! (`retry_min` doubling to `retry_max`, for as long as the process runs). A
//! webhook says how (`retry_initial`, `retry_max`, `retry_for`). A chain goes
//! by its required links' schedules together ([`RetrySchedule::combine`]).

use std::time::Duration;

/// How a target wants a transiently failed message retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySchedule {
    /// The wait before the first retry; it doubles after each failure.
    pub initial: Duration,
    /// The longest wait between two attempts.
    pub max: Duration,
    /// How long after it was accepted a message may still be retried; past
    /// that, the recipients still pending are refused for good (a dead letter
    /// in the spool). `None`: retried for as long as it takes.
    pub give_up_after: Option<Duration>,
}

impl RetrySchedule {
    /// The schedule of two targets delivered to together: the more eager
    /// waits (a message one of them failed is retried no later than that one
    /// asked) and the earlier give-up (a target that gives up after a day
    /// makes the message a dead letter then, whichever target failed).
    pub fn combine(self, other: Self) -> Self {
        let give_up_after = match (self.give_up_after, other.give_up_after) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Self {
            initial: self.initial.min(other.initial),
            max: self.max.min(other.max),
            give_up_after,
        }
    }

    /// The wait after `wait`: doubled, at most `max`.
    pub fn next_wait(&self, wait: Duration) -> Duration {
        wait.saturating_mul(2).min(self.max.max(self.initial))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn waits_double_up_to_the_max() {
        let schedule = RetrySchedule {
            initial: secs(5),
            max: secs(600),
            give_up_after: Some(secs(86_400)),
        };
        let mut wait = schedule.initial;
        let mut waits = Vec::new();
        for _ in 0..10 {
            waits.push(wait.as_secs());
            wait = schedule.next_wait(wait);
        }
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 320, 600, 600, 600]);
    }

    #[test]
    fn combined_schedules_take_the_eager_waits_and_the_first_give_up() {
        let webhook = RetrySchedule {
            initial: secs(5),
            max: secs(600),
            give_up_after: Some(secs(86_400)),
        };
        let other = RetrySchedule {
            initial: secs(1),
            max: secs(900),
            give_up_after: None,
        };
        let both = webhook.combine(other);
        assert_eq!(both.initial, secs(1));
        assert_eq!(both.max, secs(600));
        assert_eq!(both.give_up_after, Some(secs(86_400)));
        assert_eq!(other.combine(other).give_up_after, None);
        let shorter = RetrySchedule {
            give_up_after: Some(secs(60)),
            ..webhook
        };
        assert_eq!(webhook.combine(shorter).give_up_after, Some(secs(60)));
    }
}
