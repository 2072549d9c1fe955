//! The keys of the check-findings caches of `cache.rs` that are built from
//! several of a session's facts: one SPF `check_host()` ([`SpfKey`]) and the
//! authentication of an unsigned message ([`MessageKey`]). Each has a borrowed
//! twin that hashes the same way, so a look-up allocates nothing and the owned
//! key is built only to insert.

use std::net::IpAddr;

use hashbrown::Equivalent;
use mail_auth::AuthenticatedMessage;

use super::auth::{AuthContext, SpfFindings};

/// The inputs of one SPF `check_host()` (RFC 7208 §4.1) and of every macro its
/// records may expand (§7.2: `%{s l o d i p v h c r}`); `%{t}`, the time, is
/// the one input left out — a record using it is evaluated once per TTL.
/// Looked up as an [`SpfKeyRef`]; hashed the same way (field for field, a
/// `Box<str>` as its `str`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct SpfKey {
    /// The client IP.
    pub(crate) ip: IpAddr,
    /// The domain whose record is evaluated.
    pub(crate) domain: Box<str>,
    /// The HELO/EHLO name.
    pub(crate) helo: Box<str>,
    /// Our host name (`%{r}`).
    pub(crate) host: Box<str>,
    /// The MAIL FROM address; `None` for the HELO identity.
    pub(crate) sender: Option<Box<str>>,
}

/// An [`SpfKey`] borrowed from the session: the look-up allocates nothing.
#[derive(Debug, Clone, Copy, Hash)]
pub(crate) struct SpfKeyRef<'a> {
    pub(crate) ip: IpAddr,
    pub(crate) domain: &'a str,
    pub(crate) helo: &'a str,
    pub(crate) host: &'a str,
    pub(crate) sender: Option<&'a str>,
}

impl SpfKeyRef<'_> {
    /// The key to insert.
    pub(crate) fn to_key(self) -> SpfKey {
        SpfKey {
            ip: self.ip,
            domain: self.domain.into(),
            helo: self.helo.into(),
            host: self.host.into(),
            sender: self.sender.map(Into::into),
        }
    }
}

impl Equivalent<SpfKey> for SpfKeyRef<'_> {
    fn equivalent(&self, key: &SpfKey) -> bool {
        self.ip == key.ip
            && self.domain == &*key.domain
            && self.helo == &*key.helo
            && self.host == &*key.host
            && self.sender == key.sender.as_deref()
    }
}

/// What the authentication of a message without DKIM-Signature and ARC fields
/// (and without malformed ones) depends on besides the DNS: the session's
/// identities and SPF results (the `Authentication-Results` header's iprev and
/// spf parts, DMARC's SPF alignment), our name, and the From: addresses
/// (DMARC). Such a message's body plays no part: there is no signature to check.
///
/// Looked up as a [`MessageKeyRef`], hashed the same way (field for field, a
/// `Box<str>` as its `str`, the From: list as a slice).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct MessageKey {
    ip: IpAddr,
    helo: Box<str>,
    mail_from: Option<Box<str>>,
    server_name: Box<str>,
    iprev: Option<Box<str>>,
    spf: (Box<str>, Box<str>),
    from: Box<[Box<str>]>,
}

/// A [`MessageKey`] borrowed from the session and the parsed message.
#[derive(Debug, Clone, Copy, Hash)]
pub(crate) struct MessageKeyRef<'a> {
    ip: IpAddr,
    helo: &'a str,
    mail_from: Option<&'a str>,
    server_name: &'a str,
    iprev: Option<&'a str>,
    spf: (&'a str, &'a str),
    from: &'a [String],
}

