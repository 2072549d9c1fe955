//! The login side of the lockout (see the module documentation of [`super`] for the
//! design): which client networks a login is refused from, the growing delay of a
//! login under attack, the marks of recent successful logins, and the mapping of a
//! client address to the network it is counted as. The session asks these; the
//! counting itself is the stores' business.

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use super::{Lockout, Policy, Subject};

/// The longest delay a failed or suspect AUTH is answered after.
pub const MAX_AUTH_DELAY: Duration = Duration::from_secs(30);

/// The network `addr` is counted as: an IPv4 address (or IPv4-mapped IPv6) as
/// itself; an IPv6 address cut to its first `ipv6_prefix_length` bits (at most 128;
/// 0 puts every IPv6 client in one network). One IPv6 client usually holds a whole
/// /64, so counting single IPv6 addresses would count nothing.
pub fn client_network(addr: IpAddr, ipv6_prefix_length: u8) -> IpAddr {
    match addr.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u32::from(ipv6_prefix_length.min(128));
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
        v4 @ IpAddr::V4(_) => v4,
    }
}

/// The marker a hook leaves (through `Context::count_failure`) to have its refusal
/// counted toward the lockout; the session takes it after each hook.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HookCountedFailure;

/// What recording a failed AUTH found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoginFailure {
    /// The client network is now refused this login.
    pub refused_from_client: bool,
    /// Failed AUTHs for the login from all networks within the period.
    pub login_failures: u32,
}

impl Lockout {
    /// Whether an AUTH as `login` from `client` (a network from [`client_network`]) is
    /// refused whatever the password: that network reached the limit of failures for
    /// that login and has not authenticated as it within the period.
    pub async fn login_refused(&self, login: &str, client: IpAddr) -> bool {
        self.is_locked(&login_from(login, client)).await
            && !self.authenticated_recently(login, client).await
    }

    /// Whether `client` authenticated as `login` within the period.
    pub async fn authenticated_recently(&self, login: &str, client: IpAddr) -> bool {
        self.is_locked(&authenticated(login, client)).await
    }

    /// How long to wait before checking an AUTH as `login` from `client`: nothing
    /// unless the login is under attack (at least `max_failures` failures from all
    /// networks within the period) and `client` has not authenticated as it recently;
    /// then `base` doubled once per failure from the limit on, at most
    /// [`MAX_AUTH_DELAY`]. Nothing when locking is off (`max_failures = 0`).
    pub async fn login_delay(&self, login: &str, client: IpAddr, base: Duration) -> Duration {
        let policy = self.policy();
        if policy.max_failures == 0 {
            return Duration::ZERO;
        }
        let failures = self.status(&Subject::login(login)).await.failures;
        if failures < policy.max_failures || self.authenticated_recently(login, client).await {
            return Duration::ZERO;
        }
        attack_delay(base, failures - policy.max_failures)
    }

    /// Counts a failed AUTH as `login` from `client`, for the pair and for the login
    /// over all networks (which never locks it: see the module documentation). Logs
    /// a warning (remote network and login) when the pair is locked.
    pub async fn record_login_failure(&self, login: &str, client: IpAddr) -> LoginFailure {
        let pair = self.record_failure(&login_from(login, client)).await;
        let counting_only = Policy::new(0, self.policy().period);
        let everywhere = self
            .record_failure_with(&Subject::login(login), &counting_only)
            .await;
        let refused_from_client = pair.locked && !self.authenticated_recently(login, client).await;
        if refused_from_client {
            tracing::warn!(
                remote = %client,
                login = ?login,
                failures = pair.failures,
                "login locked out for this client after repeated failures"
            );
        }
        let max = self.policy().max_failures;
        if max > 0 && everywhere.failures == max {
            tracing::warn!(
                login = ?login,
                failures = everywhere.failures,
                "login under attack: AUTH for it from other clients is delayed"
            );
        }
        LoginFailure {
            refused_from_client,
            login_failures: everywhere.failures,
        }
    }

    /// Notes that `client` authenticated as `login`: it is trusted for that login for
    /// the period (never refused it, never delayed), and its failure count for the
    /// login starts over.
    pub async fn record_login_success(&self, login: &str, client: IpAddr) {
        let mark = Policy::new(1, self.policy().period);
        self.record_failure_with(&authenticated(login, client), &mark)
            .await;
        self.clear(&login_from(login, client)).await;
    }
}

fn login_from(login: &str, client: IpAddr) -> Subject {
    Subject::LoginFrom {
        login: login.to_owned(),
        client,
    }
}

fn authenticated(login: &str, client: IpAddr) -> Subject {
    Subject::Authenticated {
        login: login.to_owned(),
        client,
    }
}

/// `base` × 2^(`over` + 1), at most [`MAX_AUTH_DELAY`].
pub(crate) fn attack_delay(base: Duration, over: u32) -> Duration {
    let doublings = over.saturating_add(1).min(16);
    base.saturating_mul(1 << doublings).min(MAX_AUTH_DELAY)
}
