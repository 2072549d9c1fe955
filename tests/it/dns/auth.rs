//! Sender authentication against the test DNS server: SPF policies and both
//! identities, DKIM (Ed25519 keys made per run, the test-only RSA key) with
//! tampered copies, DMARC, the `Authentication-Results` header, stripping forged
//! ones, and ARC.
//!
//! ARC needs `mail-auth`'s `arc` feature (see `src/dns/arc.rs`); the ARC tests
//! follow whichever way the crate is built, hence the `allow`.
#![allow(unexpected_cfgs)]

use mail_auth::common::headers::HeaderWriter as _;
use mail_auth::dkim::DkimSigner;
use net_receiver::dns::{MessageAuth, strip_forged_authentication_results};

use super::fixtures::{
    CLIENT, MESSAGE, SERVER, context, dns, ed25519_key, ip, rsa_key, signed_message, spf_words,
    within,
};
use crate::support::dns_server::DnsServer;

#[tokio::test]
async fn spf_policies() {
    let server = DnsServer::start();
    let dns = dns(&server);
    within(async {
        let helo = "mail.test.example";
        for (domain, expected) in [
            ("spf-pass.test.example", "pass"),
            ("spf-fail.test.example", "fail"),
            ("spf-soft.test.example", "softfail"),
            ("spf-neutral.test.example", "neutral"),
            ("spf-include.test.example", "pass"),
            ("spf-redirect.test.example", "pass"),
            ("spf-a.test.example", "pass"),
            ("spf-mx.test.example", "pass"),
            ("spf-loop.test.example", "permerror"),
            ("spf-syntax.test.example", "permerror"),
            ("implicit.test.example", "none"),
            ("nosuch.test.example", "none"),
        ] {
            let from = format!("user@{domain}");
            let spf = dns.spf(CLIENT, helo, Some(&from), SERVER).await;
            assert_eq!(spf.mail_from, expected, "{domain}");
            assert_eq!(
                spf.helo, "pass",
                "{domain}: the HELO identity is judged on its own"
            );
        }
        // Another client IP fails where 192.0.2.1 passes.
        let spf = dns
            .spf(
                ip("192.0.2.9"),
                helo,
                Some("a@spf-pass.test.example"),
                SERVER,
            )
            .await;
        assert_eq!(spf, spf_words("fail", "fail"));
        // IPv4-mapped IPv6 is judged as IPv4.
        let spf = dns
            .spf(
                ip("::ffff:192.0.2.1"),
                helo,
                Some("a@spf-pass.test.example"),
                SERVER,
            )
            .await;
        assert_eq!(spf, spf_words("pass", "pass"));
    })
    .await;
}

#[tokio::test]
async fn spf_helo_identity_and_null_sender() {
    let server = DnsServer::start();
    let dns = dns(&server);
    within(async {
        // The null reverse path is checked as postmaster@<helo> (RFC 7208 §2.4).
        for null in [None, Some(""), Some("<>")] {
            let spf = dns.spf(CLIENT, "mail.test.example", null, SERVER).await;
            assert_eq!(spf, spf_words("pass", "pass"), "{null:?}");
            let spf = dns
                .spf(ip("192.0.2.9"), "mail.test.example", null, SERVER)
                .await;
            assert_eq!(spf, spf_words("fail", "fail"), "{null:?}");
        }
        // The HELO identity is the EHLO argument itself.
        let spf = dns
            .spf(
                CLIENT,
                "spf-fail.test.example",
                Some("a@spf-pass.test.example"),
                SERVER,
            )
            .await;
        assert_eq!(spf, spf_words("pass", "fail"));
        // An address literal or a single label is no HELO identity: none.
        for helo in [
            "[192.0.2.1]",
            "[IPv6:2001:db8::1]",
            "localhost",
            "a..example",
        ] {
            let spf = dns
                .spf(CLIENT, helo, Some("a@spf-pass.test.example"), SERVER)
                .await;
            assert_eq!(spf, spf_words("pass", "none"), "{helo}");
        }
        // ... and with the null reverse path nothing is left to check.
        let spf = dns.spf(CLIENT, "[192.0.2.1]", None, SERVER).await;
        assert_eq!(spf, spf_words("none", "none"));
        // A MAIL FROM domain that is no domain name: none.
        let spf = dns
            .spf(CLIENT, "mail.test.example", Some("a@[192.0.2.1]"), SERVER)
            .await;
        assert_eq!(spf, spf_words("none", "pass"));
    })
    .await;
}

