//! Lockout after repeated failures: the seed's `max_failed_msgs_per_period`, made real.
//!
//! Failures are counted per [`Subject`] in a *fixed window* of [`Policy::period`] that
//! starts at the subject's first failure. When the count within the window reaches
//! [`Policy::max_failures`], the subject is locked for [`Policy::period`]; every further
//! failure counted while at or over the limit starts the lock period again. When the
//! window ends, the count starts from zero; a lock ends on its own when its period is
//! over, or at once through [`Lockout::clear`]. `max_failures = 0` turns locking off.
//!
//! # What is counted, and who is locked
//!
//! - **The client network** ([`Subject::client`]): an IPv4 address, or the IPv6 prefix
//!   of `ipv6_prefix_length` bits (default 64: one IPv6 client usually holds a whole
//!   /64). A failed AUTH counts, and a MAIL/RCPT/DATA refusal counts when the hook that
//!   refused called `Context::count_failure` (a hook's own policy refusal, e.g. "must
//!   authenticate", is not abuse and does not count unless the hook says so). A locked
//!   network is refused at connect (421) and in an open session (450, closed). Clients
//!   in `per_ip_limit_exceptions` (loopback by default: local webmail, content filters)
//!   are never locked out by network, as Postfix exempts `$mynetworks`; the login
//!   protection below still applies to them.
//! - **A login from one client network** ([`Subject::LoginFrom`]): failed AUTHs for
//!   one login from one network. At the limit that network is refused that login (the
//!   same 535 as a wrong password, even with the right one) — unless it authenticated
//!   as that login within the period ([`Subject::Authenticated`]): a client that
//!   proved it knows the password is never locked out of its own login.
//! - **A login from everywhere** ([`Subject::Login`]): failed AUTHs for the login from
//!   any network. It never locks the login (that would let anyone lock its owner out,
//!   CWE-645); at the limit the login is *under attack*, and every AUTH for it from a
//!   network that has not authenticated as it recently is answered only after a delay
//!   that doubles with each further failure (`auth_failure_delay` × 2, × 4, … up to
//!   30 s; see [`Lockout::login_delay`]). The delay comes *before* the password is
//!   checked, so a guesser cannot cut it short by hanging up early, while the owner on
//!   a network already trusted is not slowed and the owner on a new network waits once
//!   and gets in.
//!
//! The counts live in a [`LockoutStore`]:
//! - [`MemoryStore`] (the default): in-process, bounded, entries expire, O(1) per call;
//! - [`RedisStore`] (`lockout_store = "redis://127.0.0.1:6379/"`): shared, so several
//!   receivers on one Redis see each other's failures.
//!
//! The server talks to the store through [`Lockout`], which **fails open**: when the
//! store errs (Redis down, slow, …) the error is logged (rate-limited), counted in
//! [`Lockout::store_errors`], and the answer is "not locked", so mail keeps flowing.
//! A Redis outage therefore disables the lockout for its duration; it never stops
//! receiving.

mod login;
mod memory;
mod redis;

#[cfg(test)]
mod login_tests;
#[cfg(test)]
mod memory_tests;
#[cfg(test)]
mod redis_tests;
#[cfg(test)]
mod store_tests;

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use self::login::{HookCountedFailure, LoginFailure, MAX_AUTH_DELAY, client_network};
pub use self::memory::{Clock, MemoryStore};
pub use self::redis::RedisStore;

/// The longest period honoured; longer ones are shortened to it (about 34 years).
pub const MAX_PERIOD: Duration = Duration::from_millis(1 << 40);

/// How often at most [`Lockout`] logs store errors (the first one is always logged).
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// What is counted: a client network, a login, or a login from one client network.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A client address or network; build it with [`Subject::client`] (IPv6 counted per
    /// prefix) or [`Subject::ip`] (per address), so IPv4-mapped IPv6 addresses count as
    /// the IPv4 address they carry.
    Ip(IpAddr),
    /// A login (AUTH user) name, exactly as given, over all clients. Pass the name the
    /// credential store resolves (e.g. lower-cased when user names are
    /// case-insensitive), or one user can be attacked under several spellings.
    Login(String),
    /// Failed AUTHs for `login` from one client network (see [`Subject::client`]).
    LoginFrom {
        /// The login name, as for [`Subject::Login`].
        login: String,
        /// The client network, as [`client_network`] makes it.
        client: IpAddr,
    },
    /// A mark that `client` authenticated as `login` within the period ("locked" while
    /// the mark lasts).
    Authenticated {
        /// The login name, as for [`Subject::Login`].
        login: String,
        /// The client network, as [`client_network`] makes it.
        client: IpAddr,
    },
}

impl Subject {
    /// The subject for one client address; `::ffff:a.b.c.d` becomes `a.b.c.d`.
    pub fn ip(addr: IpAddr) -> Self {
        Subject::Ip(addr.to_canonical())
    }

