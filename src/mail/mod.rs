//! The mail structure that comes out of a session: the seed's `ItemOfMail`
//! hash as plain serde types, plus small helpers to fill and read it.
//!
//! The JSON keys are exactly the seed's names (see docs/receiver.md, section "The
//! mail structure"); keys are only ever added, never renamed.
//! Deserializing is lenient: a missing key takes its default, so JSON written
//! before a key was added still loads.

use indexmap::IndexMap;

mod address;
mod callout;
mod headers;
pub mod id;
pub(crate) mod json;
mod listener;
mod milter;
mod reuse;
mod text;
pub mod trace;
pub use address::{Address, MailFrom, RcptTo};
pub use callout::{Callout, CalloutResult};
pub use headers::split_message;
pub use listener::Listener;
pub use milter::MilterVerdict;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
pub use text::Text;

/// Everything known about one mail transaction (one connection's worth of
/// envelope, trace and message), in the seed's shape.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Mail {
    /// The local port the connection came in on, as a string (`"2525"`).
    pub local_port: String,
    /// This machine's host name.
    pub local_hostname: String,
    /// The client's port, as a string.
    pub remote_port: String,
    /// The client's host name from reverse DNS; `null` until that exists.
    pub remote_hostname: Option<String>,
    /// The client's IP address (`"127.0.0.1"`).
    pub remote_ip: String,
    /// The mail id, e.g. `"OELGQA-A58QI3-AA"` (see [`crate::mail::id`]).
    pub id: String,
    /// When the session started, formatted `%Y-%m-%d %H:%M:%S %z`.
    pub time: String,
    /// Whether the receiver accepted the message: true from the moment
    /// `received` is called for a complete, acceptable message (the seed's
    /// meaning); whether storing it worked is `delivered`.
    pub accepted: bool,
    /// Whether the sender's IP is prohibited from sending.
    pub prohibited: bool,
    /// Whether the session is running over TLS.
    pub encrypted: bool,
    /// The authenticated user name. In JSON `false` when `None` (the seed's
    /// shape) and the user name string when `Some`; reading accepts `false`,
    /// `null` or a string.
    #[serde(
        serialize_with = "authenticated_serde::serialize",
        deserialize_with = "authenticated_serde::deserialize"
    )]
    pub authenticated: Option<String>,
    /// What is known at connect time.
    pub connect: Connect,
    /// The EHLO/HELO greeting, once given.
    pub ehlo: Option<Ehlo>,
    /// The MAIL FROM envelope sender, once given.
    pub mailfrom: Option<MailFrom>,
    /// The RCPT TO envelope recipients, in order.
    pub rcptto: Vec<RcptTo>,
    /// The message, once DATA has been received.
    pub data: Option<Data>,
    /// The TLS protocol version, e.g. `"TLSv1.3"` (as OpenSSL and Postfix write it), when encrypted (new key).
    pub tls_version: Option<String>,
    /// The TLS cipher suite, e.g. `"TLS13_AES_256_GCM_SHA384"`, when encrypted
    /// (new key).
    pub tls_cipher: Option<String>,
    /// The client IP on each configured DNSBL zone (new key; `null` without DNS).
    pub dnsbl: Option<Vec<Dnsbl>>,
    /// The listener the connection came in on (new key).
    pub listener: Option<Listener>,
    /// Whether the accepted message was stored for every accepted recipient
    /// (new key): `null` until `received` has delivered it (or when no message
    /// was accepted), then `true`, or `false` with `delivery_error`. Each
    /// recipient's own outcome is `rcptto[].delivered`.
    pub delivered: Option<bool>,
    /// Why storing the accepted message failed (new key).
    pub delivery_error: Option<String>,
    /// What policy layers (HTTP hooks) recorded for this mail, by key (new key;
    /// see [`crate::policy::Changes`]): `{}` when none did.
    pub extensions: serde_json::Map<String, serde_json::Value>,
    /// A policy layer discarded the message: taken from the client, never
    /// stored (new key; see [`crate::policy::Action::Discard`]).
    pub discarded: bool,
    /// Why a policy layer quarantined the message (new key; `null` when none
    /// did; see [`crate::policy::Action::Quarantine`]).
    pub quarantine: Option<String>,
    /// What the milters answered and changed (new key; left out when no
    /// milter said anything; see [`MilterVerdict`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub milter: Vec<MilterVerdict>,
}

