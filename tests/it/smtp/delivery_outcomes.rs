//! Per-recipient delivery outcomes end to end: a target written here (as an
//! LMTP, webhook or queue target would be) that stores some recipients, refuses
//! one for good and one for now; the one reply to the final dot each mix gets,
//! and each recipient's `delivered` / `delivery_error` as `closed` sees them.
//! The Maildir, a whole-message target, gives its one result to every recipient.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use net_receiver::delivery::{DeliverFuture, DeliveryReport, ReportFuture, accepted_recipients};
use net_receiver::{Context, Deliver, DeliveryError, Mail, RcptTo, Receiver, Reply, defaults};
use serde_json::{Value, json};

use crate::support::common::{Client, TestServer, config};

/// Per recipient by local part: `gone` is refused permanently (no such
/// mailbox), `full` transiently (over quota); every other one is "stored" in
/// the list as `(mail id, recipient)`.
#[derive(Clone, Default)]
struct Mailboxes(Arc<Mutex<Vec<(String, String)>>>);

impl Mailboxes {
    fn outcome(&self, mail: &Mail, rcpt: &RcptTo) -> Result<(), DeliveryError> {
        match rcpt.local_part.as_deref() {
            Some("gone") => Err(DeliveryError::Permanent(format!(
                "{} has no mailbox",
                rcpt.url
            ))),
            Some("full") => Err(DeliveryError::InsufficientStorage(format!(
                "{} is over quota",
                rcpt.url
            ))),
            _ => {
                let mut stored = self
                    .0
                    .lock()
                    .map_err(|e| DeliveryError::Temporary(e.to_string()))?;
                stored.push((mail.id.clone(), rcpt.url.clone()));
                Ok(())
            }
        }
    }
}

impl Deliver for Mailboxes {
    /// The message as a whole: stored only when every recipient is.
    fn deliver<'a>(&'a self, mail: &'a Mail) -> DeliverFuture<'a> {
        Box::pin(async move {
            accepted_recipients(mail).try_for_each(|(_, rcpt)| self.outcome(mail, rcpt))
        })
    }

    fn deliver_each<'a>(&'a self, mail: &'a Mail) -> ReportFuture<'a> {
        Box::pin(async move {
            let mut report = DeliveryReport::default();
            for (index, rcpt) in accepted_recipients(mail) {
                report.push(index, rcpt, self.outcome(mail, rcpt));
            }
            report
        })
    }
}

/// Refuses `nobody` at RCPT; `closed` keeps every transaction as JSON.
#[derive(Clone, Default)]
struct Recording(Arc<Mutex<Option<Vec<Value>>>>);

impl Receiver for Recording {
    async fn rcpt_to(&self, cx: &mut Context<'_>, to: &RcptTo) -> Reply {
        if to.local_part.as_deref() == Some("nobody") {
            return Reply::new(550, (5, 1, 1), "No such user");
        }
        defaults::rcpt_to(cx, to).await
    }

    async fn closed(&self, cx: &mut Context<'_>) {
        let seen = cx
            .transactions
            .iter()
            .map(|m| serde_json::to_value(m).unwrap_or_default());
        *self.0.lock().unwrap() = Some(seen.collect());
    }
}

