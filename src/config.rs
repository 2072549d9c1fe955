//! Configuration: the TOML file (raw [`Config`], the seed's option names) validated
//! into [`Settings`], what the running server uses.
//!
//! Every field documents its default. Unknown keys and bad values are errors that
//! name the key; relative paths are taken as they are (relative to the directory
//! the server runs in).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::protocol::machine::ehlo_keywords;
use crate::protocol::{BareLineEnding, Limits};

/// The configuration file, as written. Keys are the Ruby gem's option names where
/// it had one.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Name in the greeting, EHLO reply and trace headers (seed `server_name`).
    /// Default: this machine's host name.
    pub server_name: Option<String>,
    /// Where to listen (seed `listening_ports`): `PORT` (all addresses, IPv4 and
    /// IPv6), `ADDR:PORT` or `[IPV6]:PORT`. Default: `["127.0.0.1:2525"]`.
    pub listening_ports: Vec<String>,
    /// Maildir that receives accepted mail. Default: `mail`.
    pub maildir: PathBuf,
    /// Record `bad_characters`/`wrong_dot_usage` for MAIL FROM (seed option). Default: true.
    pub sender_character_check: bool,
    /// Record `bad_characters`/`wrong_dot_usage` for RCPT TO (seed option). Default: true.
    pub recipient_character_check: bool,
    /// Largest message in octets, advertised in EHLO SIZE. Default: 26214400 (25 MiB).
    pub max_message_size: u64,
    /// Accepted recipients per transaction; more get 452 4.5.3. Default: 100.
    pub max_recipients: usize,
    /// Error replies per session before 421 4.7.0 and close. Default: 10.
    pub max_errors: u32,
    /// Longest command line in octets, CRLF included; longer get 500 5.5.6. Default: 512.
    pub max_command_line: usize,
    /// Longest line of message text in octets, CRLF included; a message with a longer
    /// line gets 500 5.5.6. 0 = no limit. Default: 1000.
    pub max_text_line: usize,
    /// Seconds a client may take to send one command (then 421 4.4.2). Default: 300.
    pub command_timeout: f64,
    /// Seconds of silence allowed while receiving message data (then 421 4.4.2).
    /// Default: 600.
    pub data_timeout: f64,
    /// A bare CR or LF in DATA: `reject` (550 5.6.2, default) or `normalize` (to CRLF).
    pub bare_line_ending: LineEndingPolicy,
    /// Do not print each received mail as a JSON line on stdout. Default: false.
    pub quiet: bool,
}

/// The `bare_line_ending` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LineEndingPolicy {
    /// Refuse the message after end-of-data with 550 5.6.2.
    #[default]
    Reject,
    /// Turn each bare CR or LF into CRLF.
    Normalize,
}

impl Default for Config {
    fn default() -> Self {
        let limits = Limits::default();
        Self {
            server_name: None,
            listening_ports: vec!["127.0.0.1:2525".to_owned()],
            maildir: PathBuf::from("mail"),
            sender_character_check: true,
            recipient_character_check: true,
            max_message_size: limits.max_message_size,
            max_recipients: limits.max_recipients,
            max_errors: limits.max_errors,
            max_command_line: limits.max_command_line,
            max_text_line: limits.max_text_line,
            command_timeout: limits.command_timeout.as_secs_f64(),
            data_timeout: limits.data_timeout.as_secs_f64(),
            bare_line_ending: LineEndingPolicy::Reject,
            quiet: false,
        }
    }
}

/// A configuration that cannot be used; the message names the culprit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has an unknown key or a value of the wrong type.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (it names the key).
        message: String,
    },
    /// A value is out of range.
    #[error("invalid {key}: {reason}")]
    Invalid {
        /// The option.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// What the running server and the hooks see.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Name in the greeting, EHLO reply and trace headers.
    pub server_name: String,
    /// This machine's host name (`local_hostname` in the mail structure).
    pub local_hostname: String,
    /// Record the local-part analysis for MAIL FROM.
    pub sender_character_check: bool,
    /// Record the local-part analysis for RCPT TO.
    pub recipient_character_check: bool,
    /// Protocol limits.
    pub limits: Arc<Limits>,
    pub(crate) ehlo_keywords: Arc<[String]>,
}

