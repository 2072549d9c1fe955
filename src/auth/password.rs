//! Verifying a supplied password against a stored secret, and making new secrets.
//!
//! This module owns the *formats* of stored secrets: which ones are understood
//! ([`scheme_of`]), how a password is checked against one ([`verify_password`]) and
//! how the `hash-password` command makes a new one ([`hash_password`]). Where secrets
//! come from (a passwd file, a database) is [`super::store`]'s business.
//!
//! # Formats understood
//!
//! | stored secret | scheme |
//! | --- | --- |
//! | `$argon2id$v=19$m=…,t=…,p=…$salt$hash`, `$argon2i$…`, `$argon2d$…` (PHC) | [`Scheme::Argon2`] |
//! | `$2a$…`, `$2b$…`, `$2y$…` (bcrypt) | [`Scheme::Bcrypt`] |
//! | `$6$[rounds=N$]salt$hash` (SHA-512 crypt) | [`Scheme::Sha512Crypt`] |
//! | `$5$[rounds=N$]salt$hash` (SHA-256 crypt) | [`Scheme::Sha256Crypt`] |
//! | `{PLAIN}secret`, `{CLEAR}secret` | [`Scheme::Plain`] |
//! | `{ARGON2ID}$argon2id$…`, `{ARGON2I}$argon2i$…` | [`Scheme::Argon2`] |
//! | `{BLF-CRYPT}$2y$…` (any bcrypt form) | [`Scheme::Bcrypt`] |
//! | `{SHA512-CRYPT}$6$…`, `{SHA256-CRYPT}$5$…` | the sha-crypt schemes |
//! | `{CRYPT}` followed by any of the `$id$` forms above | that form's scheme |
//!
//! The Dovecot-style `{SCHEME}` prefixes are matched case-insensitively; the part after
//! the prefix must be of the kind the prefix names (`{ARGON2I}$argon2id$…` is not
//! understood). A bare string with neither a `{SCHEME}` prefix nor a `$id$` form is
//! **not** taken as a plaintext password: it is not understood and never matches, so
//! that a hash in an unknown format can never be "verified" by typing the hash itself.
//! Plaintext must be written `{PLAIN}secret`.
//!
//! # Policy
//!
//! * An empty supplied password never matches (RFC 4616 requires a non-empty one), even
//!   against `{PLAIN}` or a hash of the empty string.
//! * A supplied password longer than [`MAX_PASSWORD_LEN`] bytes never matches: the
//!   sha-crypt algorithms cost time quadratic in the password length.
//! * An argon2 hash asking for more than [`MAX_ARGON2_MEMORY_KIB`] of memory is refused
//!   (never matches) rather than risking the process on a typo in a stored secret.
//! * bcrypt only looks at the first 72 bytes of a password (as every bcrypt does).
//! * CPU cost parameters (sha-crypt `rounds=`, bcrypt cost, argon2 `t=`) are used as
//!   stored, within the libraries' own limits.
//! * The hashing is deliberately slow (tens of milliseconds for argon2 with the default
//!   parameters): async callers should use [`super::verify_password_bounded`]
//!   (the blocking pool, at most one check per CPU at a time) and run
//!   [`hash_password`] in `tokio::task::spawn_blocking`.
//!
//! # Timing
//!
//! [`verify_password_evenly`] (what [`super::verify_password_bounded`] and so
//! `defaults::authenticate` use) makes a failed check cost at least one argon2id check
//! at the default parameters, whatever was stored: an unknown user is checked against
//! [`UNKNOWN_USER_SECRET`], and a failed check against a cheaper scheme (`{PLAIN}`,
//! `$6$`, `$5$`, a malformed or unknown secret) is followed by a check against it too.
//! So a wrong password for a `{PLAIN}` user, a `$6$` user and an unknown user take
//! about as long, and timing does not tell which users exist. It cannot make a
//! *costlier* stored secret (bcrypt at cost 12, argon2 with more memory) look cheap,
//! nor an argon2 hash with weaker parameters look as costly: keep stored hashes at
//! or near the defaults of `net-receiver hash-password`.
//!
//! Nothing here logs or returns a password, a hash or a secret; a malformed stored
//! secret is reported at `debug` level by its scheme only.

