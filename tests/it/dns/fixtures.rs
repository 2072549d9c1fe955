//! What the DNS tests share: the test-only RSA key and Ed25519 keys made per run
//! (with their DKIM records), the test message and its signed copy, the test
//! client, `Dns` on the test server, `AuthContext`s, and a time bound.

use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter as _;
use mail_auth::dkim::DkimSigner;
use net_receiver::dns::{AuthContext, Dns, SpfFindings};
use rustls::pki_types::PrivatePkcs8KeyDer;
use rustls::pki_types::pem::PemObject as _;

use crate::support::dns_server::{DnsServer, dns_config};

/// Our authserv-id in these tests.
pub(super) const SERVER: &str = "mx.test.example";

/// Per-lookup timeout against the live test server (it answers in microseconds).
pub(super) const TIMEOUT: Duration = Duration::from_secs(3);

/// The short timeout of the timeout-path tests, and what they may take in all.
pub(super) const SHORT: Duration = Duration::from_millis(500);
pub(super) const SHORT_BOUND: Duration = Duration::from_secs(2);

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
pub(super) const MESSAGE: &str = "From: Alice <alice@test.example>\r\n\
To: bob@test.example\r\n\
Subject: DNS checks\r\n\
Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\
Message-ID: <1@test.example>\r\n\
\r\n\
Hello.\r\n\
";

/// The test client: forward-confirmed as `mail.test.example` in the test zone.
pub(super) const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

pub(super) fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// Fails the test if `fut` takes longer than 30 s (nothing here should take 5).
pub(super) async fn within<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .expect("test took longer than 30 s")
}

pub(super) fn dns(server: &DnsServer) -> Dns {
    Dns::new(&dns_config(server.addr, TIMEOUT)).unwrap()
}

pub(super) fn s(v: &str) -> Option<String> {
    Some(v.to_owned())
}

/// An Ed25519 key generated for this run, and its DKIM record under `selector`.
pub(super) fn ed25519_key(selector: &str) -> (Ed25519Key, String) {
    let key = Ed25519Key::from_pkcs8_der(&Ed25519Key::generate_pkcs8().unwrap()).unwrap();
    let record = format!(
        "{selector}._domainkey TXT \"v=DKIM1; k=ed25519; p={}\"",
        BASE64.encode(key.public_key())
    );
    (key, record)
}

/// [`TEST_ONLY_RSA_PRIVATE_KEY`] and its DKIM record under `selector`.
pub(super) fn rsa_key(selector: &str) -> (RsaKey<Sha256>, String) {
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
pub(super) fn signed_message(message: &str) -> (DnsServer, String) {
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

pub(super) fn context<'a>(
    mail_from: Option<&'a str>,
    spf: Option<&'a SpfFindings>,
) -> AuthContext<'a> {
    AuthContext {
        ip: CLIENT,
        helo: "mail.test.example",
        mail_from,
        server_name: SERVER,
        iprev: Some("pass"),
        spf,
    }
}

pub(super) fn spf_words(mail_from: &str, helo: &str) -> SpfFindings {
    SpfFindings {
        mail_from: mail_from.into(),
        helo: helo.into(),
    }
}
