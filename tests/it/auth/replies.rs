//! Every AUTH reply code at the byte level, against an in-process server whose
//! users come from the seed's `password(username)` hook: 502 when AUTH is off, 538
//! 5.7.11 and no AUTH keyword in the clear (until `allow_plaintext_auth`), 235
//! 2.7.0, 535 5.7.8 with one text for a bad password and an unknown user, 501 5.5.2
//! for `*` and bad base64, 504 5.5.4 for unknown mechanisms, 503 5.5.1 for a second
//! AUTH and AUTH inside a transaction, 500 5.5.6 for an over-long response (the
//! session goes on), the 334 prompts of PLAIN and LOGIN, `authenticated` and
//! `with ESMTPA`/`ESMTPSA` in the delivered mail, and the failure delay that grows
//! without blocking other sessions.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use net_receiver::Config;
use net_receiver::config::ListenerMode;

use crate::support::auth::{
    BAD_CREDENTIALS, Extras, USERS, Users, auth_config, auth_server, b64, plain,
    plaintext_auth_config,
};
use crate::support::common::{Client, Reply, TestServer, config, expect_messages, split_stored};
use crate::support::tls::{Pair, TlsClient};

const JOE: (&str, &str) = USERS[0];

fn server(config: Config) -> (TestServer, Users) {
    let users = Users::default();
    let server = auth_server(config, users.clone(), Extras::default());
    (server, users)
}

fn has_auth_keyword(ehlo: &Reply) -> bool {
    ehlo.lines.iter().skip(1).any(|l| l.starts_with("AUTH"))
}

/// MAIL, RCPT, DATA and a message with `subject`, all accepted.
fn send_mail(client: &mut Client, subject: &str) {
    client.start_data("a@example.com", "b@example.com");
    client.send(format!("Subject: {subject}\r\n\r\nbody\r\n.\r\n").as_bytes());
    client.expect_enhanced(250, "2.0.0");
}

#[test]
fn auth_is_502_and_not_offered_when_off() {
    let (server, _) = server(Config {
        allow_plaintext_auth: true,
        ..config()
    });
    let mut client = Client::connect(server.port);
    let ehlo = client.cmd("EHLO client.test", 250);
    assert!(!has_auth_keyword(&ehlo), "{ehlo:?}");
    client.send(format!("AUTH PLAIN {}\r\n", plain(JOE.0, JOE.1)).as_bytes());
    client.expect_enhanced(502, "5.5.1");
    client.quit();
}

#[test]
fn plaintext_auth_is_538_and_not_offered_until_tls() {
    let pair = Pair::new();
    let users = Users::default();
    let server = auth_server(
        auth_config(),
        users.clone(),
        Extras {
            modes: vec![ListenerMode::Smtp, ListenerMode::Smtps],
            tls: Some(pair.handle()),
            ..Extras::default()
        },
    );
    let mut client = Client::connect(server.ports[0]);
    let ehlo = client.cmd("EHLO client.test", 250);
    assert!(!has_auth_keyword(&ehlo), "{ehlo:?}");
    assert!(ehlo.lines.contains(&"STARTTLS".to_owned()), "{ehlo:?}");
    for line in [
        format!("AUTH PLAIN {}", plain(JOE.0, JOE.1)),
        "AUTH LOGIN".into(),
    ] {
        client.send(format!("{line}\r\n").as_bytes());
        let reply = client.expect_enhanced(538, "5.7.11");
        assert_eq!(
            reply.text(),
            "5.7.11 Encryption required for requested authentication mechanism"
        );
    }
    client.send(b"STARTTLS\r\n");
    client.expect(220);
    let mut tls = TlsClient::after_starttls(client, pair.client_config());
    let ehlo = tls.cmd("EHLO client.test", 250);
    assert!(ehlo.lines.contains(&"AUTH PLAIN LOGIN".into()), "{ehlo:?}");
    tls.send(format!("AUTH PLAIN {}\r\n", plain(JOE.0, JOE.1)).as_bytes());
    let reply = tls.expect_enhanced(235, "2.7.0");
    assert_eq!(reply.text(), "2.7.0 Authentication successful");
    tls.cmd("MAIL FROM:<a@example.com>", 250);
    tls.cmd("RCPT TO:<b@example.com>", 250);
    tls.cmd("DATA", 354);
    tls.send(b"Subject: starttls\r\n\r\nbody\r\n.\r\n");
    tls.expect(250);
    tls.quit();

    // Implicit TLS offers it from the first EHLO.
    let mut tls = TlsClient::implicit(server.ports[1], pair.client_config());
    let ehlo = tls.cmd("EHLO client.test", 250);
    assert!(ehlo.lines.contains(&"AUTH PLAIN LOGIN".into()), "{ehlo:?}");
    tls.cmd("AUTH LOGIN", 334);
    tls.cmd(&b64(USERS[1].0), 334);
    tls.cmd(&b64(USERS[1].1), 235);
    tls.quit();

    let mails = users.mails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(mails[0].authenticated.as_deref(), Some(JOE.0));
    assert!(mails[0].encrypted);
    let json: serde_json::Value = serde_json::from_str(&mails[0].to_json()).unwrap();
    assert_eq!(json["authenticated"], JOE.0, "{json}");
    let stored = split_stored(&expect_messages(server.maildir.path(), 1)[0]).received;
    assert!(stored.contains(" with ESMTPSA id "), "{stored}");
}

