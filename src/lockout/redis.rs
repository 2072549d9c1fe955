//! The Redis [`LockoutStore`] (`lockout_store = "redis://127.0.0.1:6379/"`): several
//! receivers sharing one Redis see each other's failures.
//!
//! Keys, per subject:
//! - `net-receiver:fail:<kind>:<value>` — the failure count (`INCR`; `PEXPIRE period` on
//!   the first failure, which makes the fixed counting window);
//! - `net-receiver:lock:<kind>:<value>` — present while locked (`SET … PX period` at every
//!   failure that brings the count to the limit or beyond).
//!
//! `<kind>:<value>` is `ip:<address>` (`ip:192.0.2.7`, `ip:2001:db8::` for the /64 of
//! `2001:db8::1`; IPv4-mapped IPv6 already folded to IPv4 by [`Subject::client`]),
//! `login:<hex>` with the login name's UTF-8 bytes in lower-case hex
//! (`login:616c696365` for `alice`), so any name — with `:`, spaces, newlines,
//! non-ASCII — makes one safe, unambiguous key; `login-from:<hex>:<address>` and
//! `authenticated:<hex>:<address>` for a login from one client network.
//! Counting and locking run as one Lua script, so concurrent receivers cannot race.
//!
//! Connection: nothing is connected by [`RedisStore::new`]; the first call connects (in a
//! spawned task, so an attempt cut off by the caller's timeout still completes and is kept)
//! and later calls share a [`ConnectionManager`], which reconnects by itself after Redis
//! restarts. While Redis is unreachable a new connection is tried at most once per
//! second, and calls in between fail at once. Every call is bounded by the store's
//! timeout (default 500 ms), so a dead Redis costs at most that per check; errors are
//! returned, and [`super::Lockout`] fails open on them. If the connection keeps failing
//! for 10 s, it is dropped and made anew (covers failures the manager does not recover
//! from by itself, e.g. a changed password).

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script};

use super::{LockoutStore, Policy, Status, StoreError, StoreFuture, Subject};

/// Prefix of every key.
const PREFIX: &str = "net-receiver";
/// Least time between two attempts to make a new connection.
const CONNECT_INTERVAL: Duration = Duration::from_secs(1);
/// After failing this long without a success, the connection is made anew.
const REBUILD_AFTER: Duration = Duration::from_secs(10);

/// KEYS[1] count, KEYS[2] lock; ARGV[1] max failures (0: never lock), ARGV[2] period ms.
/// Returns {failures, locked}.
const RECORD_SCRIPT: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 or redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
local max = tonumber(ARGV[1])
if max > 0 and n >= max then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
end
return {n, redis.call('EXISTS', KEYS[2])}
";

/// KEYS[1] count, KEYS[2] lock. Returns {failures, locked}.
const STATUS_SCRIPT: &str = r"
local n = tonumber(redis.call('GET', KEYS[1])) or 0
return {n, redis.call('EXISTS', KEYS[2])}
";

/// Redis store: failures counted in Redis, shared by every receiver that uses the same
/// server (see the module documentation for keys and connection handling).
#[derive(Clone)]
pub struct RedisStore {
    shared: Arc<Shared>,
}

struct Shared {
    client: Client,
    config: ConnectionManagerConfig,
    timeout: Duration,
    record: Script,
    status: Script,
    state: Mutex<State>,
    /// Held while a new connection is being made, so callers wait for one attempt.
    connecting: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    manager: Option<ConnectionManager>,
    last_attempt: Option<Instant>,
    /// Start of the current run of failed calls.
    failing_since: Option<Instant>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the URL: it may hold a password.
        f.debug_struct("RedisStore")
            .field("timeout", &self.shared.timeout)
            .field("connected", &self.shared.state().manager.is_some())
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// The default per-call timeout.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);

