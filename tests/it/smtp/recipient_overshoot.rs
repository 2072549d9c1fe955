//! 150 recipients with a real client (issue 12, item 2): Python's smtplib sends
//! MAIL, 150 RCPTs and the message. The first `max_recipients` (100) get 250,
//! the rest 452 4.5.3, which must not count as errors (RFC 5321 §4.5.3.1.10):
//! the message is delivered once, to the 100 accepted recipients.

use crate::support::common::{Recorder, TestServer, config, python};

const SCRIPT: &str = r#"
import smtplib, sys
port = int(sys.argv[1])
recipients = ["r%d@example.org" % i for i in range(150)]
with smtplib.SMTP("127.0.0.1", port, local_hostname="py.test", timeout=20) as s:
    refused = s.sendmail("sender@example.org", recipients, "Subject: many\r\n\r\nbody\r\n")
    for address, (code, text) in sorted(refused.items(), key=lambda kv: int(kv[0][1:].split("@")[0])):
        print(address, code, text.decode())
"#;

#[test]
fn one_hundred_fifty_recipients_deliver_once_to_the_first_hundred() {
    let recorder = Recorder::default();
    let server = TestServer::start_with(config(), recorder.clone());
    let out = python(SCRIPT, &[&server.port.to_string()]);
    let refused: Vec<&str> = out.lines().collect();
    let want: Vec<String> = (100..150)
        .map(|i| format!("r{i}@example.org 452 4.5.3 Too many recipients"))
        .collect();
    assert_eq!(refused, want);
    server.expect_messages(1);
    let mail = recorder.only();
    let delivered: Vec<&str> = mail.rcptto.iter().map(|r| r.url.as_str()).collect();
    let first_hundred: Vec<String> = (0..100).map(|i| format!("r{i}@example.org")).collect();
    assert_eq!(delivered, first_hundred);
    assert!(mail.rcptto.iter().all(|r| r.accepted));
}