#[test]
fn allow_plaintext_auth_offers_auth_in_the_clear() {
    let (server, users) = server(plaintext_auth_config());
    let mut client = Client::connect(server.port);
    let ehlo = client.cmd("EHLO client.test", 250);
    assert!(ehlo.lines.contains(&"AUTH PLAIN LOGIN".into()), "{ehlo:?}");
    // Before AUTH the mail is not authenticated.
    send_mail(&mut client, "before");
    client.send(format!("AUTH PLAIN {}\r\n", plain(JOE.0, JOE.1)).as_bytes());
    client.expect_enhanced(235, "2.7.0");
    send_mail(&mut client, "after");
    // It lasts for the session, and MAIL's AUTH= parameter (RFC 4954 §5) is taken.
    client.cmd("MAIL FROM:<a@example.com> AUTH=<>", 250);
    client.cmd("RSET", 250);
    client.cmd("MAIL FROM:<a@example.com> AUTH=joe+40example.com", 250);
    client.cmd("RCPT TO:<b@example.com>", 250);
    client.cmd("DATA", 354);
    client.cmd("Subject: again\r\n\r\nbody\r\n.", 250);
    client.quit();
    let mails = users.mails();
    assert_eq!(mails.len(), 3, "{mails:?}");
    assert_eq!(mails[0].authenticated, None);
    for mail in &mails[1..] {
        assert_eq!(mail.authenticated.as_deref(), Some(JOE.0));
        assert!(!mail.encrypted);
    }
    let files = expect_messages(server.maildir.path(), 3);
    let received: Vec<String> = files.iter().map(|f| split_stored(f).received).collect();
    assert_eq!(
        received
            .iter()
            .filter(|r| r.contains(" with ESMTPA id "))
            .count(),
        2,
        "{received:?}"
    );
    assert_eq!(
        received
            .iter()
            .filter(|r| r.contains(" with ESMTP id "))
            .count(),
        1,
        "{received:?}"
    );
}

#[test]
fn bad_password_and_unknown_user_get_the_same_535() {
    let (server, users) = server(Config {
        max_failed_msgs_per_period: 10,
        auth_failure_delay: 0.01,
        ..plaintext_auth_config()
    });
    let mut client = Client::connect(server.port);
    client.cmd("EHLO client.test", 250);
    let attempts = [
        format!("AUTH PLAIN {}", plain(JOE.0, "joe-Secret-43")),
        format!("AUTH PLAIN {}", plain("nobody", JOE.1)),
        format!("AUTH PLAIN {}", plain("JOE", JOE.1)),
        // An authorization identity other than the user is refused too.
        format!("AUTH PLAIN {}", b64(&format!("ann\0{}\0{}", JOE.0, JOE.1))),
        format!("AUTH LOGIN {}", b64(JOE.0)),
    ];
    for attempt in &attempts {
        client.send(format!("{attempt}\r\n").as_bytes());
        if attempt.starts_with("AUTH LOGIN") {
            client.expect(334);
            client.send(format!("{}\r\n", b64("wrong")).as_bytes());
        }
        let reply = client.expect(535);
        assert_eq!(reply.text(), BAD_CREDENTIALS, "{attempt}");
    }
    // Still not authenticated; then the right password works.
    send_mail(&mut client, "anonymous");
    client.send(
        format!(
            "AUTH PLAIN {}\r\n",
            b64(&format!("{0}\0{0}\0{1}", JOE.0, JOE.1))
        )
        .as_bytes(),
    );
    client.expect_enhanced(235, "2.7.0");
    client.quit();
    assert_eq!(users.mails()[0].authenticated, None);
}

