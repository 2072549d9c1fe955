//! SMTP AUTH credentials: checking a supplied password against a stored secret
//! ([`password`]) and where stored secrets come from ([`store`]). The SASL exchange
//! itself is in `protocol::machine`; the hooks that use these are
//! `Receiver::password` and `Receiver::authenticate`.

pub mod password;
pub mod store;
mod stored_password;
pub mod verify;

use std::future::Future;
use std::pin::Pin;

pub use password::{UNKNOWN_USER_SECRET, hash_password, verify_password, verify_password_evenly};
pub use store::{PasswdFile, SqliteStore, StoreError};
pub use stored_password::Password;
pub use verify::verify_password_bounded;

/// The future of a [`PasswordLookup`].
pub type LookupFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<String>, StoreError>> + Send + 'a>>;

/// A source of stored secrets by user name; what `defaults::password` asks.
/// Object-safe: the server keeps an `Arc<dyn PasswordLookup>`.
pub trait PasswordLookup: Send + Sync + 'static {
    /// The stored secret of `username` (`None`: no such user).
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
