//! `net_receiver::dns` against a real DNS server ([`super::dns_server`]) on
//! loopback: every `Dns` method, DKIM with keys published in the test zone and
//! messages signed here, DMARC, the `Authentication-Results` header, the forged
//! header stripping, DNSBLs, and the timeout paths (a name that never answers, a
//! server that never answers). No resolver mocks, no traffic beyond 127.0.0.1.
//! The lookups are tested here, sender authentication in `dns/auth.rs`; the
//! helpers (keys, signed messages, contexts) are shared.

use std::future::Future;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter as _;
use mail_auth::dkim::DkimSigner;
use net_receiver::dns::{AuthContext, Dns, DnsConfig, SpfFindings};
use rustls::pki_types::PrivatePkcs8KeyDer;
use rustls::pki_types::pem::PemObject as _;

mod auth;

use super::dns_server::{DnsServer, SilentDnsServer, dns_config};

/// Our authserv-id in these tests.
const SERVER: &str = "mx.test.example";

/// Per-lookup timeout against the live test server (it answers in microseconds).
const TIMEOUT: Duration = Duration::from_secs(3);

/// The short timeout of the timeout-path tests, and what they may take in all.
const SHORT: Duration = Duration::from_millis(500);
const SHORT_BOUND: Duration = Duration::from_secs(2);

/// A 2048-bit RSA key made for these tests only (`openssl genpkey -algorithm RSA`);
/// it signs nothing but test messages. Its public half goes into the test zone as
/// `rsa._domainkey.test.example`.
const TEST_ONLY_RSA_PRIVATE_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQCgrXAz2SWKI5rh
1NzoPvyPS8zFZ04PVWt6JmuN8vkXUraM9A23RvAlvyVndjvhBWpvK5kM+KXGPZxE
XKQulnAk/xCwkRT3D1OkI33o1CcRZ1VAS9EEeHvIpcnJNs2LsKkAyIS2anGliAfS
xg1KAnFgFkHq6HBvsIW5JE7Gmbf/DYeNSFypJEV2/dVA+WYsLwRMZUm6Kj5rlMA1
47ET05Gvpz3v/WLPm75oRRDVeY7pGdBmeD248vYhY40RVuzH2JQz4Us9foVdjeyH
v+g2lPR0giVchrJAz56RqNu7lg2o37OceXOB9ZgToPx7hyOxry1RYW0cX0GVEjoz
9jW5uHAJAgMBAAECggEAClSnESkAqTgO05RHERueS2xOjHv5izItHdvDMIuTCQqF
YtyngRrWLTxz9Yn8Nu8336adnuA3GwmHtubUm4uKnFEAoV7tSnvkHyU1CYznvM5j
BHubbb59XvI3M3EK7X9R7migt8XHls1Ui3BhFwVp2rQI+vHaQM7IWkCuW/CINvrC
nLdTEM3uoOMuyuwXoKOaBUHvoDjavjiOYSmGuQp04Pe7LGC3LPv+Okq6Wa73Pyhs
ysvoxhXrqFh+kwOeAltqp9/tLIjHqIK2DGEG8rq4h3gxV5DpDrEUsqE7/bNNmwwa
Tr/D3oF9buFyyuKxQqYeoXSQXpLMeFJ+/yTGaaassQKBgQDSr9Vh7WT7Cx+F02ui
31bvm/jGOrPx95O/F6LmumpNJBpsN1UhF9tG37DGHwPLyWUFrb2XycV8miCCU3af
s+tpfynUXCYHNnQ78WhWljEN+ybez4tjSfp0rBS731/g6Ep7/wf61Kh2JBGXfLiw
XCzww0XC7+MOBNYEe73ZznMYPQKBgQDDPCY4EUo7CofV1MhwU1nkzYH8xl/H8U1q
45HdSl+nNIhVxm9gf4XygQIEK/saTJ+2iZ8xYwj/O7bdkfBb8azoZ6TzlOYZqsYZ
D0JyZKXiaYQ3J2edzrS3nVM9wWajchXVZ2hcczffQ+9ygMrBgSsTu8ik3AkmT8Gb
liu/wOtnvQKBgQCA7o3c0dRcNSBjW1ChaZ/gHkkNtlrslp/Z73MHU8k9z/xDgVEd
YWYVZ0rc05oVGfgyk3JU82thp0iBuOX9MbO86c8FYCb9fvt+u2soodz/O1U8QTKB
3oHg6HX/yuD31+/NFfMiMwWs1sHVPMQhWSc/Z6DHfNoseBUoxTkXk1mn2QKBgBlT
Ew4QyBUyf34wNLPFTBLOyX61aLUxyr4DuOcAf7nbqZeevtHAmOpk65MI9XBq4gi2
f0zTsNYSs9y30nrKtYgL8aya8uH/ceTMQu09uvrMfxb8aIdiybRLlwGataqb4NMm
r7XWSDgQwt2ScTp6e9D6ecNQu2sZy15YM2KTLrXtAoGBAMvEyWJFBBRfGPY/s6du
QPFcQ2p1GsJi7d2ymsKLRmDBQ8P9ePg+wjaQiLUBT3J7IWA++x2vrw4hJGkGE1pC
drJD4yOGJRy5eJkfJsBng5Kn9TKRVlDndedo8Tgj/alSop17YnX83vNI1EjF7MOJ
AXH9HIhJ0gTPpMZ1tNR+mZ3D
-----END PRIVATE KEY-----
";

