//! What counts toward the lockout (issue 12 item 1): a hook's own policy refusal
//! (the README's `mail_from` override answering 556) counts for nothing unless the
//! hook calls `cx.count_failure()`; clients in `per_ip_limit_exceptions` (loopback by
//! default) are never locked out by IP, while the login protection still applies to
//! them; `max_failed_msgs_per_period = 0` turns the lockout off; sessions closed
//! for too many errors count as abuse.

use net_receiver::{Config, Context, MailFrom, Receiver, Reply, defaults};

use super::failures::{lockout_config, server, wrong_auth};
use crate::support::auth::{USERS, plain};
use crate::support::common::{Client, TestServer};

const JOE: (&str, &str) = USERS[0];
const ANN: (&str, &str) = USERS[1];

/// The README's override: unauthenticated senders get 556 (a policy refusal).
struct MustAuthenticate;

impl Receiver for MustAuthenticate {
    async fn mail_from(&self, cx: &mut Context<'_>, from: &MailFrom) -> Reply {
        if cx.mail.authenticated.is_none() {
            return Reply::new(556, (5, 7, 27), "must authenticate");
        }
        defaults::mail_from(cx, from).await
    }
}

#[test]
fn a_hooks_policy_refusal_does_not_lock_the_client_out() {
    let server = TestServer::start_with(lockout_config(3, 600.0), MustAuthenticate);
    for _ in 0..5 {
        let mut client = Client::connect(server.port);
        client.cmd("EHLO client.test", 250);
        client.cmd("MAIL FROM:<a@example.com>", 556);
        client.cmd("MAIL FROM:<a@example.com>", 556);
        client.quit();
    }
    // Still served: the greeting is 220, not 421.
    Client::connect(server.port).quit();
}

/// Refusals the receiver counts (`cx.count_failure()`), then wrong passwords: none of
/// them locks the client's IP out; returns the client. (8 errors in all: below
/// `max_errors`.)
fn fail_everything(port: u16) -> Client {
    let mut client = Client::connect(port);
    client.cmd("EHLO client.test", 250);
    for _ in 0..2 {
        client.cmd("MAIL FROM:<reject@example.com>", 550);
        client.cmd("MAIL FROM:<a@example.com>", 250);
        client.cmd("RCPT TO:<reject@example.com>", 550);
        client.cmd("RSET", 250);
    }
    for _ in 0..4 {
        assert_eq!(wrong_auth(&mut client).code, 535);
    }
    client
}

#[test]
fn loopback_is_exempt_from_the_ip_lockout_by_default() {
    let (server, _) = server(Config {
        per_ip_limit_exceptions: Config::default().per_ip_limit_exceptions,
        ..lockout_config(3, 600.0)
    });
    let mut client = fail_everything(server.port);
    // The login protection still applies: joe is refused to this client...
    client.cmd(&format!("AUTH PLAIN {}", plain(JOE.0, JOE.1)), 535);
    // ...but the client is not locked out.
    client.cmd(&format!("AUTH PLAIN {}", plain(ANN.0, ANN.1)), 235);
    client.quit();
    Client::connect(server.port).quit();
}

#[test]
fn max_failed_msgs_per_period_zero_turns_the_lockout_off() {
    let (server, _) = server(lockout_config(0, 600.0));
    let mut client = fail_everything(server.port);
    client.cmd(&format!("AUTH PLAIN {}", plain(JOE.0, JOE.1)), 235);
    client.quit();
    Client::connect(server.port).quit();
}

/// Sessions that keep sending bad commands until `421 Too many errors`.
fn abuse(port: u16, max_errors: u32) {
    let mut client = Client::connect(port);
    for _ in 0..max_errors - 1 {
        client.cmd("FOO", 500);
    }
    client.send(b"FOO\r\n");
    client.expect(500);
    client.expect_enhanced(421, "4.7.0");
    client.expect_closed();
}

/// Protocol abuse counts (`abuse` in `lockout_counts`): a client closed twice for
/// too many errors is locked out at its next connection — unless it is exempt
/// (loopback by default) or `abuse` is taken out of `lockout_counts`.
#[test]
fn sessions_closed_for_too_many_errors_lock_the_client_out() {
    let abusive = |config: Config| {
        let server = TestServer::start(Config {
            max_errors: 3,
            ..config
        });
        abuse(server.port, 3);
        abuse(server.port, 3);
        // Counted before the server closed the socket, so before `abuse` saw EOF.
        Client::connect_any(server.port).greeting.code
    };
    assert_eq!(abusive(lockout_config(2, 600.0)), 421, "locked out");
    let exempt = Config {
        per_ip_limit_exceptions: Config::default().per_ip_limit_exceptions,
        ..lockout_config(2, 600.0)
    };
    assert_eq!(abusive(exempt), 220, "loopback is exempt");
    let not_counted = Config {
        lockout_counts: vec![net_receiver::config::FailureKind::Auth],
        ..lockout_config(2, 600.0)
    };
    assert_eq!(abusive(not_counted), 220, "abuse not in lockout_counts");
}
