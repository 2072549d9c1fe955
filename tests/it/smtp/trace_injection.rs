//! Issue 19 item 3 end to end: a spaced EHLO argument that spells a fake `by`,
//! address, id and `;` date is accepted, stays out of the stored `Received:`
//! clauses (`from unknown`, the text as one `helo=` word in the comment), and
//! the mail structure's `ehlo.value` keeps it raw.

use crate::support::common::{Client, Recorder, TestServer, config, split_stored};

const FORGING_EHLO: &str = "trusted.bank.example [192.0.2.66] by mx.bank.example with ESMTPS \
                            id FAKE; Mon, 01 Jan 2024 00:00:00 +0000";

#[test]
fn issue19_spaced_ehlo_cannot_write_received_clauses() {
    let recorder = Recorder::default();
    let server = TestServer::start_with(config(), recorder.clone());
    let mut client = Client::connect(server.port);
    client.cmd(&format!("EHLO {FORGING_EHLO}"), 250);
    client.start_data("a@example.com", "b@example.com");
    client.send(b"Subject: x\r\n\r\nhi\r\n.\r\n");
    client.expect(250);
    client.quit();
    let files = server.expect_messages(1);
    let received = split_stored(&files[0]).received;
    // Unfolded, comments removed: the clauses a reader sees.
    let unfolded = received.replace("\r\n\t", " ");
    let mut depth = 0usize;
    let bare: String = unfolded
        .chars()
        .filter(|&c| {
            let outside = depth == 0 && c != '(';
            match c {
                '(' => depth += 1,
                ')' => depth = depth.saturating_sub(1),
                _ => {}
            }
            outside && c != ')'
        })
        .collect();
    let (clauses, date) = bare.split_once(';').expect("a ;");
    assert!(!date.contains(';'), "{received}");
    assert!(
        chrono::DateTime::parse_from_rfc2822(date.trim()).is_ok(),
        "{received}"
    );
    let clauses = clauses.strip_prefix("Received:").expect("the header name");
    let words: Vec<&str> = clauses.split_whitespace().collect();
    let keywords: Vec<&str> = words.iter().step_by(2).copied().collect();
    assert_eq!(keywords, ["from", "by", "with", "id", "for"], "{received}");
    assert_eq!(words.len(), 10, "{received}");
    assert_eq!(words[1], "unknown", "{received}");
    assert_eq!(words[3], "mx.test", "{received}");
    assert!(!received.contains("FAKE;"), "{received}");
    assert!(
        received.contains("helo=trusted.bank.example?[192.0.2.66]?by?"),
        "{received}"
    );
    let mail = recorder.only();
    assert_eq!(mail.ehlo.expect("ehlo").value, FORGING_EHLO);
}
