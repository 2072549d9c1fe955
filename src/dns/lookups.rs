//! The plain checks: connect PTR with iprev, the EHLO check, MAIL/RCPT domains
//! (MX, A, AAAA, null MX, implicit MX) and DNSBLs, built on the record lookups of
//! `records.rs`; SPF and message authentication are in `auth.rs`.
//!
//! The findings of the first three are cached (`Findings` in `cache.rs`: per
//! client IP, per EHLO name and client, per domain) until the earliest TTL of the
//! answers they were built from, and not at all when one of those answers was a
//! failure: a cached finding is the one the check would find again. DNSBL
//! listings are left to the resolver's cache.

use std::borrow::Cow;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant as StdInstant;

use futures_util::future::join_all;
use mail_auth::common::resolver::ToReverseName;
use serde::Serialize;
use tokio::time::Instant;

use super::cache::Reads;
use super::{Dns, Failure, bounded, canonical};

/// At most this many PTR names are forward-checked (iprev) and this many MX hosts
/// resolved, so a hostile zone cannot make one check fan out without end.
const MAX_NAMES: usize = 10;

/// The client's reverse DNS, forward-confirmed (RFC 8601 §3 "iprev").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Reverse {
    /// The first PTR name of the client IP that resolves back to the IP (the
    /// `connect.domain` field); `None` when no PTR name does.
    pub domain: Option<String>,
    /// All PTR names of the client IP, in DNS order, confirmed or not.
    pub ptr: Vec<String>,
    /// The iprev result: `"pass"` (some PTR name resolves back to the IP), `"fail"`
    /// (PTR names exist but none resolves back), `"permerror"` (no PTR record),
    /// `"temperror"` (a DNS failure, e.g. a timeout).
    pub iprev: String,
    /// The error kind of the lookup that failed, if one did.
    pub error: Option<String>,
}

/// What the DNS says about the EHLO/HELO name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EhloFindings {
    /// The first A record of the name, else its first AAAA record (the seed's
    /// `ehlo.rip`); for an address literal, the literal's address.
    pub rip: Option<String>,
    /// The first PTR name of `rip` (`ehlo.domain`).
    pub domain: Option<String>,
    /// The first address of `domain`, of the same family as `rip` (`ehlo.fip`).
    pub fip: Option<String>,
    /// Whether the EHLO name resolves (A or AAAA) to the client IP — for an address
    /// literal, whether the literal is the client IP. `None` when a DNS failure left
    /// this undecided; `Some(false)` when the name does not exist or has no address.
    pub matches_client: Option<bool>,
    /// The first failure along name → `rip` → `domain` → `fip`.
    pub error: Option<String>,
}

/// What the DNS says about the domain of a MAIL FROM or RCPT TO address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DomainFindings {
    /// The domain's first A record (the seed's `ip`); for an address literal
    /// (`[192.0.2.1]`), the literal.
    pub ip: Option<String>,
    /// The domain's AAAA records, in DNS order.
    pub ipv6: Vec<String>,
    /// The MX hosts sorted by preference (ties in DNS order); `Some([])` for a null
    /// MX; `Some([domain])` for an implicit MX; `None` when the lookup failed, the
    /// domain does not exist or has neither MX nor address.
    pub mxs: Option<Vec<String>>,
    /// The first address of each of `mxs`, index for index (its first A record,
    /// else its first AAAA record; `None` when it has neither).
    pub ips: Option<Vec<Option<String>>>,
    /// The domain publishes a null MX (RFC 7505): it accepts no mail.
    pub null_mx: bool,
    /// The domain has no MX records, so its own address stands in (RFC 5321 §5.1).
    pub implicit_mx: bool,
    /// The error kind when something could not be looked up, or `"nodata"` when
    /// the domain exists but has neither MX nor address.
    pub error: Option<String>,
}

/// One DNSBL zone's answer: the mail structure's own [`Dnsbl`](crate::mail::Dnsbl).
pub type DnsblFinding = crate::mail::Dnsbl;

impl EhloFindings {
    /// Records the findings in the mail structure's EHLO record.
    pub fn fill(self, ehlo: &mut crate::mail::Ehlo) {
        ehlo.rip = self.rip;
        ehlo.domain = self.domain;
        ehlo.fip = self.fip;
        ehlo.matches_client = self.matches_client;
        ehlo.error = self.error;
    }
}

