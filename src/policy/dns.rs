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

use super::{Policy, PolicyFuture, Verdict};
use crate::dns::{AuthContext, Dns, SpfFindings};
use crate::mail::{Ehlo, MailFrom, RcptTo};
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

/// The EHLO/HELO argument as given ("" before one).
fn helo_name(cx: &Context<'_>) -> String {
    cx.mail
        .ehlo
        .as_ref()
        .map(|e| e.value.clone())
        .unwrap_or_default()
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
            let (reverse, listings) = tokio::join!(self.dns.reverse(ip), self.dns.dnsbl(ip));
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
                self.dns.ehlo(&ehlo.value, ip).await.fill(ehlo);
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
            let sender = from.domain.is_some().then(|| from.url.clone());
            let lookup_domain = from.domain.clone().filter(|_| cx.settings.sender_mx_check);
            let server_name = cx.settings.server_name.clone();
            let domain = async {
                match &lookup_domain {
                    Some(domain) => Some(self.dns.domain(domain).await),
                    None => None,
                }
            };
            let (found, spf) = tokio::join!(
                domain,
                self.dns.spf(ip, &helo, sender.as_deref(), &server_name)
            );
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
            if let Some(domain) = to.domain.clone().filter(|_| cx.settings.recipient_mx_check) {
                self.dns.domain(&domain).await.fill(to);
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
            let helo = helo_name(cx);
            let sender = cx
                .mail
                .mailfrom
                .as_ref()
                .filter(|m| m.domain.is_some())
                .map(|m| m.url.clone());
            let iprev = cx.mail.connect.iprev.clone();
            let spf = cx.extensions.remove::<TransactionSpf>();
            let context = AuthContext {
                ip,
                helo: &helo,
                mail_from: sender.as_deref(),
                server_name: &cx.settings.server_name,
                iprev: iprev.as_deref(),
                spf: spf.as_ref().map(|s| &s.0),
            };
            let found = self.dns.authenticate_message(raw, &context).await;
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