/// The client IP on one DNS block list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Dnsbl {
    /// The zone asked, e.g. `zen.spamhaus.org`.
    pub zone: String,
    /// Listed.
    pub listed: bool,
    /// The `127.0.0.x` answers.
    pub codes: Vec<String>,
    /// The zone's TXT reason, if any.
    pub reason: Option<String>,
    /// Why the lookup failed.
    pub error: Option<String>,
}

/// One DKIM signature of the message and its verification.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Dkim {
    /// The signing domain (`d=`).
    pub domain: Option<String>,
    /// The selector (`s=`).
    pub selector: Option<String>,
    /// `pass`, `fail`, `neutral`, `temperror`, `permerror`.
    pub result: String,
    /// Why it did not pass.
    pub reason: Option<String>,
}

/// What is known when the client connects.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Connect {
    /// The client's IP address.
    pub value: String,
    /// The client's PTR name, if any.
    pub domain: Option<String>,
    /// The iprev result (RFC 8601): `pass` when a PTR name resolves back to the
    /// client IP, `fail`, `temperror`, `permerror` (new key; `null` without DNS).
    pub iprev: Option<String>,
    /// Why a lookup failed (`timeout`, `servfail`, …) (new key).
    pub error: Option<String>,
}

/// The client's EHLO/HELO greeting.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Ehlo {
    /// The argument the client gave.
    pub value: String,
    /// The address the greeting name resolves to (the seed's `rip`; the literal
    /// itself for `[1.2.3.4]`).
    pub rip: Option<String>,
    /// The A record of `domain` (the seed's `fip`).
    pub fip: Option<String>,
    /// The PTR name of `rip` (the seed's `domain`).
    pub domain: Option<String>,
    /// `"EHLO"` or `"HELO"` (new key).
    pub verb: String,
    /// Whether the greeting name (or literal) resolves to the client's IP — what
    /// `ehlo_validation_check` checks (new key).
    pub matches_client: Option<bool>,
    /// SPF result of the HELO identity (new key).
    pub spf: Option<String>,
    /// Why a lookup failed (new key).
    pub error: Option<String>,
}

/// The message received after DATA.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Data {
    /// Whether the receiver accepted the message: true from the moment
    /// `received` is called for a complete, acceptable message (the seed's
    /// meaning); whether storing it worked is `delivered`.
    pub accepted: bool,
    /// Always `""` (the seed's shape).
    pub value: String,
    /// The header section, keyed by lower-cased name with `-` → `_`
    /// (see [`split_message`]).
    pub headers: IndexMap<String, HeaderValue>,
    /// The body lines without their line endings (a view into `raw`).
    pub text: Text,
    /// Octets of the message as received (new key).
    pub size: u64,
    /// The trace header(s) we prepend, e.g. `"Received: ...\r\n"` (new key).
    pub received: String,
    /// DKIM signatures and their results (new key).
    pub dkim: Vec<Dkim>,
    /// DMARC result: `pass`, `fail`, `none`, `temperror`, `permerror` (new key).
    pub dmarc: Option<String>,
    /// The DMARC policy of the From: domain when it does not pass (new key).
    pub dmarc_policy: Option<String>,
    /// ARC chain result (new key).
    pub arc: Option<String>,
    /// The message bytes exactly as received (dot-unstuffed), without our
    /// trace header. Not serialized.
    #[serde(skip)]
    pub raw: bytes::Bytes,
}

/// One header name's occurrences: a single string when the name occurs once
/// (the seed's shape), an array in order when repeated (so no header is lost).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum HeaderValue {
    /// The name occurs once.
    One(String),
    /// The name occurs more than once; the occurrences in order.
    Many(Vec<String>),
}

impl Default for HeaderValue {
    fn default() -> Self {
        HeaderValue::One(String::new())
    }
}