    /// A store on the Redis at `url` (`redis://[user:password@]host[:port][/db]`, or the
    /// other forms the `redis` crate accepts), each call bounded by `timeout`. Does not
    /// connect, so a Redis that is down now is no error; only a URL the client rejects
    /// fails (its error does not repeat the URL). Needs a Tokio runtime with time enabled
    /// only when called.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, StoreError> {
        let client = Client::open(url).map_err(|error| {
            // The client's URL errors are fixed texts: they do not repeat the URL.
            StoreError::InvalidConfig(format!("not a usable Redis URL: {error}"))
        })?;
        let timeout = timeout.max(Duration::from_millis(1));
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(timeout)
            .set_response_timeout(timeout);
        Ok(RedisStore {
            shared: Arc::new(Shared {
                client,
                config,
                timeout,
                record: Script::new(RECORD_SCRIPT),
                status: Script::new(STATUS_SCRIPT),
                state: Mutex::new(State::default()),
                connecting: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.shared.timeout
    }

    /// The Redis key holding `subject`'s failure count.
    pub fn failure_key(subject: &Subject) -> String {
        format!("{PREFIX}:fail:{}", key_suffix(subject))
    }

    /// The Redis key present while `subject` is locked.
    pub fn lock_key(subject: &Subject) -> String {
        format!("{PREFIX}:lock:{}", key_suffix(subject))
    }

    /// Runs `call` on a connection, within the timeout, keeping track of failures.
    async fn run<T, F, Fut>(&self, call: F) -> Result<T, StoreError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let timeout = self.shared.timeout;
        let attempt = async {
            let manager = self.shared.manager().await?;
            call(manager).await
        };
        let result = match tokio::time::timeout(timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Timeout(timeout)),
        };
        self.shared.note(result.is_ok());
        result
    }
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Nothing panics while the lock is held; a poisoned lock still holds sound data.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes a call's outcome; after failing for [`REBUILD_AFTER`], drops the connection.
    fn note(&self, ok: bool) {
        let mut state = self.state();
        if ok {
            state.failing_since = None;
            return;
        }
        let now = Instant::now();
        let since = *state.failing_since.get_or_insert(now);
        if now.duration_since(since) >= REBUILD_AFTER && state.manager.is_some() {
            tracing::info!("lockout store: Redis failing for {REBUILD_AFTER:?}; reconnecting anew");
            state.manager = None;
            state.failing_since = Some(now);
        }
    }

    /// The shared connection, connecting first when there is none.
    async fn manager(self: &Arc<Self>) -> Result<ConnectionManager, StoreError> {
        if let Some(manager) = self.state().manager.clone() {
            return Ok(manager);
        }
        let _connecting = self.connecting.lock().await;
        {
            let mut state = self.state();
            if let Some(manager) = state.manager.clone() {
                return Ok(manager);
            }
            let now = Instant::now();
            if state
                .last_attempt
                .is_some_and(|last| now.duration_since(last) < CONNECT_INTERVAL)
            {
                return Err(StoreError::Unavailable(
                    "not connected to Redis; last attempt failed".to_owned(),
                ));
            }
            state.last_attempt = Some(now);
        }
        // Spawned: if this caller gives up, the attempt still completes and is kept.
        let shared = Arc::clone(self);
        let task = tokio::spawn(async move {
            let made =
                ConnectionManager::new_with_config(shared.client.clone(), shared.config.clone())
                    .await;
            match made {
                Ok(manager) => {
                    shared.state().manager = Some(manager.clone());
                    tracing::info!("lockout store: connected to Redis");
                    Ok(manager)
                }
                Err(error) => Err(StoreError::Redis(error)),
            }
        });
        match task.await {
            Ok(result) => result,
            Err(join) => Err(StoreError::Unavailable(format!(
                "Redis connection task failed: {join}"
            ))),
        }
    }
}

impl LockoutStore for RedisStore {
    fn record_failure<'a>(
        &'a self,
        subject: &'a Subject,
        policy: &'a Policy,
    ) -> StoreFuture<'a, Status> {
        let max = policy.max_failures;
        let period_ms = u64::try_from(policy.effective_period().as_millis()).unwrap_or(u64::MAX);
        Box::pin(self.run(move |mut manager| async move {
            let reply: Vec<i64> = self
                .shared
                .record
                .key(Self::failure_key(subject))
                .key(Self::lock_key(subject))
                .arg(max)
                .arg(period_ms)
                .invoke_async(&mut manager)
                .await
                .map_err(StoreError::Redis)?;
            status_from(&reply)
        }))
    }

    fn status<'a>(&'a self, subject: &'a Subject) -> StoreFuture<'a, Status> {
        Box::pin(self.run(move |mut manager| async move {
            let reply: Vec<i64> = self
                .shared
                .status
                .key(Self::failure_key(subject))
                .key(Self::lock_key(subject))
                .invoke_async(&mut manager)
                .await
                .map_err(StoreError::Redis)?;
            status_from(&reply)
        }))
    }

    fn clear<'a>(&'a self, subject: &'a Subject) -> StoreFuture<'a, ()> {
        Box::pin(self.run(move |mut manager| async move {
            redis::cmd("DEL")
                .arg(Self::failure_key(subject))
                .arg(Self::lock_key(subject))
                .query_async::<i64>(&mut manager)
                .await
                .map(|_| ())
                .map_err(StoreError::Redis)
        }))
    }
}

/// `<kind>:<value>` of the keys (see the module documentation).
fn key_suffix(subject: &Subject) -> String {
    match subject {
        Subject::Ip(ip) => format!("ip:{ip}"),
        Subject::Login(name) => format!("login:{}", hex(name)),
        Subject::LoginFrom { login, client } => format!("login-from:{}:{client}", hex(login)),
        Subject::Authenticated { login, client } => {
            format!("authenticated:{}:{client}", hex(login))
        }
    }
}

/// The UTF-8 bytes of `name` in lower-case hex.
fn hex(name: &str) -> String {
    let mut out = String::with_capacity(2 * name.len());
    for byte in name.as_bytes() {
        // Writing to a String cannot fail.
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// `{failures, locked}` from a script's reply.
fn status_from(reply: &[i64]) -> Result<Status, StoreError> {
    match reply {
        [failures, locked] => Ok(Status {
            failures: u32::try_from((*failures).max(0)).unwrap_or(u32::MAX),
            locked: *locked != 0,
        }),
        other => Err(StoreError::Protocol(format!(
            "expected {{failures, locked}}, got {other:?}"
        ))),
    }
}
