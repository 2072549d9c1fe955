//! The built-in DNS checks, the first policy layer: PTR/iprev and DNSBL at
//! connect, the EHLO name, MX/addresses and SPF at MAIL FROM, MX/addresses at
//! RCPT TO, and DKIM/DMARC/ARC with the `Authentication-Results` header at the end
//! of DATA. Each step runs its lookups concurrently, is bounded by the resolver's
//! timeout and only records: a failed lookup leaves `null` and an error kind,
//! never a refusal (policy is the hooks'; `ehlo_validation_check` lives in
//! `defaults::ehlo`). The findings come back from [`crate::dns`] as the mail
//! structure's own types.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use super::{Policy, PolicyFuture, Stage, Verdict};
use crate::dns::{AuthContext, Dns, DomainFindings, SpfFindings};
use crate::mail::{Ehlo, MailFrom, RcptTo};
use crate::metrics::{DnsCheck, LayerKind};
use crate::receiver::Context;

/// The DNS checks as a layer; added by [`Server::with_dns`](crate::Server::with_dns).
#[derive(Debug, Clone)]
pub struct DnsChecks {
    dns: Arc<Dns>,
}

/// The SPF results of the current transaction, kept for DMARC at the end of DATA.
struct TransactionSpf(SpfFindings);

impl DnsChecks {
    /// The checks, asking `dns`.
    pub fn new(dns: Arc<Dns>) -> Self {
        Self { dns }
    }
}

fn client_ip(cx: &Context<'_>) -> Option<IpAddr> {
    cx.mail.remote_ip.parse().ok()
}

/// Counts one stage's checks (see [`crate::metrics`]): their time, and each
/// result; the stage failed when a lookup did (an error, not a negative answer).
fn count(cx: &Context<'_>, stage: Stage, started: Instant, results: &[(DnsCheck, &str)]) {
    let Some(metrics) = cx.metrics() else {
        return;
    };
    for (check, result) in results {
        metrics.dns_result(*check, result);
    }
    let failed = results.iter().any(|(_, result)| {
        matches!(
            *result,
            "temperror" | "timeout" | "servfail" | "refused" | "network" | "error"
        )
    });
    metrics.layer_call(LayerKind::Dns, stage, started.elapsed(), failed);
}

/// A domain check's result word: `found`, `null_mx`, or the error kind.
fn domain_result(found: &DomainFindings) -> &str {
    match (&found.error, found.null_mx) {
        (Some(error), _) => error,
        (None, true) => "null_mx",
        (None, false) => "found",
    }
}

/// The EHLO/HELO argument as given ("" before one).
fn helo_name<'c>(cx: &'c Context<'_>) -> &'c str {
    cx.mail.ehlo.as_ref().map_or("", |e| e.value.as_str())
}