impl Config {
    /// Reads and parses a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses TOML text; the error is the parser's one-line message.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.message().to_owned())
    }

    /// The addresses to listen on.
    pub fn listen_addrs(&self) -> Result<Vec<SocketAddr>, ConfigError> {
        if self.listening_ports.is_empty() {
            return Err(invalid("listening_ports", "no address to listen on".into()));
        }
        self.listening_ports
            .iter()
            .map(|p| {
                parse_listen_addr(p).ok_or_else(|| {
                    invalid(
                        "listening_ports",
                        format!("{p:?} is not PORT, ADDR:PORT or [IPV6]:PORT"),
                    )
                })
            })
            .collect()
    }

    /// Validates the values and builds the settings.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let limits = Limits {
            server_name: self.server_name(),
            max_command_line: at_least("max_command_line", self.max_command_line, 64)?,
            max_text_line: if self.max_text_line == 0 {
                0
            } else {
                at_least("max_text_line", self.max_text_line, 80)?
            },
            max_message_size: at_least("max_message_size", self.max_message_size, 1)?,
            max_recipients: at_least("max_recipients", self.max_recipients, 1)?,
            max_errors: at_least("max_errors", self.max_errors, 1)?,
            command_timeout: seconds("command_timeout", self.command_timeout)?,
            data_timeout: seconds("data_timeout", self.data_timeout)?,
            bare_line_ending: match self.bare_line_ending {
                LineEndingPolicy::Reject => BareLineEnding::Reject,
                LineEndingPolicy::Normalize => BareLineEnding::Normalize,
            },
        };
        if limits.server_name.is_empty()
            || !limits
                .server_name
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'(' && b != b')')
        {
            return Err(invalid(
                "server_name",
                format!("{:?} must be a host name", limits.server_name),
            ));
        }
        Ok(Settings {
            server_name: limits.server_name.clone(),
            local_hostname: local_hostname(),
            sender_character_check: self.sender_character_check,
            recipient_character_check: self.recipient_character_check,
            ehlo_keywords: ehlo_keywords(&limits),
            limits: Arc::new(limits),
        })
    }

    fn server_name(&self) -> String {
        self.server_name.clone().unwrap_or_else(local_hostname)
    }
}

impl Settings {
    /// Settings from the default configuration (for tests and embedding).
    pub fn from_defaults() -> Self {
        match Config::default().settings() {
            Ok(settings) => settings,
            Err(_) => {
                let limits = Limits::default();
                Self {
                    server_name: limits.server_name.clone(),
                    local_hostname: local_hostname(),
                    sender_character_check: true,
                    recipient_character_check: true,
                    ehlo_keywords: ehlo_keywords(&limits),
                    limits: Arc::new(limits),
                }
            }
        }
    }
}

/// This machine's host name, or `localhost` when it has none.
pub fn local_hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

fn invalid(key: &'static str, reason: String) -> ConfigError {
    ConfigError::Invalid { key, reason }
}

fn at_least<T: PartialOrd + std::fmt::Display + Copy>(
    key: &'static str,
    value: T,
    min: T,
) -> Result<T, ConfigError> {
    if value < min {
        return Err(invalid(key, format!("{value} is below the minimum {min}")));
    }
    Ok(value)
}

fn seconds(key: &'static str, value: f64) -> Result<Duration, ConfigError> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero() && d.as_secs() < 86_400 * 365)
        .ok_or_else(|| invalid(key, format!("{value} is not a positive number of seconds")))
}

/// `PORT`, `ADDR:PORT` or `[IPV6]:PORT`; a bare port means every address.
pub fn parse_listen_addr(text: &str) -> Option<SocketAddr> {
    let text = text.trim();
    if let Ok(port) = text.parse::<u16>() {
        return Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port));
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let config = Config::parse("").unwrap();
        assert_eq!(config, Config::default());
        let settings = config.settings().unwrap();
        assert_eq!(settings.limits.max_command_line, 512);
        assert_eq!(
            config.listen_addrs().unwrap(),
            vec!["127.0.0.1:2525".parse::<SocketAddr>().unwrap()]
        );
    }

    #[test]
    fn seed_names_parse() {
        let config = Config::parse(
            "server_name = \"mx.example.com\"\nlistening_ports = [\"2000\", \"127.0.0.1:2001\", \"[::1]:2002\"]\n\
             sender_character_check = false\nbare_line_ending = \"normalize\"\ncommand_timeout = 0.5\n",
        )
        .unwrap();
        let addrs = config.listen_addrs().unwrap();
        assert_eq!(addrs[0], "[::]:2000".parse().unwrap());
        assert_eq!(addrs[2], "[::1]:2002".parse().unwrap());
        let settings = config.settings().unwrap();
        assert_eq!(settings.server_name, "mx.example.com");
        assert_eq!(settings.limits.command_timeout, Duration::from_millis(500));
        assert_eq!(settings.limits.bare_line_ending, BareLineEnding::Normalize);
    }

    #[test]
    fn errors_name_the_culprit() {
        let e = Config::parse("max_mesage_size = 5").unwrap_err();
        assert!(e.contains("max_mesage_size"), "{e}");
        let e = Config::parse("max_errors = \"ten\"").unwrap_err();
        assert!(e.contains("invalid type"), "{e}");
        let c = Config::parse("listening_ports = [\"nowhere\"]").unwrap();
        assert!(
            c.listen_addrs()
                .unwrap_err()
                .to_string()
                .contains("nowhere")
        );
        let c = Config::parse("command_timeout = -1").unwrap();
        assert!(
            c.settings()
                .unwrap_err()
                .to_string()
                .contains("command_timeout")
        );
        let c = Config::parse("server_name = \"a b\"").unwrap();
        assert!(
            c.settings()
                .unwrap_err()
                .to_string()
                .contains("server_name")
        );
    }
}