#[test]
fn cancel_and_bad_base64_are_501() {
    let (server, _) = server(plaintext_auth_config());
    let mut client = Client::connect(server.port);
    client.cmd("EHLO client.test", 250);
    let cancelled = "5.5.2 Authentication cancelled";
    let reply = client.cmd("AUTH PLAIN", 334);
    assert_eq!(reply.text(), "");
    assert_eq!(client.cmd("*", 501).text(), cancelled);
    assert_eq!(client.cmd("AUTH LOGIN", 334).text(), "VXNlcm5hbWU6");
    assert_eq!(client.cmd("*", 501).text(), cancelled);
    client.cmd("AUTH LOGIN", 334);
    assert_eq!(client.cmd(&b64(JOE.0), 334).text(), "UGFzc3dvcmQ6");
    assert_eq!(client.cmd("*", 501).text(), cancelled);
    let invalid = "5.5.2 Invalid base64 data";
    assert_eq!(client.cmd("AUTH PLAIN %%%not-base64", 501).text(), invalid);
    client.cmd("AUTH PLAIN", 334);
    assert_eq!(client.cmd("am9l=x", 501).text(), invalid);
    client.cmd("AUTH LOGIN", 334);
    client.cmd(&b64(JOE.0), 334);
    assert_eq!(client.cmd("not base64!", 501).text(), invalid);
    // The session is still in order.
    client.cmd("NOOP", 250);
    client.cmd(&format!("AUTH PLAIN {}", plain(JOE.0, JOE.1)), 235);
    client.quit();
}

#[test]
fn unknown_mechanisms_are_504() {
    let (server, _) = server(plaintext_auth_config());
    let mut client = Client::connect(server.port);
    client.cmd("EHLO client.test", 250);
    for mechanism in ["CRAM-MD5", "GSSAPI", "XOAUTH2 dG9rZW4=", "PLAINX"] {
        let reply = client.cmd(&format!("AUTH {mechanism}"), 504);
        assert_eq!(reply.text(), "5.5.4 Unrecognized authentication type");
    }
    client.cmd(&format!("auth plain {}", plain(JOE.0, JOE.1)), 235);
    client.quit();
}

#[test]
fn second_auth_and_auth_in_a_transaction_are_503() {
    let (server, _) = server(plaintext_auth_config());
    let mut client = Client::connect(server.port);
    // Before EHLO.
    client.send(format!("AUTH PLAIN {}\r\n", plain(JOE.0, JOE.1)).as_bytes());
    client.expect_enhanced(503, "5.5.1");
    client.cmd("EHLO client.test", 250);
    client.cmd("MAIL FROM:<a@example.com>", 250);
    client.send(format!("AUTH PLAIN {}\r\n", plain(JOE.0, JOE.1)).as_bytes());
    client.expect_enhanced(503, "5.5.1");
    client.cmd("RSET", 250);
    client.send(format!("AUTH PLAIN {}\r\n", plain(JOE.0, JOE.1)).as_bytes());
    client.expect_enhanced(235, "2.7.0");
    for again in [
        format!("AUTH PLAIN {}", plain(USERS[1].0, USERS[1].1)),
        "AUTH LOGIN".to_owned(),
    ] {
        client.send(format!("{again}\r\n").as_bytes());
        client.expect_enhanced(503, "5.5.1");
    }
    client.quit();
}

#[test]
fn over_long_response_is_500_and_the_session_goes_on() {
    let (server, _) = server(plaintext_auth_config());
    let mut client = Client::connect(server.port);
    client.cmd("EHLO client.test", 250);
    let long = "A".repeat(13_000);
    for start in ["AUTH PLAIN", "AUTH LOGIN"] {
        client.cmd(start, 334);
        client.send(format!("{long}\r\n").as_bytes());
        client.expect_enhanced(500, "5.5.6");
        client.cmd("NOOP", 250);
    }
    // As an initial response, on the command line.
    client.send(format!("AUTH PLAIN {long}\r\n").as_bytes());
    client.expect_enhanced(500, "5.5.6");
    client.cmd("NOOP", 250);
    // Split into several writes, slowly.
    client.cmd("AUTH PLAIN", 334);
    for chunk in long.as_bytes().chunks(4000) {
        client.send(chunk);
        std::thread::sleep(Duration::from_millis(20));
    }
    client.send(b"\r\n");
    client.expect_enhanced(500, "5.5.6");
    client.cmd("NOOP", 250);
    client.cmd(&format!("AUTH PLAIN {}", plain(JOE.0, JOE.1)), 235);
    client.quit();
}

