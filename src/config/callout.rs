//! The `callout_*` keys and `sender_callout`/`recipient_callout` checked into
//! the callout layer's [`CalloutSettings`].

use std::net::SocketAddr;

use super::{Config, ConfigError, invalid, seconds};
use crate::policy::CalloutSettings;

impl Config {
    /// The callout settings, checked; `None` when no callout is on.
    pub fn callout(&self) -> Result<Option<CalloutSettings>, ConfigError> {
        if !self.sender_callout && !self.recipient_callout {
            return Ok(None);
        }
        let target = match &self.callout_target {
            None => None,
            Some(text) => Some(text.trim().parse::<SocketAddr>().map_err(|_| {
                invalid(
                    "callout_target",
                    format!("{text:?} is not ADDR:PORT (e.g. \"127.0.0.1:10025\")"),
                )
            })?),
        };
        if self.callout_port == 0 {
            return Err(invalid("callout_port", "0 is not a port".into()));
        }
        if !(1..=10).contains(&self.callout_max_hosts) {
            return Err(invalid(
                "callout_max_hosts",
                format!("{} is not between 1 and 10", self.callout_max_hosts),
            ));
        }
        let redis_url = match self.callout_cache.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(memory) if memory.eq_ignore_ascii_case("memory") => None,
            Some(url) => {
                let lower = url.to_ascii_lowercase();
                if !["redis://", "rediss://", "redis+unix://", "unix://"]
                    .iter()
                    .any(|scheme| lower.starts_with(scheme))
                {
                    return Err(invalid(
                        "callout_cache",
                        "expected \"memory\" or a redis:// URL".into(),
                    ));
                }
                Some(url.to_owned())
            }
        };
        Ok(Some(CalloutSettings {
            sender: self.sender_callout,
            recipient: self.recipient_callout,
            target,
            port: self.callout_port,
            max_hosts: self.callout_max_hosts,
            random: self.callout_random,
            defer_on_tempfail: self.callout_defer_on_tempfail,
            connect_timeout: seconds("callout_connect_timeout", self.callout_connect_timeout)?,
            command_timeout: seconds("callout_command_timeout", self.callout_command_timeout)?,
            positive_ttl: seconds("callout_positive_ttl", self.callout_positive_ttl)?,
            negative_ttl: seconds("callout_negative_ttl", self.callout_negative_ttl)?,
            tempfail_ttl: seconds("callout_tempfail_ttl", self.callout_tempfail_ttl)?,
            rate_limit: self.callout_rate_limit,
            redis_url,
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn off_by_default_and_the_defaults_are_the_documented_ones() {
        assert_eq!(Config::default().callout().unwrap(), None);
        let config = Config::parse("sender_callout = true").unwrap();
        let settings = config.callout().unwrap().unwrap();
        assert_eq!(
            settings,
            CalloutSettings {
                sender: true,
                ..CalloutSettings::default()
            }
        );
        assert_eq!(settings.positive_ttl, Duration::from_secs(7 * 86_400));
        assert_eq!(settings.negative_ttl, Duration::from_secs(3 * 3600));
    }

    #[test]
    fn every_key_is_read() {
        let config = Config::parse(
            r#"
recipient_callout = true
callout_target = "127.0.0.1:10025"
callout_port = 2525
callout_max_hosts = 3
callout_random = true
callout_defer_on_tempfail = true
callout_connect_timeout = 2
callout_command_timeout = 3
callout_positive_ttl = 60
callout_negative_ttl = 30
callout_tempfail_ttl = 10
callout_rate_limit = 5
callout_cache = "redis://127.0.0.1:6379/"
"#,
        )
        .unwrap();
        let s = config.callout().unwrap().unwrap();
        assert!(!s.sender && s.recipient && s.random && s.defer_on_tempfail);
        assert_eq!(s.target, Some("127.0.0.1:10025".parse().unwrap()));
        assert_eq!((s.port, s.max_hosts, s.rate_limit), (2525, 3, 5));
        assert_eq!(s.connect_timeout, Duration::from_secs(2));
        assert_eq!(s.command_timeout, Duration::from_secs(3));
        assert_eq!(s.tempfail_ttl, Duration::from_secs(10));
        assert_eq!(s.redis_url.as_deref(), Some("redis://127.0.0.1:6379/"));
    }

    #[test]
    fn bad_values_name_their_key() {
        for (text, key) in [
            ("callout_target = \"nowhere\"", "callout_target"),
            ("callout_port = 0", "callout_port"),
            ("callout_max_hosts = 0", "callout_max_hosts"),
            ("callout_command_timeout = 0", "callout_command_timeout"),
            ("callout_cache = \"mysql://x\"", "callout_cache"),
        ] {
            let config = Config::parse(&format!("sender_callout = true\n{text}")).unwrap();
            match config.callout() {
                Err(ConfigError::Invalid { key: got, .. }) => assert_eq!(got, key, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }
}