use argon2::password_hash::rand_core::OsRng;
use std::cell::Cell;

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use sha_crypt::{ROUNDS_DEFAULT, Sha256Params, Sha512Params};
use subtle::ConstantTimeEq;

/// Longest supplied password, in bytes, that can match anything.
pub const MAX_PASSWORD_LEN: usize = 4096;

/// Most memory, in KiB, that verifying one argon2 hash may use (1 GiB); hashes whose
/// `m=` asks for more never match.
pub const MAX_ARGON2_MEMORY_KIB: u32 = 1 << 20;

/// The stored-secret formats understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scheme {
    /// Argon2 (`argon2id`, `argon2i` or `argon2d`) in PHC string form.
    Argon2,
    /// bcrypt (`$2a$`, `$2b$`, `$2y$`).
    Bcrypt,
    /// SHA-512 crypt (`$6$`).
    Sha512Crypt,
    /// SHA-256 crypt (`$5$`).
    Sha256Crypt,
    /// The password itself (`{PLAIN}` or `{CLEAR}`), compared in constant time.
    Plain,
}

/// Why a new hash could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HashError {
    /// The password is empty; it could never be used to log in.
    #[error("refusing to hash an empty password")]
    Empty,
    /// The password is longer than [`MAX_PASSWORD_LEN`] bytes; it could never be used
    /// to log in.
    #[error("password longer than {max} bytes")]
    TooLong {
        /// The limit ([`MAX_PASSWORD_LEN`]).
        max: usize,
    },
    /// The argon2 library failed (e.g. no randomness for the salt).
    #[error("argon2id hashing failed: {reason}")]
    Argon2 {
        /// The library's description of the failure (never the password).
        reason: String,
    },
}

/// Which scheme a stored secret uses (`None` = not understood; such a secret never
/// matches). Only the form is looked at: a secret of a known scheme can still be
/// malformed, and then [`verify_password`] is false for it.
pub fn scheme_of(stored: &str) -> Option<Scheme> {
    classify(stored).map(|(scheme, _)| scheme)
}

/// True when `supplied` matches `stored`.
///
/// The comparison is constant-time where it is ours (`{PLAIN}`: it reveals at most
/// whether the lengths differ); otherwise the hash libraries' verifiers are used, and
/// they compare their outputs in constant time. A stored secret that is not understood
/// or is malformed is simply false, as are an empty `supplied` and one longer than
/// [`MAX_PASSWORD_LEN`] bytes. Never panics.
pub fn verify_password(stored: &str, supplied: &str) -> bool {
    if supplied.is_empty() || supplied.len() > MAX_PASSWORD_LEN {
        return false;
    }
    let Some((scheme, payload)) = classify(stored) else {
        return false;
    };
    let outcome = match scheme {
        Scheme::Plain => Outcome::from_match(payload.as_bytes().ct_eq(supplied.as_bytes()).into()),
        Scheme::Argon2 => verify_argon2(payload, supplied),
        Scheme::Bcrypt => match bcrypt::verify(supplied, payload) {
            Ok(matched) => Outcome::from_match(matched),
            Err(_) => Outcome::Malformed,
        },
        Scheme::Sha512Crypt | Scheme::Sha256Crypt => verify_sha_crypt(scheme, payload, supplied),
    };
    if outcome == Outcome::Malformed {
        tracing::debug!(
            ?scheme,
            "stored secret is malformed; it matches no password"
        );
    }
    outcome == Outcome::Match
}

/// An argon2id hash (default parameters) no password matches in practice: what an
/// unknown user is checked against, and what pads a cheaper failed check.
pub const UNKNOWN_USER_SECRET: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$bm90LWEtdXNlcg$h9u1jC0Xf0kP3cQJ7b0aTg3eVZ2c1Yq3aF5mR8nW2xE";