#[test]
fn plain_continuation_and_login_prompts() {
    let (server, users) = server(plaintext_auth_config());
    // PLAIN without an initial response: an empty 334, then the response.
    let mut client = Client::connect(server.port);
    client.cmd("EHLO client.test", 250);
    let reply = client.cmd("AUTH PLAIN", 334);
    assert_eq!(reply.lines, vec![String::new()]);
    client.send(format!("{}\r\n", plain(JOE.0, JOE.1)).as_bytes());
    client.expect_enhanced(235, "2.7.0");
    send_mail(&mut client, "plain-334");
    client.quit();
    // LOGIN: Username:, then Password:.
    let mut client = Client::connect(server.port);
    client.cmd("EHLO client.test", 250);
    assert_eq!(client.cmd("AUTH LOGIN", 334).text(), b64("Username:"));
    assert_eq!(client.cmd(&b64(USERS[1].0), 334).text(), b64("Password:"));
    client.cmd(&b64(USERS[1].1), 235);
    send_mail(&mut client, "login");
    client.quit();
    // LOGIN with the user name as initial response: straight to Password:.
    let mut client = Client::connect(server.port);
    client.cmd("EHLO client.test", 250);
    let reply = client.cmd(&format!("AUTH LOGIN {}", b64(JOE.0)), 334);
    assert_eq!(reply.text(), b64("Password:"));
    client.cmd(&b64(JOE.1), 235);
    client.quit();
    let who: Vec<Option<String>> = users.mails().into_iter().map(|m| m.authenticated).collect();
    assert_eq!(who, vec![Some(JOE.0.into()), Some(USERS[1].0.into())]);
}

#[test]
fn each_failed_auth_waits_longer_without_blocking_others() {
    let delay = 0.2;
    let (server, _) = server(Config {
        auth_failure_delay: delay,
        max_failed_msgs_per_period: 10,
        ..plaintext_auth_config()
    });
    let port = server.port;
    let mut client = Client::connect(port);
    client.cmd("EHLO client.test", 250);
    let wrong = format!("AUTH PLAIN {}\r\n", plain(JOE.0, "wrong"));
    for n in 1..=2u32 {
        let start = Instant::now();
        client.send(wrong.as_bytes());
        client.expect(535);
        let waited = start.elapsed();
        let least = Duration::from_secs_f64(delay * f64::from(1 << (n - 1)));
        assert!(waited >= least, "failure {n}: {waited:?} < {least:?}");
    }
    // The third failure waits 4 × the delay; meanwhile another client is served
    // (the server runs on one worker thread: a blocking sleep would stall it).
    let (sent, sent_rx) = mpsc::channel();
    let third = std::thread::spawn(move || {
        let start = Instant::now();
        client.send(wrong.as_bytes());
        sent.send(()).unwrap();
        let reply = client.expect(535);
        assert_eq!(reply.text(), BAD_CREDENTIALS);
        let arrived = Instant::now();
        client.quit();
        (start, arrived)
    });
    sent_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let mut other = Client::connect(port);
    other.cmd("EHLO other.test", 250);
    other.cmd("NOOP", 250);
    let other_done = Instant::now();
    let (start, arrived) = third.join().unwrap();
    let least = Duration::from_secs_f64(delay * 4.0);
    assert!(
        arrived - start >= least,
        "third failure: {:?} < {least:?}",
        arrived - start
    );
    assert!(
        other_done < arrived,
        "another session waited for the delayed reply"
    );
    other.quit();
}

#[test]
fn starttls_discards_an_earlier_auth() {
    let pair = Pair::new();
    let users = Users::default();
    let server = auth_server(
        plaintext_auth_config(),
        users.clone(),
        Extras {
            modes: vec![ListenerMode::Submission],
            tls: Some(pair.handle()),
            ..Extras::default()
        },
    );
    let mut client = Client::connect(server.port);
    client.cmd("EHLO client.test", 250);
    client.cmd(&format!("AUTH PLAIN {}", plain(JOE.0, JOE.1)), 235);
    client.cmd("MAIL FROM:<a@example.com>", 250);
    client.cmd("RSET", 250);
    client.send(b"STARTTLS\r\n");
    client.expect(220);
    let mut tls = TlsClient::after_starttls(client, pair.client_config());
    tls.cmd("EHLO client.test", 250);
    // RFC 3207 §4.2: what was learnt before TLS is forgotten, AUTH included.
    tls.send(b"MAIL FROM:<a@example.com>\r\n");
    tls.expect_enhanced(530, "5.7.0");
    tls.send(format!("AUTH PLAIN {}\r\n", plain(USERS[1].0, USERS[1].1)).as_bytes());
    tls.expect_enhanced(235, "2.7.0");
    tls.cmd("MAIL FROM:<a@example.com>", 250);
    tls.cmd("RCPT TO:<b@example.com>", 250);
    tls.cmd("DATA", 354);
    tls.send(b"Subject: re-auth\r\n\r\nbody\r\n.\r\n");
    tls.expect(250);
    tls.quit();
    let mails = users.mails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(mails[0].authenticated.as_deref(), Some(USERS[1].0));
}