impl Policy for DnsChecks {
    fn name(&self) -> &'static str {
        "dns"
    }

    /// PTR (forward-confirmed) and the DNSBL zones.
    fn connect<'a>(&'a self, cx: &'a mut Context<'_>) -> PolicyFuture<'a> {
        Box::pin(async move {
            let Some(ip) = client_ip(cx) else {
                return Verdict::Continue;
            };
            let started = Instant::now();
            let (reverse, listings) = tokio::join!(self.dns.reverse(ip), self.dns.dnsbl(ip));
            if cx.metrics().is_some() {
                let mut results = vec![(DnsCheck::Iprev, reverse.iprev.as_str())];
                results.extend(listings.iter().map(|listing| {
                    let result = match (&listing.error, listing.listed) {
                        (Some(error), _) => error.as_str(),
                        (None, true) => "listed",
                        (None, false) => "not_listed",
                    };
                    (DnsCheck::Dnsbl, result)
                }));
                count(cx, Stage::Connect, started, &results);
            }
            if reverse.iprev == "pass" {
                cx.mail.remote_hostname.clone_from(&reverse.domain);
            }
            cx.mail.connect.domain = reverse.domain;
            cx.mail.connect.iprev = Some(reverse.iprev);
            cx.mail.connect.error = reverse.error;
            if !self.dns.dnsbl_zones().is_empty() {
                cx.mail.dnsbl = Some(listings);
            }
            Verdict::Continue
        })
    }

    /// The seed's rip/domain/fip and whether the name is the client's.
    fn ehlo<'a>(&'a self, cx: &'a mut Context<'_>, ehlo: &'a mut Ehlo) -> PolicyFuture<'a> {
        Box::pin(async move {
            if let Some(ip) = client_ip(cx) {
                let started = Instant::now();
                let found = self.dns.ehlo(&ehlo.value, ip).await;
                let result = found.error.as_deref().unwrap_or("found");
                count(cx, Stage::Ehlo, started, &[(DnsCheck::Ehlo, result)]);
                found.fill(ehlo);
            }
            Verdict::Continue
        })
    }

    /// The domain's MX/addresses (`sender_mx_check`) and SPF for the MAIL FROM
    /// and HELO identities, at the same time.
    fn mail_from<'a>(
        &'a self,
        cx: &'a mut Context<'_>,
        from: &'a mut MailFrom,
    ) -> PolicyFuture<'a> {
        Box::pin(async move {
            cx.extensions.remove::<TransactionSpf>();
            let Some(ip) = client_ip(cx) else {
                return Verdict::Continue;
            };
            let helo = helo_name(cx);
            let sender = from.domain.is_some().then_some(from.url.as_str());
            let lookup_domain = from
                .domain
                .as_deref()
                .filter(|_| cx.settings.sender_mx_check);
            let domain = async {
                match lookup_domain {
                    Some(domain) => Some(self.dns.domain(domain).await),
                    None => None,
                }
            };
            let started = Instant::now();
            let (found, spf) = tokio::join!(
                domain,
                self.dns.spf(ip, helo, sender, &cx.settings.server_name)
            );
            let spf_result = (DnsCheck::Spf, spf.mail_from.as_str());
            match &found {
                Some(found) => count(
                    cx,
                    Stage::MailFrom,
                    started,
                    &[spf_result, (DnsCheck::Domain, domain_result(found))],
                ),
                None => count(cx, Stage::MailFrom, started, &[spf_result]),
            }
            if let Some(found) = found {
                found.fill(&mut from.address);
            }
            from.spf = Some(spf.mail_from.clone());
            if let Some(ehlo) = &mut cx.mail.ehlo {
                ehlo.spf = Some(spf.helo.clone());
            }
            cx.extensions.insert(TransactionSpf(spf));
            Verdict::Continue
        })
    }

    /// The domain's MX/addresses (`recipient_mx_check`).
    fn rcpt_to<'a>(&'a self, cx: &'a mut Context<'_>, to: &'a mut RcptTo) -> PolicyFuture<'a> {
        Box::pin(async move {
            if let Some(domain) = to
                .domain
                .as_deref()
                .filter(|_| cx.settings.recipient_mx_check)
            {
                let started = Instant::now();
                let found = self.dns.domain(domain).await;
                count(
                    cx,
                    Stage::RcptTo,
                    started,
                    &[(DnsCheck::Domain, domain_result(&found))],
                );
                found.fill(to);
            }
            Verdict::Continue
        })
    }

    /// DKIM, DMARC, ARC; the `Authentication-Results` header goes in front of
    /// the trace headers, and the results into `data`.
    fn message<'a>(&'a self, cx: &'a mut Context<'_>, raw: &'a [u8]) -> PolicyFuture<'a> {
        Box::pin(async move {
            let Some(ip) = client_ip(cx) else {
                return Verdict::Continue;
            };
            let spf = cx.extensions.remove::<TransactionSpf>();
            let sender = cx
                .mail
                .mailfrom
                .as_ref()
                .filter(|m| m.domain.is_some())
                .map(|m| m.url.as_str());
            let context = AuthContext {
                ip,
                helo: helo_name(cx),
                mail_from: sender,
                server_name: &cx.settings.server_name,
                iprev: cx.mail.connect.iprev.as_deref(),
                spf: spf.as_ref().map(|s| &s.0),
            };
            let started = Instant::now();
            let found = self.dns.authenticate_message(raw, &context).await;
            if cx.metrics().is_some() {
                let mut results: Vec<(DnsCheck, &str)> = found
                    .dkim
                    .iter()
                    .map(|signature| (DnsCheck::Dkim, signature.result.as_str()))
                    .collect();
                results.push((DnsCheck::Dmarc, found.dmarc.as_str()));
                results.push((DnsCheck::Arc, found.arc.as_str()));
                count(cx, Stage::Data, started, &results);
            }
            if let Some(data) = &mut cx.mail.data {
                data.dkim = found.dkim;
                data.dmarc = Some(found.dmarc);
                data.dmarc_policy = found.dmarc_policy;
                data.arc = Some(found.arc);
                data.received.insert_str(0, &found.authentication_results);
            }
            Verdict::Continue
        })
    }
}
