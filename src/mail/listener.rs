//! The listener a session came in on and the delivery outcome: facts the seed's
//! structure did not have, as new keys (`listener`, `delivered`, `delivery_error`).

use serde::{Deserialize, Serialize};

/// The listening socket a connection came in on (new key `listener`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Listener {
    /// The configured address, e.g. `"127.0.0.1:2001"` or `"[::]:25"`.
    pub address: String,
    /// `"smtp"`, `"smtps"` or `"submission"`.
    pub mode: String,
}
