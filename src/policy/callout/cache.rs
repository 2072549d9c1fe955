//! The callout cache, like Postfix's verify(8) database: results per address
//! (`pass` for `callout_positive_ttl`, `fail`/`error` for
//! `callout_negative_ttl`) and per domain (`accept_all` for
//! `callout_positive_ttl`; "no exchanger reachable" for `callout_tempfail_ttl`),
//! in memory and, with `callout_cache = "redis://…"`, in Redis too so that
//! several receivers share them. A `tempfail` from `RCPT` (greylisting, a full
//! disk) is not kept: the next mail asks again.
//!
//! Keys are `<target>|<address>` and `<target>|@<domain>` in lower case, where
//! the target is `mx` or the `callout_target` address; in Redis they are
//! prefixed with `net-receiver:callout:` and hold the result as JSON with a
//! `PX` expiry. Redis is asked after memory, each call bounded by
//! [`REDIS_TIMEOUT`]; when it fails the cache is memory only for that call
//! (logged at most once a minute): a cache is never a reason to refuse mail.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::mail::Callout;

/// Entries kept in memory; when full, expired ones go, then arbitrary ones.
pub const MEMORY_CAPACITY: usize = 100_000;
/// The longest one Redis call may take.
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(500);
/// Prefix of every Redis key.
const PREFIX: &str = "net-receiver:callout:";
/// Least time between two logged Redis failures.
const LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Memory, and optionally Redis.
pub struct CalloutCache {
    memory: Mutex<HashMap<String, (Callout, Instant)>>,
    redis: Option<RedisCache>,
}

impl std::fmt::Debug for CalloutCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CalloutCache")
            .field("redis", &self.redis.is_some())
            .finish_non_exhaustive()
    }
}

struct RedisCache {
    client: redis::Client,
    manager: tokio::sync::Mutex<Option<ConnectionManager>>,
    last_logged: Mutex<Option<Instant>>,
}

impl CalloutCache {
    /// A memory cache; with `redis_url`, backed by that Redis (nothing is
    /// connected yet; only a URL the client rejects is an error).
    pub fn new(redis_url: Option<&str>) -> Result<Self, String> {
        let redis = match redis_url {
            None => None,
            Some(url) => Some(RedisCache {
                client: redis::Client::open(url)
                    .map_err(|e| format!("not a usable Redis URL: {e}"))?,
                manager: tokio::sync::Mutex::new(None),
                last_logged: Mutex::new(None),
            }),
        };
        Ok(Self {
            memory: Mutex::new(HashMap::new()),
            redis,
        })
    }

    /// The cached result for `key`, marked `cached`.
    pub async fn get(&self, key: &str) -> Option<Callout> {
        let now = Instant::now();
        if let Some(found) = self.get_memory(key, now) {
            return Some(found);
        }
        let redis = self.redis.as_ref()?;
        let (found, ttl) = redis.get(key).await?;
        self.put_memory(key, found.clone(), ttl, now);
        Some(Callout {
            cached: true,
            ..found
        })
    }

    /// Keeps `result` under `key` for `ttl`.
    pub async fn put(&self, key: &str, result: &Callout, ttl: Duration) {
        let stored = Callout {
            cached: false,
            ..result.clone()
        };
        self.put_memory(key, stored.clone(), ttl, Instant::now());
        if let Some(redis) = &self.redis {
            redis.put(key, &stored, ttl).await;
        }
    }

    fn get_memory(&self, key: &str, now: Instant) -> Option<Callout> {
        let memory = self.memory.lock().unwrap_or_else(PoisonError::into_inner);
        let (found, until) = memory.get(key)?;
        (now < *until).then(|| Callout {
            cached: true,
            ..found.clone()
        })
    }

    fn put_memory(&self, key: &str, result: Callout, ttl: Duration, now: Instant) {
        let Some(until) = now.checked_add(ttl) else {
            return;
        };
        let mut memory = self.memory.lock().unwrap_or_else(PoisonError::into_inner);
        if memory.len() >= MEMORY_CAPACITY && !memory.contains_key(key) {
            memory.retain(|_, (_, until)| now < *until);
            while memory.len() >= MEMORY_CAPACITY {
                let Some(victim) = memory.keys().next().cloned() else {
                    break;
                };
                memory.remove(&victim);
            }
        }
        memory.insert(key.to_owned(), (result, until));
    }
}

