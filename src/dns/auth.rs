//! Sender authentication with `mail-auth`: SPF (RFC 7208) for the MAIL FROM and
//! HELO identities, then — once the message is in — DKIM (RFC 6376), ARC
//! (RFC 8617) and DMARC (RFC 7489) and the one `Authentication-Results` header
//! (RFC 8601) that reports them all. The record caches are shared ([`super::cache`]);
//! the verification itself is all `mail-auth`'s.
//!
//! ARC lives in `arc.rs`: it needs a `mail-auth` feature (see there).

use std::net::IpAddr;

use mail_auth::dmarc::Policy;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, AuthenticationResults, DkimOutput, DkimResult, DmarcOutput, DmarcResult,
    Error as AuthError, IprevOutput, IprevResult, SpfOutput, SpfResult,
};
use serde::Serialize;
use std::time::Instant as StdInstant;
use tokio::time::{Instant, timeout_at};

use super::cache::Reads;
use super::keys::{MessageKeyRef, SpfKeyRef};
use super::{Dns, canonical};

/// The SPF results of both identities, as the lower-case RFC 7208 words `pass`,
/// `fail`, `softfail`, `neutral`, `none`, `temperror`, `permerror`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SpfFindings {
    /// The MAIL FROM identity (`mailfrom.spf`); for the null reverse path,
    /// `postmaster@<helo>` (RFC 7208 §2.4), i.e. the same as `helo`.
    pub mail_from: String,
    /// The HELO identity: the EHLO/HELO argument as given (`none` for an address
    /// literal or anything else that is not a domain name).
    pub helo: String,
}

/// What [`Dns::authenticate_message`] needs to know about the session.
#[derive(Debug, Clone, Copy)]
pub struct AuthContext<'a> {
    /// The client IP.
    pub ip: IpAddr,
    /// The EHLO/HELO argument as given.
    pub helo: &'a str,
    /// The MAIL FROM address (`local@domain`); `None`, `""` or `"<>"` for the null
    /// reverse path.
    pub mail_from: Option<&'a str>,
    /// Our host name: the authserv-id of the header.
    pub server_name: &'a str,
    /// The iprev result from [`Dns::reverse`]; `None` leaves iprev out of the header.
    pub iprev: Option<&'a str>,
    /// The SPF results from [`Dns::spf`]; `None` = evaluate SPF here first.
    pub spf: Option<&'a SpfFindings>,
}

/// One DKIM signature's verification: the mail structure's own [`Dkim`](crate::mail::Dkim).
pub type DkimFinding = crate::mail::Dkim;

/// Everything the message authentication found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MessageAuth {
    /// One entry per DKIM-Signature field, in message order (empty when unsigned).
    pub dkim: Vec<DkimFinding>,
    /// The DMARC result: `pass`, `fail`, `temperror`, `permerror` or `none` (no
    /// policy published, no usable From: domain, or a message that does not parse).
    pub dmarc: String,
    /// The policy to apply when DMARC does not pass — `none`, `quarantine` or
    /// `reject`, after `sp=`/`np=`/`t=y` — when the From: domain has a DMARC record.
    pub dmarc_policy: Option<String>,
    /// The RFC 5322 From: domain DMARC evaluated.
    pub dmarc_domain: Option<String>,
    /// The ARC chain: `pass`, `fail`, `none` (no ARC sets), or `neutral`/`temperror`
    /// when it could not be evaluated.
    pub arc: String,
    /// One `Authentication-Results: <server_name>; iprev=…; spf=…; spf=…; dkim=…;
    /// arc=…; dmarc=…` header field, folded, ending in CRLF, ready to prepend.
    pub authentication_results: String,
}