#[tokio::test]
async fn dkim_pass_and_tampered_copies() {
    let (server, signed) = signed_message(MESSAGE);
    let dns = dns(&server);
    within(async {
        let spf = spf_words("pass", "pass");
        let cx = context(Some("alice@test.example"), Some(&spf));
        let auth = dns.authenticate_message(signed.as_bytes(), &cx).await;
        assert_eq!(auth.dkim.len(), 1);
        let d = &auth.dkim[0];
        assert_eq!(
            (d.domain.as_deref(), d.selector.as_deref()),
            (Some("test.example"), Some("ed"))
        );
        assert_eq!((d.result.as_str(), d.reason.as_deref()), ("pass", None));

        // A signed header field changed: the signature fails.
        let tampered = signed.replace("Subject: DNS checks", "Subject: DNS check");
        let auth = dns.authenticate_message(tampered.as_bytes(), &cx).await;
        assert_eq!(auth.dkim[0].result, "fail");
        assert!(auth.authentication_results.contains("dkim=fail"));

        // The body changed: the body hash does not verify (mail-auth's "neutral").
        let tampered = signed.replace("Hello.", "Hello!");
        let auth = dns.authenticate_message(tampered.as_bytes(), &cx).await;
        assert_eq!(auth.dkim[0].result, "neutral");
        assert!(
            auth.authentication_results
                .contains("body hash did not verify")
        );
    })
    .await;
}

#[tokio::test]
async fn dkim_rsa_and_several_signatures() {
    let (ed, ed_record) = ed25519_key("ed");
    let (rsa, rsa_record) = rsa_key("rsa");
    let server = DnsServer::start_with(&format!("{ed_record}\n{rsa_record}"));
    let dns = dns(&server);
    let headers = ["From", "To", "Subject"];
    let rsa_sig = DkimSigner::from_key(rsa)
        .domain("test.example")
        .selector("rsa")
        .headers(headers)
        .sign(MESSAGE.as_bytes())
        .unwrap();
    // A second signature whose key is not published.
    let (other, _) = ed25519_key("gone");
    let gone_sig = DkimSigner::from_key(other)
        .domain("test.example")
        .selector("gone")
        .headers(headers)
        .sign(MESSAGE.as_bytes())
        .unwrap();
    let ed_sig = DkimSigner::from_key(ed)
        .domain("test.example")
        .selector("ed")
        .headers(headers)
        .sign(MESSAGE.as_bytes())
        .unwrap();
    let message = format!(
        "{}{}{}{MESSAGE}",
        rsa_sig.to_header(),
        gone_sig.to_header(),
        ed_sig.to_header()
    );
    within(async {
        let spf = spf_words("pass", "pass");
        let auth = dns
            .authenticate_message(
                message.as_bytes(),
                &context(Some("alice@test.example"), Some(&spf)),
            )
            .await;
        let results: Vec<(&str, &str)> = auth
            .dkim
            .iter()
            .map(|d| (d.selector.as_deref().unwrap(), d.result.as_str()))
            .collect();
        assert_eq!(results.len(), 3);
        for expected in [("rsa", "pass"), ("gone", "permerror"), ("ed", "pass")] {
            assert!(results.contains(&expected), "{expected:?} in {results:?}");
        }
        assert_eq!(auth.authentication_results.matches("dkim=").count(), 3);
    })
    .await;
}