impl From<String> for HeaderValue {
    fn from(s: String) -> Self {
        HeaderValue::One(s)
    }
}

impl HeaderValue {
    /// All occurrences, in order, as a slice.
    pub fn as_slice(&self) -> &[String] {
        match self {
            HeaderValue::One(s) => std::slice::from_ref(s),
            HeaderValue::Many(v) => v,
        }
    }

    /// The first occurrence (`""` for an empty `Many`).
    pub fn first(&self) -> &str {
        self.as_slice().first().map_or("", String::as_str)
    }

    /// All occurrences, in order.
    pub fn all(&self) -> impl Iterator<Item = &str> {
        self.as_slice().iter().map(String::as_str)
    }

    /// Adds another occurrence; a `One` becomes a `Many`.
    pub fn push(&mut self, value: String) {
        match self {
            HeaderValue::Many(v) => v.push(value),
            HeaderValue::One(s) => {
                let first = std::mem::take(s);
                *self = HeaderValue::Many(vec![first, value]);
            }
        }
    }
}

impl Data {
    /// Builds the `data` entry for a received message: `accepted` false,
    /// `value` `""`, headers and text split by [`split_message`], `size` the
    /// length of `raw`.
    pub fn from_message(raw: Vec<u8>, received: String) -> Data {
        Self::from_bytes(bytes::Bytes::from(raw), received)
    }

    /// [`Data::from_message`] for bytes already shared.
    pub fn from_bytes(raw: bytes::Bytes, received: String) -> Data {
        let (headers, text) = split_message(&raw);
        Data {
            accepted: false,
            value: String::new(),
            headers,
            text,
            size: u64::try_from(raw.len()).unwrap_or(u64::MAX),
            received,
            raw,
            ..Data::default()
        }
    }

    /// Drops everything taken from the message itself — its bytes, `headers` and
    /// `text` — and keeps the facts about it (`accepted`, `size`, `received`, the
    /// DKIM/DMARC/ARC results). What a finished transaction keeps: a message's
    /// headers and lines take several times its size in memory (an 8 MB message of
    /// 1M header lines: ~60 MB), so keeping them for every finished transaction of
    /// a session let one client hold gigabytes.
    pub fn forget_message(&mut self) {
        self.raw = bytes::Bytes::new();
        self.headers = IndexMap::new();
        self.text = Text::default();
    }

    /// The MIME view of the raw message (`None` if it cannot be parsed at all,
    /// e.g. when `raw` is empty).
    pub fn parsed(&self) -> Option<mail_parser::Message<'_>> {
        mail_parser::MessageParser::default().parse(&self.raw[..])
    }
}

impl Mail {
    /// The structure as one line of JSON.
    pub fn to_json(&self) -> String {
        // sonic-rs writes UTF-8 only; the fallback is never taken.
        String::from_utf8(self.to_json_bytes()).unwrap_or_else(|_| "{}".to_owned())
    }

    /// The envelope sender for a `Return-Path`: `""` for the null path or
    /// when there is no MAIL FROM, else `mailfrom.url`.
    pub fn reverse_path(&self) -> String {
        match &self.mailfrom {
            Some(m) if m.url != "<>" => m.url.clone(),
            _ => String::new(),
        }
    }
}

/// `authenticated`: `false` (or `null`) ⇄ `None`, `"user"` ⇄ `Some("user")`.
mod authenticated_serde {
    use super::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Auth {
        Flag(bool),
        User(String),
    }

