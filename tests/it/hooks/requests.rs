//! What a hook is sent at each stage: the stage, the mail structure so far
//! and the stage's own record as `command` (never a password); and the binary's
//! `--hook URL` flag, which calls a hook at `data`.

use net_receiver::policy::Stage;
use serde_json::{Value, json};

use super::{USER, converse, hook_at, start};
use crate::support::common::{Client, messages};
use crate::support::hook_server::{Answer, HookServer};
use crate::support::running::{Binary, listening_command};

#[test]
fn each_stage_sends_its_own_record() {
    let hook = HookServer::start(|_| Answer::Reply(204, Vec::new()));
    let (server, _) = start(&[hook_at(&hook.url(), &Stage::ALL)]);
    assert!(converse(server.port, "rcpt@example.com").all_positive());
    let requests = hook.requests();
    let stages: Vec<&str> = requests
        .iter()
        .map(|r| r["stage"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(stages, Stage::ALL.map(Stage::as_str));
    let [connect, ehlo, auth, mail_from, rcpt_to, data] = &requests[..] else {
        panic!("{requests:?}");
    };
    assert_eq!(connect["command"], Value::Null);
    assert_eq!(connect["mail"]["remote_ip"], "127.0.0.1");
    assert_eq!(connect["mail"]["ehlo"], Value::Null);
    assert_eq!(
        (&ehlo["command"]["value"], &ehlo["command"]["verb"]),
        (&json!("client.test"), &json!("EHLO"))
    );
    assert_eq!(
        auth["command"],
        json!({"mechanism": "PLAIN", "username": USER.0})
    );
    assert_eq!(
        auth["mail"]["authenticated"], false,
        "set only after the hooks"
    );
    assert!(
        !auth.to_string().contains(USER.1),
        "the password is never sent"
    );
    assert_eq!(mail_from["command"]["url"], "sender@example.com");
    assert_eq!(mail_from["mail"]["authenticated"], USER.0);
    assert_eq!(
        mail_from["mail"]["mailfrom"],
        Value::Null,
        "the record is the command"
    );
    assert_eq!(rcpt_to["command"]["url"], "rcpt@example.com");
    assert_eq!(rcpt_to["mail"]["mailfrom"]["url"], "sender@example.com");
    assert_eq!(rcpt_to["mail"]["rcptto"], json!([]));
    assert_eq!(data["command"], Value::Null);
    assert_eq!(data["mail"]["rcptto"][0]["url"], "rcpt@example.com");
    assert_eq!(data["mail"]["data"]["headers"]["subject"], "Subject: hooks");
    assert_eq!(data["mail"]["data"]["text"], json!(["Hello hook."]));
    for request in &requests[..5] {
        assert!(request.get("message").is_none(), "message at data only");
    }
}

#[test]
fn the_hook_flag_calls_a_hook_at_data() {
    let hook = HookServer::start(|_| {
        Answer::json(
            &json!({"action": "continue", "add_headers": [{"name": "X-Flag", "value": "1"}]}),
        )
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let maildir = dir.path().join("mail");
    let mut binary = Binary::spawn(listening_command(&maildir).args(["--hook", &hook.url()]), 1);
    let mut client = Client::ehlo(binary.addr().port());
    client.start_data("sender@example.com", "rcpt@example.com");
    client.send(b"Subject: flag\r\n\r\nbody\r\n.\r\n");
    client.expect(250);
    client.quit();
    assert_eq!(hook.stages(), ["data"]);
    let stored = messages(&maildir);
    assert_eq!(stored.len(), 1);
    assert!(
        String::from_utf8_lossy(&stored[0]).contains("\r\nX-Flag: 1\r\nSubject: flag\r\n"),
        "{}",
        String::from_utf8_lossy(&stored[0])
    );
    let stdout = binary.terminate();
    let line: Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(line["data"]["headers"]["x_flag"], "X-Flag: 1");
}
