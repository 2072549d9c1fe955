//! IPv6 clients are counted per prefix (issue 19 item 6): `2001:db8::1` and
//! `2001:db8::2` are one client for `max_connections_per_ip` and the lockout, a
//! client in another /64 is another. Linux routes only `::1/128` to loopback, so the
//! addresses are claimed by a PROXY v1 header from a trusted 127.0.0.1.

use net_receiver::config::ListenerMode;
use net_receiver::{Config, Context, MailFrom, Receiver, Reply};

use crate::support::common::{Client, TestServer, config};

/// Refuses every sender and counts it as a failure.
struct RefuseAndCount;

impl Receiver for RefuseAndCount {
    async fn mail_from(&self, cx: &mut Context<'_>, _from: &MailFrom) -> Reply {
        cx.count_failure();
        Reply::new(550, (5, 7, 1), "Sender refused")
    }
}

fn proxied_config() -> Config {
    Config {
        proxy_trusted_networks: vec!["127.0.0.1/32".to_owned()],
        per_ip_limit_exceptions: Vec::new(),
        ..config()
    }
}

fn start(config: Config) -> TestServer {
    TestServer::start_listeners(config, RefuseAndCount, &[(ListenerMode::Smtp, true)], None)
}

/// A connection whose PROXY header claims `source`; the greeting is read.
fn connect_as(port: u16, source: &str) -> Client {
    let mut client = Client::open(([127, 0, 0, 1], port).into());
    client.send(format!("PROXY TCP6 {source} 2001:db8::ffff 40000 25\r\n").as_bytes());
    client.greeting = client.reply();
    client
}

#[test]
fn one_ipv6_prefix_is_one_client_for_the_per_ip_limit() {
    let server = start(Config {
        max_connections_per_ip: 1,
        ..proxied_config()
    });
    let first = connect_as(server.port, "2001:db8::1");
    assert_eq!(first.greeting.code, 220, "{:?}", first.greeting);
    let mut same_64 = connect_as(server.port, "2001:db8::2");
    assert_eq!(same_64.greeting.code, 421, "{:?}", same_64.greeting);
    same_64.expect_eof();
    let other_64 = connect_as(server.port, "2001:db8:0:1::1");
    assert_eq!(other_64.greeting.code, 220, "{:?}", other_64.greeting);
    first.quit();
    other_64.quit();

    // ipv6_prefix_length = 128: per address again.
    let server = start(Config {
        max_connections_per_ip: 1,
        ipv6_prefix_length: 128,
        ..proxied_config()
    });
    let first = connect_as(server.port, "2001:db8::1");
    let second = connect_as(server.port, "2001:db8::2");
    assert_eq!(second.greeting.code, 220, "{:?}", second.greeting);
    first.quit();
    second.quit();
}

#[test]
fn one_ipv6_prefix_is_one_client_for_the_lockout() {
    let server = start(Config {
        max_failed_msgs_per_period: 2,
        ..proxied_config()
    });
    let mut first = connect_as(server.port, "2001:db8::1");
    first.cmd("EHLO one.test", 250);
    first.cmd("MAIL FROM:<a@example.com>", 550);
    first.quit();
    // The second failure, from another address of the same /64, locks the /64.
    let mut second = connect_as(server.port, "2001:db8::2");
    second.cmd("EHLO two.test", 250);
    second.send(b"MAIL FROM:<a@example.com>\r\n");
    let reply = second.reply();
    assert_eq!(reply.code, 450, "{reply:?}");
    second.expect_eof();
    let mut third = connect_as(server.port, "2001:db8::3");
    assert_eq!(third.greeting.code, 421, "{:?}", third.greeting);
    third.expect_eof();
    let other_64 = connect_as(server.port, "2001:db8:0:1::1");
    assert_eq!(other_64.greeting.code, 220, "{:?}", other_64.greeting);
    other_64.quit();
}

#[test]
fn an_ipv6_prefix_longer_than_128_bits_is_a_config_error() {
    let error = Config {
        ipv6_prefix_length: 129,
        ..config()
    }
    .settings()
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(error.contains("ipv6_prefix_length"), "{error:?}");
    assert!(Config::default().settings().is_ok());
    assert_eq!(Config::default().ipv6_prefix_length, 64);
}
