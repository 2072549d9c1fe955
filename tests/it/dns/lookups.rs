//! `net_receiver::dns` against a real DNS server ([`dns_server`]) on
//! loopback: every `Dns` method, DKIM with keys published in the test zone and
//! messages signed here, DMARC, the `Authentication-Results` header, the forged
//! header stripping, DNSBLs, and the timeout paths (a name that never answers, a
//! server that never answers). No resolver mocks, no traffic beyond 127.0.0.1.
//! The lookups are tested here, sender authentication in `auth.rs`; the shared
//! helpers (keys, signed messages, contexts) are in `fixtures.rs`.

use std::time::Instant;

use mail_auth::common::headers::HeaderWriter as _;
use mail_auth::dkim::DkimSigner;
use net_receiver::dns::{Dns, DnsConfig};

use crate::support::dns_server::{DnsServer, SilentDnsServer, dns_config};

use super::fixtures::{
    CLIENT, MESSAGE, SERVER, SHORT, SHORT_BOUND, TIMEOUT, context, dns, ed25519_key, ip, s,
    spf_words, within,
};

#[tokio::test]
async fn reverse_is_forward_confirmed() {
    let server = DnsServer::start();
    let dns = dns(&server);
    within(async {
        let r = dns.reverse(CLIENT).await;
        assert_eq!(
            (r.domain.as_deref(), r.iprev.as_str(), r.error.as_deref()),
            (Some("mail.test.example"), "pass", None)
        );
        assert_eq!(r.ptr, ["mail.test.example"]);
        // IPv4-mapped IPv6 is the IPv4 address.
        assert_eq!(dns.reverse(ip("::ffff:192.0.2.1")).await, r);

        // A PTR name that does not point back: fail, no domain.
        let r = dns.reverse(ip("192.0.2.2")).await;
        assert_eq!((r.domain, r.iprev.as_str()), (None, "fail"));
        assert_eq!(r.ptr, ["liar.test.example"]);

        // No PTR: permerror, the kind recorded.
        let r = dns.reverse(ip("192.0.2.3")).await;
        assert_eq!(
            (r.domain, r.iprev.as_str(), r.error.as_deref()),
            (None, "permerror", Some("nxdomain"))
        );
        assert!(r.ptr.is_empty());

        // Two PTR names, the second confirms.
        let r = dns.reverse(ip("192.0.2.4")).await;
        assert_eq!(
            (r.domain.as_deref(), r.iprev.as_str()),
            (Some("multi.test.example"), "pass")
        );
        assert_eq!(r.ptr.len(), 2);

        // IPv6.
        let r = dns.reverse(ip("2001:db8::1")).await;
        assert_eq!(
            (r.domain.as_deref(), r.iprev.as_str()),
            (Some("v6.test.example"), "pass")
        );

        // Loopback clients are asked of the server too (hickory alone would say
        // "localhost" without asking, RFC 6761).
        let r = dns.reverse(ip("127.0.0.1")).await;
        assert_eq!(
            (r.domain.as_deref(), r.iprev.as_str()),
            (Some("loop.test.example"), "pass")
        );
        let r = dns.reverse(ip("::ffff:127.0.0.1")).await;
        assert_eq!(r.domain.as_deref(), Some("loop.test.example"));
        let r = dns.reverse(ip("127.0.0.2")).await;
        assert_eq!(
            (r.iprev.as_str(), r.error.as_deref()),
            ("permerror", Some("nxdomain"))
        );
        // The server has no zone for ::1's reverse name and refuses.
        let r = dns.reverse(ip("::1")).await;
        assert_eq!(
            (r.iprev.as_str(), r.error.as_deref()),
            ("temperror", Some("refused"))
        );
        // ... and the EHLO check takes the same path.
        let e = dns.ehlo("loop.test.example", ip("127.0.0.1")).await;
        assert_eq!(
            (e.rip, e.domain, e.fip),
            (s("127.0.0.1"), s("loop.test.example"), s("127.0.0.1"))
        );
        assert_eq!(e.matches_client, Some(true));
    })
    .await;
}

