//! Custom receivers on a real server: hook replies reach the wire, delivery
//! errors and panics in `received` become 451/554 with nothing stored, a
//! prohibited client is cut off, `closed` sees every transaction, and a refused
//! greeting only allows QUIT.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use net_receiver::{Context, DeliveryError, Ehlo, MailFrom, RcptTo, Receiver, Reply, defaults};

use crate::support::common::{Client, TestServer, config, split_stored};

/// MAIL needs an authenticated session; EHLO `trusted.test` authenticates (a
/// stand-in for AUTH), EHLO `bad.test` is refused and the connection closed.
struct AuthRequired;

impl Receiver for AuthRequired {
    async fn ehlo(&self, cx: &mut Context<'_>, ehlo: &Ehlo) -> Reply {
        match ehlo.value.as_str() {
            "trusted.test" => cx.mail.authenticated = Some("trusted".to_owned()),
            "bad.test" => return Reply::new(550, (5, 7, 1), "Go away").and_close(),
            _ => {}
        }
        defaults::ehlo(cx, ehlo).await
    }

    async fn mail_from(&self, cx: &mut Context<'_>, from: &MailFrom) -> Reply {
        if cx.mail.authenticated.is_none() {
            return Reply::new(
                556,
                (5, 7, 27),
                "Traffic on this port must be authenticated",
            );
        }
        defaults::mail_from(cx, from).await
    }
}

#[test]
fn mail_from_override_refuses_unauthenticated() {
    let server = TestServer::start_with(config(), AuthRequired);
    let mut client = Client::ehlo(server.port);
    client.send(b"MAIL FROM:<a@example.com>\r\n");
    let reply = client.expect(556);
    assert_eq!(
        reply.text(),
        "5.7.27 Traffic on this port must be authenticated"
    );
    client.quit();

    let mut client = Client::connect(server.port);
    client.cmd("EHLO trusted.test", 250);
    client.start_data("a@example.com", "b@example.com");
    client.send(b"trusted\r\n.\r\n");
    client.expect(250);
    client.quit();
    let files = server.expect_messages(1);
    let stored = split_stored(&files[0]);
    assert_eq!(stored.body, b"trusted\r\n");
    // The hook's `authenticated` is the mail record; the trace header's `with`
    // keyword follows the machine's facts, and no SMTP AUTH took place.
    assert!(
        stored.received.contains(" with ESMTP id "),
        "{}",
        stored.received
    );
}

#[test]
fn hook_reply_with_and_close_closes() {
    let server = TestServer::start_with(config(), AuthRequired);
    let mut client = Client::connect(server.port);
    client.send(b"EHLO bad.test\r\n");
    let reply = client.expect(550);
    assert_eq!(reply.text(), "5.7.1 Go away");
    client.expect_eof();
}

/// `received` fails (temporarily or for good) or panics, depending on the sender.
struct FailingDelivery;

impl Receiver for FailingDelivery {
    async fn received(&self, cx: &mut Context<'_>) -> Result<(), DeliveryError> {
        let from = cx.mail.reverse_path();
        match from.as_str() {
            "temp@example.com" => Err(DeliveryError::Temporary("disk on fire".to_owned())),
            "perm@example.com" => Err(DeliveryError::Permanent("not here".to_owned())),
            "panic@example.com" => panic!("the received hook panics on purpose"),
            _ => defaults::received(cx).await,
        }
    }
}

fn send_one(client: &mut Client, from: &str) -> crate::support::common::Reply {
    client.start_data(from, "rcpt@example.com");
    client.send(format!("Subject: from {from}\r\n\r\nbody\r\n.\r\n").as_bytes());
    client.reply()
}

#[test]
fn temporary_delivery_error_gives_451_and_no_file() {
    let server = TestServer::start_with(config(), FailingDelivery);
    let mut client = Client::ehlo(server.port);
    let reply = send_one(&mut client, "temp@example.com");
    assert_eq!(reply.code, 451, "{reply:?}");
    assert!(reply.text().starts_with("4.3.0 "), "{reply:?}");
    server.expect_messages(0);
    // The session goes on; a good mail is then delivered.
    let reply = send_one(&mut client, "ok@example.com");
    assert_eq!(reply.code, 250, "{reply:?}");
    client.quit();
    server.expect_messages(1);
}

