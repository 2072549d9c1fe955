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
//!
//! [[deliver]]
//! kind = "webhook"
//! url = "http://127.0.0.1:8080/mail"
//! secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
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
        /// Seconds to wait for a connection and for each PubAck, and about how
        /// long a server that answers nothing is kept before another is tried
        /// (default 10).
        #[serde(default = "nats_timeout")]
        timeout: f64,
        /// Replicas of the stream and the body bucket when this target creates
        /// them (default 1; 3 on a 3-node cluster).
        #[serde(default = "one")]
        replicas: usize,
    },
    /// `kind = "webhook"`: a signed HTTP POST (Standard Webhooks 1.0).
    Webhook {
        /// `http://host:port/path` or `https://host:port/path`.
        url: String,
        /// The signing secret, `whsec_<base64 of 24 to 64 random octets>`.
        secret: String,
        /// As for `maildir`.
        #[serde(default = "yes")]
        required: bool,
        /// Seconds one POST may take, connection and answer (default 30).
        #[serde(default = "webhook_timeout")]
        timeout: f64,
        /// Seconds before the spool's first retry (default 5); it doubles.
        #[serde(default = "webhook_retry_initial")]
        retry_initial: f64,
        /// Longest wait between retries, in seconds (default 600).
        #[serde(default = "webhook_retry_max")]
        retry_max: f64,
        /// Seconds after acceptance a message is still retried (default
        /// 86400); then it is a dead letter.
        #[serde(default = "webhook_retry_for")]
        retry_for: f64,
        /// POSTs in flight at once (default 64).
        #[serde(default = "webhook_max_concurrency")]
        max_concurrency: usize,
        /// A PEM file of CA certificates an `https://` endpoint's certificate
        /// may also chain to (a private CA), besides the system's.
        #[serde(default)]
        tls_ca: Option<PathBuf>,
    },
}

impl DeliverConfig {
    /// Whether the reply to the client waits for this target.
    pub fn required(&self) -> bool {
        match self {
            Self::Maildir { required, .. }
            | Self::Lmtp { required, .. }
            | Self::Nats { required, .. }
            | Self::Webhook { required, .. } => *required,
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

fn webhook_timeout() -> f64 {
    30.0
}

fn webhook_retry_initial() -> f64 {
    5.0
}

fn webhook_retry_max() -> f64 {
    600.0
}

fn webhook_retry_for() -> f64 {
    86_400.0
}

fn webhook_max_concurrency() -> usize {
    64
}