impl RedisCache {
    async fn connection(&self) -> Option<ConnectionManager> {
        let mut manager = self.manager.lock().await;
        if let Some(connected) = manager.as_ref() {
            return Some(connected.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(REDIS_TIMEOUT)
            .set_response_timeout(REDIS_TIMEOUT);
        let made = tokio::time::timeout(
            REDIS_TIMEOUT,
            ConnectionManager::new_with_config(self.client.clone(), config),
        )
        .await;
        match made {
            Ok(Ok(connected)) => {
                *manager = Some(connected.clone());
                Some(connected)
            }
            Ok(Err(error)) => {
                self.log(&error.to_string());
                None
            }
            Err(_) => {
                self.log("no connection within 500 ms");
                None
            }
        }
    }

    async fn get(&self, key: &str) -> Option<(Callout, Duration)> {
        let mut connection = self.connection().await?;
        let mut pipe = redis::pipe();
        let full = format!("{PREFIX}{key}");
        pipe.get(&full).pttl(&full);
        let answer: Result<Result<(Option<String>, i64), _>, _> =
            tokio::time::timeout(REDIS_TIMEOUT, pipe.query_async(&mut connection)).await;
        match answer {
            Ok(Ok((Some(json), ttl_ms))) if ttl_ms > 0 => {
                let ttl = Duration::from_millis(u64::try_from(ttl_ms).unwrap_or(0));
                match serde_json::from_str::<Callout>(&json) {
                    Ok(found) => Some((found, ttl)),
                    Err(error) => {
                        self.log(&format!("unreadable cache entry: {error}"));
                        None
                    }
                }
            }
            Ok(Ok(_)) => None,
            Ok(Err(error)) => {
                self.log(&error.to_string());
                None
            }
            Err(_) => {
                self.log("no answer within 500 ms");
                None
            }
        }
    }

    async fn put(&self, key: &str, result: &Callout, ttl: Duration) {
        let Some(mut connection) = self.connection().await else {
            return;
        };
        let Ok(json) = serde_json::to_string(result) else {
            return;
        };
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut command = redis::cmd("SET");
        command
            .arg(format!("{PREFIX}{key}"))
            .arg(json)
            .arg("PX")
            .arg(ttl_ms);
        let done: Result<Result<(), _>, _> =
            tokio::time::timeout(REDIS_TIMEOUT, command.query_async(&mut connection)).await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err(error)) => self.log(&error.to_string()),
            Err(_) => self.log("no answer within 500 ms"),
        }
    }

    fn log(&self, what: &str) {
        let now = Instant::now();
        let mut last = self
            .last_logged
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.is_none_or(|at| now.saturating_duration_since(at) >= LOG_INTERVAL) {
            *last = Some(now);
            tracing::warn!("callout cache: Redis failed, using memory only: {what}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::CalloutResult;

    fn pass() -> Callout {
        Callout {
            result: CalloutResult::Pass,
            code: Some(250),
            text: "2.1.5 Ok".into(),
            host: Some("mx[192.0.2.1]:25".into()),
            cached: false,
        }
    }

    #[tokio::test]
    async fn a_kept_result_comes_back_marked_cached_until_it_expires() {
        let cache = CalloutCache::new(None).unwrap();
        assert_eq!(cache.get("mx|a@b").await, None);
        cache.put("mx|a@b", &pass(), Duration::from_secs(60)).await;
        let found = cache.get("mx|a@b").await.unwrap();
        assert!(found.cached);
        assert_eq!(found.result, CalloutResult::Pass);
        let now = Instant::now();
        assert!(cache.get_memory("mx|a@b", now).is_some());
        assert!(
            cache
                .get_memory("mx|a@b", now + Duration::from_secs(61))
                .is_none()
        );
    }

    #[test]
    fn memory_stays_bounded() {
        let cache = CalloutCache::new(None).unwrap();
        let now = Instant::now();
        for i in 0..MEMORY_CAPACITY + 5 {
            cache.put_memory(&format!("k{i}"), pass(), Duration::from_secs(60), now);
        }
        let len = cache.memory.lock().unwrap().len();
        assert!(len <= MEMORY_CAPACITY, "{len}");
    }

    #[test]
    fn a_bad_redis_url_is_an_error() {
        assert!(CalloutCache::new(Some("http://nope")).is_err());
    }
}
