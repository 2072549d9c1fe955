//! The delivery chain as configured: `[[deliver]]` tables, one per target, in
//! order. Without any, the binary delivers to `maildir` as before.
//!
//! ```toml
//! [[deliver]]
//! kind = "lmtp"
//! address = "unix:/run/dovecot/lmtp"   # or "127.0.0.1:24"
//!
//! [[deliver]]
//! kind = "maildir"
//! path = "/var/lib/net-receiver/archive"
//! required = false                     # a failure here is logged, not answered
//!
//! [[deliver]]
//! kind = "nats"
//! url = "nats://127.0.0.1:4222"
//! subject = "mail.in"
//! stream = "MAIL"                      # created for the subject if missing
//! ```

use std::path::PathBuf;

use serde::Deserialize;

/// One `[[deliver]]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum DeliverConfig {
    /// `kind = "maildir"`: a Maildir at `path`.
    Maildir {
        /// The Maildir's root (created if missing).
        path: PathBuf,
        /// The reply waits for this target (default true); an optional one's
        /// failure is only logged.
        #[serde(default = "yes")]
        required: bool,
    },
    /// `kind = "lmtp"`: an LMTP server (Dovecot's `lmtp` service, Cyrus…).
    Lmtp {
        /// `host:port` or `unix:/path`.
        address: String,
        /// As for `maildir`.
        #[serde(default = "yes")]
        required: bool,
        /// Seconds to wait for each reply before the final dot (default 300),
        /// and after it (twice that).
        #[serde(default = "lmtp_timeout")]
        timeout: f64,
    },
    /// `kind = "nats"`: a NATS JetStream subject.
    Nats {
        /// `nats://host:4222` (several, comma-separated, for a cluster).
        url: String,
        /// The subject mail is published to.
        subject: String,
        /// A stream to create for the subject if it does not exist; without
        /// it a stream must already take the subject.
        #[serde(default)]
        stream: Option<String>,
        /// As for `maildir`.
        #[serde(default = "yes")]
        required: bool,
        /// Seconds to wait for a connection and for each PubAck (default 10).
        #[serde(default = "nats_timeout")]
        timeout: f64,
        /// Replicas of the stream and the body bucket when this target creates
        /// them (default 1; 3 on a 3-node cluster).
        #[serde(default = "one")]
        replicas: usize,
    },
}

impl DeliverConfig {
    /// Whether the reply to the client waits for this target.
    pub fn required(&self) -> bool {
        match self {
            Self::Maildir { required, .. }
            | Self::Lmtp { required, .. }
            | Self::Nats { required, .. } => *required,
        }
    }
}

fn yes() -> bool {
    true
}

fn one() -> usize {
    1
}

fn lmtp_timeout() -> f64 {
    300.0
}

fn nats_timeout() -> f64 {
    10.0
}