impl Dns {
    /// SPF for the MAIL FROM identity and the HELO identity concurrently, with
    /// the client IP as given (an IPv4-mapped address counts as IPv4).
    /// `mail_from` is `local@domain`; `None`, `""` or `"<>"` is the null reverse
    /// path. `server_name` is our host name (the `%{r}` macro). A check that does
    /// not finish within the timeout is `temperror`.
    pub async fn spf(
        &self,
        ip: IpAddr,
        helo: &str,
        mail_from: Option<&str>,
        server_name: &str,
    ) -> SpfFindings {
        let ip = canonical(ip);
        let deadline = self.deadline();
        let helo = helo.trim();
        let helo_key = SpfKeyRef {
            ip,
            domain: helo,
            helo,
            host: server_name,
            sender: None,
        };
        let helo_params = SpfParameters::verify_ehlo(ip, helo, server_name);
        let helo_check = self.check_host(deadline, helo_key, helo_params);
        match sender(mail_from) {
            Some(sender) => {
                let domain = sender.rsplit_once('@').map_or(helo, |(_, domain)| domain);
                let key = SpfKeyRef {
                    ip,
                    domain,
                    helo,
                    host: server_name,
                    sender: Some(sender),
                };
                let params = SpfParameters::verify_mail_from(ip, helo, server_name, sender);
                let (helo, mail_from) =
                    tokio::join!(helo_check, self.check_host(deadline, key, params));
                SpfFindings {
                    mail_from: spf_word(mail_from).into(),
                    helo: spf_word(helo).into(),
                }
            }
            None => {
                let helo = spf_word(helo_check.await);
                SpfFindings {
                    mail_from: helo.into(),
                    helo: helo.into(),
                }
            }
        }
    }

    /// `check_host()` of `key.domain` (RFC 7208 §4): `none` at once for a domain
    /// that is malformed or has a single label (§4.3), e.g. an address literal. A
    /// result is kept (by `key`) as long as every record it was built from.
    async fn check_host(
        &self,
        deadline: Instant,
        key: SpfKeyRef<'_>,
        params: SpfParameters<'_>,
    ) -> SpfResult {
        if !is_domain_name(key.domain) {
            return SpfResult::None;
        }
        let cache = &self.inner.findings.spf;
        if let Some(result) = cache.get_at(&key, StdInstant::now()) {
            return result;
        }
        let reads = Reads::default();
        let tracked = self.inner.caches.tracked(&reads);
        let check = self.inner.auth.check_host(tracked.parameters(params));
        // Boxed: a cached result should not carry room for the check.
        let result = match timeout_at(deadline, Box::pin(check)).await {
            Ok(output) => output.result(),
            Err(_) => return SpfResult::TempError,
        };
        if result != SpfResult::TempError
            && let Some(until) = reads.valid_until()
        {
            cache.insert_at(key.to_key(), result, until, StdInstant::now());
        }
        result
    }

