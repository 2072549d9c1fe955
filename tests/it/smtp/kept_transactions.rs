//! The `closed` hook's `cx.transactions` when the structures they are kept in
//! are recycled (`src/session/archive.rs`): from the ended sessions of the same
//! worker thread, and a long session's oldest transaction past the last 32.
//! Each kept transaction must carry its own connection's facts (EHLO name, TLS
//! and AUTH state), its own MAIL FROM and mail id, and nothing of the session
//! whose structure it reuses.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use net_receiver::{Context, MailFrom, Receiver, Reply, defaults};

use crate::support::common::{Client, TestServer, config};

/// One kept transaction: EHLO name, MAIL FROM, mail id, and whether it holds
/// an extension (set at MAIL FROM in the first session's transactions only).
type Seen = (String, String, String, bool);

#[derive(Clone, Default)]
struct Kept(Arc<Mutex<Vec<Vec<Seen>>>>);

impl Receiver for Kept {
    async fn mail_from(&self, cx: &mut Context<'_>, from: &MailFrom) -> Reply {
        if from.url.ends_with("@first.example") {
            cx.mail
                .extensions
                .insert("first".into(), serde_json::Value::Bool(true));
        }
        defaults::mail_from(cx, from).await
    }

    async fn closed(&self, cx: &mut Context<'_>) {
        let seen = cx
            .transactions
            .iter()
            .map(|mail| {
                (
                    mail.ehlo
                        .as_ref()
                        .map(|e| e.value.clone())
                        .unwrap_or_default(),
                    mail.mailfrom
                        .as_ref()
                        .map(|f| f.url.clone())
                        .unwrap_or_default(),
                    mail.id.clone(),
                    !mail.extensions.is_empty(),
                )
            })
            .collect();
        if let Ok(mut kept) = self.0.lock() {
            kept.push(seen);
        }
    }
}

impl Kept {
    /// Waits (at most 10 s) until `closed` was called `n` times.
    fn wait_for(&self, n: usize) -> Vec<Vec<Seen>> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let seen = self.0.lock().expect("kept").clone();
            if seen.len() >= n {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "closed was called {} times, not {n}",
                seen.len()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[test]
fn kept_transactions_carry_their_own_facts_when_their_structures_are_recycled() {
    let kept = Kept::default();
    let mut settings = config();
    settings.workers = 1;
    let server = TestServer::start_with(settings, kept.clone());
    // 40 transactions (the 8 oldest dropped, their structures reused), then two
    // short sessions on the same worker thread, reusing the first one's.
    let sessions: [(&str, usize); 3] = [
        ("first.example", 40),
        ("second.example", 3),
        ("third.example", 1),
    ];
    for (n, (name, count)) in sessions.iter().enumerate() {
        let mut client = Client::connect(server.port);
        client.cmd(&format!("EHLO {name}"), 250);
        for i in 0..*count {
            client.start_data(&format!("s{i}@{name}"), "rcpt@example.com");
            client.send(b"Subject: kept\r\n\r\nbody\r\n.\r\n");
            client.expect(250);
        }
        client.quit();
        kept.wait_for(n + 1);
    }
    let seen = kept.wait_for(sessions.len());
    let expected: Vec<Vec<(String, String)>> = sessions
        .iter()
        .map(|(name, count)| {
            (count.saturating_sub(32)..*count)
                .map(|i| (name.to_string(), format!("s{i}@{name}")))
                .collect()
        })
        .collect();
    let got: Vec<Vec<(String, String)>> = seen
        .iter()
        .map(|session| {
            session
                .iter()
                .map(|(ehlo, from, _, _)| (ehlo.clone(), from.clone()))
                .collect()
        })
        .collect();
    assert_eq!(got, expected);
    let mut ids: Vec<&String> = seen.iter().flatten().map(|(_, _, id, _)| id).collect();
    let all = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), all, "every kept transaction has its own mail id");
    let extensions: Vec<Vec<bool>> = seen
        .iter()
        .map(|session| session.iter().map(|(.., extension)| *extension).collect())
        .collect();
    assert_eq!(
        extensions,
        [vec![true; 32], vec![false; 3], vec![false]],
        "the first session's extension is in its own transactions only"
    );
    server.expect_messages(44);
}
