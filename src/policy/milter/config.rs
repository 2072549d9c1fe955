//! A `[[milter]]` table of the configuration file ([`MilterConfig`], raw, as
//! written; `--milter ADDR` makes one with the defaults) and its check into
//! what the layer runs with. The defaults are Postfix's (`milter_protocol = 6`,
//! `milter_default_action = tempfail`, 30 s / 30 s / 300 s timeouts), so a
//! milter set up for Postfix behaves the same here.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::ConfigError;
use crate::policy::Stage;

/// One milter (a `[[milter]]` table).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MilterConfig {
    /// Where the milter listens: `inet:HOST:PORT` (Postfix's spelling;
    /// `HOST:PORT` alone too, `[::1]:PORT` for IPv6) or `unix:/path`.
    pub address: String,
    /// The milter's name in logs and in the mail structure's `milter` key.
    /// Default: the address.
    #[serde(default)]
    pub name: Option<String>,
    /// What a milter that fails (no connection, a timeout, a broken reply)
    /// means (Postfix's `milter_default_action`): `tempfail` (default: 451
    /// 4.7.1, at connect 421), `accept` (go on without it) or `reject` (550
    /// 5.7.1).
    #[serde(default)]
    pub default_action: DefaultAction,
    /// Seconds to connect and negotiate (`milter_connect_timeout`). Default: 30.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: f64,
    /// Seconds for each answer to a command (`milter_command_timeout`).
    /// Default: 30.
    #[serde(default = "default_command_timeout")]
    pub command_timeout: f64,
    /// Seconds for each answer while the message is sent, end of message
    /// included (`milter_content_timeout`). Default: 300.
    #[serde(default = "default_content_timeout")]
    pub content_timeout: f64,
    /// The stages whose answer counts: any of `connect`, `ehlo`, `mail_from`,
    /// `rcpt_to`, `data` (`auth` has no milter command). At a stage not
    /// listed nothing is sent; what it would have sent goes at the next listed
    /// stage. Default: all five.
    #[serde(default = "default_stages")]
    pub stages: Vec<Stage>,
}

/// What a failed milter means (`milter_default_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultAction {
    /// Refuse for now: 451 4.7.1 (421 at connect); the client retries.
    #[default]
    Tempfail,
    /// Go on as if the milter were not configured.
    Accept,
    /// Refuse for good: 550 5.7.1 (554 at connect).
    Reject,
}

fn default_connect_timeout() -> f64 {
    30.0
}

fn default_command_timeout() -> f64 {
    30.0
}

fn default_content_timeout() -> f64 {
    300.0
}

fn default_stages() -> Vec<Stage> {
    vec![
        Stage::Connect,
        Stage::Ehlo,
        Stage::MailFrom,
        Stage::RcptTo,
        Stage::Data,
    ]
}

impl MilterConfig {
    /// A milter at `address` with every other key at its default (`--milter ADDR`).
    pub fn with_address(address: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            name: None,
            default_action: DefaultAction::default(),
            connect_timeout: default_connect_timeout(),
            command_timeout: default_command_timeout(),
            content_timeout: default_content_timeout(),
            stages: default_stages(),
        }
    }
}

/// Where a milter listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MilterAddress {
    /// `host:port` (resolved at each connection).
    Inet(String),
    /// A unix socket.
    Unix(PathBuf),
}

impl std::fmt::Display for MilterAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Inet(host_port) => write!(f, "inet:{host_port}"),
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// A checked `[[milter]]`.
#[derive(Debug, Clone)]
pub(crate) struct Checked {
    pub(crate) address: MilterAddress,
    pub(crate) name: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) command_timeout: Duration,
    pub(crate) content_timeout: Duration,
}

fn invalid(key: &'static str, reason: String) -> ConfigError {
    ConfigError::Invalid { key, reason }
}

/// `inet:host:port`, `host:port`, `[v6]:port`, `unix:/path` (Postfix also
/// writes `local:/path`).
fn parse_address(text: &str) -> Result<MilterAddress, String> {
    if let Some(path) = text
        .strip_prefix("unix:")
        .or_else(|| text.strip_prefix("local:"))
    {
        if path.is_empty() {
            return Err("a unix address needs a path: unix:/path".to_owned());
        }
        return Ok(MilterAddress::Unix(PathBuf::from(path)));
    }
    let host_port = text.strip_prefix("inet:").unwrap_or(text);
    let port_ok = host_port
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if !port_ok {
        return Err(format!(
            "{text:?} is not a milter address: use inet:HOST:PORT or unix:/path"
        ));
    }
    Ok(MilterAddress::Inet(host_port.to_owned()))
}

