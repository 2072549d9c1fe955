//! The mail structure's `milter` key (new): what each milter answered and
//! changed, one [`MilterVerdict`] per milter and stage that said more than
//! "continue", and one per milter at the end of each message.

use serde::{Deserialize, Serialize};

/// One milter's answer at one stage.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MilterVerdict {
    /// The milter's name (its `name` key, or its address).
    pub name: String,
    /// The stage: `connect`, `ehlo`, `mail_from`, `rcpt_to` or `data`.
    pub stage: String,
    /// `continue`, `accept`, `reject`, `tempfail`, `discard`, `quarantine`,
    /// or `failed` (no answer: the milter's `default_action` applied).
    pub action: String,
    /// The SMTP reply it asked for or that was sent for it, e.g.
    /// `"550 5.7.1 Spam"`.
    pub reply: Option<String>,
    /// Header fields it added or changed, `[name, value]` (value as written
    /// after the colon), e.g. rspamd's `X-Spam-*` or OpenDKIM's
    /// `DKIM-Signature`.
    pub headers: Vec<[String; 2]>,
    /// Header field names it deleted.
    pub removed_headers: Vec<String>,
    /// Recipients it added.
    pub added_recipients: Vec<String>,
    /// Recipients it removed.
    pub removed_recipients: Vec<String>,
    /// The envelope sender it set.
    pub sender: Option<String>,
    /// It replaced the body.
    pub body_replaced: bool,
    /// Why it quarantined the message.
    pub quarantine: Option<String>,
    /// Why it failed (with `action: "failed"`).
    pub error: Option<String>,
}

impl MilterVerdict {
    /// Whether this belongs to the connection (kept across transactions).
    pub fn is_connection_stage(&self) -> bool {
        matches!(self.stage.as_str(), "connect" | "ehlo")
    }
}