impl DomainFindings {
    /// Records the findings in the mail structure's MAIL/RCPT address record.
    pub fn fill(self, address: &mut crate::mail::Address) {
        address.ip = self.ip;
        address.ipv6 = Some(self.ipv6);
        address.mxs = self.mxs;
        address.ips = self.ips;
        address.null_mx = Some(self.null_mx);
        address.implicit_mx = Some(self.implicit_mx);
        address.error = self.error;
    }
}

impl Dns {
    /// Connect: the PTR names of the client IP, each (up to 10, concurrently)
    /// checked to resolve back to the IP — the iprev method of RFC 8601. The
    /// findings are kept per IP as long as the answers behind them.
    pub async fn reverse(&self, ip: IpAddr) -> Reverse {
        let ip = canonical(ip);
        let cache = &self.inner.findings.reverse;
        if let Some(found) = cache.get_at(&ip, StdInstant::now()) {
            return found;
        }
        let reads = Reads::default();
        // Boxed: a cached answer should not carry room for the lookups.
        let found = Box::pin(self.look_up_reverse(ip, &reads)).await;
        if let Some(until) = reads.valid_until() {
            cache.insert_at(ip, found.clone(), until, StdInstant::now());
        }
        found
    }

    async fn look_up_reverse(&self, ip: IpAddr, reads: &Reads) -> Reverse {
        let deadline = self.deadline();
        let names = match within(reads, deadline, self.ptr(ip, reads)).await {
            Ok(names) => names,
            Err(failure) => {
                let iprev = if failure.is_negative() {
                    "permerror"
                } else {
                    "temperror"
                };
                return Reverse {
                    iprev: iprev.into(),
                    error: Some(failure.to_string()),
                    ..Reverse::default()
                };
            }
        };
        let checks = names
            .iter()
            .take(MAX_NAMES)
            .map(|name| within(reads, deadline, self.addresses(name, ip, reads)));
        let results = join_all(checks).await;
        let mut error = None;
        let mut domain = None;
        for (name, result) in names.iter().zip(&results) {
            match result {
                Ok(addrs) if addrs.contains(&ip) => {
                    domain = Some(name.clone());
                    break;
                }
                Ok(_) => {}
                Err(f) if f.is_negative() => {}
                Err(f) => {
                    error.get_or_insert(f.to_string());
                }
            }
        }
        let iprev = match (&domain, &error) {
            (Some(_), _) => "pass",
            (None, Some(_)) => "temperror",
            (None, None) => "fail",
        };
        Reverse {
            error: if domain.is_some() { None } else { error },
            domain,
            ptr: names,
            iprev: iprev.into(),
        }
    }

    /// The seed's EHLO check — `rip` = A (else AAAA) of the name, `domain` = PTR of
    /// `rip`, `fip` = address of `domain` — plus whether the name resolves to
    /// `client`. An address literal (`[192.0.2.1]`, `[IPv6:2001:db8::1]`) is its
    /// own `rip`; anything else that is not a domain name finds nothing. The
    /// findings are kept per name and client as long as the answers behind them.
    pub async fn ehlo(&self, name: &str, client: IpAddr) -> EhloFindings {
        let client = canonical(client);
        let key = (Box::<str>::from(name.trim()), client);
        let cache = &self.inner.findings.ehlo;
        if let Some(found) = cache.get_at(&key, StdInstant::now()) {
            return found;
        }
        let reads = Reads::default();
        let found = Box::pin(self.look_up_ehlo(&key.0, client, &reads)).await;
        if let Some(until) = reads.valid_until() {
            cache.insert_at(key, found.clone(), until, StdInstant::now());
        }
        found
    }

