//! The webhook target in the binary against a real endpoint
//! (`support/webhook_server.py`, which checks the Standard Webhooks signature
//! with Python's own HMAC): the body is the mail structure and the message as
//! delivered, byte-exact; without the spool each answer maps to one SMTP
//! reply (2xx 250, 5xx/429/no answer 451, 4xx 554); with it, transient
//! answers are retried with the same `webhook-id` until delivered (also after
//! a SIGKILL and a restart), and a 4xx or running out of `retry_for` makes a
//! dead letter; a request never answered holds up no later message. Over
//! https (Python's ssl, a certificate of a private test CA named by `tls_ca`)
//! the same signed request arrives; without `tls_ca` the certificate does not
//! verify and the mail gets 451 with nothing posted.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;

use crate::support::common::Client;
use crate::support::running::{Binary, listening_command};
use crate::support::test_ca::TestCa;
use crate::support::webhook_server::{SECRET, WebhookServer};

/// The message each test sends: a dot-led line, 8-bit octets, CRLF.
const MESSAGE: &[u8] =
    b"Subject: webhook\r\nFrom: <sender@example.org>\r\n\r\n.dot led\r\n8-bit: \xc3\xa9t\xc3\xa9\r\n";

/// Starts the binary delivering to `webhook` only, with `extra` config lines
/// in its table and `flags`.
fn start(dir: &Path, webhook: &WebhookServer, extra: &str, flags: &[&str]) -> Binary {
    let config = dir.join("webhook.toml");
    std::fs::write(
        &config,
        format!(
            "[[deliver]]\nkind = \"webhook\"\nurl = \"{}\"\nsecret = \"{SECRET}\"\n{extra}",
            webhook.url()
        ),
    )
    .unwrap();
    Binary::spawn(
        listening_command(&dir.join("unused"))
            .arg("--config")
            .arg(&config)
            .args(flags),
        1,
    )
}

/// Sends [`MESSAGE`] to `to`; the final reply's code and text.
fn send(port: u16, to: &[&str]) -> (u16, String) {
    let mut client = Client::ehlo(port);
    client.cmd("MAIL FROM:<sender@example.org>", 250);
    for rcpt in to {
        client.cmd(&format!("RCPT TO:<{rcpt}>"), 250);
    }
    client.cmd("DATA", 354);
    let mut wire = b"Subject: webhook\r\nFrom: <sender@example.org>\r\n\r\n..dot led\r\n8-bit: \xc3\xa9t\xc3\xa9\r\n".to_vec();
    wire.extend_from_slice(b".\r\n");
    client.send(&wire);
    let reply = client.reply();
    client.quit();
    (reply.code, reply.text().to_owned())
}

/// The decoded `raw_base64` of a recorded request.
fn raw(request: &Value) -> Vec<u8> {
    let encoded = request["body"]["raw_base64"].as_str().expect("raw_base64");
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("base64")
}

/// The request is signed, JSON, carries `id`, and its body is the mail
/// structure and the message as delivered: our trace header, then the
/// message as the client meant it (unstuffed), byte for byte.
fn assert_request(request: &Value, id: &str) {
    assert_eq!(request["verified"], true, "{request}");
    assert_eq!(request["content_type"], "application/json");
    assert_eq!(request["id"], id, "{request}");
    let mail = &request["body"]["mail"];
    assert_eq!(mail["id"], id);
    assert_eq!(mail["mailfrom"]["url"], "sender@example.org");
    assert_eq!(mail["rcptto"][0]["url"], "alice@example.com");
    let delivered = raw(request);
    assert!(delivered.starts_with(b"Received: from "), "{request}");
    assert!(
        delivered.ends_with(MESSAGE),
        "{}",
        String::from_utf8_lossy(&delivered)
    );
    let trace = &delivered[..delivered.len() - MESSAGE.len()];
    assert_eq!(
        trace,
        mail["data"]["received"].as_str().unwrap().as_bytes(),
        "the trace header, and nothing else, before the message"
    );
}

