//! The plain lookups: connect PTR with iprev, the EHLO check, MAIL/RCPT domains
//! (MX, A, AAAA, null MX, implicit MX) and DNSBLs. All go straight to the hickory
//! resolver; SPF and message authentication are in `auth.rs`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures_util::StreamExt as _;
use futures_util::future::join_all;
use hickory_resolver::net::DnsHandle as _;
use hickory_resolver::proto::op::{DnsRequestOptions, Query, ResponseCode};
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use mail_auth::common::resolver::ToReverseName;
use serde::Serialize;

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
    /// checked to resolve back to the IP — the iprev method of RFC 8601.
    pub async fn reverse(&self, ip: IpAddr) -> Reverse {
        let ip = canonical(ip);
        let deadline = self.deadline();
        let names = match bounded(deadline, self.ptr(ip)).await {
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
            .map(|name| bounded(deadline, self.addresses(name, ip)));
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
    /// own `rip`; anything else that is not a domain name finds nothing.
    pub async fn ehlo(&self, name: &str, client: IpAddr) -> EhloFindings {
        let client = canonical(client);
        let deadline = self.deadline();
        let name = name.trim();
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
                bounded(deadline, self.a(name)),
                bounded(deadline, self.aaaa(name))
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
        let domain = match bounded(deadline, self.ptr(rip)).await {
            Ok(names) => names.into_iter().next(),
            Err(f) => {
                out.error = Some(f.to_string());
                None
            }
        };
        let Some(domain) = domain else {
            return out;
        };
        match bounded(deadline, self.addresses(&domain, rip)).await {
            Ok(addrs) => out.fip = addrs.first().map(IpAddr::to_string),
            Err(f) => out.error = Some(f.to_string()),
        }
        out.domain = Some(domain);
        out
    }

    /// A MAIL FROM / RCPT TO domain: MX, A and AAAA concurrently, then the first
    /// address of each MX host (up to 10) concurrently.
    pub async fn domain(&self, domain: &str) -> DomainFindings {
        let deadline = self.deadline();
        let domain = normalize(domain);
        let mut out = DomainFindings::default();
        if domain.starts_with('[') {
            match address_literal(&domain) {
                Some(IpAddr::V4(v4)) => out.ip = Some(v4.to_string()),
                Some(IpAddr::V6(v6)) => out.ipv6 = vec![v6.to_string()],
                None => out.error = Some(Failure::InvalidName.to_string()),
            }
            return out;
        }
        let (mx, v4, v6) = tokio::join!(
            bounded(deadline, self.mx(&domain)),
            bounded(deadline, self.a(&domain)),
            bounded(deadline, self.aaaa(&domain)),
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
                    .map(|host| bounded(deadline, self.first_address(host)));
                let ips = join_all(firsts).await;
                out.ips = Some(ips.into_iter().map(Result::ok).collect());
                out.mxs = Some(hosts);
            }
            Err(Failure::NoData) => {
                let first = out.ip.clone().or_else(|| out.ipv6.first().cloned());
                if first.is_some() {
                    out.implicit_mx = true;
                    out.mxs = Some(vec![domain]);
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
        let checks = self.inner.dnsbl_zones.iter().map(|zone| {
            let query = format!("{reversed}.{zone}");
            async move {
                let mut out = DnsblFinding {
                    zone: zone.clone(),
                    ..DnsblFinding::default()
                };
                match bounded(deadline, self.a(&query)).await {
                    Ok(addrs) => {
                        let listed = |a: &&Ipv4Addr| a.octets()[0] == 127;
                        let codes: Vec<&Ipv4Addr> = addrs.iter().filter(listed).collect();
                        if codes.iter().any(|a| a.octets()[1..3] == [255, 255]) {
                            out.error = Some(Failure::Other.to_string());
                        } else if !codes.is_empty() {
                            out.listed = true;
                            out.codes = codes.iter().map(|a| a.to_string()).collect();
                            out.reason = bounded(deadline, self.txt(&query))
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

    /// A records of `name`, in DNS order.
    async fn a(&self, name: &str) -> Result<Vec<Ipv4Addr>, Failure> {
        let lookup = self
            .resolver()
            .ipv4_lookup(absolute(name)?)
            .await
            .map_err(|e| Failure::from_net(&e))?;
        let addrs = lookup.answers().iter().filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        });
        non_empty(addrs.collect())
    }

    /// AAAA records of `name`, in DNS order.
    async fn aaaa(&self, name: &str) -> Result<Vec<Ipv6Addr>, Failure> {
        let lookup = self
            .resolver()
            .ipv6_lookup(absolute(name)?)
            .await
            .map_err(|e| Failure::from_net(&e))?;
        let addrs = lookup.answers().iter().filter_map(|r| match &r.data {
            RData::AAAA(a) => Some(a.0),
            _ => None,
        });
        non_empty(addrs.collect())
    }

    /// MX records of `name` as (preference, host), in DNS order; the root (null
    /// MX) is the empty host.
    async fn mx(&self, name: &str) -> Result<Vec<(u16, String)>, Failure> {
        let lookup = self
            .resolver()
            .mx_lookup(absolute(name)?)
            .await
            .map_err(|e| Failure::from_net(&e))?;
        let records = lookup.answers().iter().filter_map(|r| match &r.data {
            RData::MX(mx) => Some((mx.preference, name_text(&mx.exchange))),
            _ => None,
        });
        non_empty(records.collect())
    }

    /// PTR names of `ip`, in DNS order.
    async fn ptr(&self, ip: IpAddr) -> Result<Vec<String>, Failure> {
        if ip.is_loopback() {
            return self.direct_ptr(ip).await;
        }
        let lookup = self
            .resolver()
            .reverse_lookup(ip)
            .await
            .map_err(|e| Failure::from_net(&e))?;
        let names = lookup.answers().iter().filter_map(|r| match &r.data {
            RData::PTR(ptr) if !ptr.0.is_root() => Some(name_text(&ptr.0)),
            _ => None,
        });
        non_empty(names.collect())
    }

    /// PTR names of a loopback `ip` asked of the name servers themselves:
    /// hickory's resolver would answer `localhost.` without asking (RFC 6761).
    async fn direct_ptr(&self, ip: IpAddr) -> Result<Vec<String>, Failure> {
        let query = Query::query(Name::from(ip), RecordType::PTR);
        let mut answers = self
            .inner
            .direct
            .lookup(query, DnsRequestOptions::default());
        let response = match answers.next().await {
            Some(Ok(response)) => response,
            Some(Err(e)) => return Err(Failure::from_net(&e)),
            None => return Err(Failure::Other),
        };
        match response.metadata.response_code {
            ResponseCode::NoError => {}
            code => return Err(Failure::from_code(code)),
        }
        let names = response.answers.iter().filter_map(|r| match &r.data {
            RData::PTR(ptr) if !ptr.0.is_root() => Some(name_text(&ptr.0)),
            _ => None,
        });
        non_empty(names.collect())
    }

    /// TXT records of `name`, each one's strings joined.
    async fn txt(&self, name: &str) -> Result<Vec<String>, Failure> {
        let lookup = self
            .resolver()
            .txt_lookup(absolute(name)?)
            .await
            .map_err(|e| Failure::from_net(&e))?;
        let texts = lookup.answers().iter().filter_map(|r| match &r.data {
            RData::TXT(txt) => Some(
                txt.txt_data
                    .iter()
                    .map(|part| String::from_utf8_lossy(part))
                    .collect::<String>(),
            ),
            _ => None,
        });
        non_empty(texts.collect())
    }

    /// The addresses of `name` in the family of `like` (A for IPv4, AAAA for IPv6).
    async fn addresses(&self, name: &str, like: IpAddr) -> Result<Vec<IpAddr>, Failure> {
        Ok(match like {
            IpAddr::V4(_) => self.a(name).await?.into_iter().map(IpAddr::V4).collect(),
            IpAddr::V6(_) => self.aaaa(name).await?.into_iter().map(IpAddr::V6).collect(),
        })
    }

    /// The first A record of `host`, else its first AAAA record.
    async fn first_address(&self, host: &str) -> Result<String, Failure> {
        let (v4, v6) = tokio::join!(self.a(host), self.aaaa(host));
        match (v4, v6) {
            (Ok(a), _) if !a.is_empty() => Ok(a[0].to_string()),
            (_, Ok(a)) if !a.is_empty() => Ok(a[0].to_string()),
            (Err(f), _) => Err(f),
            (_, Err(f)) => Err(f),
            _ => Err(Failure::NoData),
        }
    }
}

/// The error kind of `result` unless it is a success or a plain "no such record".
fn hard<T>(result: &Result<T, Failure>) -> Option<String> {
    match result {
        Err(f) if *f != Failure::NoData => Some(f.to_string()),
        _ => None,
    }
}

/// `Ok(items)`, or [`Failure::NoData`] for an answer without records of the type
/// (e.g. only a CNAME).
fn non_empty<T>(items: Vec<T>) -> Result<Vec<T>, Failure> {
    if items.is_empty() {
        Err(Failure::NoData)
    } else {
        Ok(items)
    }
}

/// `name` as an absolute DNS name (never expanded with search domains).
fn absolute(name: &str) -> Result<Name, Failure> {
    let name = name.trim().trim_end_matches('.');
    if name.is_empty() || name.len() > 253 || name.starts_with('.') {
        return Err(Failure::InvalidName);
    }
    let mut parsed = Name::from_utf8(name).map_err(|_| Failure::InvalidName)?;
    parsed.set_fqdn(true);
    Ok(parsed)
}

/// A DNS name as findings show it: lower case ASCII, no trailing dot (`""` for
/// the root).
fn name_text(name: &Name) -> String {
    let text = name.to_lowercase().to_ascii();
    text.trim_end_matches('.').to_owned()
}

/// A domain as given by a client, trimmed, lower case, without the trailing dot.
fn normalize(domain: &str) -> String {
    domain.trim().trim_end_matches('.').to_lowercase()
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
        assert!(absolute("Mail.Example.").unwrap().is_fqdn());
        assert_eq!(absolute(""), Err(Failure::InvalidName));
        assert_eq!(absolute("."), Err(Failure::InvalidName));
        assert_eq!(absolute(".a.example"), Err(Failure::InvalidName));
        assert_eq!(absolute(&"a".repeat(64)), Err(Failure::InvalidName));
        let name = Name::from_ascii("MX1.Example.").unwrap();
        assert_eq!(name_text(&name), "mx1.example");
        assert_eq!(name_text(&Name::root()), "");
        assert_eq!(normalize(" Example.COM. "), "example.com");
    }
}