    async fn look_up_ehlo(&self, name: &str, client: IpAddr, reads: &Reads) -> EhloFindings {
        let deadline = self.deadline();
        let mut out = EhloFindings::default();
        let rip = if name.starts_with('[') {
            match address_literal(name) {
                Some(literal) => {
                    out.matches_client = Some(literal == client);
                    literal
                }
                None => {
                    out.matches_client = Some(false);
                    out.error = Some(Failure::InvalidName.to_string());
                    return out;
                }
            }
        } else {
            let (v4, v6) = tokio::join!(
                within(reads, deadline, self.a(name, reads)),
                within(reads, deadline, self.aaaa(name, reads))
            );
            let all: Vec<IpAddr> = v4
                .iter()
                .flatten()
                .map(|a| IpAddr::V4(*a))
                .chain(v6.iter().flatten().map(|a| IpAddr::V6(*a)))
                .collect();
            let undecided = [v4.as_ref().err(), v6.as_ref().err()]
                .into_iter()
                .flatten()
                .any(|f| !f.is_negative());
            out.matches_client = if all.contains(&client) {
                Some(true)
            } else if undecided {
                None
            } else {
                Some(false)
            };
            match all.first() {
                Some(first) => *first,
                None => {
                    // Report the A failure first: it is the seed's lookup.
                    out.error = v4.err().or(v6.err()).map(|f| f.to_string());
                    return out;
                }
            }
        };
        out.rip = Some(rip.to_string());
        let domain = match within(reads, deadline, self.ptr(rip, reads)).await {
            Ok(names) => names.into_iter().next(),
            Err(f) => {
                out.error = Some(f.to_string());
                None
            }
        };
        let Some(domain) = domain else {
            return out;
        };
        match within(reads, deadline, self.addresses(&domain, rip, reads)).await {
            Ok(addrs) => out.fip = addrs.first().map(IpAddr::to_string),
            Err(f) => out.error = Some(f.to_string()),
        }
        out.domain = Some(domain);
        out
    }

    /// A MAIL FROM / RCPT TO domain: MX, A and AAAA concurrently, then the first
    /// address of each MX host (up to 10) concurrently. The findings are kept per
    /// domain as long as the answers behind them, so the next message from or to
    /// the same domain asks nothing.
    pub async fn domain(&self, domain: &str) -> DomainFindings {
        let domain = normalize(domain);
        let cache = &self.inner.findings.domains;
        if let Some(found) = cache.get_at(&*domain, StdInstant::now()) {
            return found;
        }
        let reads = Reads::default();
        let found = Box::pin(self.look_up_domain(&domain, &reads)).await;
        if let Some(until) = reads.valid_until() {
            cache.insert_at(domain.into(), found.clone(), until, StdInstant::now());
        }
        found
    }

    async fn look_up_domain(&self, domain: &str, reads: &Reads) -> DomainFindings {
        let deadline = self.deadline();
        let mut out = DomainFindings::default();
        if domain.starts_with('[') {
            match address_literal(domain) {
                Some(IpAddr::V4(v4)) => out.ip = Some(v4.to_string()),
                Some(IpAddr::V6(v6)) => out.ipv6 = vec![v6.to_string()],
                None => out.error = Some(Failure::InvalidName.to_string()),
            }
            return out;
        }
        let (mx, v4, v6) = tokio::join!(
            within(reads, deadline, self.mx(domain, reads)),
            within(reads, deadline, self.a(domain, reads)),
            within(reads, deadline, self.aaaa(domain, reads)),
        );
        out.ip = v4
            .as_ref()
            .ok()
            .and_then(|a| a.first())
            .map(Ipv4Addr::to_string);
        out.ipv6 = v6
            .as_ref()
            .map(|a| a.iter().map(Ipv6Addr::to_string).collect())
            .unwrap_or_default();
        out.error = hard(&mx).or_else(|| hard(&v4)).or_else(|| hard(&v6));
        match mx {
            Ok(records) if records.iter().all(|(_, host)| host.is_empty()) => {
                out.null_mx = true;
                out.mxs = Some(Vec::new());
                out.ips = Some(Vec::new());
            }
            Ok(mut records) => {
                // Stable: equal preferences keep their DNS order.
                records.sort_by_key(|(preference, _)| *preference);
                let hosts: Vec<String> = records
                    .into_iter()
                    .map(|(_, host)| host)
                    .filter(|host| !host.is_empty())
                    .take(MAX_NAMES)
                    .collect();
                let firsts = hosts
                    .iter()
                    .map(|host| within(reads, deadline, self.first_address(host, reads)));
                let ips = join_all(firsts).await;
                out.ips = Some(ips.into_iter().map(Result::ok).collect());
                out.mxs = Some(hosts);
            }
            Err(Failure::NoData) => {
                let first = out.ip.clone().or_else(|| out.ipv6.first().cloned());
                if first.is_some() {
                    out.implicit_mx = true;
                    out.mxs = Some(vec![domain.to_owned()]);
                    out.ips = Some(vec![first]);
                } else if out.error.is_none() {
                    out.error = Some(Failure::NoData.to_string());
                }
            }
            Err(_) => {}
        }
        out
    }