#[tokio::test]
async fn dmarc_pass_and_fail() {
    let (server, signed) = signed_message(MESSAGE);
    let dns = dns(&server);
    within(async {
        let failed_spf = spf_words("fail", "fail");
        let cx = context(Some("bounce@spf-fail.test.example"), Some(&failed_spf));

        // Aligned DKIM passes DMARC although SPF failed.
        let auth = dns.authenticate_message(signed.as_bytes(), &cx).await;
        assert_eq!(auth.dmarc, "pass");
        assert_eq!(auth.dmarc_policy.as_deref(), Some("reject"));
        assert_eq!(auth.dmarc_domain.as_deref(), Some("test.example"));

        // Unsigned, SPF failed: DMARC fails under p=reject.
        let auth = dns.authenticate_message(MESSAGE.as_bytes(), &cx).await;
        assert_eq!(auth.dkim, []);
        assert_eq!(
            (auth.dmarc.as_str(), auth.dmarc_policy.as_deref()),
            ("fail", Some("reject"))
        );
        assert!(auth.authentication_results.contains("dkim=none"));
        assert!(auth.authentication_results.contains("dmarc=fail"));

        // Unsigned, SPF passed for an aligned MAIL FROM: DMARC passes.
        let spf = dns
            .spf(
                CLIENT,
                "mail.test.example",
                Some("alice@test.example"),
                SERVER,
            )
            .await;
        assert_eq!(spf.mail_from, "pass");
        let cx = context(Some("alice@test.example"), Some(&spf));
        let auth = dns.authenticate_message(MESSAGE.as_bytes(), &cx).await;
        assert_eq!(auth.dmarc, "pass");

        // p=none for lax.test.example.
        let lax = MESSAGE.replace("alice@test.example", "alice@lax.test.example");
        let cx = context(Some("bounce@spf-fail.test.example"), Some(&failed_spf));
        let auth = dns.authenticate_message(lax.as_bytes(), &cx).await;
        assert_eq!(
            (auth.dmarc.as_str(), auth.dmarc_policy.as_deref()),
            ("fail", Some("none"))
        );

        // No DMARC record anywhere up the tree.
        let other = MESSAGE.replace("alice@test.example", "alice@other.example");
        let auth = dns.authenticate_message(other.as_bytes(), &cx).await;
        assert_eq!((auth.dmarc.as_str(), auth.dmarc_policy), ("none", None));
    })
    .await;
}

#[tokio::test]
async fn authentication_results_header() {
    let (server, signed) = signed_message(MESSAGE);
    let dns = dns(&server);
    within(async {
        // SPF evaluated here (spf: None).
        let mut cx = context(Some("alice@test.example"), None);
        let auth: MessageAuth = dns.authenticate_message(signed.as_bytes(), &cx).await;
        let header = &auth.authentication_results;
        assert!(
            header.starts_with(&format!("Authentication-Results: {SERVER};\r\n\t")),
            "{header}"
        );
        assert!(
            header.ends_with("\r\n") && !header.ends_with("\r\n\r\n"),
            "{header}"
        );
        for needle in [
            "iprev=pass policy.iprev=192.0.2.1",
            "spf=pass",
            "smtp.helo=mail.test.example",
            "smtp.mailfrom=alice@test.example",
            "dkim=pass header.d=test.example header.s=ed",
            "arc=none",
            "dmarc=pass header.from=test.example policy.dmarc=reject",
        ] {
            assert!(header.contains(needle), "{needle:?} in {header}");
        }
        // Folded: every line after the first starts with a tab; no bare CR or LF.
        for line in header.trim_end().split("\r\n").skip(1) {
            assert!(line.starts_with('\t'), "{line:?}");
        }
        assert_eq!(header.matches('\n').count(), header.matches("\r\n").count());
        assert_eq!(header.matches("Authentication-Results").count(), 1);
        assert_eq!(auth.arc, "none");

        // A null sender, no iprev: postmaster@helo, no iprev method.
        cx.mail_from = None;
        cx.iprev = None;
        let auth = dns.authenticate_message(signed.as_bytes(), &cx).await;
        let header = &auth.authentication_results;
        assert!(header.contains("smtp.mailfrom=<>"), "{header}");
        assert!(!header.contains("iprev="), "{header}");

        // A message that does not parse still gets a complete header.
        let auth = dns.authenticate_message(b"", &context(None, None)).await;
        assert_eq!((auth.dmarc.as_str(), auth.arc.as_str()), ("none", "none"));
        let header = &auth.authentication_results;
        for needle in ["iprev=pass", "spf=", "dkim=none", "arc=none", "dmarc=none"] {
            assert!(header.contains(needle), "{needle:?} in {header}");
        }
    })
    .await;
}