impl Recording {
    fn wait(&self) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(seen) = self.0.lock().unwrap().clone() {
                return seen;
            }
            assert!(Instant::now() < deadline, "closed was not called");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// One transaction: the recipients (`nobody` is refused), the reply expected
/// to the final dot.
fn send(client: &mut Client, recipients: &[&str], code: u16, enhanced: &str) {
    client.cmd("MAIL FROM:<sender@example.com>", 250);
    for rcpt in recipients {
        let expected = if rcpt.starts_with("nobody") { 550 } else { 250 };
        client.cmd(&format!("RCPT TO:<{rcpt}>"), expected);
    }
    client.cmd("DATA", 354);
    client.send(b"Subject: outcomes\r\n\r\nhello\r\n.\r\n");
    client.expect_enhanced(code, enhanced);
}

/// `(url, delivered, delivery_error)` of each recipient, and the mail's own.
fn outcomes(mail: &Value) -> (Vec<Value>, Value) {
    let rcpts = mail["rcptto"].as_array().cloned().unwrap_or_default();
    let each = rcpts
        .iter()
        .map(|r| json!([r["url"], r["delivered"], r["delivery_error"]]))
        .collect();
    (each, json!([mail["delivered"], mail["delivery_error"]]))
}

#[test]
fn each_recipient_gets_its_outcome_and_the_reply_never_loses_one() {
    let target = Mailboxes::default();
    let receiver = Recording::default();
    let spec = "127.0.0.1:0"
        .parse::<std::net::SocketAddr>()
        .unwrap()
        .into();
    let server = TestServer::start_custom(config(), receiver.clone(), &[spec], |server| {
        server.with_delivery(target.clone())
    });
    let mut client = Client::ehlo(server.port);
    // All stored (a recipient refused at RCPT is not delivered to) → 250.
    send(
        &mut client,
        &["a@example.com", "nobody@example.com", "b@example.com"],
        250,
        "2.0.0",
    );
    // One over quota → 452: the client retries, `a` may get a second copy.
    send(
        &mut client,
        &["a@example.com", "full@example.com"],
        452,
        "4.3.1",
    );
    // Stored and refused for good → 554 until the spool can bounce.
    send(
        &mut client,
        &["a@example.com", "gone@example.com"],
        554,
        "5.3.0",
    );
    // All refused for good → 554.
    send(
        &mut client,
        &["gone@example.com", "gone@example.org"],
        554,
        "5.3.0",
    );
    // Permanent and transient mixed: the transient one answers.
    send(
        &mut client,
        &["gone@example.com", "full@example.com", "b@example.com"],
        452,
        "4.3.1",
    );
    client.quit();

    let seen = receiver.wait();
    assert_eq!(seen.len(), 5, "{seen:#?}");
    let gone = |url: &str| format!("permanent delivery failure: {url} has no mailbox");
    let full = |url: &str| format!("insufficient storage: {url} is over quota");
    let expected = [
        (
            json!([
                ["a@example.com", true, null],
                ["nobody@example.com", null, null],
                ["b@example.com", true, null]
            ]),
            json!([true, null]),
        ),
        (
            json!([
                ["a@example.com", true, null],
                ["full@example.com", false, full("full@example.com")]
            ]),
            json!([false, full("full@example.com")]),
        ),
        (
            json!([
                ["a@example.com", true, null],
                ["gone@example.com", false, gone("gone@example.com")]
            ]),
            json!([false, gone("gone@example.com")]),
        ),
        (
            json!([
                ["gone@example.com", false, gone("gone@example.com")],
                ["gone@example.org", false, gone("gone@example.org")]
            ]),
            json!([false, gone("gone@example.com")]),
        ),
        (
            json!([
                ["gone@example.com", false, gone("gone@example.com")],
                ["full@example.com", false, full("full@example.com")],
                ["b@example.com", true, null]
            ]),
            json!([false, full("full@example.com")]),
        ),
    ];
    for (i, (mail, (each, whole))) in seen.iter().zip(expected).enumerate() {
        let got = outcomes(mail);
        assert_eq!(
            got,
            (each.as_array().cloned().unwrap_or_default(), whole),
            "transaction {i}"
        );
        assert_eq!(
            mail["accepted"], true,
            "transaction {i}: accepted keeps the seed's meaning"
        );
    }
    // What the target stored: one entry per stored recipient, each transaction's id.
    let stored = target.0.lock().unwrap().clone();
    let ids: Vec<&str> = seen
        .iter()
        .map(|m| m["id"].as_str().unwrap_or_default())
        .collect();
    let expected_stored = [
        (ids[0], "a@example.com"),
        (ids[0], "b@example.com"),
        (ids[1], "a@example.com"),
        (ids[2], "a@example.com"),
        (ids[4], "b@example.com"),
    ];
    let stored: Vec<(&str, &str)> = stored
        .iter()
        .map(|(i, r)| (i.as_str(), r.as_str()))
        .collect();
    assert_eq!(stored, expected_stored);
    server.expect_messages(0);
}

#[test]
fn the_maildir_stores_one_copy_for_all_recipients() {
    let receiver = Recording::default();
    let server = TestServer::start_with(config(), receiver.clone());
    let mut client = Client::ehlo(server.port);
    send(
        &mut client,
        &["a@example.com", "nobody@example.com", "b@example.com"],
        250,
        "2.0.0",
    );
    client.quit();
    let seen = receiver.wait();
    assert_eq!(seen.len(), 1, "{seen:#?}");
    let expected = json!([
        ["a@example.com", true, null],
        ["nobody@example.com", null, null],
        ["b@example.com", true, null]
    ]);
    assert_eq!(
        outcomes(&seen[0]),
        (
            expected.as_array().cloned().unwrap_or_default(),
            json!([true, null])
        )
    );
    server.expect_messages(1);
}
