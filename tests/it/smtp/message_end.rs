//! DATA and BDAT end the same way: an oversized message, whether it came by
//! DATA or in BDAT chunks, gets the same 552 and is kept for `closed` with its
//! size and `accepted: false`; a delivered one has `accepted` and `delivered`,
//! and `received` sees `accepted: true` before it stores anything.

use std::sync::{Arc, Mutex};

use net_receiver::{Config, Context, Mail, Receiver};

use crate::support::common::{Client, TestServer, config};

/// Keeps the transactions `closed` sees, and what `received` saw before it
/// called the default (the seed's sample prints first).
#[derive(Clone, Default)]
struct KeepsClosed(Arc<Mutex<Vec<Mail>>>, Arc<Mutex<Vec<(bool, bool)>>>);

impl Receiver for KeepsClosed {
    async fn received(&self, cx: &mut Context<'_>) -> Result<(), net_receiver::DeliveryError> {
        let data_accepted = cx.mail.data.as_ref().is_some_and(|d| d.accepted);
        self.1
            .lock()
            .unwrap()
            .push((cx.mail.accepted, data_accepted));
        net_receiver::defaults::received(cx).await
    }

    async fn closed(&self, cx: &mut Context<'_>) {
        self.0
            .lock()
            .unwrap()
            .extend(cx.transactions.iter().cloned());
    }
}

fn small() -> Config {
    Config {
        max_message_size: 1000,
        ..config()
    }
}

fn closed_after(server: &TestServer, seen: &Mutex<Vec<Mail>>, n: usize) -> Vec<Mail> {
    for _ in 0..500 {
        let kept = seen.lock().unwrap().clone();
        if kept.len() >= n {
            return kept;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!(
        "closed did not see {n} transactions on port {}",
        server.port
    );
}

#[test]
fn oversized_data_and_bdat_end_alike() {
    let receiver = KeepsClosed::default();
    let seen = Arc::clone(&receiver.0);
    let in_received = Arc::clone(&receiver.1);
    let server = TestServer::start_with(small(), receiver);
    let body = "x".repeat(78) + "\r\n";

    let mut client = Client::ehlo(server.port);
    client.start_data("a@example.com", "b@example.com");
    client.send(format!("Subject: big\r\n\r\n{}.\r\n", body.repeat(20)).as_bytes());
    let by_data = client.expect_enhanced(552, "5.3.4");

    client.cmd("MAIL FROM:<a@example.com>", 250);
    client.cmd("RCPT TO:<b@example.com>", 250);
    let chunk = body.repeat(10); // 800 octets: the second chunk goes over 1000.
    client.send(format!("BDAT {} \r\n{chunk}", chunk.len()).as_bytes());
    client.expect(250);
    client.send(format!("BDAT {} LAST\r\n{chunk}", chunk.len()).as_bytes());
    let by_bdat = client.expect_enhanced(552, "5.3.4");
    assert_eq!(by_data.text(), by_bdat.text());

    // The session goes on: a small message by BDAT is delivered.
    client.cmd("MAIL FROM:<a@example.com>", 250);
    client.cmd("RCPT TO:<b@example.com>", 250);
    let small = "Subject: s\r\n\r\nsmall\r\n";
    client.send(format!("BDAT {} LAST\r\n{small}", small.len()).as_bytes());
    client.expect_enhanced(250, "2.0.0");
    client.quit();

    let kept = closed_after(&server, &seen, 3);
    let sizes: Vec<u64> = kept
        .iter()
        .map(|m| m.data.as_ref().map_or(0, |d| d.size))
        .collect();
    // DATA stops keeping octets at the limit; BDAT knows the declared sizes.
    assert!(sizes[0] > 900 && sizes[1] == 1600, "{sizes:?}");
    let flags: Vec<_> = kept
        .iter()
        .map(|m| {
            (
                m.accepted,
                m.data.as_ref().is_some_and(|d| d.accepted),
                m.delivered,
            )
        })
        .collect();
    assert_eq!(
        flags,
        [
            (false, false, None),
            (false, false, None),
            (true, true, Some(true))
        ]
    );
    server.expect_messages(1);
    // Issue 12 item 8: inside `received`, before the default ran, the message
    // is already `accepted` (the seed's meaning), the mail's and the data's alike.
    assert_eq!(*in_received.lock().unwrap(), [(true, true)]);
}