    /// DKIM (every signature) and ARC concurrently, then DMARC from the SPF MAIL
    /// FROM result and DKIM, of the message as received (`raw`: header and body,
    /// without our trace header); and the `Authentication-Results` header with
    /// `cx.server_name` as authserv-id. Each of the two phases is bounded by the
    /// timeout; what does not finish is `temperror`.
    pub async fn authenticate_message(&self, raw: &[u8], cx: &AuthContext<'_>) -> MessageAuth {
        let ip = canonical(cx.ip);
        let helo = cx.helo.trim();
        let mail_from = sender(cx.mail_from);
        let spf = match cx.spf {
            Some(spf) => spf.clone(),
            None => self.spf(ip, helo, mail_from, cx.server_name).await,
        };
        // A message without signatures authenticates as the last one with the
        // same session facts and From: did, while the DNS answers behind it live.
        let parsed = AuthenticatedMessage::parse(raw);
        let key = parsed
            .as_ref()
            .and_then(|m| MessageKeyRef::unsigned(m, cx, ip, helo, mail_from, &spf));
        let cache = &self.inner.findings.messages;
        if let Some(found) = key
            .as_ref()
            .and_then(|k| cache.get_at(k, StdInstant::now()))
        {
            return found;
        }
        // A miss: the key is kept for the insert, no longer borrowing `parsed`.
        let key = key.map(MessageKeyRef::to_key);
        let host = authserv_id(cx.server_name);
        let mut results = Results::new(&host);

        if let Some(iprev) = cx.iprev {
            let iprev = IprevOutput {
                result: iprev_result(iprev),
                ptr: None,
            };
            results.add(AuthenticationResults::new(&host).with_iprev_result(&iprev, ip));
        }
        let spf_helo = SpfOutput::new(helo.to_owned()).with_result(parse_spf(&spf.helo));
        let spf_from_domain = mail_from
            .and_then(|m| m.rsplit_once('@'))
            .map_or(helo, |(_, domain)| domain);
        let spf_mail_from =
            SpfOutput::new(spf_from_domain.to_owned()).with_result(parse_spf(&spf.mail_from));
        results.add(
            AuthenticationResults::new(&host)
                .with_spf_ehlo_result(&spf_helo, ip, helo)
                .with_spf_mailfrom_result(&spf_mail_from, ip, mail_from.unwrap_or(""), helo),
        );

        let Some(message) = parsed else {
            results.push("dkim=none (message not parsed)");
            results.push("arc=none");
            results.push("dmarc=none");
            return MessageAuth {
                dmarc: "none".into(),
                arc: "none".into(),
                authentication_results: results.finish(),
                ..MessageAuth::default()
            };
        };

        // Phase 1: DKIM and ARC.
        let deadline = self.deadline();
        let verify = self
            .inner
            .auth
            .verify_dkim(self.inner.caches.parameters(&message));
        let dkim = async {
            if message.dkim_headers.is_empty() {
                // No signature: nothing is looked up, so no timer is needed.
                Ok(verify.await)
            } else {
                timeout_at(deadline, verify).await
            }
        };
        let (dkim, arc) = tokio::join!(dkim, self.arc(deadline, &message, &host, ip));
        let dkim = dkim.unwrap_or_else(|_| {
            message
                .dkim_headers
                .iter()
                .map(|h| DkimOutput::temp_err(timed_out()).with_signature(&h.header))
                .collect()
        });
        if dkim.is_empty() {
            results.push("dkim=none");
        } else {
            results.add(AuthenticationResults::new(&host).with_dkim_results(&dkim, message.from()));
        }
        let (arc, arc_part) = arc;
        results.push_raw(&arc_part);

        // Phase 2: DMARC. The names its tree walk of the From: domain asks that
        // do not exist go into the record cache first (within the phase's time).
        let params = DmarcParameters::new(&message, &dkim, spf_from_domain, &spf_mail_from);
        let reads = Reads::default();
        let tracked = self.inner.caches.tracked(&reads);
        let dmarc = async {
            if let Some(from) = single_from_domain(&message) {
                Box::pin(self.cache_missing_dmarc_records(from)).await;
            }
            self.inner
                .auth
                .verify_dmarc(tracked.parameters(params))
                .await
        };
        let dmarc = timeout_at(self.deadline(), dmarc).await;
        let complete = dmarc.is_ok();
        let dmarc = dmarc.unwrap_or_else(|_| {
            let from = message.from().rsplit_once('@').map_or("", |(_, d)| d);
            DmarcOutput::new(from.to_ascii_lowercase())
                .with_spf_result(DmarcResult::TempError(timed_out()))
                .with_dkim_result(DmarcResult::TempError(timed_out()))
        });
        if dmarc.domain().is_empty() {
            results.push("dmarc=none");
        } else {
            results.add(AuthenticationResults::new(&host).with_dmarc_result(&dmarc));
        }

        let found = MessageAuth {
            dkim: dkim.iter().map(dkim_finding).collect(),
            dmarc: dmarc_word(&dmarc.result()).into(),
            dmarc_policy: dmarc
                .dmarc_record()
                .map(|_| policy_word(dmarc.policy()).into()),
            dmarc_domain: Some(dmarc.domain().to_owned()).filter(|d| !d.is_empty()),
            arc,
            authentication_results: results.finish(),
        };
        if let Some(key) = key
            && complete
            && let Some(until) = reads.valid_until()
        {
            cache.insert_at(key, found.clone(), until, StdInstant::now());
        }
        found
    }
}