fn seconds(key: &'static str, value: f64) -> Result<Duration, ConfigError> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero() && d.as_secs() < 86_400)
        .ok_or_else(|| invalid(key, format!("{value} is not a positive number of seconds")))
}

/// Checks the values that need it; the error names the key.
pub(crate) fn check(config: &MilterConfig) -> Result<Checked, ConfigError> {
    let address = parse_address(&config.address).map_err(|e| invalid("milter.address", e))?;
    if config.stages.is_empty() {
        return Err(invalid("milter.stages", "no stage given".to_owned()));
    }
    if config.stages.contains(&Stage::Auth) {
        return Err(invalid(
            "milter.stages",
            "auth: the milter protocol has no AUTH command (the login is in the MAIL macros)"
                .to_owned(),
        ));
    }
    Ok(Checked {
        name: config.name.clone().unwrap_or_else(|| address.to_string()),
        address,
        connect_timeout: seconds("milter.connect_timeout", config.connect_timeout)?,
        command_timeout: seconds("milter.command_timeout", config.command_timeout)?,
        content_timeout: seconds("milter.content_timeout", config.content_timeout)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milter_tables_parse() {
        let config = crate::Config::parse(
            "[[milter]]\naddress = \"inet:127.0.0.1:8891\"\n\
             [[milter]]\naddress = \"unix:/run/rspamd.sock\"\nname = \"rspamd\"\n\
             default_action = \"accept\"\ncommand_timeout = 5\nstages = [\"data\"]\n",
        );
        let milters = config.map(|c| c.milters).unwrap_or_default();
        assert_eq!(
            milters,
            [
                MilterConfig::with_address("inet:127.0.0.1:8891"),
                MilterConfig {
                    name: Some("rspamd".to_owned()),
                    default_action: DefaultAction::Accept,
                    command_timeout: 5.0,
                    stages: vec![Stage::Data],
                    ..MilterConfig::with_address("unix:/run/rspamd.sock")
                }
            ]
        );
        for bad in [
            "[[milter]]\nname = \"no address\"\n",
            "[[milter]]\naddress = \"unix:/m\"\ndefault_action = \"maybe\"\n",
            "[[milter]]\naddress = \"unix:/m\"\nmacros = []\n",
        ] {
            assert!(crate::Config::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn addresses() {
        for (text, expected) in [
            ("inet:127.0.0.1:11332", Some("inet:127.0.0.1:11332")),
            ("127.0.0.1:8891", Some("inet:127.0.0.1:8891")),
            ("inet:[::1]:8891", Some("inet:[::1]:8891")),
            ("inet:localhost:8891", Some("inet:localhost:8891")),
            ("unix:/run/milter.sock", Some("unix:/run/milter.sock")),
            ("local:/run/m", Some("unix:/run/m")),
            ("unix:", None),
            ("inet:127.0.0.1", None),
            ("inet::25", None),
            ("inet:host:0", None),
            ("inet:host:99999", None),
            ("", None),
        ] {
            let got = parse_address(text).ok().map(|a| a.to_string());
            assert_eq!(got.as_deref(), expected, "{text}");
        }
    }

    #[test]
    fn keys_are_checked_and_named() {
        let ok = check(&MilterConfig::with_address("inet:127.0.0.1:8891"));
        assert!(
            ok.is_ok_and(|c| c.name == "inet:127.0.0.1:8891"
                && c.content_timeout == Duration::from_secs(300))
        );
        for (config, key) in [
            (MilterConfig::with_address("nowhere"), "milter.address"),
            (
                MilterConfig {
                    stages: vec![],
                    ..MilterConfig::with_address("unix:/m")
                },
                "milter.stages",
            ),
            (
                MilterConfig {
                    stages: vec![Stage::Auth],
                    ..MilterConfig::with_address("unix:/m")
                },
                "milter.stages",
            ),
            (
                MilterConfig {
                    command_timeout: 0.0,
                    ..MilterConfig::with_address("unix:/m")
                },
                "milter.command_timeout",
            ),
            (
                MilterConfig {
                    connect_timeout: f64::NAN,
                    ..MilterConfig::with_address("unix:/m")
                },
                "milter.connect_timeout",
            ),
            (
                MilterConfig {
                    content_timeout: -1.0,
                    ..MilterConfig::with_address("unix:/m")
                },
                "milter.content_timeout",
            ),
        ] {
            match check(&config) {
                Err(ConfigError::Invalid { key: got, .. }) => assert_eq!(got, key, "{config:?}"),
                other => panic!("{config:?}: {other:?}"),
            }
        }
    }
}
