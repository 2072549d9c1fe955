//! The record lookups under the checks of `lookups.rs`: A, AAAA, MX, PTR and TXT
//! records of one name, straight from the hickory resolver (and its answer
//! cache), each dating the [`Reads`] of the check it serves — a positive answer
//! by its TTL, a negative one by its negative TTL — so that the check's findings
//! can be cached exactly as long as its answers are.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use hickory_resolver::lookup::Lookup;
use hickory_resolver::net::DnsHandle as _;
use hickory_resolver::net::{DnsError as HickoryDnsError, NetError};
use hickory_resolver::proto::op::{DnsRequestOptions, Query, ResponseCode};
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use mail_auth::{DnsError as AuthDnsError, Error as AuthError, Txt};

use super::cache::Reads;
use super::{Dns, Failure};

impl Dns {
    /// A records of `name`, in DNS order.
    pub(super) async fn a(&self, name: &str, reads: &Reads) -> Result<Vec<Ipv4Addr>, Failure> {
        let lookup = self.resolver().ipv4_lookup(absolute(name)?).await;
        let lookup = dated(reads, lookup)?;
        let addrs = lookup.answers().iter().filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        });
        non_empty(addrs.collect())
    }

    /// AAAA records of `name`, in DNS order.
    pub(super) async fn aaaa(&self, name: &str, reads: &Reads) -> Result<Vec<Ipv6Addr>, Failure> {
        let lookup = self.resolver().ipv6_lookup(absolute(name)?).await;
        let lookup = dated(reads, lookup)?;
        let addrs = lookup.answers().iter().filter_map(|r| match &r.data {
            RData::AAAA(a) => Some(a.0),
            _ => None,
        });
        non_empty(addrs.collect())
    }

    /// MX records of `name` as (preference, host), in DNS order; the root (null
    /// MX) is the empty host.
    pub(super) async fn mx(
        &self,
        name: &str,
        reads: &Reads,
    ) -> Result<Vec<(u16, String)>, Failure> {
        let lookup = self.resolver().mx_lookup(absolute(name)?).await;
        let lookup = dated(reads, lookup)?;
        let records = lookup.answers().iter().filter_map(|r| match &r.data {
            RData::MX(mx) => Some((mx.preference, name_text(&mx.exchange))),
            _ => None,
        });
        non_empty(records.collect())
    }

    /// PTR names of `ip`, in DNS order.
    pub(super) async fn ptr(&self, ip: IpAddr, reads: &Reads) -> Result<Vec<String>, Failure> {
        if ip.is_loopback() {
            return self.direct_ptr(ip, reads).await;
        }
        let lookup = self.resolver().reverse_lookup(ip).await;
        let lookup = dated(reads, lookup)?;
        let names = lookup.answers().iter().filter_map(|r| match &r.data {
            RData::PTR(ptr) if !ptr.0.is_root() => Some(name_text(&ptr.0)),
            _ => None,
        });
        non_empty(names.collect())
    }

    /// PTR names of a loopback `ip` asked of the name servers themselves:
    /// hickory's resolver would answer `localhost.` without asking (RFC 6761).
    /// Nothing caches this answer but the findings of the check, by the
    /// records' TTL; a negative answer is not kept.
    async fn direct_ptr(&self, ip: IpAddr, reads: &Reads) -> Result<Vec<String>, Failure> {
        let query = Query::query(Name::from(ip), RecordType::PTR);
        let mut answers = self
            .inner
            .direct
            .lookup(query, DnsRequestOptions::default());
        let response = match answers.next().await {
            Some(Ok(response)) => response,
            Some(Err(e)) => {
                reads.uncacheable();
                return Err(Failure::from_net(&e));
            }
            None => {
                reads.uncacheable();
                return Err(Failure::Other);
            }
        };
        match response.metadata.response_code {
            ResponseCode::NoError => {}
            code => {
                reads.uncacheable();
                return Err(Failure::from_code(code));
            }
        }
        match response.answers.iter().map(|r| r.ttl).min() {
            Some(ttl) => reads.saw(Instant::now() + Duration::from_secs(u64::from(ttl))),
            None => reads.uncacheable(),
        }
        let names = response.answers.iter().filter_map(|r| match &r.data {
            RData::PTR(ptr) if !ptr.0.is_root() => Some(name_text(&ptr.0)),
            _ => None,
        });
        non_empty(names.collect())
    }

    /// TXT records of `name`, each one's strings joined.
    pub(super) async fn txt(&self, name: &str, reads: &Reads) -> Result<Vec<String>, Failure> {
        let lookup = self.resolver().txt_lookup(absolute(name)?).await;
        let lookup = dated(reads, lookup)?;
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
    pub(super) async fn addresses(
        &self,
        name: &str,
        like: IpAddr,
        reads: &Reads,
    ) -> Result<Vec<IpAddr>, Failure> {
        Ok(match like {
            IpAddr::V4(_) => self
                .a(name, reads)
                .await?
                .into_iter()
                .map(IpAddr::V4)
                .collect(),
            IpAddr::V6(_) => self
                .aaaa(name, reads)
                .await?
                .into_iter()
                .map(IpAddr::V6)
                .collect(),
        })
    }

    /// The first A record of `host`, else its first AAAA record.
    pub(super) async fn first_address(&self, host: &str, reads: &Reads) -> Result<String, Failure> {
        let (v4, v6) = tokio::join!(self.a(host, reads), self.aaaa(host, reads));
        match (v4, v6) {
            (Ok(a), _) if !a.is_empty() => Ok(a[0].to_string()),
            (_, Ok(a)) if !a.is_empty() => Ok(a[0].to_string()),
            (Err(f), _) => Err(f),
            (_, Err(f)) => Err(f),
            _ => Err(Failure::NoData),
        }
    }

    /// Puts the names a DMARC check of `domain` will ask for TXT records —
    /// `_dmarc.<domain>.` and each parent up to the top-level domain, as
    /// `mail-auth`'s tree walk (RFC 9989 §4.10) asks them — into the TXT record
    /// cache when the DNS says they do not exist. `mail-auth` keeps only the
    /// records it found; without this, each message would ask the resolver
    /// again for every missing name of the walk. What goes in is the error
    /// `mail-auth` makes of that very answer, kept for its negative TTL.
    pub(super) async fn cache_missing_dmarc_records(&self, domain: &str) {
        let domain = mail_auth::common::to_a_label(domain);
        // Only plain names: for anything else the resolver's parse of the name
        // might differ from `mail-auth`'s, and `mail-auth` asks on its own.
        let plain = domain.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
        let total = domain.split('.').count();
        if !plain || total < 2 || domain.len() > 240 {
            return;
        }
        let cache = self.inner.caches.txt();
        let mut count = total;
        loop {
            let name = drop_leftmost_labels(&domain, total - count);
            let key = format!("_dmarc.{name}.");
            if cache.get_at(key.as_str(), Instant::now()).is_none() {
                let Ok(query) = absolute(&key) else { return };
                let lookup = self.resolver().txt_lookup(query).await;
                if let Err(error @ NetError::Dns(HickoryDnsError::NoRecordsFound(no))) = &lookup {
                    let reads = Reads::default();
                    record_error(&reads, error);
                    if let Some(until) = reads.valid_until() {
                        let error = AuthError::Dns(AuthDnsError::RecordNotFound(no.response_code));
                        cache.insert_at(key.into(), Txt::Error(error), until, Instant::now());
                    }
                }
            }
            if count == 1 {
                break;
            }
            count = if count >= 8 { 7 } else { count - 1 };
        }
    }
}

