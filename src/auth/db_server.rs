//! Password stores on a database server: PostgreSQL (`postgres://…`) and MySQL or
//! MariaDB (`mysql://…`, `mariadb://…`), through a `sqlx` connection pool.
//!
//! This module owns talking to the server: telling a URL from an SQLite path, the
//! pool, each database's placeholder and default query, the start-up check of the
//! query and the time limit of every lookup. Like [`super::store`] it hands back the
//! stored secret as written and never interprets it ([`super::password`] does).
//!
//! The URL's password is never shown: errors and logs name the database as
//! `scheme://user@host:port/database`, without the password and the query string.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlPool};
use sqlx::pool::PoolOptions;
use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::{AssertSqlSafe, Either, Executor as _, SqlSafeStr as _, SqlStr, Statement as _};
use tokio::time::Instant;

use super::StoreError;

/// Connections a [`DbServerStore`] keeps open at most; a lookup that finds all of
/// them busy waits for one, within its time limit.
pub const MAX_CONNECTIONS: u32 = 8;

/// How long an unused pooled connection stays open.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// The database server a `password_db` URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DbServerKind {
    /// PostgreSQL: `postgres://` or `postgresql://`; the user name is `$1`.
    Postgres,
    /// MySQL or MariaDB: `mysql://` or `mariadb://`; the user name is `?`.
    MySql,
}

impl DbServerKind {
    /// What `password_db` names: `Ok(None)` for an SQLite file (no `://`), the
    /// server for a `postgres://`, `postgresql://`, `mysql://` or `mariadb://` URL.
    ///
    /// # Errors
    ///
    /// [`StoreError::BadUrl`] for a URL of any other scheme.
    pub fn of_setting(setting: &str) -> Result<Option<Self>, StoreError> {
        let Some((scheme, _)) = setting.split_once("://") else {
            return Ok(None);
        };
        match scheme.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => Ok(Some(Self::Postgres)),
            "mysql" | "mariadb" => Ok(Some(Self::MySql)),
            _ => Err(StoreError::BadUrl {
                url: shown_url(setting),
                reason: format!(
                    "unknown scheme {scheme:?}: use postgres://, mysql:// (MariaDB too) \
                     or the path of an SQLite file"
                ),
            }),
        }
    }

    /// The query run when `password_query` is not set: `SELECT password FROM users
    /// WHERE username = $1` (PostgreSQL) or `… = ?` (MySQL, MariaDB).
    pub fn default_query(self) -> &'static str {
        match self {
            Self::Postgres => "SELECT password FROM users WHERE username = $1",
            Self::MySql => "SELECT password FROM users WHERE username = ?",
        }
    }

    /// The server's name, for logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Postgres => "PostgreSQL",
            Self::MySql => "MySQL/MariaDB",
        }
    }
}

/// `url` as errors and logs show it: `scheme://user@host:port/database`, without
/// the password and without the query string (which may hold one too).
pub fn shown_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(not a URL)".to_owned();
    };
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            format!("{user}@{host}")
        }
        None => authority.to_owned(),
    };
    format!("{scheme}://{authority}{path}")
}

enum Pool {
    Postgres(PgPool),
    MySql(MySqlPool),
}

/// Runs `$body` with `$pool` bound to the pool of either database (the body is
/// type-checked once per database).
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            Pool::Postgres($pool) => $body,
            Pool::MySql($pool) => $body,
        }
    };
}

/// Users on a PostgreSQL, MySQL or MariaDB server: the stored secret is the first
/// column of the first row of `password_query`, run with the user name as its one
/// parameter (`$1` for PostgreSQL, `?` for MySQL and MariaDB).
///
/// Lookups share a pool of at most [`MAX_CONNECTIONS`] connections, opened when
/// needed and checked before reuse (a restarted server is reconnected to). Each
/// lookup — waiting for a connection, connecting, the query — has `timeout`; past
/// it, or when the server is down or refuses the query, the lookup is an error,
/// which AUTH answers with `454 4.7.0` (never `535`). A lookup that runs out of
/// time closes its connection, so a late answer cannot reach the next lookup;
/// PostgreSQL also gets `statement_timeout` = 2 × `timeout` and stops the query
/// itself.
/// A lookup only waits (no thread is blocked), so other sessions go on meanwhile.
pub struct DbServerStore {
    kind: DbServerKind,
    pool: Pool,
    shown_url: String,
    query: String,
    sql: SqlStr,
    timeout: Duration,
}