/// The parts of one `Authentication-Results` header, built from `mail-auth`'s
/// renderings (each `<host>;\r\n\t<method>=…`) so that methods can be added in our
/// order, and ones `mail-auth` cannot express (`dkim=none`) written directly.
struct Results<'h> {
    host: &'h str,
    parts: String,
}

impl<'h> Results<'h> {
    fn new(host: &'h str) -> Self {
        Results {
            host,
            parts: String::with_capacity(512),
        }
    }

    /// The methods `results` rendered (its text after the authserv-id).
    fn add(&mut self, results: AuthenticationResults<'_>) {
        self.parts.push_str(&tail(self.host, &results));
    }

    /// One method written directly, e.g. `dkim=none`.
    fn push(&mut self, method: &str) {
        self.parts.push_str(";\r\n\t");
        self.parts.push_str(method);
    }

    fn push_raw(&mut self, part: &str) {
        self.parts.push_str(part);
    }

    /// The header field, ending in CRLF.
    fn finish(self) -> String {
        let parts = if self.parts.is_empty() {
            "; none"
        } else {
            &self.parts
        };
        format!("Authentication-Results: {}{parts}\r\n", self.host)
    }
}

/// What `results` renders after the authserv-id: `;\r\n\t<method>=…`.
pub(super) fn tail(host: &str, results: &AuthenticationResults<'_>) -> String {
    let text = results.to_string();
    text.strip_prefix(host).unwrap_or(&text).to_owned()
}

/// `server_name` made safe as the authserv-id token: visible ASCII except the
/// characters that would end or break it.
fn authserv_id(server_name: &str) -> String {
    let id: String = server_name
        .trim()
        .chars()
        .filter(|c| c.is_ascii_graphic() && !"();\"\\,".contains(*c))
        .collect();
    if id.is_empty() {
        "localhost".into()
    } else {
        id
    }
}

/// Whether `name` can be an SPF domain (RFC 7208 §4.3): at least two labels of 1 to
/// 63 octets (a trailing dot allowed), no brackets, spaces or other punctuation
/// than `-` and `_`, at most 253 octets.
fn is_domain_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    let mut labels = 0;
    for label in name.split('.') {
        let ok = (1..=63).contains(&label.len())
            && label
                .chars()
                .all(|c| c.is_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return false;
        }
        labels += 1;
    }
    labels >= 2 && name.len() <= 253
}

/// The domain of the RFC 5322 From: addresses when there is exactly one (DMARC
/// evaluates no other message).
fn single_from_domain<'m>(message: &'m AuthenticatedMessage<'_>) -> Option<&'m str> {
    let mut domains = message
        .from
        .iter()
        .filter_map(|from| from.rsplit_once('@').map(|(_, domain)| domain));
    let first = domains.next()?;
    domains
        .all(|d| d.eq_ignore_ascii_case(first))
        .then_some(first)
}

/// The MAIL FROM address, or `None` for the null reverse path.
fn sender(mail_from: Option<&str>) -> Option<&str> {
    mail_from
        .map(str::trim)
        .filter(|m| !m.is_empty() && *m != "<>")
}

/// The error recorded for a check that ran out of time.
pub(super) fn timed_out() -> AuthError {
    AuthError::Dns(mail_auth::DnsError::Resolver("timeout".into()))
}

fn spf_word(result: SpfResult) -> &'static str {
    match result {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
        SpfResult::None => "none",
    }
}