#[test]
fn permanent_delivery_error_gives_554_and_no_file() {
    let server = TestServer::start_with(config(), FailingDelivery);
    let mut client = Client::ehlo(server.port);
    let reply = send_one(&mut client, "perm@example.com");
    assert_eq!(reply.code, 554, "{reply:?}");
    assert!(reply.text().starts_with("5.3.0 "), "{reply:?}");
    client.quit();
    server.expect_messages(0);
}

#[test]
fn panic_in_received_gives_451_and_the_server_lives_on() {
    let server = TestServer::start_with(config(), FailingDelivery);
    let mut client = Client::ehlo(server.port);
    let reply = send_one(&mut client, "panic@example.com");
    assert_eq!(reply.code, 451, "{reply:?}");
    assert!(reply.text().starts_with("4.3.0 "), "{reply:?}");
    client.quit();
    server.expect_messages(0);

    let mut client = Client::ehlo(server.port);
    let reply = send_one(&mut client, "ok@example.com");
    assert_eq!(reply.code, 250, "{reply:?}");
    client.quit();
    let files = server.expect_messages(1);
    assert_eq!(
        split_stored(&files[0]).return_path,
        "Return-Path: <ok@example.com>"
    );
}

/// RCPT hooks: a spam trap prohibits the client, `panic@` panics, `nobody@` is
/// refused; `closed` records the `accepted` flag of every transaction.
#[derive(Default)]
struct Recording {
    closed: Arc<Mutex<Vec<Vec<bool>>>>,
}

impl Receiver for Recording {
    async fn rcpt_to(&self, cx: &mut Context<'_>, to: &RcptTo) -> Reply {
        match to.url.as_str() {
            "spamtrap@example.com" => cx.mail.prohibited = true,
            "panic@example.com" => panic!("the rcpt hook panics on purpose"),
            "nobody@example.com" => return Reply::new(550, (5, 1, 1), "No such user"),
            _ => {}
        }
        defaults::rcpt_to(cx, to).await
    }

    async fn closed(&self, cx: &mut Context<'_>) {
        let flags = cx.transactions.iter().map(|m| m.accepted).collect();
        self.closed.lock().unwrap().push(flags);
    }
}

fn wait_for_closed(closed: &Mutex<Vec<Vec<bool>>>, n: usize) -> Vec<Vec<bool>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = closed.lock().unwrap().clone();
        if seen.len() >= n {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "closed hook not called {n} times: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn prohibited_client_gets_450_and_is_disconnected() {
    let server = TestServer::start_with(config(), Recording::default());
    let mut client = Client::ehlo(server.port);
    client.cmd("MAIL FROM:<a@example.com>", 250);
    client.send(b"RCPT TO:<spamtrap@example.com>\r\n");
    let reply = client.expect(450);
    assert_eq!(
        reply.text(),
        "4.7.1 Sender IP 127.0.0.1 is temporarily prohibited from sending"
    );
    client.expect_eof();
    server.expect_messages(0);
}

#[test]
fn panic_in_rcpt_hook_gives_421_and_closes() {
    let recording = Recording::default();
    let closed = Arc::clone(&recording.closed);
    let server = TestServer::start_with(config(), recording);
    let mut client = Client::ehlo(server.port);
    client.cmd("MAIL FROM:<a@example.com>", 250);
    client.send(b"RCPT TO:<panic@example.com>\r\n");
    client.expect_enhanced(421, "4.3.0");
    client.expect_eof();
    // `closed` still runs.
    assert_eq!(wait_for_closed(&closed, 1), [vec![false]]);

    let mut client = Client::ehlo(server.port);
    client.start_data("a@example.com", "b@example.com");
    client.send(b"x\r\n.\r\n");
    client.expect(250);
    client.quit();
    server.expect_messages(1);
}

#[test]
fn closed_hook_sees_every_transaction() {
    let recording = Recording::default();
    let closed = Arc::clone(&recording.closed);
    let server = TestServer::start_with(config(), recording);
    let mut client = Client::ehlo(server.port);
    for i in 0..2 {
        client.start_data(&format!("s{i}@example.com"), "r@example.com");
        client.send(b"delivered\r\n.\r\n");
        client.expect(250);
    }
    client.cmd("MAIL FROM:<s2@example.com>", 250);
    client.send(b"RCPT TO:<nobody@example.com>\r\n");
    client.expect_enhanced(550, "5.1.1");
    client.cmd("RSET", 250);
    client.quit();
    let seen = wait_for_closed(&closed, 1);
    assert_eq!(seen, [vec![true, true, false]]);
    server.expect_messages(2);
}

