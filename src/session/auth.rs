//! AUTH and the lockout for one session: the credentials checked through the
//! `authenticate` hook under the login rules of [`crate::lockout`] (235, 535, or
//! 454 when the hook cannot tell now), and failures counted against the client's
//! network.

use super::{Session, internal_error, layers, prohibited};
use crate::config::FailureKind;
use crate::lockout::{self, Subject};
use crate::policy::{Stage, Verdict};
use crate::protocol::{Credentials, Reply};
use crate::receiver::{Context, Receiver};
use futures_util::FutureExt as _;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

impl<R: Receiver> Session<R> {
    pub(super) fn ip_subject(&self) -> Subject {
        Subject::Ip(self.client_network())
    }

    /// The client's network as the lockout counts it (IPv6 per prefix).
    pub(super) fn client_network(&self) -> std::net::IpAddr {
        let ip = self.mail.remote_ip.parse();
        let ip = ip.unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        lockout::client_network(ip, self.settings.ipv6_prefix_length)
    }

    /// Clients in `per_ip_limit_exceptions` are never locked out by IP.
    pub(super) fn exempt_from_ip_lockout(&self) -> bool {
        let ip = self.mail.remote_ip.parse();
        ip.is_ok_and(|ip| {
            self.settings
                .per_ip_limit_exceptions
                .iter()
                .any(|net| net.contains(ip))
        })
    }

    /// The machine closed the session for too many errors: counted against the
    /// client (`abuse` in `lockout_counts`) unless it is exempt.
    pub async fn protocol_abuse(&mut self) {
        tracing::info!(name: "too_many_errors", remote = %self.mail.remote_ip, "closed for too many errors");
        self.count_failure(FailureKind::Abuse).await;
    }

    /// Counts a failure of `kind` against the client's IP (once per transaction for
    /// MAIL/RCPT/DATA; never for `per_ip_limit_exceptions`); true when the client is
    /// now locked out.
    pub(super) async fn count_failure(&mut self, kind: FailureKind) -> bool {
        let Some(lockout) = self.services.lockout.clone() else {
            return false;
        };
        if !self.settings.lockout_counts.contains(&kind) || self.exempt_from_ip_lockout() {
            return false;
        }
        if kind == FailureKind::Mail || kind == FailureKind::Rcpt || kind == FailureKind::Data {
            if self.transaction_failure_counted {
                return false;
            }
            self.transaction_failure_counted = true;
        }
        let status = lockout.record_failure(&self.ip_subject()).await;
        if status.locked {
            tracing::warn!(name: "lockout", remote = %self.mail.remote_ip, failures = status.failures, "locked out");
            if let Some(m) = self.metrics() {
                m.lockout();
            }
            self.mail.prohibited = true;
        }
        status.locked
    }

    /// AUTH (the lockout's rules are in [`crate::lockout`]): a login refused from
    /// this client fails even with the right password (same 535, no oracle); a login
    /// under attack is checked only after its delay; each failure is counted for
    /// the IP and the login and answered later than the one before.
    pub(super) async fn auth(&mut self, credentials: Credentials) -> Reply {
        let name = credentials.username.clone();
        let guard = self
            .services
            .lockout
            .clone()
            .map(|l| (l, self.client_network()));
        let mut login_refused = false;
        if let Some((lockout, client)) = &guard {
            let base = self.settings.auth_failure_delay;
            tokio::time::sleep(lockout.login_delay(&name, *client, base).await).await;
            login_refused = lockout.login_refused(&name, *client).await;
        }
        // The check runs even for a refused login, so its answer takes as long.
        let remote = self.mail.remote_ip.clone();
        let mechanism = credentials.mechanism.as_str();
        let verified = match hook!(self, authenticate, &credentials) {
            Ok(Ok(verified)) => verified,
            // Neither a success nor a failure: nothing counted, no delay.
            Ok(Err(unavailable)) => {
                tracing::warn!(%remote, user = %crate::logging::Escaped(&credentials.username), mechanism, "AUTH temporarily unavailable");
                return unavailable.into();
            }
            Err(_) => return internal_error(),
        };
        let accepted = verified && !login_refused;
        if let Some(m) = self.metrics() {
            m.auth(accepted);
        }
        if accepted {
            if let Some((lockout, client)) = &guard {
                lockout.record_login_success(&name, *client).await;
            }
            // The layers see verified logins only; a refusal there is policy,
            // not a failed password, and is not counted.
            let outcome = layers!(self, Stage::Auth, auth, &name, mechanism);
            if let Some(refusal) = outcome.refusal {
                tracing::info!(%remote, user = %crate::logging::Escaped(&name), mechanism, "AUTH refused by policy");
                return refusal;
            }
            tracing::info!(name: "auth_succeeded", %remote, user = %crate::logging::Escaped(&credentials.username), mechanism, "AUTH succeeded");
            self.mail.authenticated = Some(credentials.username);
            return outcome.answer(Reply::new(235, (2, 7, 0), "Authentication successful"));
        }
        tracing::warn!(name: "auth_failed", %remote, user = %crate::logging::Escaped(&credentials.username), mechanism, "AUTH failed");
        self.failed_auths = self.failed_auths.saturating_add(1);
        let mut ip_locked = false;
        if let Some((lockout, client)) = &guard
            && self.settings.lockout_counts.contains(&FailureKind::Auth)
        {
            lockout.record_login_failure(&name, *client).await;
            ip_locked = self.count_failure(FailureKind::Auth).await;
        }
        let doublings = self.failed_auths.saturating_sub(1).min(5);
        let delay = (self.settings.auth_failure_delay * 2u32.pow(doublings))
            .min(std::time::Duration::from_secs(30));
        tokio::time::sleep(delay).await;
        if ip_locked {
            return prohibited(&remote);
        }
        Reply::new(535, (5, 7, 8), "Authentication credentials invalid")
    }
}