/// The test message, CRLF line ends.
const MESSAGE: &str = "From: Alice <alice@test.example>\r\n\
To: bob@test.example\r\n\
Subject: DNS checks\r\n\
Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\
Message-ID: <1@test.example>\r\n\
\r\n\
Hello.\r\n\
";

/// The test client: forward-confirmed as `mail.test.example` in the test zone.
const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// Fails the test if `fut` takes longer than 30 s (nothing here should take 5).
async fn within<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .expect("test took longer than 30 s")
}

fn dns(server: &DnsServer) -> Dns {
    Dns::new(&dns_config(server.addr, TIMEOUT)).unwrap()
}

fn s(v: &str) -> Option<String> {
    Some(v.to_owned())
}

/// An Ed25519 key generated for this run, and its DKIM record under `selector`.
fn ed25519_key(selector: &str) -> (Ed25519Key, String) {
    let key = Ed25519Key::from_pkcs8_der(&Ed25519Key::generate_pkcs8().unwrap()).unwrap();
    let record = format!(
        "{selector}._domainkey TXT \"v=DKIM1; k=ed25519; p={}\"",
        BASE64.encode(key.public_key())
    );
    (key, record)
}

/// [`TEST_ONLY_RSA_PRIVATE_KEY`] and its DKIM record under `selector`.
fn rsa_key(selector: &str) -> (RsaKey<Sha256>, String) {
    let der = PrivatePkcs8KeyDer::from_pem_slice(TEST_ONLY_RSA_PRIVATE_KEY.as_bytes()).unwrap();
    let key = RsaKey::<Sha256>::from_key_der(der.into()).unwrap();
    let record = format!(
        "{selector}._domainkey TXT \"v=DKIM1; k=rsa; p={}\"",
        BASE64.encode(key.public_key())
    );
    (key, record)
}

/// `MESSAGE` (or `message`) with an Ed25519 DKIM signature of `test.example`,
/// selector `ed`, and the server serving the key.
fn signed_message(message: &str) -> (DnsServer, String) {
    let (key, record) = ed25519_key("ed");
    let server = DnsServer::start_with(&record);
    let signature = DkimSigner::from_key(key)
        .domain("test.example")
        .selector("ed")
        .headers(["From", "To", "Subject", "Date", "Message-ID"])
        .sign(message.as_bytes())
        .unwrap();
    (server, format!("{}{message}", signature.to_header()))
}

fn context<'a>(mail_from: Option<&'a str>, spf: Option<&'a SpfFindings>) -> AuthContext<'a> {
    AuthContext {
        ip: CLIENT,
        helo: "mail.test.example",
        mail_from,
        server_name: SERVER,
        iprev: Some("pass"),
        spf,
    }
}

fn spf_words(mail_from: &str, helo: &str) -> SpfFindings {
    SpfFindings {
        mail_from: mail_from.into(),
        helo: helo.into(),
    }
}

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