/// `lookup` as a finding, dating `reads` by it.
fn dated(reads: &Reads, lookup: Result<Lookup, NetError>) -> Result<Lookup, Failure> {
    match lookup {
        Ok(lookup) => {
            reads.saw(lookup.valid_until());
            Ok(lookup)
        }
        Err(error) => {
            record_error(reads, &error);
            Err(Failure::from_net(&error))
        }
    }
}

/// Dates `reads` by a failed lookup: a negative answer by its negative TTL (less
/// the second the resolver's cache may have rounded away); any other failure, or
/// a negative answer without a TTL, cannot be kept.
fn record_error(reads: &Reads, error: &NetError) {
    match error {
        NetError::Dns(HickoryDnsError::NoRecordsFound(no)) => match no.negative_ttl {
            Some(ttl) if ttl > 1 => {
                reads.saw(Instant::now() + Duration::from_secs(u64::from(ttl - 1)));
            }
            _ => reads.uncacheable(),
        },
        _ => reads.uncacheable(),
    }
}

/// `domain` without its `n` leftmost labels (`""` when it has fewer).
fn drop_leftmost_labels(domain: &str, n: usize) -> &str {
    let mut suffix = domain;
    for _ in 0..n {
        match suffix.split_once('.') {
            Some((_, rest)) => suffix = rest,
            None => return "",
        }
    }
    suffix
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
pub(super) fn absolute(name: &str) -> Result<Name, Failure> {
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
pub(super) fn name_text(name: &Name) -> String {
    let text = name.to_lowercase().to_ascii();
    text.trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }

    #[test]
    fn leftmost_labels() {
        assert_eq!(drop_leftmost_labels("a.b.example", 0), "a.b.example");
        assert_eq!(drop_leftmost_labels("a.b.example", 2), "example");
        assert_eq!(drop_leftmost_labels("a.b.example", 3), "");
    }
}