/// Refuses every client at connect time.
struct Closed;

impl Receiver for Closed {
    async fn connect(&self, _cx: &mut Context<'_>) -> Reply {
        Reply::new(554, (5, 7, 1), "No SMTP service here")
    }
}

#[test]
fn refused_greeting_only_allows_quit() {
    let server = TestServer::start_with(config(), Closed);
    let mut client = Client::connect_any(server.port);
    assert_eq!(client.greeting.code, 554, "{:?}", client.greeting);
    // A refusing greeting keeps the hook's enhanced code (a 220 drops it, RFC 2034).
    assert_eq!(client.greeting.text(), "5.7.1 No SMTP service here");
    for command in ["EHLO client.test", "MAIL FROM:<a@b.c>", "NOOP"] {
        client.send(format!("{command}\r\n").as_bytes());
        client.expect_enhanced(503, "5.5.1");
    }
    client.quit();
    server.expect_messages(0);
}

/// Hook replies that try to bend the protocol: a DATA go-ahead that is not 354,
/// a reply text with line breaks, and per-connection state in `extensions`.
struct Tricky;

/// Mails accepted on this connection (kept in `cx.extensions`).
#[derive(Default)]
struct PerConnection(usize);

impl Receiver for Tricky {
    async fn mail_from(&self, cx: &mut Context<'_>, from: &MailFrom) -> Reply {
        if from.url == "inject@example.com" {
            return Reply::new(550, (5, 7, 1), "line one\nline two\r\n250 injected");
        }
        if cx.extensions.get_or_default::<PerConnection>().0 >= 2 {
            return Reply::new(452, (4, 5, 3), "Two mails per connection");
        }
        defaults::mail_from(cx, from).await
    }

    async fn data(&self, _cx: &mut Context<'_>) -> Reply {
        Reply::plain(250, "go ahead")
    }

    async fn received(&self, cx: &mut Context<'_>) -> Result<(), DeliveryError> {
        defaults::received(cx).await?;
        cx.extensions.get_or_default::<PerConnection>().0 += 1;
        Ok(())
    }
}

#[test]
fn hook_reply_text_cannot_inject_protocol_lines() {
    let server = TestServer::start_with(config(), Tricky);
    let mut client = Client::ehlo(server.port);
    client.send(b"MAIL FROM:<inject@example.com>\r\nNOOP\r\n");
    let reply = client.expect(550);
    assert_eq!(
        reply.lines,
        ["5.7.1 line one", "5.7.1 line two", "5.7.1 250 injected"]
    );
    client.expect_enhanced(250, "2.0.0");
    client.quit();
}

#[test]
fn data_go_ahead_is_always_354_and_extensions_are_per_connection() {
    let server = TestServer::start_with(config(), Tricky);
    for _ in 0..2 {
        let mut client = Client::ehlo(server.port);
        for i in 0..2 {
            client.cmd(&format!("MAIL FROM:<m{i}@example.com>"), 250);
            client.cmd("RCPT TO:<r@example.com>", 250);
            let go = client.cmd("DATA", 354);
            assert_eq!(go.text(), "go ahead");
            // Not read as commands: this is message text.
            client.send(b"RSET\r\nQUIT\r\n.\r\n");
            client.expect(250);
        }
        client.send(b"MAIL FROM:<m2@example.com>\r\n");
        client.expect_enhanced(452, "4.5.3");
        client.quit();
    }
    let files = server.expect_messages(4);
    for file in &files {
        assert_eq!(split_stored(file).body, b"RSET\r\nQUIT\r\n");
    }
}

/// Prohibits the client from the hook named by the EHLO argument.
struct ProhibitIn;

impl Receiver for ProhibitIn {
    async fn ehlo(&self, cx: &mut Context<'_>, ehlo: &Ehlo) -> Reply {
        if ehlo.value == "ehlo.prohibit" {
            cx.mail.prohibited = true;
        }
        defaults::ehlo(cx, ehlo).await
    }

    async fn data(&self, cx: &mut Context<'_>) -> Reply {
        if cx
            .mail
            .ehlo
            .as_ref()
            .is_some_and(|e| e.value == "data.prohibit")
        {
            cx.mail.prohibited = true;
        }
        defaults::data(cx).await
    }
}

#[test]
fn prohibited_in_ehlo_gets_450_and_close() {
    let server = TestServer::start_with(config(), ProhibitIn);
    let mut client = Client::connect(server.port);
    client.send(b"EHLO ehlo.prohibit\r\n");
    client.expect_enhanced(450, "4.7.1");
    client.expect_eof();
}