impl DbServerStore {
    /// A store for the database at `url` running `query` (default
    /// [`DbServerKind::default_query`]), each lookup within `timeout` (zero fails
    /// them all; `password_db_timeout` is never zero).
    ///
    /// If the server answers within `timeout`, the query is prepared there and must
    /// take exactly one parameter and return a column, so a typo stops the start.
    /// If it does not answer, the store is made all the same (AUTH answers 454 until
    /// the server is back) and a warning is logged.
    ///
    /// # Errors
    ///
    /// [`StoreError::BadUrl`] when `url` is not a usable PostgreSQL or MySQL URL;
    /// [`StoreError::ServerQuery`] when the server refuses to prepare the query or
    /// the query has the wrong shape.
    pub async fn open(
        url: &str,
        query: Option<String>,
        timeout: Duration,
    ) -> Result<Self, StoreError> {
        let shown = shown_url(url);
        let bad_url = |reason: String| StoreError::BadUrl {
            url: shown.clone(),
            reason,
        };
        let Some(kind) = DbServerKind::of_setting(url)? else {
            return Err(bad_url(
                "not a database URL (postgres://… or mysql://…)".into(),
            ));
        };
        let pool = match kind {
            DbServerKind::Postgres => {
                let options = PgConnectOptions::from_str(url)
                    .map_err(|error| bad_url(error.to_string()))?
                    .application_name("net-receiver")
                    // A backstop that stops a query the lookup gave up on; later
                    // than the lookup's own limit, which always decides first.
                    .options([("statement_timeout", timeout.as_millis().saturating_mul(2))]);
                Pool::Postgres(pool_options(timeout).connect_lazy_with(options))
            }
            DbServerKind::MySql => {
                let options = MySqlConnectOptions::from_str(url)
                    .map_err(|error| bad_url(error.to_string()))?;
                Pool::MySql(pool_options(timeout).connect_lazy_with(options))
            }
        };
        let query = query.unwrap_or_else(|| kind.default_query().to_owned());
        let store = Self {
            kind,
            pool,
            shown_url: shown,
            sql: AssertSqlSafe(query.clone()).into_sql_str(),
            query,
            timeout,
        };
        match store.check_query().await {
            Ok(()) => {}
            Err(error @ StoreError::ServerQuery { .. }) => return Err(error),
            Err(error) => tracing::warn!(
                "{}; starting all the same: AUTH answers 454 4.7.0 until the database \
                 answers",
                super::error_chain(&error)
            ),
        }
        Ok(store)
    }

    /// Prepares the query on the server: it must take one parameter and return a
    /// column. An unreachable server is [`StoreError::Unavailable`] or
    /// [`StoreError::Timeout`]; a refused or misshapen query is
    /// [`StoreError::ServerQuery`].
    async fn check_query(&self) -> Result<(), StoreError> {
        let deadline = Instant::now() + self.timeout;
        let (parameters, columns) = on_pool!(self, pool => {
            let mut conn = self.bounded(deadline, pool.acquire()).await?;
            let prepared = tokio::time::timeout_at(deadline, conn.prepare(self.sql.clone())).await;
            match prepared {
                Err(_) => {
                    conn.close_on_drop();
                    return Err(self.timed_out());
                }
                Ok(Err(sqlx::Error::Database(error))) => {
                    return Err(self.query_error(format!("does not prepare: {error}")));
                }
                Ok(Err(source)) => return Err(self.unavailable(source)),
                Ok(Ok(statement)) => (
                    statement.parameters().map(|p| match p {
                        Either::Left(types) => types.len(),
                        Either::Right(count) => count,
                    }),
                    statement.columns().len(),
                ),
            }
        });
        let placeholder = match self.kind {
            DbServerKind::Postgres => "$1",
            DbServerKind::MySql => "?",
        };
        if parameters.is_some_and(|count| count != 1) {
            return Err(self.query_error(format!(
                "must take exactly one parameter, the user name as {placeholder}"
            )));
        }
        if columns == 0 {
            return Err(self.query_error("returns no column; it must select the secret".into()));
        }
        Ok(())
    }

    /// The stored secret of `user`, or `None` when the query returns no row (or a
    /// `NULL` secret).
    ///
    /// # Errors
    ///
    /// [`StoreError::Timeout`] past the time limit, [`StoreError::Unavailable`]
    /// when the server cannot be reached or the query fails (its first column not
    /// text, say).
    pub async fn lookup(&self, user: &str) -> Result<Option<String>, StoreError> {
        let deadline = Instant::now() + self.timeout;
        on_pool!(self, pool => {
            let mut conn = self.bounded(deadline, pool.acquire()).await?;
            let query = sqlx::query_scalar::<_, Option<String>>(self.sql.clone()).bind(user);
            match tokio::time::timeout_at(deadline, query.fetch_optional(&mut *conn)).await {
                Err(_) => {
                    // The query may still answer: not on a connection used again.
                    conn.close_on_drop();
                    Err(self.timed_out())
                }
                Ok(Err(source)) => Err(self.unavailable(source)),
                Ok(Ok(found)) => Ok(found.flatten()),
            }
        })
    }

    /// `future` (waiting for a pooled connection) within `deadline`.
    async fn bounded<T>(
        &self,
        deadline: Instant,
        future: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout_at(deadline, future).await {
            Err(_) | Ok(Err(sqlx::Error::PoolTimedOut)) => Err(self.timed_out()),
            Ok(Err(source)) => Err(self.unavailable(source)),
            Ok(Ok(value)) => Ok(value),
        }
    }