/// The id in `250 2.0.0 OK id=…`.
fn accepted_id(text: &str) -> String {
    text.split("id=")
        .nth(1)
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[test]
fn without_spool_each_answer_is_one_reply() {
    let webhook = WebhookServer::start(&["200", "500", "429", "400", "hang", "408"]);
    let dir = tempfile::tempdir().unwrap();
    let mut running = start(dir.path(), &webhook, "timeout = 1\n", &[]);
    assert!(
        running
            .log()
            .contains(&format!("delivering to webhook {}", webhook.url())),
        "{}",
        running.log()
    );
    let port = running.addr().port();

    let (code, text) = send(port, &["alice@example.com"]);
    assert_eq!(code, 250, "{text}");
    let requests = webhook.wait_for(1);
    assert_request(&requests[0], &accepted_id(&text));

    for (answer, want) in [
        ("500", "451 4.3.0"),
        ("429", "451 4.3.0"),
        ("400", "554 5.3.0"),
        ("hang", "451 4.3.0"),
        ("408", "451 4.3.0"),
    ] {
        let (code, text) = send(port, &["alice@example.com"]);
        assert_eq!(format!("{code} {}", &text[..5]), want, "{answer}: {text}");
    }
    let requests = webhook.wait_for(6);
    for request in &requests {
        assert_eq!(request["verified"], true, "{request}");
    }
    assert_eq!(
        requests
            .iter()
            .map(|r| r["answer"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["200", "500", "429", "400", "hang", "408"]
    );
    running.terminate();
}

#[test]
fn over_https_trusting_its_ca_the_signed_mail_is_delivered() {
    let ca = TestCa::new();
    let webhook = WebhookServer::start_tls(&[], &ca);
    assert!(webhook.url().starts_with("https://127.0.0.1:"));
    let dir = tempfile::tempdir().unwrap();
    let tls_ca = format!("tls_ca = \"{}\"\n", ca.ca_file.display());
    let mut running = start(dir.path(), &webhook, &tls_ca, &[]);
    let port = running.addr().port();
    let (code, text) = send(port, &["alice@example.com"]);
    assert_eq!(code, 250, "{text}");
    let requests = webhook.wait_for(1);
    assert_request(&requests[0], &accepted_id(&text));
    running.terminate();

    // The same endpoint without tls_ca: its CA is not trusted.
    let mut running = start(dir.path(), &webhook, "timeout = 5\n", &[]);
    let (code, text) = send(running.addr().port(), &["alice@example.com"]);
    assert_eq!((code, &text[..5]), (451, "4.3.0"), "{text}");
    running.terminate();
    let log = running.log();
    assert!(
        log.contains("invalid peer certificate: UnknownIssuer"),
        "{log}"
    );
    assert_eq!(webhook.requests().len(), 1, "nothing more was posted");
}

/// Waits (bounded) until `dir` holds `n` files; returns them.
fn wait_for_files(dir: &Path, n: usize) -> Vec<PathBuf> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                    .collect()
            })
            .unwrap_or_default();
        if files.len() >= n {
            return files;
        }
        assert!(
            Instant::now() < deadline,
            "no {n} dead letters in {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn with_spool_transient_answers_are_retried_with_the_same_id() {
    let webhook = WebhookServer::start(&["500", "429", "hang", "503"]);
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let mut running = start(
        dir.path(),
        &webhook,
        "timeout = 1\nretry_initial = 0.05\nretry_max = 0.2\n",
        &["--spool-dir", spool.to_str().unwrap()],
    );
    let (code, text) = send(running.addr().port(), &["alice@example.com"]);
    assert_eq!(code, 250, "{text}");
    let id = accepted_id(&text);
    let requests = webhook.wait_for(5);
    for request in &requests {
        assert_request(request, &id);
    }
    assert_eq!(requests[4]["answer"], "200");
    running.wait_for_lines("retrying in", 4);
    running.terminate();
    let log = running.log();
    assert!(!spool.join("dead").exists(), "{log}");
    assert!(log.contains("retries=4"), "{log}");
}

#[test]
fn with_spool_a_4xx_or_the_end_of_retry_for_makes_a_dead_letter() {
    let dir = tempfile::tempdir().unwrap();

    let refusing = WebhookServer::start(&["400"]);
    let spool = dir.path().join("spool-400");
    let mut running = start(
        dir.path(),
        &refusing,
        "",
        &["--spool-dir", spool.to_str().unwrap()],
    );
    let (code, text) = send(running.addr().port(), &["alice@example.com"]);
    assert_eq!(code, 250, "{text}");
    let dead = wait_for_files(&spool.join("dead"), 1);
    let letter = std::fs::read(&dead[0]).unwrap();
    let head = String::from_utf8_lossy(&letter);
    assert!(
        head.starts_with(
            "X-Net-Receiver-Dead-Letter: alice@example.com; permanent delivery failure: webhook "
        ),
        "{head}"
    );
    assert!(head.contains("answered 400"), "{head}");
    assert!(letter.ends_with(MESSAGE));
    assert_eq!(refusing.requests().len(), 1);
    running.terminate();

    // Always 500: retried until retry_for has passed, then given up (2 s:
    // the mail's `time` has whole seconds, so it may look a second old at once).
    let failing = WebhookServer::start(&["500"; 1000]);
    let spool = dir.path().join("spool-500");
    let mut running = start(
        dir.path(),
        &failing,
        "retry_initial = 0.05\nretry_max = 0.1\nretry_for = 2\n",
        &["--spool-dir", spool.to_str().unwrap()],
    );
    let (code, text) = send(
        running.addr().port(),
        &["alice@example.com", "bob@example.com"],
    );
    assert_eq!(code, 250, "{text}");
    let dead = wait_for_files(&spool.join("dead"), 1);
    let letter = String::from_utf8_lossy(&std::fs::read(&dead[0]).unwrap()).into_owned();
    for rcpt in ["alice@example.com", "bob@example.com"] {
        assert!(
            letter.contains(&format!("X-Net-Receiver-Dead-Letter: {rcpt}; not delivered within 2s, giving up; last error: temporary delivery failure: webhook ")),
            "{letter}"
        );
    }
    let requests = failing.requests();
    assert!(requests.len() >= 2, "{requests:?}");
    assert!(requests.iter().all(|r| r["id"] == accepted_id(&text)));
    running.terminate();
    let log = running.log();
    assert!(log.contains("giving up"), "{log}");
}

/// A SIGKILL while a message waits for its retry: the restarted receiver
/// delivers it from the spool under the same `webhook-id`, byte-exact.
#[test]
fn after_a_sigkill_the_spool_delivers_under_the_same_id() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let failing = WebhookServer::start(&["503"]);
    let mut first = start(
        dir.path(),
        &failing,
        "retry_initial = 3600\n",
        &["--spool-dir", spool.to_str().unwrap()],
    );
    let (code, text) = send(first.addr().port(), &["alice@example.com"]);
    assert_eq!(code, 250, "{text}");
    let id = accepted_id(&text);
    assert_request(&failing.wait_for(1)[0], &id);
    first.wait_for_lines("retrying in 3600s", 1);
    first.signal(nix::sys::signal::Signal::SIGKILL);
    first.wait_exit();

    let working = WebhookServer::start(&[]);
    let mut second = start(
        dir.path(),
        &working,
        "",
        &["--spool-dir", spool.to_str().unwrap()],
    );
    let requests = working.wait_for(1);
    assert_request(&requests[0], &id);
    assert_eq!(failing.requests().len(), 1);
    second.terminate();
}

