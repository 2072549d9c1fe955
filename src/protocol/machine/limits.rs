//! The limits a session is held to, and the reply for a message refused at its
//! end (size, header section, line length, bare line endings).

use std::time::Duration;

use crate::protocol::data::{BareLineEnding, DataOutcome};
use crate::protocol::reply::Reply;

/// RCPT commands past `max_recipients` in one transaction that are answered
/// `452 4.5.3` without counting as errors (RFC 5321 §4.5.3.1.10: the client
/// sends the message to the accepted recipients and the rest in a later
/// transaction). Beyond this overshoot each further one counts toward
/// `max_errors`, as Postfix's `smtpd_recipient_overshoot_limit` (also 1000).
pub const RECIPIENT_OVERSHOOT_LIMIT: usize = 1000;

/// Limits and names the machine enforces; shared by all sessions of a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Name used in the greeting and replies.
    pub server_name: String,
    /// Longest command line in octets, CRLF included (RFC 5321: 512).
    pub max_command_line: usize,
    /// Longest text line in DATA in octets, CRLF included (RFC 5321: 1000); 0 = none.
    pub max_text_line: usize,
    /// Largest message in octets, advertised as SIZE.
    pub max_message_size: u64,
    /// Largest header section in octets (up to the first empty line); 0 = none.
    /// The mail structure keeps a string per header line, so a message of a
    /// million short header lines would take many times its size in memory.
    pub max_header_size: usize,
    /// Most accepted recipients per transaction; further RCPTs get 452 4.5.3
    /// (not counted as errors up to [`RECIPIENT_OVERSHOOT_LIMIT`] of them).
    pub max_recipients: usize,
    /// Error replies tolerated per session before 421 and close.
    pub max_errors: u32,
    /// Time allowed to send one command line.
    pub command_timeout: Duration,
    /// Time allowed between two reads while receiving message data.
    pub data_timeout: Duration,
    /// What to do with a bare CR or LF inside DATA.
    pub bare_line_ending: BareLineEnding,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            server_name: "localhost".into(),
            max_command_line: 512,
            max_text_line: 1000,
            max_message_size: 25 * 1024 * 1024,
            max_header_size: 1024 * 1024,
            max_recipients: 100,
            max_errors: 10,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(600),
            bare_line_ending: BareLineEnding::Reject,
        }
    }
}

/// Why the machine refused a message at its end, as a value that converts into
/// its reply (`Reply::from(refusal)`): carried by [`Event::Message`](super::Event::Message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// What was wrong (never [`DataOutcome::Ok`]).
    pub reason: DataOutcome,
    /// Octets of the message received before it was refused.
    pub size: u64,
    /// The limit it broke, in octets (size, header section or line length).
    pub limit: u64,
}

impl Refusal {
    /// The refusal of a message for `reason` under `limits`; `None` for
    /// [`DataOutcome::Ok`].
    pub fn new(reason: DataOutcome, size: u64, limits: &Limits) -> Option<Self> {
        let limit = match reason {
            DataOutcome::Ok => return None,
            DataOutcome::TooLarge => limits.max_message_size,
            DataOutcome::HeaderTooLarge => limits.max_header_size as u64,
            DataOutcome::LineTooLong => limits.max_text_line as u64,
            DataOutcome::BareLineEnding => 0,
        };
        Some(Self {
            reason,
            size,
            limit,
        })
    }
}

impl From<Refusal> for Reply {
    fn from(refusal: Refusal) -> Reply {
        let limit = refusal.limit;
        match refusal.reason {
            DataOutcome::Ok | DataOutcome::TooLarge => too_large_reply(limit),
            DataOutcome::BareLineEnding => Reply::new(
                550,
                (5, 6, 2),
                "Message refused: bare CR or LF not allowed, lines must end in CRLF",
            ),
            DataOutcome::HeaderTooLarge => Reply::new(
                552,
                (5, 3, 4),
                format!("Message header section exceeds the maximum of {limit} octets"),
            ),
            DataOutcome::LineTooLong => Reply::new(
                500,
                (5, 5, 6),
                format!("Message refused: line longer than {limit} octets"),
            ),
        }
    }
}

fn too_large_reply(max_message_size: u64) -> Reply {
    Reply::new(
        552,
        (5, 3, 4),
        format!("Message size exceeds fixed maximum message size of {max_message_size} octets"),
    )
}

pub(super) fn too_large(limits: &Limits) -> Reply {
    too_large_reply(limits.max_message_size)
}