/// [`verify_password`], but a failure costs at least an argon2id check at the default
/// parameters whatever the stored secret (`None`: an unknown user), so timing does not
/// tell unknown users from known ones (see "Timing" in the module documentation).
/// A success against a cheap scheme is not padded: it tells nothing an attacker does
/// not know already.
pub fn verify_password_evenly(stored: Option<&str>, supplied: &str) -> bool {
    let Some(stored) = stored else {
        return verify_password(UNKNOWN_USER_SECRET, supplied);
    };
    if verify_password(stored, supplied) {
        return true;
    }
    if scheme_of(stored) != Some(Scheme::Argon2) {
        // The same work an unknown user costs; its answer is always "no".
        let _ = verify_password(UNKNOWN_USER_SECRET, supplied);
    }
    false
}

/// A new argon2id hash in PHC form (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`) with
/// the argon2 crate's default parameters and a random 16-byte salt from the OS.
/// The result is ready for a passwd file (`user:$argon2id$…`) or the database.
///
/// # Errors
///
/// [`HashError::Empty`] and [`HashError::TooLong`] for passwords that could never log
/// in (see [`verify_password`]); [`HashError::Argon2`] if the library fails.
pub fn hash_password(password: &str) -> Result<String, HashError> {
    if password.is_empty() {
        return Err(HashError::Empty);
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(HashError::TooLong {
            max: MAX_PASSWORD_LEN,
        });
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| HashError::Argon2 {
            reason: e.to_string(),
        })
}

/// What checking one password against one stored secret found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Match,
    Mismatch,
    /// The secret claims a scheme but cannot be used (bad syntax, parameters out of
    /// range, truncated).
    Malformed,
}

impl Outcome {
    fn from_match(matched: bool) -> Self {
        if matched {
            Outcome::Match
        } else {
            Outcome::Mismatch
        }
    }
}

/// The scheme of `stored` and the part its verifier gets (the `$id$…` form, or the
/// plaintext for `{PLAIN}`), or `None` when it is not understood.
fn classify(stored: &str) -> Option<(Scheme, &str)> {
    let Some(rest) = stored.strip_prefix('{') else {
        return crypt_form(stored).map(|scheme| (scheme, stored));
    };
    let (tag, payload) = rest.split_once('}')?;
    let tag = tag.to_ascii_uppercase();
    if tag == "PLAIN" || tag == "CLEAR" {
        return Some((Scheme::Plain, payload));
    }
    let scheme = crypt_form(payload)?;
    let fits = match tag.as_str() {
        "CRYPT" => true,
        "ARGON2ID" => payload.starts_with("$argon2id$"),
        "ARGON2I" => payload.starts_with("$argon2i$"),
        "BLF-CRYPT" => scheme == Scheme::Bcrypt,
        "SHA512-CRYPT" => scheme == Scheme::Sha512Crypt,
        "SHA256-CRYPT" => scheme == Scheme::Sha256Crypt,
        _ => false,
    };
    fits.then_some((scheme, payload))
}

/// The scheme of a bare `$id$…` crypt/PHC string.
fn crypt_form(s: &str) -> Option<Scheme> {
    const FORMS: [(&str, Scheme); 8] = [
        ("$argon2id$", Scheme::Argon2),
        ("$argon2i$", Scheme::Argon2),
        ("$argon2d$", Scheme::Argon2),
        ("$2a$", Scheme::Bcrypt),
        ("$2b$", Scheme::Bcrypt),
        ("$2y$", Scheme::Bcrypt),
        ("$6$", Scheme::Sha512Crypt),
        ("$5$", Scheme::Sha256Crypt),
    ];
    FORMS
        .iter()
        .find(|(prefix, _)| s.starts_with(prefix))
        .map(|&(_, scheme)| scheme)
}

