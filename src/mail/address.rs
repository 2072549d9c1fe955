//! The envelope addresses of the mail structure: the fields MAIL FROM and RCPT TO
//! share ([`Address`]), and what only the sender ([`MailFrom`]: SPF, the MAIL
//! parameters) or only a recipient ([`RcptTo`]: its delivery outcome) has. Each
//! record flattens its [`Address`] into the same JSON object, so the seed's keys
//! stay where they were.

use serde::{Deserialize, Serialize};

/// An envelope address as the client gave it and what was found about it: the
/// fields the seed's MAIL FROM and RCPT TO tables share.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Address {
    /// Whether the command was accepted (a 2xx reply).
    pub accepted: bool,
    /// The raw argument after `MAIL FROM:` / `RCPT TO:`.
    pub value: String,
    /// The display name, if the client sent one (usually `""`).
    pub name: String,
    /// `"local@domain"`, `"<>"` for the null reverse path, `"postmaster"`.
    pub url: String,
    /// The local part of the address.
    pub local_part: Option<String>,
    /// The domain of the address.
    pub domain: Option<String>,
    /// Whether the local part has characters outside RFC 5322 atext; `null` when
    /// the check is off or there is no local part.
    pub bad_characters: Option<bool>,
    /// Whether the local part starts or ends with a dot or has two in a row;
    /// `null` when the check is off or there is no local part.
    pub wrong_dot_usage: Option<bool>,
    /// The IP the domain resolves to.
    pub ip: Option<String>,
    /// The domain's MX hosts.
    pub mxs: Option<Vec<String>>,
    /// The first address of each MX host, index for index (`null` for one
    /// without an address, as the seed allowed).
    pub ips: Option<Vec<Option<String>>>,
    /// The domain's AAAA records (new key).
    pub ipv6: Option<Vec<String>>,
    /// The domain publishes a null MX, RFC 7505: it accepts no mail (new key).
    pub null_mx: Option<bool>,
    /// No MX records: the domain's own address stands in (new key).
    pub implicit_mx: Option<bool>,
    /// Why a lookup failed (`timeout`, `nxdomain`, …) (new key).
    pub error: Option<String>,
    /// What an SMTP callout to the domain's exchanger found (new key; `null`
    /// unless `sender_callout`/`recipient_callout` made one; docs/callouts.md).
    pub callout: Option<super::Callout>,
}

/// The MAIL FROM envelope sender: the shared [`Address`] fields (reachable
/// directly through `Deref`, e.g. `from.url`) and the sender-only ones.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MailFrom {
    /// The address fields shared with RCPT TO (flattened in JSON).
    #[serde(flatten)]
    pub address: Address,
    /// The SPF result, e.g. `"pass"`.
    pub spf: Option<String>,
    /// The `SIZE=` parameter (new key).
    pub size: Option<u64>,
    /// The `BODY=` parameter, `"7BIT"` or `"8BITMIME"` (new key).
    pub body: Option<String>,
    /// Whether the `SMTPUTF8` parameter was given (new key).
    pub smtputf8: bool,
}

impl std::ops::Deref for MailFrom {
    type Target = Address;
    fn deref(&self) -> &Address {
        &self.address
    }
}

impl std::ops::DerefMut for MailFrom {
    fn deref_mut(&mut self) -> &mut Address {
        &mut self.address
    }
}

/// One RCPT TO envelope recipient (the seed's RCPT TO table): the shared
/// [`Address`] fields (reachable directly through `Deref`, e.g. `to.url`) and
/// what became of the mail for this recipient.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RcptTo {
    /// The address fields shared with MAIL FROM (flattened in JSON).
    #[serde(flatten)]
    pub address: Address,
    /// Whether the message was stored for this recipient (new key): `null` until
    /// delivery was tried (and for a recipient that was not accepted), then
    /// `true`, or `false` with `delivery_error`. See [`crate::delivery`] for how the
    /// recipients' outcomes make the one reply to the final dot.
    pub delivered: Option<bool>,
    /// Why storing the message for this recipient failed (new key).
    pub delivery_error: Option<String>,
}

impl From<Address> for RcptTo {
    fn from(address: Address) -> Self {
        RcptTo {
            address,
            ..RcptTo::default()
        }
    }
}

impl std::ops::Deref for RcptTo {
    type Target = Address;
    fn deref(&self) -> &Address {
        &self.address
    }
}

impl std::ops::DerefMut for RcptTo {
    fn deref_mut(&mut self) -> &mut Address {
        &mut self.address
    }
}