    /// The subject for a client's network: the IPv4 address, or the IPv6 address's
    /// first `ipv6_prefix_length` bits (see [`client_network`]).
    pub fn client(addr: IpAddr, ipv6_prefix_length: u8) -> Self {
        Subject::Ip(client_network(addr, ipv6_prefix_length))
    }

    /// The subject for a login name.
    pub fn login(name: impl Into<String>) -> Self {
        Subject::Login(name.into())
    }
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subject::Ip(ip) => write!(f, "ip {ip}"),
            Subject::Login(name) => write!(f, "login {name:?}"),
            Subject::LoginFrom { login, client } => write!(f, "login {login:?} from {client}"),
            Subject::Authenticated { login, client } => {
                write!(f, "authenticated as {login:?} from {client}")
            }
        }
    }
}

/// When to lock: `max_failures` failures within `period` lock the subject for `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The seed's `max_failed_msgs_per_period`, default 3. `0` never locks (failures are
    /// still counted).
    pub max_failures: u32,
    /// `lockout_period`, default 600 s: both the counting window and the lock duration.
    /// Shorter than 1 ms counts as 1 ms; longer than [`MAX_PERIOD`] as [`MAX_PERIOD`].
    pub period: Duration,
}

impl Policy {
    /// The default `max_failed_msgs_per_period`.
    pub const DEFAULT_MAX_FAILURES: u32 = 3;
    /// The default `lockout_period`.
    pub const DEFAULT_PERIOD: Duration = Duration::from_secs(600);

    /// A policy of `max_failures` failures per `period`.
    pub fn new(max_failures: u32, period: Duration) -> Self {
        Policy {
            max_failures,
            period,
        }
    }

    /// The period the stores use: `period` clamped to `1 ms ..= MAX_PERIOD`.
    pub(crate) fn effective_period(&self) -> Duration {
        self.period.clamp(Duration::from_millis(1), MAX_PERIOD)
    }

    /// Whether `failures` counted in the window lock the subject.
    pub(crate) fn locks_at(&self, failures: u32) -> bool {
        self.max_failures > 0 && failures >= self.max_failures
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy::new(Self::DEFAULT_MAX_FAILURES, Self::DEFAULT_PERIOD)
    }
}

/// A subject's state in a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Status {
    /// Failures counted in the current window (0 when the window is over).
    pub failures: u32,
    /// Locked now.
    pub locked: bool,
}

/// Why a store could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The `lockout_store` setting is not `memory` nor a Redis URL the client accepts.
    /// The setting itself is not repeated: it may hold a password.
    #[error("invalid lockout_store: {0}")]
    InvalidConfig(String),
    /// The store did not answer in time.
    #[error("lockout store did not answer within {0:?}")]
    Timeout(Duration),
    /// Not connected, and the last connection attempt was too recent to try again.
    #[error("lockout store unavailable: {0}")]
    Unavailable(String),
    /// Redis answered with an error, or the connection failed.
    #[error("lockout store (redis): {0}")]
    Redis(#[source] ::redis::RedisError),
    /// The store answered something unexpected.
    #[error("lockout store: unexpected reply: {0}")]
    Protocol(String),
    /// Any other failure, for stores outside this module.
    #[error("lockout store: {0}")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The future a [`LockoutStore`] method returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A place that counts failures; object-safe (kept as `Arc<dyn LockoutStore>`).
pub trait LockoutStore: Send + Sync + 'static {
    /// Counts one failure of `subject`; when the count within the window reaches
    /// `policy.max_failures` the subject is locked for `policy.period` (again at each
    /// failure at or over the limit). Returns the status after counting.
    fn record_failure<'a>(
        &'a self,
        subject: &'a Subject,
        policy: &'a Policy,
    ) -> StoreFuture<'a, Status>;

    /// The current status of `subject` (changes nothing).
    fn status<'a>(&'a self, subject: &'a Subject) -> StoreFuture<'a, Status>;

    /// Forgets `subject`: unlocks it and resets its count.
    fn clear<'a>(&'a self, subject: &'a Subject) -> StoreFuture<'a, ()>;
}

/// Builds the store named by the `lockout_store` setting: `None`, `""` or `"memory"` →
/// a [`MemoryStore`] of [`MemoryStore::DEFAULT_CAPACITY`] entries; a `redis://`,
/// `rediss://`, `redis+unix://` or `unix://` URL → a [`RedisStore`] with
/// [`RedisStore::DEFAULT_TIMEOUT`]. Does not connect: a Redis that is down now is not an
/// error here.
pub fn store_from_config(setting: Option<&str>) -> Result<Arc<dyn LockoutStore>, StoreError> {
    let setting = setting.map(str::trim).unwrap_or("");
    if setting.is_empty() || setting.eq_ignore_ascii_case("memory") {
        return Ok(Arc::new(MemoryStore::new(MemoryStore::DEFAULT_CAPACITY)));
    }
    let lower = setting.to_ascii_lowercase();
    let is_redis = ["redis://", "rediss://", "redis+unix://", "unix://"]
        .iter()
        .any(|scheme| lower.starts_with(scheme));
    if !is_redis {
        return Err(StoreError::InvalidConfig(
            "expected \"memory\" or a redis:// URL".to_owned(),
        ));
    }
    Ok(Arc::new(RedisStore::new(
        setting,
        RedisStore::DEFAULT_TIMEOUT,
    )?))
}