#[test]
fn prohibited_in_data_hook_refuses_the_message() {
    // README: setting `cx.mail.prohibited` makes the hook's reply 450 4.7.1 and
    // closes the connection (as it does for RCPT above); a prohibited client
    // must not get its message delivered.
    let server = TestServer::start_with(config(), ProhibitIn);
    let mut client = Client::connect(server.port);
    client.cmd("EHLO data.prohibit", 250);
    client.cmd("MAIL FROM:<a@example.com>", 250);
    client.cmd("RCPT TO:<b@example.com>", 250);
    client.send(b"DATA\r\n");
    let reply = client.reply();
    if reply.code == 354 {
        // Show what happens next before failing.
        client.send(b"prohibited mail\r\n.\r\n");
        let after = client.reply();
        let files = server.messages_count();
        panic!(
            "DATA after the data hook set prohibited: got {reply:?}, then {after:?} for the \
             message and {files} file(s) in new/; expected 450 4.7.1, close, no file"
        );
    }
    assert_eq!(reply.code, 450, "{reply:?}");
    assert!(reply.text().starts_with("4.7.1 "), "{reply:?}");
    client.expect_eof();
    server.expect_messages(0);
}

/// Prohibits every client at connect time (with a normal 220 greeting).
struct ProhibitAtConnect;

impl Receiver for ProhibitAtConnect {
    async fn connect(&self, cx: &mut Context<'_>) -> Reply {
        cx.mail.prohibited = true;
        defaults::connect(cx).await
    }
}

#[test]
fn prohibited_at_connect_refuses_the_first_command() {
    let server = TestServer::start_with(config(), ProhibitAtConnect);
    let mut client = Client::connect(server.port);
    client.send(b"EHLO client.test\r\n");
    let reply = client.expect_enhanced(450, "4.7.1");
    assert!(reply.text().contains("127.0.0.1"), "{reply:?}");
    client.expect_eof();
}

#[test]
fn prohibited_client_may_still_quit() {
    // README: "every later command but QUIT" gets 450 4.7.1; QUIT gets its 221.
    let server = TestServer::start_with(config(), ProhibitAtConnect);
    let mut client = Client::connect(server.port);
    client.send(b"QUIT\r\n");
    let reply = client.reply();
    assert_eq!(
        (reply.code, reply.text()),
        (221, "2.0.0 mx.test closing connection"),
        "QUIT from a prohibited client"
    );
    client.expect_eof();
}

/// The connect hook panics.
struct PanicAtConnect;

impl Receiver for PanicAtConnect {
    async fn connect(&self, _cx: &mut Context<'_>) -> Reply {
        panic!("the connect hook panics on purpose")
    }
}

#[test]
fn panic_in_connect_gives_421_greeting_and_close() {
    let server = TestServer::start_with(config(), PanicAtConnect);
    for _ in 0..2 {
        let mut client = Client::connect_any(server.port);
        assert_eq!(client.greeting.code, 421, "{:?}", client.greeting);
        client.expect_eof();
    }
}

/// The data hook refuses every message.
struct RefuseData;

impl Receiver for RefuseData {
    async fn data(&self, _cx: &mut Context<'_>) -> Reply {
        Reply::new(554, (5, 7, 1), "No messages today")
    }
}

#[test]
fn refused_data_and_bdat_never_read_content_as_commands() {
    let server = TestServer::start_with(config(), RefuseData);
    let mut client = Client::ehlo(server.port);
    client.cmd("MAIL FROM:<a@example.com>", 250);
    client.cmd("RCPT TO:<b@example.com>", 250);
    client.send(b"DATA\r\n");
    client.expect_enhanced(554, "5.7.1");
    // BDAT: the chunk is read and thrown away, then the refusal comes.
    client.send(b"BDAT 6 LAST\r\nRSET\r\nNOOP\r\n");
    let replies = client.replies(2);
    assert_eq!(replies[0].code, 554, "{replies:?}");
    assert_eq!(replies[0].text(), "5.7.1 No messages today");
    assert_eq!(replies[1].text(), "2.0.0 OK", "{replies:?}");
    // The BDAT refusal ended the transaction.
    client.send(b"RCPT TO:<b@example.com>\r\n");
    client.expect_enhanced(503, "5.5.1");
    client.quit();
    server.expect_messages(0);
}
