//! Where stored secrets come from: the built-in credential stores of the binary.
//!
//! This module owns *finding* a user's stored secret — a Dovecot-style passwd file
//! ([`PasswdFile`], `--passwd-file`) or an SQLite database ([`SqliteStore`],
//! `password_db`); a database server is [`super::db_server`]'s. What a secret means and how a password is checked against it is
//! [`super::password`]'s business: a store hands back the stored string as written
//! (`{PLAIN}…`, `$argon2id$…`, …) and never interprets it.
//!
//! Nothing here logs a secret, and no error message echoes one: a bad line is named by
//! path and line number, a database by its path.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::password::scheme_of;

/// The query [`SqliteStore`] runs when none is configured.
pub const DEFAULT_QUERY: &str = "SELECT password FROM users WHERE username = ?1";

/// A credential store could not be read or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The passwd file could not be read.
    #[error("cannot read passwd file {path}")]
    Read {
        /// The passwd file.
        path: PathBuf,
        /// Why (missing, permission denied, a directory, ...).
        source: std::io::Error,
    },
    /// A line of the passwd file is not `user:secret[:...]`.
    #[error("{path}:{line}: {reason}")]
    BadLine {
        /// The passwd file.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
        /// What is wrong (never the line's text, which may hold a secret).
        reason: String,
    },
    /// The database could not be opened read-only.
    #[error("cannot open password database {path} read-only")]
    DbOpen {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// The query does not prepare against the database (a typo, a missing table).
    #[error("password database {path}: query {query:?} does not prepare")]
    BadQuery {
        /// The database file.
        path: PathBuf,
        /// The query.
        query: String,
        /// SQLite's complaint.
        source: rusqlite::Error,
    },
    /// The query prepares but cannot be used for lookups.
    #[error("password database {path}: query {query:?} {reason}")]
    QueryShape {
        /// The database file.
        path: PathBuf,
        /// The query.
        query: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Running the query failed (database locked or corrupt, the column is not text).
    #[error("password database {path}: lookup failed")]
    Lookup {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// `password_db` is not a usable database URL (the password is not shown).
    #[error("password_db {url}: {reason}")]
    BadUrl {
        /// The URL without its password.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The database server refuses to prepare the query, or it has the wrong shape.
    #[error("password database {url}: query {query:?} {reason}")]
    ServerQuery {
        /// The URL without its password.
        url: String,
        /// The query.
        query: String,
        /// What is wrong with it (the server's complaint).
        reason: String,
    },
    /// The database server cannot be reached, refuses the login, or the lookup
    /// failed there.
    #[error("password database {url} unavailable")]
    Unavailable {
        /// The URL without its password.
        url: String,
        /// Why.
        source: sqlx::Error,
    },
    /// The database server did not answer within the time limit (connections
    /// refused until then count here too).
    #[error("password database {url}: no answer within {timeout:?} (down, unreachable or slow)")]
    Timeout {
        /// The URL without its password.
        url: String,
        /// The time limit (`password_db_timeout`).
        timeout: std::time::Duration,
    },
    /// The blocking task running the lookup did not finish (runtime shutting down).
    #[error("password database {path}: lookup task did not finish")]
    Task {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: tokio::task::JoinError,
    },
}

/// Dovecot-style passwd file: one `user:secret` per line, held in memory.
///
/// ```text
/// # comments and blank lines are ignored
/// alice:{PLAIN}correct horse
/// bob:$argon2id$v=19$m=19456,t=2,p=1$…$…:1000:1000::/home/bob
/// carol:{SHA512-CRYPT}$6$…
/// ```
///
/// * Further `:`-separated fields (uid, gid, gecos, home, …) are ignored, so a secret
///   cannot contain `:`.
/// * Blank lines and lines starting with `#` are ignored; whitespace around a line and
///   a CRLF line end are trimmed.
/// * User names are taken as written (case-sensitive).
/// * A line without `:`, with an empty user name or an empty secret, a user listed
///   twice or a line that is not UTF-8 is an error naming `path:line` (the line's
///   text is not echoed: it may hold a secret).
/// * A secret in a format [`super::password`] does not understand is loaded (it never
///   matches) with a warning naming `path:line` and the user.
///
/// [`reload`](Self::reload) re-reads the file (the server calls it on SIGHUP); when that
/// fails the old contents stay. Lookups are synchronous reads of an in-memory map.
pub struct PasswdFile {
    path: PathBuf,
    users: RwLock<HashMap<String, String>>,
}

impl PasswdFile {
    /// Reads the passwd file at `path`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Read`] when it cannot be read, [`StoreError::BadLine`] for the
    /// first line that is not `user:secret`.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let path = path.into();
        let users = parse_passwd(&path)?;
        Ok(Self {
            path,
            users: RwLock::new(users),
        })
    }

    /// Re-reads the file, replacing the users held only when the whole file is good.
    /// Returns how many users it now holds.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open); the users held before stay in use.
    pub fn reload(&self) -> Result<usize, StoreError> {
        let users = parse_passwd(&self.path)?;
        let count = users.len();
        *self.users.write().unwrap_or_else(PoisonError::into_inner) = users;
        Ok(count)
    }

    /// The stored secret of `user`, if the file lists that user.
    pub fn lookup(&self, user: &str) -> Option<String> {
        self.users
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(user)
            .cloned()
    }

    /// How many users the file held when last read.
    pub fn len(&self) -> usize {
        self.users
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// True when the file held no users when last read.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Shows the path and the number of users, never the secrets.
impl fmt::Debug for PasswdFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswdFile")
            .field("path", &self.path)
            .field("users", &self.len())
            .finish()
    }
}

fn parse_passwd(path: &Path) -> Result<HashMap<String, String>, StoreError> {
    let bytes = std::fs::read(path).map_err(|source| StoreError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let bad_line = |line: usize, reason: String| StoreError::BadLine {
        path: path.to_path_buf(),
        line,
        reason,
    };
    // user -> (line first listed, secret)
    let mut users: HashMap<String, (usize, String)> = HashMap::new();
    for (index, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let number = index + 1;
        let Ok(text) = std::str::from_utf8(raw) else {
            return Err(bad_line(number, "not valid UTF-8".into()));
        };
        let text = text.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let Some((user, rest)) = text.split_once(':') else {
            return Err(bad_line(
                number,
                "expected user:secret, found no ':'".into(),
            ));
        };
        let secret = rest.split_once(':').map_or(rest, |(secret, _)| secret);
        if user.is_empty() {
            return Err(bad_line(number, "empty user name".into()));
        }
        if secret.is_empty() {
            return Err(bad_line(number, format!("empty secret for user {user:?}")));
        }
        if let Some((first, _)) = users.get(user) {
            return Err(bad_line(
                number,
                format!("user {user:?} listed again (first at line {first})"),
            ));
        }
        if scheme_of(secret).is_none() {
            tracing::warn!(
                "{}:{number}: the secret of user {user:?} is in no format understood; \
                 that user cannot log in (plaintext must be written {{PLAIN}}secret)",
                path.display()
            );
        }
        users.insert(user.to_owned(), (number, secret.to_owned()));
    }
    Ok(users
        .into_iter()
        .map(|(user, (_, secret))| (user, secret))
        .collect())
}

/// SQLite database of users: the stored secret is the first column of the first row of
/// a query run with the user name as `?1`.
///
/// The default query is [`DEFAULT_QUERY`],
/// `SELECT password FROM users WHERE username = ?1`, for this table:
///
/// ```sql
/// CREATE TABLE users (username TEXT PRIMARY KEY, password TEXT NOT NULL);
/// INSERT INTO users VALUES ('alice', '$argon2id$v=19$m=19456,t=2,p=1$…$…');
/// ```
///
/// A custom query may read any schema, as long as it takes exactly one parameter (the
/// user name, `?1`) and returns the secret as its first column (text; a `NULL` secret
/// counts as no user). The database is opened read-only, once: one connection is kept
/// and lookups run one at a time on tokio's blocking pool, so an async caller is never
/// blocked. Other processes may change the database meanwhile (SQLite waits up to 5 s
/// for their locks); a change is seen by the next lookup, no reload needed.
pub struct SqliteStore {
    inner: Arc<SqliteInner>,
}

struct SqliteInner {
    path: PathBuf,
    query: String,
    conn: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens the database at `path` read-only and checks that `query` (default
    /// [`DEFAULT_QUERY`]) prepares, takes one parameter and returns a column — so a
    /// typo is a start-up error, not a failed login.
    ///
    /// # Errors
    ///
    /// [`StoreError::DbOpen`] when the file is missing or cannot be opened,
    /// [`StoreError::BadQuery`] when the query does not prepare (including "file is not
    /// a database" and a missing table), [`StoreError::QueryShape`] when it prepares but
    /// does not take exactly one parameter or returns no column.
    pub fn open(path: impl Into<PathBuf>, query: Option<String>) -> Result<Self, StoreError> {
        let path = path.into();
        let query = query.unwrap_or_else(|| DEFAULT_QUERY.to_owned());
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn =
            Connection::open_with_flags(&path, flags).map_err(|source| StoreError::DbOpen {
                path: path.clone(),
                source,
            })?;
        let shape = {
            let stmt = conn
                .prepare_cached(&query)
                .map_err(|source| StoreError::BadQuery {
                    path: path.clone(),
                    query: query.clone(),
                    source,
                })?;
            if stmt.parameter_count() != 1 {
                Some("must take exactly one parameter, the user name as ?1")
            } else if stmt.column_count() == 0 {
                Some("returns no column; it must select the secret")
            } else {
                None
            }
        };
        if let Some(reason) = shape {
            return Err(StoreError::QueryShape {
                path,
                query,
                reason,
            });
        }
        Ok(Self {
            inner: Arc::new(SqliteInner {
                path,
                query,
                conn: Mutex::new(conn),
            }),
        })
    }

    /// The stored secret of `user`, or `None` when the query returns no row (or a
    /// `NULL` secret). Runs on tokio's blocking pool; needs a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`StoreError::Lookup`] when the query fails or its first column is not text;
    /// [`StoreError::Task`] when the blocking task does not finish.
    pub async fn lookup(&self, user: &str) -> Result<Option<String>, StoreError> {
        let inner = Arc::clone(&self.inner);
        let user = user.to_owned();
        tokio::task::spawn_blocking(move || inner.lookup_blocking(&user))
            .await
            .map_err(|source| StoreError::Task {
                path: self.inner.path.clone(),
                source,
            })?
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The query run for each lookup.
    pub fn query(&self) -> &str {
        &self.inner.query
    }
}

impl SqliteInner {
    fn lookup_blocking(&self, user: &str) -> Result<Option<String>, StoreError> {
        // A panic while holding the lock cannot leave the connection half-changed
        // (lookups only read), so a poisoned lock is still usable.
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let found = conn
            .prepare_cached(&self.query)
            .and_then(|mut stmt| {
                stmt.query_row([user], |row| row.get::<_, Option<String>>(0))
                    .optional()
            })
            .map_err(|source| StoreError::Lookup {
                path: self.path.clone(),
                source,
            })?;
        Ok(found.flatten())
    }
}

/// Shows the path and the query.
impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .field("query", &self.inner.query)
            .finish()
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
