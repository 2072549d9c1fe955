//! The Python test milter (libmilter underneath): each answer it can give
//! depending on the envelope, each end-of-message edit in the delivered
//! message and in the mail structure, and what it was sent — header fields
//! byte-exact with their leading spaces, the body, the macros.

use serde_json::json;

use super::{MESSAGE, PythonMilter, milter_at, milter_records, send, start};
use crate::support::common::{messages, split_stored};

#[test]
fn answers_at_mail_and_rcpt_refuse_with_the_milters_reply() {
    let milter = PythonMilter::start();
    let (server, recorder) = start(&[milter_at(&milter.address)]);
    assert_eq!(
        send(server.port, "rejectme@example.com", &[], MESSAGE),
        Some(550)
    );
    // Refused recipients, one taken: the message goes to that one only.
    let code = send(
        server.port,
        "sender@example.com",
        &[
            ("reject@example.com", 550),
            ("tempfail@example.com", 451),
            ("replycode@example.com", 550),
            ("rcpt@example.com", 250),
        ],
        MESSAGE,
    );
    assert_eq!(code, Some(250));
    let mail = recorder.only();
    let taken: Vec<&str> = mail
        .rcptto
        .iter()
        .filter(|r| r.accepted)
        .map(|r| r.url.as_str())
        .collect();
    assert_eq!(taken, ["rcpt@example.com"]);
    let records = milter_records(&mail);
    let replies: Vec<(&str, &str)> = records
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r["stage"] == "rcpt_to")
        .map(|r| {
            (
                r["action"].as_str().unwrap_or(""),
                r["reply"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        replies,
        [
            ("reject", "550 5.7.1 Command rejected"),
            (
                "tempfail",
                "451 4.7.1 Service unavailable - try again later"
            ),
            ("reject", "550 5.7.1 Go away, replycode"),
        ]
    );
    // The milter saw only the recipients it did not refuse at its own RCPT.
    let seen = milter.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["rcpts"], json!(["rcpt"]));
}

#[test]
fn discard_and_end_of_message_reject() {
    let milter = PythonMilter::start();
    let (server, recorder) = start(&[milter_at(&milter.address)]);
    let discarded = send(
        server.port,
        "sender@example.com",
        &[("discard@example.com", 250)],
        MESSAGE,
    );
    assert_eq!(discarded, Some(250), "taken from the client");
    let rejected = send(
        server.port,
        "sender@example.com",
        &[("eomreject@example.com", 250)],
        MESSAGE,
    );
    assert_eq!(rejected, Some(554));
    assert!(messages(server.dir()).is_empty(), "nothing stored");
    assert!(recorder.mails().is_empty(), "received never called");
    assert_eq!(milter.seen().len(), 2);
}

#[test]
fn edits_reach_the_delivered_message_and_the_mail_structure() {
    let milter = PythonMilter::start();
    let (server, recorder) = start(&[milter_at(&milter.address)]);
    let recipients = [
        "addheader",
        "insheader",
        "chgheader",
        "delheader",
        "replbody",
        "addrcpt",
        "delrcpt",
        "other",
        "chgfrom",
        "quarantine",
    ]
    .map(|local| (format!("{local}@example.com"), 250));
    let recipients: Vec<(&str, u16)> = recipients.iter().map(|(a, c)| (a.as_str(), *c)).collect();
    assert_eq!(
        send(server.port, "sender@example.com", &recipients, MESSAGE),
        Some(250)
    );
    let mail = recorder.only();
    let mut taken: Vec<&str> = mail
        .rcptto
        .iter()
        .filter(|r| r.accepted)
        .map(|r| r.url.as_str())
        .collect();
    taken.sort_unstable();
    assert!(taken.contains(&"added@example.com"), "{taken:?}");
    assert!(!taken.contains(&"other@example.com"), "{taken:?}");
    assert_eq!(taken.len(), recipients.len());
    let sender = mail.mailfrom.as_ref().map(|m| m.url.as_str());
    assert_eq!(sender, Some("new-sender@example.com"));
    assert_eq!(mail.quarantine.as_deref(), Some("test quarantine"));
    assert_eq!(
        milter_records(&mail),
        json!([{
            "name": milter.address, "stage": "data", "action": "quarantine", "reply": null,
            "headers": [["X-Test-Milter", " added"], ["X-Inserted", " top"],
                        ["Subject", " changed by milter"]],
            "removed_headers": ["X-Remove-Me"],
            "added_recipients": ["added@example.com"],
            "removed_recipients": ["other@example.com"],
            "sender": "new-sender@example.com", "body_replaced": true,
            "quarantine": "test quarantine", "error": null
        }])
    );
    // Quarantined: in the Maildir's quarantine folder, edited.
    let stored = quarantined(server.dir());
    let stored = split_stored(&stored);
    assert_eq!(
        String::from_utf8_lossy(stored.body),
        "X-Inserted: top\r\nFrom: <sender@example.com>\r\nTo: <rcpt@example.com>\r\n\
         Subject: changed by milter\r\nX-Folded: one\r\n\ttwo\r\nX-Test-Milter: added\r\n\
         \r\nreplaced body\r\n"
    );
}

/// The one message in the quarantine folder.
fn quarantined(dir: &std::path::Path) -> Vec<u8> {
    let found = messages(&dir.join(".Quarantine"));
    assert_eq!(found.len(), 1, "one quarantined message");
    found.into_iter().next().unwrap_or_default()
}

#[test]
fn the_milter_sees_headers_byte_exact_the_body_and_the_macros() {
    let milter = PythonMilter::start();
    let (server, _recorder) = start(&[milter_at(&milter.address)]);
    assert_eq!(
        send(
            server.port,
            "sender@example.com",
            &[("rcpt@example.com", 250)],
            MESSAGE
        ),
        Some(250)
    );
    let seen = milter.seen();
    assert_eq!(seen.len(), 1);
    let seen = &seen[0];
    assert_eq!(
        seen["headers"],
        json!([
            ["From", " <sender@example.com>"],
            ["To", " <rcpt@example.com>"],
            ["Subject", "  spaced  subject"],
            ["X-Remove-Me", " yes"],
            ["X-Folded", " one\n\ttwo"]
        ]),
        "leading spaces kept (SMFIP_HDR_LEADSPC), folded lines joined by LF"
    );
    assert_eq!(seen["body"], "Hello milter.\r\n");
    assert_eq!(seen["sender"], "<sender@example.com>");
    assert_eq!(seen["helo"], "client.test");
    assert_eq!(seen["client"], json!(["[127.0.0.1]", "127.0.0.1"]));
    assert_eq!(seen["macros"]["j"], "mx.test");
    assert_eq!(seen["macros"]["mail_addr"], "sender@example.com");
    assert_eq!(seen["macros"]["rcpt_addr"], json!(["rcpt@example.com"]));
    assert!(seen["macros"]["i"].as_str().is_some_and(|i| !i.is_empty()));
}

#[test]
fn only_the_data_stage_gets_everything_at_once() {
    let milter = PythonMilter::start();
    let config = net_receiver::policy::MilterConfig {
        stages: vec![net_receiver::policy::Stage::Data],
        ..milter_at(&milter.address)
    };
    let (server, recorder) = start(&[config]);
    // reject@ is refused by the milter at its RCPT, sent late: at the message.
    assert_eq!(
        send(
            server.port,
            "sender@example.com",
            &[("rcpt@example.com", 250), ("addheader@example.com", 250)],
            MESSAGE
        ),
        Some(250)
    );
    let mail = recorder.only();
    assert_eq!(milter_records(&mail)[0]["headers"][0][0], "X-Test-Milter");
    assert_eq!(
        send(
            server.port,
            "sender@example.com",
            &[("reject@example.com", 250)],
            MESSAGE
        ),
        Some(550),
        "the late RCPT's refusal refuses the message"
    );
    assert_eq!(milter.seen().len(), 1);
}

/// As a new user would: the binary with `--milter`, a mail by Python's smtplib.
#[test]
fn the_binary_with_the_milter_flag() {
    use crate::support::running::{Binary, listening_command};
    let milter = PythonMilter::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let maildir = dir.path().join("mail");
    let mut binary = Binary::spawn(
        listening_command(&maildir).args(["--milter", &milter.address]),
        1,
    );
    let port = binary.addr().port().to_string();
    let script = "import smtplib, sys\n\
        s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]))\n\
        s.sendmail('a@example.com', ['addheader@example.com'], 'Subject: hi\\r\\n\\r\\nbody\\r\\n')\n\
        try:\n    s.sendmail('a@example.com', ['reject@example.com'], 'Subject: no\\r\\n\\r\\nbody\\r\\n')\n\
        except smtplib.SMTPRecipientsRefused as e:\n    print(e.recipients['reject@example.com'][0])\n\
        s.quit()";
    let refused = crate::support::common::python(script, &[&port]);
    assert_eq!(refused.trim(), "550");
    let stored = messages(&maildir);
    assert_eq!(stored.len(), 1);
    let text = String::from_utf8_lossy(&stored[0]);
    assert!(text.contains("\r\nX-Test-Milter: added\r\n"), "{text}");
    let stdout = binary.terminate();
    let line: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(line["milter"][0]["headers"][0][0], "X-Test-Milter");
}
