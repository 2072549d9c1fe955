//! What the `password` hook returns: a user's password itself (what the seed's
//! hook returned, read from a database), or a stored hash in a named scheme.

use std::fmt;

/// A user's password — plain, or as a stored hash — as [`Receiver::password`](crate::Receiver::password) returns it.
/// Its `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub enum Password {
    /// The password itself, compared in constant time (the seed's `password`
    /// returned the plain password from its database).
    Plain(String),
    /// A stored secret in one of the schemes of [`crate::auth::password`]:
    /// `$argon2id$…`, `$2b$…`, `$6$…`, `$5$…` or `{PLAIN}…` — what a passwd file
    /// or the password database holds. A secret of no known scheme matches no
    /// password (and says so in the log at debug level).
    Hashed(String),
}

impl Password {
    /// The secret in stored form (`Plain` becomes `{PLAIN}…`).
    pub fn stored_form(&self) -> String {
        match self {
            Password::Plain(password) => format!("{{PLAIN}}{password}"),
            Password::Hashed(stored) => stored.clone(),
        }
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Password::Plain(_) => f.write_str("Password::Plain(..)"),
            Password::Hashed(stored) => {
                let scheme = super::password::scheme_of(stored);
                write!(f, "Password::Hashed({scheme:?}, ..)")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let plain = format!("{:?}", Password::Plain("hunter2".into()));
        let hashed = format!("{:?}", Password::Hashed("{PLAIN}hunter2".into()));
        assert!(!plain.contains("hunter2") && !hashed.contains("hunter2"));
        assert!(hashed.contains("Plain"), "{hashed}");
    }

    #[test]
    fn a_plain_password_is_checked_as_plain_whatever_it_looks_like() {
        for password in ["secret", "$6$looks-like-a-hash", "{PLAIN}x"] {
            let stored = Password::Plain(password.to_owned()).stored_form();
            assert!(
                super::super::verify_password(&stored, password),
                "{password}"
            );
            assert!(!super::super::verify_password(&stored, "wrong"));
        }
    }
}