#[tokio::test]
async fn ehlo_names() {
    let server = DnsServer::start();
    let dns = dns(&server);
    within(async {
        let e = dns.ehlo("mail.test.example", CLIENT).await;
        assert_eq!(e.rip, s("192.0.2.1"));
        assert_eq!(e.domain, s("mail.test.example"));
        assert_eq!(e.fip, s("192.0.2.1"));
        assert_eq!((e.matches_client, e.error), (Some(true), None));
        // Case and a trailing dot do not matter.
        assert_eq!(
            dns.ehlo("MAIL.Test.Example.", CLIENT).await.matches_client,
            Some(true)
        );

        // Resolves, but not to this client.
        let e = dns.ehlo("mail.test.example", ip("192.0.2.9")).await;
        assert_eq!((e.rip, e.matches_client), (s("192.0.2.1"), Some(false)));

        // Any of the name's addresses counts; rip is the first.
        let e = dns.ehlo("test.example", ip("192.0.2.100")).await;
        assert_eq!((e.rip, e.matches_client), (s("192.0.2.1"), Some(true)));
        // ... IPv6 too.
        assert_eq!(
            dns.ehlo("test.example", ip("2001:db8::1"))
                .await
                .matches_client,
            Some(true)
        );

        // No such name: nothing found, a definite no.
        let e = dns.ehlo("nosuch.test.example", CLIENT).await;
        assert_eq!((e.rip, e.domain, e.fip), (None, None, None));
        assert_eq!(
            (e.matches_client, e.error.as_deref()),
            (Some(false), Some("nxdomain"))
        );

        // An IPv6-only name: rip is the AAAA, fip the AAAA of its PTR name.
        let e = dns.ehlo("v6.test.example", ip("2001:db8::1")).await;
        assert_eq!(
            (e.rip, e.domain, e.fip),
            (s("2001:db8::1"), s("v6.test.example"), s("2001:db8::1"))
        );
        assert_eq!(e.matches_client, Some(true));

        // rip without a PTR: domain and fip stay empty, the kind is recorded.
        let e = dns.ehlo("liar.test.example", ip("192.0.2.2")).await;
        assert_eq!((e.rip, e.domain, e.fip), (s("192.0.2.99"), None, None));
        assert_eq!(
            (e.matches_client, e.error.as_deref()),
            (Some(false), Some("nxdomain"))
        );

        // Not a domain name at all.
        let e = dns.ehlo("not a name!", CLIENT).await;
        assert_eq!((e.rip, e.matches_client), (None, Some(false)));
    })
    .await;
}

#[tokio::test]
async fn ehlo_address_literals() {
    let server = DnsServer::start();
    let dns = dns(&server);
    within(async {
        let e = dns.ehlo("[192.0.2.1]", CLIENT).await;
        assert_eq!(e.rip, s("192.0.2.1"));
        assert_eq!((e.domain, e.fip), (s("mail.test.example"), s("192.0.2.1")));
        assert_eq!(e.matches_client, Some(true));

        let e = dns.ehlo("[192.0.2.1]", ip("192.0.2.2")).await;
        assert_eq!((e.rip, e.matches_client), (s("192.0.2.1"), Some(false)));

        let e = dns.ehlo("[IPv6:2001:db8::1]", ip("2001:db8::1")).await;
        assert_eq!(
            (e.rip, e.domain, e.fip),
            (s("2001:db8::1"), s("v6.test.example"), s("2001:db8::1"))
        );
        assert_eq!(e.matches_client, Some(true));

        let e = dns.ehlo("[bogus]", CLIENT).await;
        assert_eq!((e.rip, e.matches_client), (None, Some(false)));
        assert_eq!(e.error.as_deref(), Some("invalid-name"));
    })
    .await;
}

#[tokio::test]
async fn domain_mx_sorted_with_addresses() {
    let server = DnsServer::start();
    let dns = dns(&server);
    within(async {
        let d = dns.domain("Test.Example.").await;
        assert_eq!(d.ip, s("192.0.2.1"));
        assert_eq!(d.ipv6, ["2001:db8::1"]);
        assert_eq!(
            d.mxs.as_deref(),
            Some(
                &["mx1.test.example", "mx2.test.example", "mx3.test.example"].map(String::from)[..]
            )
        );
        // The first address of each MX; mx3 has only AAAA.
        assert_eq!(
            d.ips,
            Some(vec![s("192.0.2.11"), s("192.0.2.12"), s("2001:db8::13")])
        );
        assert_eq!((d.null_mx, d.implicit_mx, d.error), (false, false, None));

        // Equal preferences keep the order the server gave.
        let d = dns.domain("ties.test.example").await;
        assert_eq!(
            d.mxs.unwrap(),
            [
                "tie-c.test.example",
                "tie-b.test.example",
                "tie-a.test.example"
            ]
        );
        assert_eq!(
            d.ips,
            Some(vec![s("192.0.2.23"), s("192.0.2.22"), s("192.0.2.21")])
        );
        assert_eq!(
            d.ip, None,
            "an MX-only domain has no address, and that is no error"
        );
        assert_eq!(d.error, None);

        // An MX host that does not resolve keeps its place.
        let d = dns.domain("dangling.test.example").await;
        assert_eq!(d.mxs.unwrap(), ["missing.test.example"]);
        assert_eq!(d.ips, Some(vec![None]));
    })
    .await;
}