fn parse_spf(word: &str) -> SpfResult {
    match word.trim().to_ascii_lowercase().as_str() {
        "pass" => SpfResult::Pass,
        "fail" => SpfResult::Fail,
        "softfail" => SpfResult::SoftFail,
        "neutral" => SpfResult::Neutral,
        "temperror" => SpfResult::TempError,
        "permerror" => SpfResult::PermError,
        _ => SpfResult::None,
    }
}

/// The iprev word of [`Dns::reverse`] as `mail-auth` models it (the reasons are the
/// ones `mail-auth`'s own iprev check gives).
fn iprev_result(word: &str) -> IprevResult {
    match word.trim().to_ascii_lowercase().as_str() {
        "pass" => IprevResult::Pass,
        "fail" => IprevResult::Fail(AuthError::NotAligned),
        "temperror" => {
            IprevResult::TempError(AuthError::Dns(mail_auth::DnsError::Resolver(String::new())))
        }
        "permerror" => IprevResult::PermError(AuthError::Dns(mail_auth::DnsError::RecordNotFound(
            hickory_resolver::proto::op::ResponseCode::NXDomain,
        ))),
        _ => IprevResult::None,
    }
}

pub(super) fn dkim_word(result: &DkimResult) -> &'static str {
    match result {
        DkimResult::Pass => "pass",
        DkimResult::Neutral(_) => "neutral",
        DkimResult::Fail(_) => "fail",
        DkimResult::PermError(_) => "permerror",
        DkimResult::TempError(_) => "temperror",
        DkimResult::None => "none",
    }
}

fn dkim_finding(output: &DkimOutput<'_>) -> DkimFinding {
    let reason = match output.result() {
        DkimResult::Neutral(e)
        | DkimResult::Fail(e)
        | DkimResult::PermError(e)
        | DkimResult::TempError(e) => Some(e.to_string()),
        DkimResult::Pass | DkimResult::None => None,
    };
    DkimFinding {
        domain: output.signature().map(|s| s.d.to_ascii_lowercase()),
        selector: output.signature().map(|s| s.s.clone()),
        result: dkim_word(output.result()).into(),
        reason,
    }
}

fn dmarc_word(result: &DmarcResult) -> &'static str {
    match result {
        DmarcResult::Pass => "pass",
        DmarcResult::Fail(_) => "fail",
        DmarcResult::TempError(_) => "temperror",
        DmarcResult::PermError(_) => "permerror",
        DmarcResult::None => "none",
    }
}

fn policy_word(policy: Policy) -> &'static str {
    match policy {
        Policy::Reject => "reject",
        Policy::Quarantine => "quarantine",
        Policy::None | Policy::Unspecified => "none",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip() {
        for word in [
            "pass",
            "fail",
            "softfail",
            "neutral",
            "temperror",
            "permerror",
            "none",
        ] {
            assert_eq!(spf_word(parse_spf(word)), word);
        }
        assert_eq!(spf_word(parse_spf("bogus")), "none");
    }

    #[test]
    fn spf_domains() {
        for good in [
            "a.example",
            "A-1.example.",
            "_spf.example",
            "bücher.example",
        ] {
            assert!(is_domain_name(good), "{good}");
        }
        let long = format!("{}.example", "a".repeat(64));
        for bad in [
            "",
            "example",
            "[192.0.2.1]",
            "a..example",
            ".a.example",
            "a b.example",
            &long,
        ] {
            assert!(!is_domain_name(bad), "{bad}");
        }
    }

    #[test]
    fn header_without_message() {
        let mut r = Results::new("mx.example");
        assert_eq!(
            Results::new("mx.example").finish(),
            "Authentication-Results: mx.example; none\r\n"
        );
        r.push("dkim=none");
        assert_eq!(
            r.finish(),
            "Authentication-Results: mx.example;\r\n\tdkim=none\r\n"
        );
        assert_eq!(authserv_id(" mx.exa;mple\r\n"), "mx.example");
        assert_eq!(authserv_id("\r\n"), "localhost");
    }
}
