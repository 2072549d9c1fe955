//! ARC (RFC 8617) verification of a received message, for `auth.rs`.
//!
//! `mail-auth` compiles its ARC code only with its `arc` feature, which this crate
//! turns on through its own `arc` feature (on by default). Built without it, a
//! message without ARC sets reports `arc=none` as it would anyway, one with ARC
//! sets `arc=neutral (ARC verification not built in)`.

use std::net::IpAddr;

use mail_auth::AuthenticatedMessage;
use tokio::time::Instant;

use super::Dns;

impl Dns {
    /// The ARC result word and its `Authentication-Results` part (`;\r\n\tarc=…`).
    #[cfg(feature = "arc")]
    pub(super) async fn arc(
        &self,
        deadline: Instant,
        message: &AuthenticatedMessage<'_>,
        host: &str,
        ip: IpAddr,
    ) -> (String, String) {
        use mail_auth::{ArcOutput, AuthenticationResults, DkimResult};

        let verify = self
            .inner
            .auth
            .verify_arc(self.inner.caches.parameters(message));
        let output = if message.has_arc_errors || message.ams_headers.is_empty() {
            // Decided without a lookup (no ARC set, or a broken one): no timer.
            verify.await
        } else {
            tokio::time::timeout_at(deadline, verify)
                .await
                .unwrap_or_else(|_| {
                    ArcOutput::default()
                        .with_result(DkimResult::TempError(super::auth::timed_out()))
                })
        };
        let part = AuthenticationResults::new(host).with_arc_result(&output, ip);
        (
            super::auth::dkim_word(output.result()).into(),
            super::auth::tail(host, &part),
        )
    }

    /// Without ARC support: `none` when the message has no ARC set, else `neutral`.
    #[cfg(not(feature = "arc"))]
    pub(super) async fn arc(
        &self,
        _deadline: Instant,
        message: &AuthenticatedMessage<'_>,
        _host: &str,
        ip: IpAddr,
    ) -> (String, String) {
        let sealed = message
            .raw_parsed_headers()
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case(b"ARC-Seal"));
        let (word, comment) = if sealed {
            ("neutral", " (ARC verification not built in)")
        } else {
            ("none", "")
        };
        // As `mail-auth` writes it: IPv6 quoted, since `:` is not allowed in a token.
        let ip = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("\"{v6}\""),
        };
        (
            word.into(),
            format!(";\r\n\tarc={word}{comment} smtp.remote-ip={ip}"),
        )
    }
}
