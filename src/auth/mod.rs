//! SMTP AUTH credentials: checking a supplied password against a stored secret
//! ([`password`]), where stored secrets come from ([`store`]: files; [`db_server`]:
//! PostgreSQL, MySQL, MariaDB) and the answer when none can be had now
//! ([`AuthUnavailable`]). The SASL exchange
//! itself is in `protocol::machine`; the hooks that use these are
//! `Receiver::password` and `Receiver::authenticate`.

pub mod db_server;
pub mod password;
pub mod store;
mod stored_password;
pub mod verify;

use std::future::Future;
use std::pin::Pin;

use crate::protocol::Reply;

pub use db_server::{DbServerKind, DbServerStore};
pub use password::{UNKNOWN_USER_SECRET, hash_password, verify_password, verify_password_evenly};
pub use store::{PasswdFile, SqliteStore, StoreError};
pub use stored_password::Password;
pub use verify::verify_password_bounded;

/// AUTH cannot be decided now: the password store is down, too slow or broken.
/// The client gets `454 4.7.0 Temporary authentication failure` (RFC 4954) and
/// may try again — never a `535`, which would tell it the password is wrong and
/// count against it. What the `password` and `authenticate` hooks return then.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AuthUnavailable;

impl From<AuthUnavailable> for Reply {
    fn from(_: AuthUnavailable) -> Self {
        Reply::new(454, (4, 7, 0), "Temporary authentication failure")
    }
}

/// `error` and its sources, `: `-separated (for logs: the sources say why).
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The future of a [`PasswordLookup`].
pub type LookupFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<String>, StoreError>> + Send + 'a>>;

/// A source of stored secrets by user name; what `defaults::password` asks.
/// Object-safe: the server keeps an `Arc<dyn PasswordLookup>`.
pub trait PasswordLookup: Send + Sync + 'static {
    /// The stored secret of `username` (`None`: no such user); an error when the
    /// store cannot answer now (AUTH then gets 454 4.7.0).
    fn lookup<'a>(&'a self, username: &'a str) -> LookupFuture<'a>;

    /// Re-reads the source (SIGHUP); the default does nothing.
    fn reload(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

impl PasswordLookup for PasswdFile {
    fn lookup<'a>(&'a self, username: &'a str) -> LookupFuture<'a> {
        Box::pin(async move { Ok(PasswdFile::lookup(self, username)) })
    }

    fn reload(&self) -> Result<(), StoreError> {
        PasswdFile::reload(self).map(|_| ())
    }
}

impl PasswordLookup for SqliteStore {
    fn lookup<'a>(&'a self, username: &'a str) -> LookupFuture<'a> {
        Box::pin(SqliteStore::lookup(self, username))
    }
}

impl PasswordLookup for DbServerStore {
    fn lookup<'a>(&'a self, username: &'a str) -> LookupFuture<'a> {
        Box::pin(DbServerStore::lookup(self, username))
    }
}