#[tokio::test]
async fn domain_null_implicit_and_missing() {
    let server = DnsServer::start();
    let dns = dns(&server);
    within(async {
        let d = dns.domain("nullmx.test.example").await;
        assert!(d.null_mx);
        assert_eq!((d.mxs, d.ips), (Some(vec![]), Some(vec![])));
        assert_eq!(d.error, None);

        let d = dns.domain("implicit.test.example").await;
        assert!(d.implicit_mx && !d.null_mx);
        assert_eq!(d.mxs.unwrap(), ["implicit.test.example"]);
        assert_eq!(d.ips, Some(vec![s("192.0.2.20")]));
        assert_eq!(d.ip, s("192.0.2.20"));

        let d = dns.domain("nosuch.test.example").await;
        assert_eq!((d.ip, d.mxs, d.ips), (None, None, None));
        assert_eq!(d.error.as_deref(), Some("nxdomain"));

        let d = dns.domain("noaddr.test.example").await;
        assert_eq!((d.ip, d.mxs), (None, None));
        assert_eq!(d.error.as_deref(), Some("nodata"));

        // Address literals are their own address; nothing is looked up.
        let d = dns.domain("[192.0.2.7]").await;
        assert_eq!((d.ip, d.mxs, d.error), (s("192.0.2.7"), None, None));
        let d = dns.domain("[IPv6:2001:db8::7]").await;
        assert_eq!((d.ip, d.ipv6), (None, vec!["2001:db8::7".to_owned()]));
    })
    .await;
}

#[tokio::test]
async fn dnsbl_listed_and_not_listed() {
    let server = DnsServer::start();
    let config = DnsConfig {
        dnsbl_zones: vec!["bl.test.example".into(), "nosuch-bl.test.example.".into()],
        ..dns_config(server.addr, TIMEOUT)
    };
    let dns = Dns::new(&config).unwrap();
    within(async {
        let found = dns.dnsbl(ip("192.0.2.2")).await;
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].zone, "bl.test.example");
        assert!(found[0].listed);
        assert_eq!(found[0].codes, ["127.0.0.2"]);
        assert_eq!(
            found[0].reason.as_deref(),
            Some("192.0.2.2 is listed for testing")
        );
        assert_eq!(found[0].error, None);
        assert_eq!(found[1].zone, "nosuch-bl.test.example");
        assert!(!found[1].listed);

        let found = dns.dnsbl(CLIENT).await;
        assert!(
            found
                .iter()
                .all(|f| !f.listed && f.codes.is_empty() && f.error.is_none())
        );
        // IPv6 clients are looked up by nibbles: not listed here.
        assert!(dns.dnsbl(ip("2001:db8::1")).await.iter().all(|f| !f.listed));
    })
    .await;
}

#[tokio::test]
async fn a_name_that_never_answers_times_out() {
    let server = DnsServer::start();
    let dns = Dns::new(&dns_config(server.addr, SHORT)).unwrap();
    within(async {
        let started = Instant::now();
        let d = dns.domain("slow.test.example").await;
        assert!(started.elapsed() < SHORT_BOUND, "{:?}", started.elapsed());
        assert_eq!((d.ip, d.mxs, d.ips), (None, None, None));
        assert_eq!(d.error.as_deref(), Some("timeout"));

        let started = Instant::now();
        let e = dns.ehlo("host.slow.test.example", CLIENT).await;
        assert!(started.elapsed() < SHORT_BOUND);
        assert_eq!(
            (e.rip, e.matches_client, e.error.as_deref()),
            (None, None, Some("timeout"))
        );

        // A PTR name in the slow zone: iprev cannot be decided.
        let started = Instant::now();
        let r = dns.reverse(ip("192.0.2.5")).await;
        assert!(started.elapsed() < SHORT_BOUND);
        assert_eq!(
            (r.domain, r.iprev.as_str(), r.error.as_deref()),
            (None, "temperror", Some("timeout"))
        );

        // SPF with an include that never answers.
        let started = Instant::now();
        let spf = dns
            .spf(
                CLIENT,
                "mail.test.example",
                Some("a@spf-slow.test.example"),
                SERVER,
            )
            .await;
        assert!(started.elapsed() < SHORT_BOUND);
        assert_eq!(spf, spf_words("temperror", "pass"));

        // The live part of the zone still answers at once.
        assert_eq!(
            dns.domain("implicit.test.example").await.ip,
            s("192.0.2.20")
        );
    })
    .await;
}

