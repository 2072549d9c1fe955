//! `max_connections_per_ip` and `max_connections`: a connection over a limit gets
//! `421 4.7.0` and is closed at once, the admitted sessions carry on, and closing
//! one lets a new client in. Counted per client address (127.0.0.1 and ::1 are
//! different clients) and in all across listeners.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use net_receiver::Config;
use net_receiver::config::{ListenerMode, ListenerSpec};

use crate::support::common::{Client, Plain, SERVER_NAME, TestServer, config};

/// A server listening on 127.0.0.1 (`addrs[0]`) and ::1 (`addrs[1]`).
fn dual_server(config: Config) -> (TestServer, [SocketAddr; 2]) {
    let v6: SocketAddr = "[::1]:0".parse().unwrap();
    if let Err(e) = std::net::TcpListener::bind(v6) {
        panic!("these tests need the IPv6 loopback ::1: {e}");
    }
    let specs = [
        ListenerSpec::new("127.0.0.1:0".parse().unwrap(), ListenerMode::Smtp),
        ListenerSpec::new(v6, ListenerMode::Smtp),
    ];
    let server = TestServer::start_specs(config, Plain, &specs, None);
    let addrs = [
        SocketAddr::from(([127, 0, 0, 1], server.ports[0])),
        SocketAddr::new("::1".parse().unwrap(), server.ports[1]),
    ];
    (server, addrs)
}

/// Connects to `addr` and reads the greeting, which must be 220.
fn admitted(addr: SocketAddr) -> Client {
    let mut client = Client::open(addr);
    client.read_greeting(220);
    client
}

/// Connects to `addr` and expects the refusal: 421 4.7.0, then EOF.
fn refused(addr: SocketAddr) {
    let mut client = Client::open(addr);
    let greeting = client.read_greeting(421).clone();
    assert_eq!(
        greeting.lines,
        [format!(
            "4.7.0 {SERVER_NAME} Too many connections, try again later"
        )]
    );
    client.expect_eof();
}

/// Connects to `addr` until it is admitted (a closed session frees its place
/// only once the server has finished with it); gives up after 10 s.
fn admitted_soon(addr: SocketAddr) -> Client {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut client = Client::open(addr);
        let greeting = client.reply();
        match greeting.code {
            220 => return client,
            421 => client.expect_eof(),
            _ => panic!("unexpected greeting {greeting:?}"),
        }
        assert!(
            Instant::now() < deadline,
            "a closed session's place was not freed within 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn per_ip_limit_refuses_the_third_and_frees_on_close() {
    let limited = Config {
        max_connections_per_ip: 2,
        per_ip_limit_exceptions: Vec::new(),
        ..config()
    };
    let (_server, [v4, v6]) = dual_server(limited);
    let mut first = admitted(v4);
    first.cmd("EHLO one.test", 250);
    let mut second = admitted(v4);
    refused(v4);
    refused(v4);
    // Another address is another client.
    let other = admitted(v6);
    // The admitted sessions are untouched by the refusals.
    first.cmd("NOOP", 250);
    second.cmd("EHLO two.test", 250);
    first.quit();
    let third = admitted_soon(v4);
    refused(v4);
    second.quit();
    third.quit();
    other.quit();
}

/// Loopback clients (local filters, webmail) are not held to the per-IP limit by
/// default, like Postfix's `$mynetworks` exception; the total still holds them.
#[test]
fn loopback_is_exempt_from_the_per_ip_limit_by_default() {
    let limited = Config {
        max_connections_per_ip: 1,
        max_connections: 4,
        ..config()
    };
    let server = TestServer::start(limited);
    let addr = SocketAddr::from(([127, 0, 0, 1], server.port));
    let clients: Vec<Client> = (0..4).map(|_| admitted(addr)).collect();
    refused(addr);
    for client in clients {
        client.quit();
    }
}

#[test]
fn global_limit_counts_every_client_and_listener() {
    let limited = Config {
        max_connections: 3,
        ..config()
    };
    let (_server, [v4, v6]) = dual_server(limited);
    let a = admitted(v4);
    let b = admitted(v4);
    let c = admitted(v6);
    refused(v4);
    refused(v6);
    c.quit();
    let d = admitted_soon(v6);
    refused(v4);
    a.quit();
    b.quit();
    let e = admitted_soon(v4);
    let f = admitted_soon(v4);
    refused(v6);
    for client in [d, e, f] {
        client.quit();
    }
}

#[test]
fn a_client_that_drops_without_quit_frees_its_place() {
    let limited = Config {
        max_connections_per_ip: 1,
        per_ip_limit_exceptions: Vec::new(),
        ..config()
    };
    let server = TestServer::start(limited);
    let addr = SocketAddr::from(([127, 0, 0, 1], server.port));
    let mut gone = admitted(addr);
    gone.cmd("EHLO gone.test", 250);
    refused(addr);
    drop(gone);
    let mut next = admitted_soon(addr);
    next.cmd("EHLO next.test", 250);
    next.start_data("a@example.com", "b@example.com");
    next.send(b"Subject: after a drop\r\n\r\nok\r\n.\r\n");
    next.expect(250);
    next.quit();
    server.expect_messages(1);
}