    fn timed_out(&self) -> StoreError {
        StoreError::Timeout {
            url: self.shown_url.clone(),
            timeout: self.timeout,
        }
    }

    fn unavailable(&self, source: sqlx::Error) -> StoreError {
        StoreError::Unavailable {
            url: self.shown_url.clone(),
            source,
        }
    }

    fn query_error(&self, reason: String) -> StoreError {
        StoreError::ServerQuery {
            url: self.shown_url.clone(),
            query: self.query.clone(),
            reason,
        }
    }

    /// Which server this is.
    pub fn kind(&self) -> DbServerKind {
        self.kind
    }

    /// The database, as logs show it (no password).
    pub fn shown_url(&self) -> &str {
        &self.shown_url
    }

    /// The query run for each lookup.
    pub fn query(&self) -> &str {
        &self.query
    }

    /// The time limit of each lookup.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// The pool of either database: at most [`MAX_CONNECTIONS`], none kept open
/// when unused, a connection waited for at most `timeout`.
fn pool_options<DB: sqlx::Database>(timeout: Duration) -> PoolOptions<DB> {
    PoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .min_connections(0)
        .acquire_timeout(timeout)
        .idle_timeout(IDLE_TIMEOUT)
}

/// Shows the server, the URL without its password, the query and the time limit.
impl fmt::Debug for DbServerStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbServerStore")
            .field("kind", &self.kind)
            .field("url", &self.shown_url)
            .field("query", &self.query)
            .field("timeout", &self.timeout)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_sqlite_and_a_url_names_its_server() {
        let cases = [
            ("users.db", Some(None)),
            ("/var/lib/net-receiver/users.db", Some(None)),
            (
                "postgres://mail@127.0.0.1/mail",
                Some(Some(DbServerKind::Postgres)),
            ),
            (
                "PostgreSQL://mail@db/mail",
                Some(Some(DbServerKind::Postgres)),
            ),
            (
                "mysql://mail:pw@127.0.0.1:3306/mail",
                Some(Some(DbServerKind::MySql)),
            ),
            ("mariadb://mail@db/mail", Some(Some(DbServerKind::MySql))),
            ("redis://127.0.0.1/", None),
            ("sqlite://users.db", None),
        ];
        for (setting, expected) in cases {
            let found = DbServerKind::of_setting(setting);
            match expected {
                Some(kind) => assert_eq!(found.ok(), Some(kind), "{setting}"),
                None => assert!(
                    matches!(found, Err(StoreError::BadUrl { .. })),
                    "{setting}: {found:?}"
                ),
            }
        }
    }

    #[test]
    fn the_shown_url_never_holds_the_password() {
        let cases = [
            (
                "postgres://mail:s3cret@127.0.0.1:5432/mail",
                "postgres://mail@127.0.0.1:5432/mail",
            ),
            (
                "mysql://mail:p@ss:w0rd@db/mail?password=s3cret",
                "mysql://mail@db/mail",
            ),
            ("postgres://db/mail#s3cret", "postgres://db/mail"),
            ("postgres://:s3cret@db", "postgres://@db"),
            ("s3cret", "(not a URL)"),
        ];
        for (url, shown) in cases {
            assert_eq!(shown_url(url), shown, "{url}");
        }
    }

    #[tokio::test]
    async fn a_bad_url_is_an_error_that_names_it_without_its_password() {
        let timeout = Duration::from_secs(1);
        for url in [
            "postgres://mail:s3cret@[::1/mail",
            "mysql://mail:s3cret@db:notaport/mail",
            "postgres://mail:s3cret@db/mail?sslmode=sometimes",
            "ftp://mail:s3cret@db/mail",
        ] {
            let error = DbServerStore::open(url, None, timeout).await.err();
            let Some(error) = error else {
                panic!("{url} opened");
            };
            let text = crate::auth::error_chain(&error);
            assert!(matches!(error, StoreError::BadUrl { .. }), "{url}: {text}");
            assert!(!text.contains("s3cret"), "{text}");
            assert!(text.contains("password_db"), "{text}");
        }
    }

    #[tokio::test]
    async fn an_unreachable_server_is_unavailable_not_a_start_up_error() {
        // A port nothing listens on: bound, then closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|addr| addr.port())
            .unwrap_or(9);
        let timeout = Duration::from_millis(300);
        for scheme in ["postgres", "mysql"] {
            let url = format!("{scheme}://mail:s3cret@127.0.0.1:{port}/mail");
            let store = DbServerStore::open(&url, None, timeout).await;
            let Ok(store) = store else {
                panic!("{url}: {:?}", store.err());
            };
            let error = store.lookup("alice").await.err();
            assert!(
                matches!(
                    error,
                    Some(StoreError::Unavailable { .. } | StoreError::Timeout { .. })
                ),
                "{error:?}"
            );
            let text = format!("{store:?} {error:?}");
            assert!(!text.contains("s3cret"), "{text}");
        }
    }
}
