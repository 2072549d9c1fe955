//! One verification: the cache (per address, then per domain), the per-domain
//! lock and rate limit, the exchangers from the DNS (MX in preference order, or
//! the implicit MX; never the client's own address; at most
//! `callout_max_hosts`) or `callout_target`, a probe per exchanger until one
//! answers, and what is kept of the result.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use rustls::ClientConfig;

use super::cache::CalloutCache;
use super::driver::{Host, Timeouts, probe_host};
use super::limits::DomainLimits;
use super::probe::{HostOutcome, ProbeRequest, is_probe_safe};
use super::{CalloutSettings, CalloutStats};
use crate::dns::Dns;
use crate::logging::Escaped;
use crate::mail::{Callout, CalloutResult};

/// Which address of the envelope is verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The MAIL FROM address (refused with 5.1.7).
    Sender,
    /// A RCPT TO address (refused with 5.1.1; asked of `callout_target` if set).
    Recipient,
}

/// Everything a verification needs, shared by all sessions.
pub(super) struct Verifier {
    pub(super) settings: CalloutSettings,
    pub(super) dns: Option<Arc<Dns>>,
    pub(super) helo_name: String,
    pub(super) cache: CalloutCache,
    pub(super) limits: DomainLimits,
    pub(super) tls: Arc<ClientConfig>,
    pub(super) stats: Arc<CalloutStats>,
}

/// A result made here, not by an exchanger.
fn own(result: CalloutResult, text: String) -> Callout {
    Callout {
        result,
        code: None,
        text,
        host: None,
        cached: false,
    }
}

impl Verifier {
    pub(super) async fn verify(
        &self,
        address: &str,
        role: Role,
        client: Option<IpAddr>,
    ) -> Callout {
        let Some((local, domain)) = address.rsplit_once('@').filter(|_| is_probe_safe(address))
        else {
            return own(
                CalloutResult::Error,
                "the address cannot be asked in a callout".to_owned(),
            );
        };
        let domain = domain.to_ascii_lowercase();
        let address = format!("{local}@{domain}");
        let target = match role {
            Role::Recipient => self.settings.target,
            Role::Sender => None,
        };
        let scope = target.map_or_else(|| "mx".to_owned(), |t| t.to_string());
        let address_key = format!("{scope}|{address}");
        let domain_key = format!("{scope}|@{domain}");
        if let Some(hit) = self.cached(&address_key, &domain_key).await {
            return hit;
        }
        let lock = self.limits.lock_for(&domain_key);
        let Ok(_guard) = tokio::time::timeout(self.budget(), lock.lock()).await else {
            return own(
                CalloutResult::Tempfail,
                "another callout to the domain is still running".to_owned(),
            );
        };
        // The one that held the lock may have found the answer.
        if let Some(hit) = self.cached(&address_key, &domain_key).await {
            return hit;
        }
        if !self.limits.try_probe(&domain_key, Instant::now()) {
            self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
            tracing::info!(domain = %Escaped(&domain), "callout rate limit reached");
            return own(
                CalloutResult::Tempfail,
                format!(
                    "callout rate limit reached for {domain} ({} a minute)",
                    self.settings.rate_limit
                ),
            );
        }
        let hosts = match self.hosts(&domain, target, client).await {
            Ok(hosts) => hosts,
            Err(found) => {
                tracing::info!(address = %Escaped(&address), result = found.result.as_str(), "callout: {}", found.text);
                return found;
            }
        };
        let request = ProbeRequest {
            helo_name: self.helo_name.clone(),
            address: address.clone(),
            random: self.settings.random.then(|| random_address(&domain)),
            starttls: true,
        };
        let timeouts = Timeouts {
            connect: self.settings.connect_timeout,
            command: self.settings.command_timeout,
        };
        let mut last = None;
        for host in hosts {
            self.stats.connections.fetch_add(1, Ordering::Relaxed);
            match probe_host(&host, request.clone(), timeouts, &self.tls).await {
                HostOutcome::Answer { result, code, text } => {
                    let found = Callout {
                        result,
                        code: Some(code).filter(|c| *c != 0),
                        text,
                        host: Some(host.describe()),
                        cached: false,
                    };
                    tracing::info!(
                        address = %Escaped(&address),
                        host = %host.describe(),
                        result = result.as_str(),
                        "callout: {}", Escaped(&found.text)
                    );
                    self.keep(&address_key, &domain_key, &found).await;
                    return found;
                }
                HostOutcome::NextHost { code, text } => {
                    tracing::info!(
                        address = %Escaped(&address),
                        host = %host.describe(),
                        "callout: no answer from this exchanger: {}", Escaped(&text)
                    );
                    last = Some((host, code, text));
                }
            }
        }
        let (host, code, text) = last.map_or((None, None, String::new()), |(h, c, t)| {
            (Some(h.describe()), c, t)
        });
        let found = Callout {
            result: CalloutResult::Tempfail,
            code,
            text: format!("no exchanger answered: {text}"),
            host,
            cached: false,
        };
        self.cache
            .put(&domain_key, &found, self.settings.tempfail_ttl)
            .await;
        found
    }