    /// Each configured DNSBL zone, concurrently: an A lookup of the client IP's
    /// reversed octets (IPv6: nibbles) under the zone; when listed, its TXT reason.
    pub async fn dnsbl(&self, ip: IpAddr) -> Vec<DnsblFinding> {
        let ip = canonical(ip);
        let deadline = self.deadline();
        let reversed = ip.to_reverse_name();
        // Not cached beyond the resolver's own cache: a listing is per client.
        let reads = Reads::default();
        let reads = &reads;
        let checks = self.inner.dnsbl_zones.iter().map(|zone| {
            let query = format!("{reversed}.{zone}");
            async move {
                let mut out = DnsblFinding {
                    zone: zone.clone(),
                    ..DnsblFinding::default()
                };
                match bounded(deadline, self.a(&query, reads)).await {
                    Ok(addrs) => {
                        let listed = |a: &&Ipv4Addr| a.octets()[0] == 127;
                        let codes: Vec<&Ipv4Addr> = addrs.iter().filter(listed).collect();
                        if codes.iter().any(|a| a.octets()[1..3] == [255, 255]) {
                            out.error = Some(Failure::Other.to_string());
                        } else if !codes.is_empty() {
                            out.listed = true;
                            out.codes = codes.iter().map(|a| a.to_string()).collect();
                            out.reason = bounded(deadline, self.txt(&query, reads))
                                .await
                                .ok()
                                .and_then(|t| t.into_iter().next());
                        }
                    }
                    Err(f) if f.is_negative() => {}
                    Err(f) => out.error = Some(f.to_string()),
                }
                out
            }
        });
        join_all(checks).await
    }
}

/// `fut` bounded by `deadline`; running out of time makes `reads` uncacheable
/// (the lookup was dropped before it could say).
async fn within<T>(
    reads: &Reads,
    deadline: Instant,
    fut: impl Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    let result = bounded(deadline, fut).await;
    if matches!(result, Err(Failure::Timeout)) {
        reads.uncacheable();
    }
    result
}

/// The error kind of `result` unless it is a success or a plain "no such record".
fn hard<T>(result: &Result<T, Failure>) -> Option<String> {
    match result {
        Err(f) if *f != Failure::NoData => Some(f.to_string()),
        _ => None,
    }
}

/// A domain as given by a client, trimmed, lower case, without the trailing dot;
/// borrowed when it already is all that (the common case: no allocation).
fn normalize(domain: &str) -> Cow<'_, str> {
    let trimmed = domain.trim().trim_end_matches('.');
    if trimmed.is_ascii() && !trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Borrowed(trimmed)
    } else {
        Cow::Owned(trimmed.to_lowercase())
    }
}

/// The address in an SMTP address literal (RFC 5321 §4.1.3): `[192.0.2.1]` or
/// `[IPv6:2001:db8::1]` (the tag in any case). IPv4-mapped IPv6 becomes IPv4.
pub(crate) fn address_literal(text: &str) -> Option<IpAddr> {
    let inner = text.trim().strip_prefix('[')?.strip_suffix(']')?;
    let ip = match inner.get(..5) {
        Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => {
            IpAddr::V6(inner.get(5..)?.parse::<Ipv6Addr>().ok()?)
        }
        _ => IpAddr::V4(inner.parse::<Ipv4Addr>().ok()?),
    };
    Some(canonical(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_literals() {
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(address_literal("[192.0.2.1]"), Some(v4));
        assert_eq!(address_literal("[IPv6:2001:db8::1]"), Some(v6));
        assert_eq!(address_literal("[ipv6:2001:DB8::1]"), Some(v6));
        assert_eq!(address_literal("[IPv6:::ffff:192.0.2.1]"), Some(v4));
        for bad in [
            "192.0.2.1",
            "[2001:db8::1]",
            "[IPv6:192.0.2.1]",
            "[1.2.3]",
            "[]",
        ] {
            assert_eq!(address_literal(bad), None, "{bad}");
        }
    }

    #[test]
    fn names() {
        assert_eq!(normalize(" Example.COM. "), "example.com");
        assert!(matches!(
            normalize("example.com."),
            Cow::Borrowed("example.com")
        ));
        assert_eq!(normalize("BÜCHER.example"), "bücher.example");
    }
}