#[tokio::test]
async fn forged_authentication_results_are_stripped() {
    let forged = format!(
        "Authentication-Results: {SERVER}; dkim=pass header.d=bank.example\r\n\
         Authentication-Results: upstream.example; spf=pass\r\n{MESSAGE}"
    );
    let (server, signed) = signed_message(&forged);
    let dns = dns(&server);
    let stripped = strip_forged_authentication_results(signed.as_bytes(), SERVER).unwrap();
    let text = String::from_utf8(stripped.clone()).unwrap();
    assert!(!text.contains("bank.example"));
    assert!(text.contains("Authentication-Results: upstream.example; spf=pass\r\n"));
    assert!(text.ends_with(MESSAGE));
    assert_eq!(strip_forged_authentication_results(&stripped, SERVER), None);
    assert_eq!(
        strip_forged_authentication_results(signed.as_bytes(), "other.example"),
        None
    );
    // Our header comes first, the client's claims are gone, the signature (which
    // did not cover them) still verifies.
    within(async {
        let spf = spf_words("pass", "pass");
        let auth = dns
            .authenticate_message(&stripped, &context(Some("alice@test.example"), Some(&spf)))
            .await;
        assert_eq!(auth.dkim[0].result, "pass");
        let delivered = format!("{}{text}", auth.authentication_results);
        assert_eq!(
            delivered
                .matches(&format!("Authentication-Results: {SERVER}"))
                .count(),
            1
        );
    })
    .await;
}

#[cfg(not(feature = "arc"))]
#[tokio::test]
async fn arc_sets_without_arc_support_are_neutral() {
    let server = DnsServer::start();
    let dns = dns(&server);
    let sealed =
        format!("ARC-Seal: i=1; a=rsa-sha256; cv=none; d=test.example; s=arc; b=AAAA\r\n{MESSAGE}");
    within(async {
        let spf = spf_words("pass", "pass");
        let auth = dns
            .authenticate_message(
                sealed.as_bytes(),
                &context(Some("alice@test.example"), Some(&spf)),
            )
            .await;
        assert_eq!(auth.arc, "neutral");
        assert!(auth.authentication_results.contains("arc=neutral"));
    })
    .await;
}

#[cfg(feature = "arc")]
#[tokio::test]
async fn arc_chain_verifies() {
    use mail_auth::arc::ArcSealer;
    use mail_auth::{AuthenticatedMessage, AuthenticationResults};

    let (key, record) = ed25519_key("arc");
    let server = DnsServer::start_with(&record);
    let dns = dns(&server);
    // An intermediary seals the message (its own verification finds no chain).
    let sealed = {
        let parsed = AuthenticatedMessage::parse(MESSAGE.as_bytes()).unwrap();
        let results = AuthenticationResults::new("relay.test.example");
        let none = mail_auth::ArcOutput::default();
        let set = ArcSealer::from_key(key)
            .domain("test.example")
            .selector("arc")
            .headers(["From", "To", "Subject"])
            .seal(&parsed, &results, &none)
            .unwrap();
        format!("{}{MESSAGE}", set.to_header())
    };
    within(async {
        let spf = spf_words("pass", "pass");
        let cx = context(Some("alice@test.example"), Some(&spf));
        let auth = dns.authenticate_message(sealed.as_bytes(), &cx).await;
        assert_eq!(auth.arc, "pass", "{}", auth.authentication_results);
        assert!(auth.authentication_results.contains("arc=pass"));
        let tampered = sealed.replace("Subject: DNS checks", "Subject: changed");
        let auth = dns.authenticate_message(tampered.as_bytes(), &cx).await;
        assert_eq!(auth.arc, "fail", "{}", auth.authentication_results);
    })
    .await;
}