/// A request the endpoint never answers (within a 10-minute `timeout`) holds
/// up only its own message: the messages accepted after it are delivered
/// meanwhile, each in a batch of its own (sent once the hung request has
/// arrived, so it cannot share that batch). With one batch at a time they
/// would wait the whole timeout.
#[test]
fn with_spool_a_hung_request_holds_up_no_later_message() {
    let webhook = WebhookServer::start(&["hang"]);
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let mut running = start(
        dir.path(),
        &webhook,
        "timeout = 600\n",
        &["--spool-dir", spool.to_str().unwrap()],
    );
    let port = running.addr().port();
    let (code, text) = send(port, &["alice@example.com"]);
    assert_eq!(code, 250, "{text}");
    let hung = accepted_id(&text);
    assert_eq!(webhook.wait_for(1)[0]["answer"], "hang");
    for n in 2..=4 {
        let (code, text) = send(port, &["alice@example.com"]);
        assert_eq!(code, 250, "{text}");
        let requests = webhook.wait_for(n);
        let request = &requests[n - 1];
        assert_request(request, &accepted_id(&text));
        assert_eq!(request["answer"], "200", "{request}");
    }
    let requests = webhook.requests();
    assert_eq!(
        requests.len(),
        4,
        "the hung one is not retried: {requests:?}"
    );
    assert_eq!(requests[0]["id"], hung);
    running.signal(nix::sys::signal::Signal::SIGKILL);
    running.wait_exit();
}