impl<'a> MessageKeyRef<'a> {
    /// The key of `message` if it carries no DKIM or ARC field (nor a malformed
    /// one, nor any other parse error); `None` otherwise.
    pub(crate) fn unsigned(
        message: &'a AuthenticatedMessage<'_>,
        cx: &AuthContext<'a>,
        ip: IpAddr,
        helo: &'a str,
        mail_from: Option<&'a str>,
        spf: &'a SpfFindings,
    ) -> Option<Self> {
        let unsigned = message.dkim_headers.is_empty()
            && message.dkim2_signatures.is_empty()
            && message.errors.is_empty()
            && !message.has_dkim_errors
            && without_arc(message);
        unsigned.then_some(MessageKeyRef {
            ip,
            helo,
            mail_from,
            server_name: cx.server_name,
            iprev: cx.iprev,
            spf: (&spf.mail_from, &spf.helo),
            from: &message.from,
        })
    }

    /// The key to insert.
    pub(crate) fn to_key(self) -> MessageKey {
        MessageKey {
            ip: self.ip,
            helo: self.helo.into(),
            mail_from: self.mail_from.map(Into::into),
            server_name: self.server_name.into(),
            iprev: self.iprev.map(Into::into),
            spf: (self.spf.0.into(), self.spf.1.into()),
            from: self.from.iter().map(|f| f.as_str().into()).collect(),
        }
    }
}

impl Equivalent<MessageKey> for MessageKeyRef<'_> {
    fn equivalent(&self, key: &MessageKey) -> bool {
        self.ip == key.ip
            && self.helo == &*key.helo
            && self.mail_from == key.mail_from.as_deref()
            && self.server_name == &*key.server_name
            && self.iprev == key.iprev.as_deref()
            && self.spf.0 == &*key.spf.0
            && self.spf.1 == &*key.spf.1
            && self.from.len() == key.from.len()
            && self
                .from
                .iter()
                .zip(key.from.iter())
                .all(|(a, b)| a.as_str() == &**b)
    }
}

/// Whether `message` has no ARC field (nor a malformed one).
#[cfg(feature = "arc")]
fn without_arc(message: &AuthenticatedMessage<'_>) -> bool {
    message.ams_headers.is_empty()
        && message.as_headers.is_empty()
        && message.aar_headers.is_empty()
        && !message.has_arc_errors
}

/// Whether `message` has no ARC-Seal (all that ARC looks at without the feature).
#[cfg(not(feature = "arc"))]
fn without_arc(message: &AuthenticatedMessage<'_>) -> bool {
    !message
        .raw_parsed_headers()
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case(b"ARC-Seal"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::cache::TtlCache;
    use mail_auth::SpfResult;
    use std::net::Ipv4Addr;
    use std::time::{Duration, Instant};

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn a_borrowed_key_finds_what_its_owned_key_filed() {
        let t0 = Instant::now();
        let later = t0 + 60 * SECOND;
        let ip: IpAddr = "192.0.2.7"
            .parse()
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let spf = TtlCache::new(8);
        let key = SpfKeyRef {
            ip,
            domain: "example.org",
            helo: "client.example",
            host: "mx.example",
            sender: Some("a@example.org"),
        };
        spf.insert_at(key.to_key(), SpfResult::Pass, later, t0);
        assert_eq!(spf.get_at(&key, t0), Some(SpfResult::Pass));
        let helo_identity = SpfKeyRef {
            sender: None,
            ..key
        };
        assert_eq!(spf.get_at(&helo_identity, t0), None, "another key");

        let from = vec!["a@example.org".to_owned(), "b@example.org".to_owned()];
        let message = MessageKeyRef {
            ip,
            helo: "client.example",
            mail_from: Some("a@example.org"),
            server_name: "mx.example",
            iprev: Some("pass"),
            spf: ("pass", "none"),
            from: &from,
        };
        let messages = TtlCache::new(8);
        messages.insert_at(message.to_key(), 1u32, later, t0);
        assert_eq!(messages.get_at(&message, t0), Some(1));
        let fewer = MessageKeyRef {
            from: &from[..1],
            ..message
        };
        assert_eq!(messages.get_at(&fewer, t0), None, "another From: list");
        let no_iprev = MessageKeyRef {
            iprev: None,
            ..message
        };
        assert_eq!(messages.get_at(&no_iprev, t0), None, "another iprev");
    }
}