    async fn cached(&self, address_key: &str, domain_key: &str) -> Option<Callout> {
        let hit = match self.cache.get(domain_key).await {
            Some(hit) => Some(hit),
            None => self.cache.get(address_key).await,
        };
        if hit.is_some() {
            self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }

    /// Keeps what is worth keeping: `pass` and `accept_all` (the latter for
    /// the whole domain) for the positive TTL, `fail` and `error` for the
    /// negative one; a `tempfail` from RCPT is asked again next time.
    async fn keep(&self, address_key: &str, domain_key: &str, found: &Callout) {
        let settings = &self.settings;
        match found.result {
            CalloutResult::Pass => {
                self.cache
                    .put(address_key, found, settings.positive_ttl)
                    .await
            }
            CalloutResult::AcceptAll => {
                self.cache
                    .put(domain_key, found, settings.positive_ttl)
                    .await;
            }
            CalloutResult::Fail | CalloutResult::Error => {
                self.cache
                    .put(address_key, found, settings.negative_ttl)
                    .await;
            }
            CalloutResult::Tempfail => {}
        }
    }

    /// The worst a probe of the domain may take: what a second caller waits
    /// for the first at most.
    fn budget(&self) -> std::time::Duration {
        let settings = &self.settings;
        let per_host = settings.connect_timeout + settings.command_timeout * 10;
        let hosts = u32::try_from(settings.max_hosts).unwrap_or(u32::MAX);
        let dns = self.dns.as_ref().map(|d| d.timeout()).unwrap_or_default();
        per_host.saturating_mul(hosts) + dns
    }

    /// The exchangers to ask, or the result when there is none.
    async fn hosts(
        &self,
        domain: &str,
        target: Option<SocketAddr>,
        client: Option<IpAddr>,
    ) -> Result<Vec<Host>, Callout> {
        if let Some(addr) = target {
            return Ok(vec![Host { name: None, addr }]);
        }
        let Some(dns) = &self.dns else {
            return Err(own(CalloutResult::Error, "no DNS resolver".to_owned()));
        };
        let found = dns.domain(domain).await;
        if found.null_mx {
            return Err(own(
                CalloutResult::Error,
                "the domain publishes a null MX (RFC 7505): it accepts no mail".to_owned(),
            ));
        }
        let Some(mxs) = found.mxs else {
            let error = found.error.unwrap_or_else(|| "error".to_owned());
            let result = if matches!(error.as_str(), "nxdomain" | "nodata" | "invalid-name") {
                CalloutResult::Error
            } else {
                CalloutResult::Tempfail
            };
            return Err(own(
                result,
                format!("no mail exchanger for the domain ({error})"),
            ));
        };
        let ips = found.ips.unwrap_or_default();
        let client = client.map(|ip| ip.to_canonical());
        let mut hosts = Vec::new();
        let mut was_client = false;
        for (name, ip) in mxs.iter().zip(ips) {
            let Some(ip) = ip.and_then(|ip| ip.parse::<IpAddr>().ok()) else {
                continue;
            };
            let ip = ip.to_canonical();
            if Some(ip) == client {
                was_client = true;
                continue;
            }
            if ip.is_unspecified() || ip.is_multicast() {
                continue;
            }
            if hosts.len() < self.settings.max_hosts {
                hosts.push(Host {
                    name: Some(name.clone()),
                    addr: SocketAddr::new(ip, self.settings.port),
                });
            }
        }
        if hosts.is_empty() {
            let text = if was_client {
                "the domain's only exchanger is the client itself: not asked"
            } else {
                "no exchanger of the domain has an address"
            };
            return Err(own(CalloutResult::Error, text.to_owned()));
        }
        Ok(hosts)
    }
}

/// A local part nobody has, at `domain`: `nr-callout-` and 16 random hex digits.
fn random_address(domain: &str) -> String {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 8];
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes = (nanos as u64).to_le_bytes();
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("nr-callout-{hex}@{domain}")
}
