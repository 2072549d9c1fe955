//! What a hook changes and what it is sent: header edits that keep every other
//! byte (a DKIM signature with `simple` canonicalisation still verifies after an
//! added header), a new recipient list, `extensions` in the mail structure and
//! in `cx.extensions`, and the message sent byte-exact (and cut at `max_body`).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use mail_auth::common::crypto::Ed25519Key;
use mail_auth::common::headers::HeaderWriter as _;
use mail_auth::dkim::{Canonicalization, DkimSigner};
use net_receiver::dns::{AuthContext, Dns};
use net_receiver::policy::{HookConfig, Stage};
use serde_json::{Value, json};

use super::{MESSAGE, converse, hook_at, start};
use crate::support::common::{Client, messages, split_stored};
use crate::support::dns_server::{DnsServer, dns_config};
use crate::support::hook_server::{Answer, HookServer};

/// Sends `message` (already dot-stuffed, without the final dot) in one session.
fn send(port: u16, recipients: &[&str], message: &[u8]) -> u16 {
    let mut client = Client::ehlo(port);
    client.cmd("MAIL FROM:<sender@example.com>", 250);
    for to in recipients {
        client.cmd(&format!("RCPT TO:<{to}>"), 250);
    }
    client.cmd("DATA", 354);
    client.send(message);
    client.send(b".\r\n");
    let code = client.reply().code;
    client.quit();
    code
}

/// The stored message without our `Return-Path:` and trace header.
fn stored_message(dir: &std::path::Path) -> Vec<u8> {
    let files = messages(dir);
    assert_eq!(files.len(), 1);
    split_stored(&files[0]).body.to_vec()
}

