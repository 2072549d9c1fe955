//! The spool's keys checked: `spool_commit_delay` may be zero (no delay), which
//! the other durations of the configuration may not.

use std::time::Duration;

use super::{Config, ConfigError, invalid};

/// The longest `spool_commit_delay`: every session waiting for a flush waits it
/// too, so more would only slow the replies.
pub const MAX_COMMIT_DELAY: Duration = Duration::from_millis(100);

impl Config {
    /// `spool_commit_delay`, checked: from 0 (off) to [`MAX_COMMIT_DELAY`].
    pub fn spool_commit_delay(&self) -> Result<Duration, ConfigError> {
        Duration::try_from_secs_f64(self.spool_commit_delay)
            .ok()
            .filter(|delay| *delay <= MAX_COMMIT_DELAY)
            .ok_or_else(|| {
                invalid(
                    "spool_commit_delay",
                    format!(
                        "{} is not a number of seconds from 0 to {}",
                        self.spool_commit_delay,
                        MAX_COMMIT_DELAY.as_secs_f64()
                    ),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default is the spool's own; zero is allowed (off); a negative
    /// number, a number over the bound, NaN and a string are refused, naming
    /// the key.
    #[test]
    fn commit_delay_is_checked_and_zero_turns_it_off() {
        assert_eq!(
            Config::default().spool_commit_delay().unwrap(),
            crate::spool::SpoolOptions::new("").commit_delay
        );
        let delay = |text: &str| Config::parse(&format!("spool_commit_delay = {text}"));
        assert_eq!(
            delay("0").unwrap().spool_commit_delay().unwrap(),
            Duration::ZERO
        );
        assert_eq!(
            delay("0.001").unwrap().spool_commit_delay().unwrap(),
            Duration::from_millis(1)
        );
        assert_eq!(
            delay("0.1").unwrap().spool_commit_delay().unwrap(),
            MAX_COMMIT_DELAY
        );
        for bad in ["-0.001", "0.2", "nan", "inf"] {
            let error = delay(bad)
                .unwrap()
                .spool_commit_delay()
                .unwrap_err()
                .to_string();
            assert!(
                error.starts_with("invalid spool_commit_delay"),
                "{bad}: {error}"
            );
        }
        let error = delay("\"fast\"").unwrap_err().to_string();
        assert!(error.contains("spool_commit_delay"), "{error}");
        // Refused at start-up too, spool or not.
        assert!(delay("1").unwrap().settings().is_err());
    }
}
