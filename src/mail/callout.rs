//! The callout record of the mail structure (`mailfrom.callout`,
//! `rcptto[].callout`): what an SMTP callout to the address's mail exchanger
//! (or to `callout_target`) found. Only the type lives here; the probe, its
//! cache and the rules are in `crate::policy::callout`.

use serde::{Deserialize, Serialize};

/// What the callout concluded about one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CalloutResult {
    /// The exchanger accepted `RCPT TO` for the address (2xx).
    Pass,
    /// The exchanger refused the address for good (5xx to `RCPT TO`).
    Fail,
    /// No definite answer now: a 4xx, a timeout, no exchanger reachable, the
    /// per-domain rate limit.
    Tempfail,
    /// The domain accepts any local part (a made-up one was accepted), so a
    /// 2xx says nothing about the address.
    AcceptAll,
    /// No callout answer can be had: the domain has no mail exchanger, publishes
    /// a null MX, refuses the null sender `<>`, or answered nonsense.
    Error,
}

impl CalloutResult {
    /// The result's name as in JSON: `pass`, `fail`, `tempfail`, `accept_all`, `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            CalloutResult::Pass => "pass",
            CalloutResult::Fail => "fail",
            CalloutResult::Tempfail => "tempfail",
            CalloutResult::AcceptAll => "accept_all",
            CalloutResult::Error => "error",
        }
    }
}

/// One callout's findings (new key `callout` of `mailfrom` and `rcptto[]`;
/// `null` when no callout was made).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Callout {
    /// The conclusion.
    pub result: CalloutResult,
    /// The reply code it rests on (e.g. 550 to `RCPT TO`); `null` when there was
    /// no reply (timeout, no exchanger).
    pub code: Option<u16>,
    /// The reply text (enhanced status code included, lines joined by spaces),
    /// or why there was no reply.
    pub text: String,
    /// The exchanger asked, `name[address]:port` (`[address]:port` for
    /// `callout_target`); `null` when no host was reached.
    pub host: Option<String>,
    /// The result came from the cache (memory or Redis): no connection was made.
    pub cached: bool,
}