#[test]
fn an_added_header_keeps_a_simple_dkim_signature_valid() {
    let key = Ed25519Key::from_pkcs8_der(&Ed25519Key::generate_pkcs8().expect("key")).expect("key");
    let record = format!(
        "ed._domainkey TXT \"v=DKIM1; k=ed25519; p={}\"",
        BASE64.encode(key.public_key())
    );
    let dns_server = DnsServer::start_with(&record);
    let body = "From: <a@test.example>\r\nTo: <rcpt@example.com>\r\nSubject:  spaced   out \r\n\
        X-Folded: one\r\n\ttwo\r\n\r\nbody  with  spaces \r\n";
    let signature = DkimSigner::from_key(key)
        .domain("test.example")
        .selector("ed")
        .headers(["From", "To", "Subject", "X-Folded"])
        .header_canonicalization(Canonicalization::Simple)
        .body_canonicalization(Canonicalization::Simple)
        .sign(body.as_bytes())
        .expect("sign");
    let signed = format!("{}{body}", signature.to_header());

    let added = json!({"action": "continue",
        "add_headers": [{"name": "X-Hook", "value": "checked"}, {"name": "Subject", "value": "a second subject"}]});
    let hook = HookServer::start(move |_| Answer::json(&added));
    let (server, _) = start(&[hook_at(&hook.url(), &[Stage::Data])]);
    assert_eq!(
        send(server.port, &["rcpt@example.com"], signed.as_bytes()),
        250
    );
    let stored = stored_message(server.dir());
    let expected = format!("X-Hook: checked\r\nSubject: a second subject\r\n{signed}");
    assert_eq!(
        String::from_utf8_lossy(&stored),
        expected,
        "the rest byte for byte"
    );

    let dns = Dns::new(&dns_config(dns_server.addr, Duration::from_secs(3))).expect("resolver");
    let verify = |message: &[u8]| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        let cx = AuthContext {
            ip: "192.0.2.1".parse().expect("ip"),
            helo: "client.test",
            mail_from: Some("a@test.example"),
            server_name: "mx.test",
            iprev: None,
            spf: None,
        };
        let found = runtime.block_on(dns.authenticate_message(message, &cx));
        found
            .dkim
            .iter()
            .map(|d| d.result.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(verify(&stored), ["pass"], "verified after the hook's edit");
    let tampered = String::from_utf8_lossy(&stored).replace("spaced   out", "spaced out");
    assert_eq!(verify(tampered.as_bytes()), ["fail"], "the check can fail");
}

#[test]
fn removed_headers_go_and_every_other_byte_stays() {
    let message = "X-Spam: yes\r\nReceived: from a\r\n\tby b\r\nx-spam : folded\r\n continued\r\n\
        Subject: keep\r\n\r\nX-Spam: in the body stays\r\n";
    let hook = HookServer::start(|_| {
        Answer::json(&json!({"action": "accept", "remove_headers": ["X-SPAM"]}))
    });
    let (server, _) = start(&[hook_at(&hook.url(), &[Stage::Data])]);
    assert_eq!(
        send(server.port, &["rcpt@example.com"], message.as_bytes()),
        250
    );
    assert_eq!(
        String::from_utf8_lossy(&stored_message(server.dir())),
        "Received: from a\r\n\tby b\r\nSubject: keep\r\n\r\nX-Spam: in the body stays\r\n"
    );
}

#[test]
fn set_recipients_replaces_the_accepted_recipients() {
    let hook = HookServer::start(|_| {
        Answer::json(&json!({"action": "continue",
            "set_recipients": ["b@example.com", "new@example.org"]}))
    });
    let (server, recorder) = start(&[hook_at(&hook.url(), &[Stage::Data])]);
    let code = send(
        server.port,
        &["a@example.com", "B@example.com"],
        MESSAGE.as_bytes(),
    );
    assert_eq!(code, 250);
    let mail = recorder.only();
    let accepted: Vec<(&str, bool)> = mail
        .rcptto
        .iter()
        .map(|r| (r.url.as_str(), r.accepted))
        .collect();
    assert_eq!(
        accepted,
        [("B@example.com", true), ("new@example.org", true)]
    );
    assert_eq!(mail.rcptto[1].domain.as_deref(), Some("example.org"));
}

#[test]
fn extensions_reach_the_mail_structure_and_the_receiver() {
    let hook = HookServer::start(|request| {
        let stage = request["stage"].as_str().unwrap_or("?").to_owned();
        Answer::json(
            &json!({"action": "continue", "extensions": {stage: true, "last": request["stage"]}}),
        )
    });
    let (server, recorder) = start(&[hook_at(&hook.url(), &Stage::ALL)]);
    assert!(converse(server.port, "rcpt@example.com").all_positive());
    let mail = recorder.only();
    let expected = json!({"connect": true, "ehlo": true, "auth": true, "mail_from": true,
        "rcpt_to": true, "data": true, "last": "data"});
    assert_eq!(Value::Object(mail.extensions.clone()), expected);
    assert_eq!(
        recorder.layer_extensions(),
        std::slice::from_ref(&mail.extensions),
        "cx.extensions holds the same"
    );
    let line: Value = serde_json::from_str(&mail.to_json()).expect("json");
    assert_eq!(line["extensions"], expected, "and so does the JSON line");
    // What the hook saw at data: the extensions of the stages before it.
    let data_request = &hook.requests()[5];
    assert_eq!(data_request["mail"]["extensions"]["rcpt_to"], true);
}

#[test]
fn the_message_is_sent_byte_exact_and_cut_at_max_body() {
    let hook = HookServer::start(|_| Answer::Reply(204, Vec::new()));
    let cut = HookServer::start(|_| Answer::Reply(204, Vec::new()));
    let hooks = [
        hook_at(&hook.url(), &[Stage::Data]),
        HookConfig {
            max_body: 10,
            ..hook_at(&cut.url(), &[Stage::Data])
        },
    ];
    let (server, _) = start(&hooks);
    let sent = b"Subject: \xc3\xa9t\xc3\xa9 \xff\r\n\r\n..dot-stuffed\r\n\tTAB  \r\n.\r\n";
    let code = {
        let mut client = Client::ehlo(server.port);
        client.start_data("sender@example.com", "rcpt@example.com");
        client.send(sent);
        let code = client.reply().code;
        client.quit();
        code
    };
    assert_eq!(code, 250);
    let expected = b"Subject: \xc3\xa9t\xc3\xa9 \xff\r\n\r\n.dot-stuffed\r\n\tTAB  \r\n";
    let request = &hook.requests()[0];
    let raw = BASE64
        .decode(request["message"]["raw_base64"].as_str().expect("base64"))
        .expect("base64");
    assert_eq!(raw, expected);
    assert_eq!(request["message"]["size"], expected.len());
    assert_eq!(request["message"]["truncated"], false);
    assert_eq!(
        request["mail"]["data"]["headers"]["subject"],
        "Subject: \u{e9}t\u{e9} \u{fffd}"
    );
    let short = &cut.requests()[0]["message"];
    let raw = BASE64
        .decode(short["raw_base64"].as_str().expect("base64"))
        .expect("base64");
    assert_eq!(raw, &expected[..10]);
    assert_eq!(
        (short["size"].as_u64(), short["truncated"].as_bool()),
        (Some(expected.len() as u64), Some(true))
    );
}
