//! The DNS findings of a session: PTR/iprev and DNSBL at connect, the EHLO name,
//! MX/addresses and SPF at MAIL FROM, MX/addresses at RCPT TO, and DKIM/DMARC/ARC
//! with the `Authentication-Results` header at the end of DATA. Each step runs
//! its lookups concurrently, is bounded by the resolver's timeout and only
//! records: a failed lookup leaves `null` and an error kind, never a refusal
//! (policy is the hooks'; `ehlo_validation_check` lives in `defaults::ehlo`).

use std::net::IpAddr;

use super::Session;
use crate::dns::{AuthContext, DomainFindings};
use crate::mail::{Address, Dkim, Dnsbl, Ehlo, MailFrom};
use crate::receiver::Receiver;

impl<R: Receiver> Session<R> {
    fn client_ip(&self) -> Option<IpAddr> {
        self.mail.remote_ip.parse().ok()
    }

    /// The EHLO/HELO argument as given ("" before one).
    fn helo_name(&self) -> String {
        self.mail
            .ehlo
            .as_ref()
            .map(|e| e.value.clone())
            .unwrap_or_default()
    }

    /// Connect: PTR (forward-confirmed) and the DNSBL zones.
    pub(super) async fn check_connect(&mut self) {
        let (Some(dns), Some(ip)) = (self.services.dns.clone(), self.client_ip()) else {
            return;
        };
        // Boxed, like every check below: the lookups' state is large and only
        // exists when DNS is configured, so an idle session does not carry it.
        let (reverse, listings) =
            Box::pin(async { tokio::join!(dns.reverse(ip), dns.dnsbl(ip)) }).await;
        if reverse.iprev == "pass" {
            self.mail.remote_hostname.clone_from(&reverse.domain);
        }
        self.mail.connect.domain = reverse.domain;
        self.mail.connect.iprev = Some(reverse.iprev);
        self.mail.connect.error = reverse.error;
        if !dns.dnsbl_zones().is_empty() {
            self.mail.dnsbl = Some(
                listings
                    .into_iter()
                    .map(|l| Dnsbl {
                        zone: l.zone,
                        listed: l.listed,
                        codes: l.codes,
                        reason: l.reason,
                        error: l.error,
                    })
                    .collect(),
            );
        }
    }

    /// EHLO: the seed's rip/domain/fip and whether the name is the client's.
    pub(super) async fn check_ehlo(&self, ehlo: &mut Ehlo) {
        let (Some(dns), Some(ip)) = (self.services.dns.clone(), self.client_ip()) else {
            return;
        };
        let found = Box::pin(dns.ehlo(&ehlo.value, ip)).await;
        ehlo.rip = found.rip;
        ehlo.domain = found.domain;
        ehlo.fip = found.fip;
        ehlo.matches_client = found.matches_client;
        ehlo.error = found.error;
    }

    /// MAIL FROM: the domain's MX/addresses (`sender_mx_check`) and SPF for the
    /// MAIL FROM and HELO identities, at the same time.
    pub(super) async fn check_mail_from(&mut self, from: &mut MailFrom) {
        let (Some(dns), Some(ip)) = (self.services.dns.clone(), self.client_ip()) else {
            return;
        };
        let helo = self.helo_name();
        let sender = from.domain.is_some().then(|| from.url.clone());
        let lookup_domain = from
            .domain
            .clone()
            .filter(|_| self.settings.sender_mx_check);
        let server_name = self.settings.server_name.clone();
        let domain = async {
            match &lookup_domain {
                Some(domain) => Some(dns.domain(domain).await),
                None => None,
            }
        };
        let (found, spf) = Box::pin(async {
            tokio::join!(domain, dns.spf(ip, &helo, sender.as_deref(), &server_name))
        })
        .await;
        if let Some(found) = found {
            fill_address(&mut from.address, found);
        }
        from.spf = Some(spf.mail_from.clone());
        if let Some(ehlo) = &mut self.mail.ehlo {
            ehlo.spf = Some(spf.helo.clone());
        }
        self.spf = Some(spf);
    }

    /// RCPT TO: the domain's MX/addresses (`recipient_mx_check`).
    pub(super) async fn check_rcpt_to(&self, to: &mut Address) {
        let Some(dns) = self.services.dns.clone() else {
            return;
        };
        if let Some(domain) = to
            .domain
            .clone()
            .filter(|_| self.settings.recipient_mx_check)
        {
            fill_address(to, Box::pin(dns.domain(&domain)).await);
        }
    }

    /// End of DATA: DKIM, DMARC, ARC; returns the `Authentication-Results` header
    /// to prepend (empty without DNS) and records the results in `data`.
    pub(super) async fn check_message(&mut self, raw: &[u8]) -> String {
        let (Some(dns), Some(ip)) = (self.services.dns.clone(), self.client_ip()) else {
            return String::new();
        };
        let helo = self.helo_name();
        let sender = self
            .mail
            .mailfrom
            .as_ref()
            .filter(|m| m.domain.is_some())
            .map(|m| m.url.clone());
        let iprev = self.mail.connect.iprev.clone();
        let context = AuthContext {
            ip,
            helo: &helo,
            mail_from: sender.as_deref(),
            server_name: &self.settings.server_name,
            iprev: iprev.as_deref(),
            spf: self.spf.as_ref(),
        };
        let found = Box::pin(dns.authenticate_message(raw, &context)).await;
        if let Some(data) = &mut self.mail.data {
            data.dkim = found
                .dkim
                .into_iter()
                .map(|d| Dkim {
                    domain: d.domain,
                    selector: d.selector,
                    result: d.result,
                    reason: d.reason,
                })
                .collect();
            data.dmarc = Some(found.dmarc);
            data.dmarc_policy = found.dmarc_policy;
            data.arc = Some(found.arc);
        }
        found.authentication_results
    }
}

fn fill_address(address: &mut Address, found: DomainFindings) {
    address.ip = found.ip;
    address.ipv6 = Some(found.ipv6);
    address.mxs = found.mxs;
    address.ips = found.ips;
    address.null_mx = Some(found.null_mx);
    address.implicit_mx = Some(found.implicit_mx);
    address.error = found.error;
}
