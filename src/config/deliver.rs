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
}

impl DeliverConfig {
    /// Whether the reply to the client waits for this target.
    pub fn required(&self) -> bool {
        match self {
            Self::Maildir { required, .. } | Self::Lmtp { required, .. } => *required,
        }
    }
}

fn yes() -> bool {
    true
}

fn lmtp_timeout() -> f64 {
    300.0
}