    pub(super) fn serialize<S: Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(user) => s.serialize_str(user),
            None => s.serialize_bool(false),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        match Option::<Auth>::deserialize(d)? {
            Some(Auth::User(user)) => Ok(Some(user)),
            Some(Auth::Flag(false)) | None => Ok(None),
            Some(Auth::Flag(true)) => Err(serde::de::Error::custom(
                "authenticated: expected false, null or a user name, found true",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// The README's sample structure, as JSON (so the seed's shape loads).
    const SEED: &str = r#"{"local_port":"2001","local_hostname":"mail.example.com",
        "remote_port":"54278","remote_hostname":"example.com","remote_ip":"::ffff:107.105.187.182",
        "id":"OELGQA-A58QI3-AA","time":"2016-10-05 21:51:46 +0000","accepted":true,
        "prohibited":false,"encrypted":true,"authenticated":false,
        "connect":{"value":"::ffff:107.105.187.182","domain":null},
        "ehlo":{"value":"example.com","rip":"93.184.216.34","fip":"93.184.216.34",
            "domain":"mail.example.com"},
        "mailfrom":{"accepted":true,"value":"<admin@example.com>","name":"",
            "url":"admin@example.com","local_part":"admin","domain":"example.com",
            "bad_characters":false,"wrong_dot_usage":false,"ip":"93.184.216.34",
            "mxs":["mail.example.com"],"ips":["93.184.216.34"],"spf":"pass"},
        "rcptto":[{"accepted":true,"value":"<abuse@example.com>","name":"",
            "url":"abuse@example.com","local_part":"abuse","domain":"example.com",
            "bad_characters":false,"wrong_dot_usage":false,"ip":"93.184.216.34",
            "mxs":["mail.example.com"],"ips":["93.184.216.34"]}],
        "data":{"accepted":true,"value":"","headers":{"subject":"Subject: test"},
            "text":["This is a test mailing",""]}}"#;

    fn sample() -> Mail {
        let mut m: Mail = serde_json::from_str(SEED).unwrap();
        let raw = b"Date: Wed, 05 Oct 2016 14:51:46 -0700\r\nTo: abuse@example.com\r\n\
                    Subject: test\r\n\r\nThis is a test mailing\r\n\r\n";
        m.data = Some(Data::from_message(raw.to_vec(), "Received: x\r\n".into()));
        m
    }

    #[test]
    fn seed_json_loads() {
        let m: Mail = serde_json::from_str(SEED).unwrap();
        assert_eq!(m.authenticated, None);
        assert_eq!(m.connect.domain, None);
        assert_eq!(m.ehlo.as_ref().unwrap().verb, "", "new keys default");
        assert_eq!(m.mailfrom.as_ref().unwrap().spf.as_deref(), Some("pass"));
        assert_eq!(m.rcptto[0].local_part.as_deref(), Some("abuse"));
        let d = m.data.unwrap();
        assert_eq!(d.headers["subject"].first(), "Subject: test");
        assert_eq!((d.size, d.received.as_str(), d.raw.len()), (0, "", 0));
    }

    fn sorted<'a>(k: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
        let mut k: Vec<&str> = k.into_iter().collect();
        k.sort_unstable();
        k
    }

    #[test]
    fn json_keys_are_the_seeds() {
        let json = sample().to_json();
        let v: Value = serde_json::from_str(&json).unwrap();
        let addr = "accepted value name url local_part domain bad_characters wrong_dot_usage ip mxs ips \
             ipv6 null_mx implicit_mx error callout";
        let table: [(&Value, String); 6] = [
            (
                &v,
                "local_port local_hostname remote_port remote_hostname remote_ip id time accepted \
                 prohibited encrypted authenticated connect ehlo mailfrom rcptto data \
                 tls_version tls_cipher dnsbl listener delivered delivery_error \
                 extensions discarded quarantine"
                    .into(),
            ),
            (&v["connect"], "value domain iprev error".into()),
            (
                &v["ehlo"],
                "value rip fip domain verb matches_client spf error".into(),
            ),
            (&v["mailfrom"], format!("{addr} spf size body smtputf8")),
            (&v["rcptto"][0], format!("{addr} delivered delivery_error")),
            (
                &v["data"],
                "accepted value headers text size received dkim dmarc dmarc_policy arc".into(),
            ),
        ];
        for (obj, expected) in &table {
            let got = sorted(obj.as_object().unwrap().keys().map(String::as_str));
            assert_eq!(got, sorted(expected.split_whitespace()));
        }
        // The seed's order is kept (Value sorts keys, so look at the text).
        assert!(json.starts_with(r#"{"local_port":"2001","local_hostname""#));
        assert!(!json.contains('\n'));
        assert_eq!(v["data"]["headers"]["subject"], "Subject: test");
        assert_eq!(
            v["data"]["text"],
            serde_json::json!(["This is a test mailing", ""])
        );
        assert_eq!(v["data"]["size"], sample().data.unwrap().raw.len());
    }

    #[test]
    fn authenticated_shapes() {
        let mut m = sample();
        let v: Value = serde_json::from_str(&m.to_json()).unwrap();
        assert_eq!(v["authenticated"], Value::Bool(false));
        m.authenticated = Some("user".into());
        let v: Value = serde_json::from_str(&m.to_json()).unwrap();
        assert_eq!(v["authenticated"], "user");

        for (json, expected) in [
            (r#"{"authenticated":false}"#, Some(None)),
            (r#"{"authenticated":null}"#, Some(None)),
            (r#"{"authenticated":"bob"}"#, Some(Some("bob"))),
            (r#"{"authenticated":true}"#, None),
            (r#"{"authenticated":7}"#, None),
            (r#"{}"#, Some(None)),
        ] {
            let got = serde_json::from_str::<Mail>(json)
                .ok()
                .map(|m| m.authenticated);
            assert_eq!(got, expected.map(|o| o.map(str::to_owned)), "{json}");
        }
    }

    #[test]
    fn round_trip() {
        let mut m = sample();
        m.authenticated = Some("user".into());
        m.data
            .as_mut()
            .unwrap()
            .headers
            .get_mut("to")
            .unwrap()
            .push("To: second".into());
        let back: Mail = serde_json::from_str(&m.to_json()).unwrap();
        // `raw` is not serialized.
        m.data.as_mut().unwrap().raw = bytes::Bytes::new();
        assert_eq!(back, m);
    }

    #[test]
    fn reverse_path() {
        let mut m = sample();
        assert_eq!(m.reverse_path(), "admin@example.com");
        m.mailfrom.as_mut().unwrap().url = "<>".into();
        assert_eq!(m.reverse_path(), "");
        m.mailfrom = None;
        assert_eq!(m.reverse_path(), "");
    }

    #[test]
    fn header_value_helpers() {
        let mut h = HeaderValue::from("A: 1".to_owned());
        assert_eq!(h.first(), "A: 1");
        h.push("A: 2".into());
        h.push("A: 3".into());
        assert_eq!(h.all().collect::<Vec<_>>(), ["A: 1", "A: 2", "A: 3"]);
        assert_eq!(h.first(), "A: 1");
        assert_eq!(HeaderValue::Many(vec![]).first(), "");
        assert_eq!(
            serde_json::to_string(&h).unwrap(),
            r#"["A: 1","A: 2","A: 3"]"#
        );
    }

    #[test]
    fn data_from_message_and_parsed() {
        let raw = b"From: a@b\r\nSubject: hi\r\n\r\nhello\r\n".to_vec();
        let d = Data::from_message(raw.clone(), "Received: x\r\n".into());
        assert!(!d.accepted);
        assert_eq!(d.value, "");
        assert_eq!(d.size, raw.len() as u64);
        assert_eq!(d.raw, raw);
        assert_eq!(d.received, "Received: x\r\n");
        let p = d.parsed().unwrap();
        assert_eq!(p.subject(), Some("hi"));
        assert_eq!(p.body_text(0).as_deref(), Some("hello\r\n"));
        let _ = Data::default().parsed();
    }

    #[test]
    fn forget_message_keeps_only_the_facts() {
        let raw = b"X-H: 1\r\nX-H: 2\r\n\r\nline\r\n".to_vec();
        let mut d = Data::from_message(raw.clone(), "Received: x\r\n".into());
        d.accepted = true;
        d.dmarc = Some("pass".into());
        d.forget_message();
        let expected = Data {
            accepted: true,
            size: raw.len() as u64,
            received: "Received: x\r\n".into(),
            dmarc: Some("pass".into()),
            ..Data::default()
        };
        assert_eq!(d, expected);
        assert_eq!(d.headers.capacity(), 0);
        assert!(d.text.as_bytes().is_empty());
    }
}