/// What `PasswordVerifier::verify_password` does for argon2 (recompute with the
/// stored algorithm, version, parameters and salt; compare in constant time), but
/// in this thread's reusable memory (see [`with_argon2_memory`]).
fn verify_argon2(payload: &str, supplied: &str) -> Outcome {
    let Ok(hash) = PasswordHash::new(payload) else {
        return Outcome::Malformed;
    };
    let Ok(params) = Params::try_from(&hash) else {
        return Outcome::Malformed;
    };
    if params.m_cost() > MAX_ARGON2_MEMORY_KIB {
        return Outcome::Malformed;
    }
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return Outcome::Malformed;
    };
    let (Ok(algorithm), Ok(version)) = (
        Algorithm::try_from(hash.algorithm),
        hash.version.map(Version::try_from).transpose(),
    ) else {
        return Outcome::Malformed;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return Outcome::Malformed;
    };
    let mut computed = [0u8; 64];
    let Some(computed) = computed.get_mut(..expected.len()) else {
        return Outcome::Malformed;
    };
    let blocks = params.block_count();
    let argon2 = Argon2::new(algorithm, version.unwrap_or_default(), params);
    let hashed = with_argon2_memory(blocks, |memory| {
        argon2.hash_password_into_with_memory(supplied.as_bytes(), salt, computed, memory)
    });
    match hashed {
        Ok(()) => Outcome::from_match(computed.ct_eq(expected.as_bytes()).into()),
        Err(_) => Outcome::Malformed,
    }
}

/// Most argon2 memory, in 1 KiB blocks, a thread keeps for its next verification
/// (64 MiB; the default parameters use 19 MiB).
const KEPT_ARGON2_BLOCKS: usize = 64 * 1024;

thread_local! {
    /// The argon2 memory of this thread's last verification, kept for the next one.
    static ARGON2_MEMORY: Cell<Vec<Block>> = const { Cell::new(Vec::new()) };
}

/// Runs `hash` with `blocks` blocks of memory: this thread's kept memory when it is
/// at most [`KEPT_ARGON2_BLOCKS`], else memory of its own. Allocating and freeing
/// 19 MiB per verification let the allocator keep up to three such blocks per
/// thread arena (~58 MiB each, measured); reused, it is one per verifying thread.
/// Argon2 writes every block before reading it, so what a previous verification
/// left there is never used.
fn with_argon2_memory<T>(blocks: usize, hash: impl FnOnce(&mut [Block]) -> T) -> T {
    if blocks > KEPT_ARGON2_BLOCKS {
        return hash(&mut vec![Block::default(); blocks]);
    }
    let mut memory = ARGON2_MEMORY.take();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    let result = hash(memory.get_mut(..blocks).unwrap_or_default());
    ARGON2_MEMORY.set(memory);
    result
}

/// SHA-crypt (`$6$` or `$5$`, Drepper's spec) checked by recomputing the hash with the
/// stored salt and rounds and comparing the encoded results in constant time. (The
/// sha-crypt crate's own `sha256_check` panics on some malformed hashes, so its
/// parsing is not used.)
fn verify_sha_crypt(scheme: Scheme, payload: &str, supplied: &str) -> Outcome {
    let (id, hash_len) = if scheme == Scheme::Sha512Crypt {
        ("$6$", 86)
    } else {
        ("$5$", 43)
    };
    let Some(rest) = payload.strip_prefix(id) else {
        return Outcome::Malformed;
    };
    let mut fields = rest.split('$');
    let Some(first) = fields.next() else {
        return Outcome::Malformed;
    };
    let (rounds, salt) = match first.strip_prefix("rounds=") {
        Some(digits) => match (digits.parse::<usize>(), fields.next()) {
            (Ok(rounds), Some(salt)) => (rounds, salt),
            _ => return Outcome::Malformed,
        },
        None => (ROUNDS_DEFAULT, first),
    };
    let (Some(expected), None) = (fields.next(), fields.next()) else {
        return Outcome::Malformed;
    };
    if expected.len() != hash_len {
        return Outcome::Malformed;
    }
    let computed = if scheme == Scheme::Sha512Crypt {
        Sha512Params::new(rounds).and_then(|params| {
            sha_crypt::sha512_crypt_b64(supplied.as_bytes(), salt.as_bytes(), &params)
        })
    } else {
        Sha256Params::new(rounds).and_then(|params| {
            sha_crypt::sha256_crypt_b64(supplied.as_bytes(), salt.as_bytes(), &params)
        })
    };
    match computed {
        Ok(computed) => Outcome::from_match(computed.as_bytes().ct_eq(expected.as_bytes()).into()),
        Err(_) => Outcome::Malformed,
    }
}

#[cfg(test)]
#[path = "password_tests.rs"]
mod tests;