#[tokio::test]
async fn a_server_that_never_answers_yields_nulls_in_time() {
    let silent = SilentDnsServer::start();
    let config = DnsConfig {
        dnsbl_zones: vec!["bl.test.example".into()],
        ..dns_config(silent.addr, SHORT)
    };
    let dns = Dns::new(&config).unwrap();
    within(async {
        let started = Instant::now();
        let (r, e, d, spf, bl) = tokio::join!(
            dns.reverse(CLIENT),
            dns.ehlo("mail.test.example", CLIENT),
            dns.domain("test.example"),
            dns.spf(CLIENT, "mail.test.example", Some("a@test.example"), SERVER),
            dns.dnsbl(CLIENT),
        );
        assert!(started.elapsed() < SHORT_BOUND, "{:?}", started.elapsed());
        assert_eq!(
            (r.domain, r.iprev.as_str(), r.error.as_deref()),
            (None, "temperror", Some("timeout"))
        );
        assert_eq!(
            (e.rip, e.matches_client, e.error.as_deref()),
            (None, None, Some("timeout"))
        );
        assert_eq!(
            (d.ip, d.mxs, d.error.as_deref()),
            (None, None, Some("timeout"))
        );
        assert_eq!(spf, spf_words("temperror", "temperror"));
        assert!(!bl[0].listed);
        assert_eq!(bl[0].error.as_deref(), Some("timeout"));

        // Message authentication: two phases of one timeout each.
        let started = Instant::now();
        let (key, _) = ed25519_key("ed");
        let sig = DkimSigner::from_key(key)
            .domain("test.example")
            .selector("ed")
            .headers(["From"])
            .sign(MESSAGE.as_bytes())
            .unwrap();
        let signed = format!("{}{MESSAGE}", sig.to_header());
        let auth = dns
            .authenticate_message(
                signed.as_bytes(),
                &context(Some("a@test.example"), Some(&spf)),
            )
            .await;
        assert!(
            started.elapsed() < 2 * SHORT_BOUND,
            "{:?}",
            started.elapsed()
        );
        assert_eq!(auth.dkim[0].result, "temperror");
        assert_eq!(auth.dmarc, "temperror");
        assert!(auth.authentication_results.contains("dkim=temperror"));
    })
    .await;
}

/// Issue 18: the findings of a check are kept as long as the answers behind
/// them (60 s in the test zone), so the next session or message asks nothing.
/// With the server gone, the same client, EHLO name, domain, SPF check and
/// unsigned message find the same as before — the loopback PTR included, which
/// no resolver cache holds (it is asked of the server directly).
#[tokio::test]
async fn findings_are_reused_while_their_answers_live() {
    let server = DnsServer::start();
    let dns = dns(&server);
    let loopback = ip("127.0.0.1");
    let cx = context(Some("alice@test.example"), None);
    let ask = || async {
        (
            dns.reverse(loopback).await,
            dns.ehlo("mail.test.example", CLIENT).await,
            dns.domain("Test.Example.").await,
            dns.spf(CLIENT, "mail.test.example", Some("a@test.example"), SERVER)
                .await,
            dns.authenticate_message(MESSAGE.as_bytes(), &cx).await,
        )
    };
    let first = within(ask()).await;
    assert_eq!(
        (first.0.domain.as_deref(), first.0.iprev.as_str()),
        (Some("loop.test.example"), "pass")
    );
    assert_eq!(first.1.matches_client, Some(true));
    assert_eq!(first.2.mxs.as_ref().map(Vec::len), Some(3));
    assert_eq!(first.3, spf_words("pass", "pass"));
    assert_eq!(first.4.dmarc, "pass");
    assert!(
        first.4.authentication_results.contains("dkim=none"),
        "{}",
        first.4.authentication_results
    );
    drop(server);
    assert_eq!(within(ask()).await, first);
}