/// The lockout as the server uses it. It **fails open**: a store error is logged
/// (the first one, then at most one line per 10 s with the number left unlogged),
/// counted in [`Lockout::store_errors`], and answered as "not locked", so receiving goes
/// on. Every store call is also cut off after [`Lockout::call_timeout`] whatever the
/// store, so a stuck store cannot hold a session.
pub struct Lockout {
    store: Arc<dyn LockoutStore>,
    policy: Policy,
    call_timeout: Duration,
    store_errors: AtomicU64,
    /// Store errors not logged yet (rate limit).
    unlogged: AtomicU64,
    /// Milliseconds since `created` of the last logged error, plus one (0: none yet).
    last_log: AtomicU64,
    created: Instant,
}

impl std::fmt::Debug for Lockout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lockout")
            .field("policy", &self.policy)
            .field("call_timeout", &self.call_timeout)
            .field("store_errors", &self.store_errors())
            .finish_non_exhaustive()
    }
}

impl Lockout {
    /// The default for [`Lockout::with_call_timeout`].
    pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(2);

    /// A lockout counting in `store` under `policy`.
    pub fn new(store: Arc<dyn LockoutStore>, policy: Policy) -> Self {
        Lockout {
            store,
            policy,
            call_timeout: Self::DEFAULT_CALL_TIMEOUT,
            store_errors: AtomicU64::new(0),
            unlogged: AtomicU64::new(0),
            last_log: AtomicU64::new(0),
            created: Instant::now(),
        }
    }

    /// A lockout with the in-memory store of default capacity.
    pub fn in_memory(policy: Policy) -> Self {
        Self::new(
            Arc::new(MemoryStore::new(MemoryStore::DEFAULT_CAPACITY)),
            policy,
        )
    }

    /// Sets the limit on each store call, after which it counts as a store error (the
    /// store's own timeout, e.g. [`RedisStore`]'s, is normally shorter).
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// The policy in force.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// The limit on each store call.
    pub fn call_timeout(&self) -> Duration {
        self.call_timeout
    }

    /// Whether `subject` is locked now; `false` when the store errs.
    pub async fn is_locked(&self, subject: &Subject) -> bool {
        self.status(subject).await.locked
    }

    /// The status of `subject`; the default (no failures, not locked) when the store errs.
    pub async fn status(&self, subject: &Subject) -> Status {
        let result = self.guard(self.store.status(subject)).await;
        self.or_open(result).unwrap_or_default()
    }

    /// Counts one failure of `subject` and returns its status after that; the default
    /// (no failures, not locked) when the store errs.
    pub async fn record_failure(&self, subject: &Subject) -> Status {
        self.record_failure_with(subject, &self.policy).await
    }

    /// [`Lockout::record_failure`] under another policy (of the same period, so the
    /// memory store's expiry order holds).
    async fn record_failure_with(&self, subject: &Subject, policy: &Policy) -> Status {
        let result = self.guard(self.store.record_failure(subject, policy)).await;
        self.or_open(result).unwrap_or_default()
    }

    /// Forgets `subject` (unlocks it, resets its count); a store error is only logged.
    pub async fn clear(&self, subject: &Subject) {
        let result = self.guard(self.store.clear(subject)).await;
        let _ = self.or_open(result);
    }

    /// Store errors so far (the fail-open counter, a metric).
    pub fn store_errors(&self) -> u64 {
        self.store_errors.load(Ordering::Relaxed)
    }

    async fn guard<T>(&self, call: StoreFuture<'_, T>) -> Result<T, StoreError> {
        match tokio::time::timeout(self.call_timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Timeout(self.call_timeout)),
        }
    }

    /// Passes a success through; counts and (rate-limited) logs an error.
    fn or_open<T>(&self, result: Result<T, StoreError>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.store_errors.fetch_add(1, Ordering::Relaxed);
                self.log_error(&error);
                None
            }
        }
    }

    fn log_error(&self, error: &StoreError) {
        let now = u64::try_from(self.created.elapsed().as_millis())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1);
        let last = self.last_log.load(Ordering::Relaxed);
        let interval = u64::try_from(LOG_INTERVAL.as_millis()).unwrap_or(u64::MAX);
        let due = last == 0 || now.saturating_sub(last) >= interval;
        if due
            && self
                .last_log
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let unlogged = self.unlogged.swap(0, Ordering::Relaxed);
            tracing::warn!(
                error = %error,
                unlogged_since_last = unlogged,
                total = self.store_errors(),
                "lockout store failed; failing open (treated as not locked)"
            );
        } else {
            self.unlogged.fetch_add(1, Ordering::Relaxed);
        }
    }
}
