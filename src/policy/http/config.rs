//! A `[[hook]]` table of the configuration file ([`HookConfig`], raw, as
//! written) and its check into what the layer runs with ([`HttpHook::new`](super::HttpHook::new)
//! takes a [`HookConfig`] and reports the key at fault).

use std::path::PathBuf;
use std::time::Duration;

use hyper::Uri;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use indexmap::IndexMap;
use serde::Deserialize;

use crate::config::ConfigError;
use crate::policy::Stage;

/// One HTTP stage hook (a `[[hook]]` table; `--hook URL` makes one with the
/// defaults).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookConfig {
    /// Where each call is POSTed: `http://HOST:PORT/PATH`, or
    /// `https://HOST:PORT/PATH` (TLS; the certificate is verified against
    /// the system's CAs and those of `tls_ca`).
    pub url: String,
    /// The hook's name in logs. Default: the URL's `host:port/path`.
    #[serde(default)]
    pub name: Option<String>,
    /// The stages it is called at: any of `connect`, `ehlo`, `auth`,
    /// `mail_from`, `rcpt_to`, `data`. Default: `["data"]`.
    #[serde(default = "default_stages")]
    pub stages: Vec<Stage>,
    /// Seconds one call may take (waiting for a free slot, connecting, the
    /// answer). Default: 10.
    #[serde(default = "default_timeout")]
    pub timeout: f64,
    /// What a failed call (timeout, refused connection, a status other than
    /// 200/204, an answer that breaks the rules) means: `tempfail` (default:
    /// `451 4.3.0`, at connect `421 4.3.0`) or `accept` (as if it said continue).
    #[serde(default)]
    pub on_error: OnError,
    /// HTTP headers sent with every call, e.g. `Authorization = "Bearer …"`.
    #[serde(default)]
    pub headers: IndexMap<String, String>,
    /// Bytes of the message sent at `data` (a longer one is cut, and
    /// `message.truncated` says so). Default: 10485760 (10 MiB).
    #[serde(default = "default_max_body")]
    pub max_body: usize,
    /// Calls to this hook in flight at once; more wait for a slot (within
    /// their `timeout`). Default: 64.
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
    /// A PEM file of CA certificates an `https://` hook's certificate may
    /// also chain to (a private CA), besides the system's. Default: none.
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
}

/// What a failed hook call means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Refuse for now: `451 4.3.0` (at connect `421 4.3.0`), the client retries.
    #[default]
    Tempfail,
    /// Go on as if the hook said `continue`.
    Accept,
}

fn default_stages() -> Vec<Stage> {
    vec![Stage::Data]
}

fn default_timeout() -> f64 {
    10.0
}

fn default_max_body() -> usize {
    10 << 20
}

fn default_max_concurrency() -> usize {
    64
}

impl HookConfig {
    /// A hook at `url` with every other key at its default (`--hook URL`).
    pub fn with_url(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            name: None,
            stages: default_stages(),
            timeout: default_timeout(),
            on_error: OnError::default(),
            headers: IndexMap::new(),
            max_body: default_max_body(),
            max_concurrency: default_max_concurrency(),
            tls_ca: None,
        }
    }
}

/// A checked `[[hook]]`.
#[derive(Debug)]
pub(crate) struct Checked {
    pub(crate) url: Uri,
    pub(crate) name: String,
    pub(crate) headers: HeaderMap,
    pub(crate) timeout: Duration,
}

fn invalid(key: &'static str, reason: String) -> ConfigError {
    ConfigError::Invalid { key, reason }
}

/// Checks the values that need it; the error names the key.
pub(crate) fn check(config: &HookConfig) -> Result<Checked, ConfigError> {
    let url: Uri = config
        .url
        .parse()
        .map_err(|e| invalid("hook.url", format!("{:?} is not a URL: {e}", config.url)))?;
    if !matches!(url.scheme_str(), Some("http" | "https")) || url.host().is_none() {
        return Err(invalid(
            "hook.url",
            format!(
                "{:?} must be http://HOST[:PORT]/PATH or https://HOST[:PORT]/PATH",
                config.url
            ),
        ));
    }
    if config.stages.is_empty() {
        return Err(invalid("hook.stages", "no stage given".to_owned()));
    }
    let timeout = Duration::try_from_secs_f64(config.timeout)
        .ok()
        .filter(|d| !d.is_zero() && d.as_secs() < 86_400)
        .ok_or_else(|| {
            invalid(
                "hook.timeout",
                format!("{} is not a positive number of seconds", config.timeout),
            )
        })?;
    if config.max_concurrency == 0 {
        return Err(invalid("hook.max_concurrency", "0: at least 1".to_owned()));
    }
    let mut headers = HeaderMap::new();
    for (name, value) in &config.headers {
        let header = HeaderName::try_from(name.as_str())
            .map_err(|_| invalid("hook.headers", format!("{name:?} is not a header name")))?;
        let mut value = HeaderValue::try_from(value.as_str()).map_err(|_| {
            invalid(
                "hook.headers",
                format!("the value of {name} is not a header value"),
            )
        })?;
        value.set_sensitive(true);
        headers.append(header, value);
    }
    let name = config.name.clone().unwrap_or_else(|| {
        let authority = url.authority().map_or("", |a| a.as_str());
        format!("{authority}{}", url.path())
    });
    Ok(Checked {
        url,
        name,
        headers,
        timeout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_and_named() {
        let ok = check(&HookConfig::with_url("http://127.0.0.1:8080/hook")).unwrap();
        assert_eq!(ok.name, "127.0.0.1:8080/hook");
        assert_eq!(ok.timeout, Duration::from_secs(10));
        let tls = check(&HookConfig::with_url("https://[::1]:8443/hook")).unwrap();
        assert_eq!(tls.name, "[::1]:8443/hook");
        for (config, key) in [
            (HookConfig::with_url("ftp://example.com/"), "hook.url"),
            (HookConfig::with_url("unix:/run/hook.sock"), "hook.url"),
            (HookConfig::with_url("not a url"), "hook.url"),
            (HookConfig::with_url("/relative"), "hook.url"),
            (
                HookConfig {
                    stages: vec![],
                    ..HookConfig::with_url("http://a/")
                },
                "hook.stages",
            ),
            (
                HookConfig {
                    timeout: 0.0,
                    ..HookConfig::with_url("http://a/")
                },
                "hook.timeout",
            ),
            (
                HookConfig {
                    timeout: f64::NAN,
                    ..HookConfig::with_url("http://a/")
                },
                "hook.timeout",
            ),
            (
                HookConfig {
                    max_concurrency: 0,
                    ..HookConfig::with_url("http://a/")
                },
                "hook.max_concurrency",
            ),
            (
                HookConfig {
                    headers: [("Bad Name".to_owned(), "x".to_owned())]
                        .into_iter()
                        .collect(),
                    ..HookConfig::with_url("http://a/")
                },
                "hook.headers",
            ),
            (
                HookConfig {
                    headers: [("X".to_owned(), "a\nb".to_owned())].into_iter().collect(),
                    ..HookConfig::with_url("http://a/")
                },
                "hook.headers",
            ),
        ] {
            match check(&config) {
                Err(ConfigError::Invalid { key: got, .. }) => assert_eq!(got, key, "{config:?}"),
                other => panic!("{config:?}: {other:?}"),
            }
        }
    }
}
