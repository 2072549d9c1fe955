//! The lockout shared through Redis: two real `net-receiver` processes with
//! `lockout_store = "redis://127.0.0.1:P/"` on one `redis-server` that the test
//! starts on a free loopback port (and kills when done). Failures split between
//! them (2 on A, 1 on B, max 3) lock the client IP, and the login for that IP only,
//! on both; another IP is still served, and the login's owner gets in from there. When Redis dies mid-run the receiver fails open: sessions
//! go on, mail is accepted with 250, failures lock nothing, and counting resumes
//! once Redis is back.
//!
//! Without the `redis-server` binary these tests fail: install redis-server
//! (scripts/test does it).

use std::ffi::OsStr;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::auth::{
    BAD_CREDENTIALS, USERS, connect_from, json_lines, plain, start_binary, write_file,
};
use crate::support::common::{Client, expect_messages};
use crate::support::redis_server::RedisServer;
use crate::support::running::Binary;

const JOE: (&str, &str) = USERS[0];
const ANN: (&str, &str) = USERS[1];

/// Redis keys of the store (see `src/lockout/redis.rs`).
const FAIL_IP: &str = "net-receiver:fail:ip:127.0.0.1";
const LOCK_IP: &str = "net-receiver:lock:ip:127.0.0.1";
/// `joe` (in lower-case hex) from 127.0.0.1.
const LOCK_JOE_FROM_LOCAL: &str = "net-receiver:lock:login-from:6a6f65:127.0.0.1";
/// Failures of `joe` from everywhere (they never lock joe).
const FAIL_JOE: &str = "net-receiver:fail:login:6a6f65";
const LOCK_JOE: &str = "net-receiver:lock:login:6a6f65";

/// A binary in `dir` counting failures in `redis`: plaintext AUTH, max 3 per 30 s,
/// loopback not exempt from the IP lockout.
fn receiver(dir: &Path, redis: &RedisServer) -> Binary {
    let passwd = write_file(
        dir,
        "passwd",
        &format!(
            "{}:{{PLAIN}}{}\n{}:{{PLAIN}}{}\n",
            JOE.0, JOE.1, ANN.0, ANN.1
        ),
    );
    let toml = format!(
        "lockout_store = {:?}\nlockout_period = 30\nmax_failed_msgs_per_period = 3\n\
         auth_failure_delay = 0.01\nallow_plaintext_auth = true\nper_ip_limit_exceptions = []\n",
        redis.url()
    );
    let args: [&OsStr; 4] = [
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--passwd-file".as_ref(),
        passwd.as_os_str(),
    ];
    start_binary(dir, &toml, "info", &args, 1)
}

fn wrong_auth(client: &mut Client) -> crate::support::common::Reply {
    client.send(format!("AUTH PLAIN {}\r\n", plain(JOE.0, "wrong")).as_bytes());
    client.reply()
}

fn send_mail(client: &mut Client, subject: &str) {
    client.start_data("a@example.com", "b@example.com");
    client.send(format!("Subject: {subject}\r\n\r\nbody\r\n.\r\n").as_bytes());
    client.expect_enhanced(250, "2.0.0");
}

fn assert_locked_out(port: u16) {
    let mut client = Client::connect_any(port);
    assert_eq!(client.greeting.code, 421, "{:?}", client.greeting);
    assert!(
        client
            .greeting
            .text()
            .contains("Sender IP 127.0.0.1 is temporarily prohibited"),
        "{:?}",
        client.greeting
    );
    client.expect_eof();
}

#[test]
fn two_receivers_on_one_redis_see_each_others_failures() {
    let redis = RedisServer::start();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = receiver(dir_a.path(), &redis);
    let mut b = receiver(dir_b.path(), &redis);
    let (port_a, port_b) = (a.port("smtp"), b.port("smtp"));

    let mut client = Client::connect(port_a);
    client.cmd("EHLO client.test", 250);
    for _ in 0..2 {
        let reply = wrong_auth(&mut client);
        assert_eq!((reply.code, reply.text()), (535, BAD_CREDENTIALS));
    }
    client.quit();
    assert_eq!(redis.query(&format!("GET {FAIL_IP}")).as_deref(), Some("2"));
    assert_eq!(
        redis.query(&format!("EXISTS {LOCK_IP}")).as_deref(),
        Some("0")
    );

    // The third failure, on the other receiver, locks.
    let mut client = Client::connect(port_b);
    client.cmd("EHLO client.test", 250);
    let reply = wrong_auth(&mut client);
    assert_eq!(reply.code, 450, "{reply:?}");
    assert_eq!(
        reply.text(),
        "4.7.1 Sender IP 127.0.0.1 is temporarily prohibited from sending"
    );
    client.expect_eof();
    assert_eq!(
        redis.query(&format!("EXISTS {LOCK_IP}")).as_deref(),
        Some("1")
    );
    // joe is refused to 127.0.0.1 only, never locked as a whole (CWE-645).
    assert_eq!(
        redis
            .query(&format!("EXISTS {LOCK_JOE_FROM_LOCAL}"))
            .as_deref(),
        Some("1")
    );
    assert_eq!(
        redis.query(&format!("GET {FAIL_JOE}")).as_deref(),
        Some("3")
    );
    assert_eq!(
        redis.query(&format!("EXISTS {LOCK_JOE}")).as_deref(),
        Some("0")
    );
    assert_locked_out(port_a);
    assert_locked_out(port_b);

    // Another IP is served by both, and joe (the owner, elsewhere) gets in on both.
    for port in [port_a, port_b] {
        let mut client = connect_from(Ipv4Addr::new(127, 0, 0, 2), port);
        assert_eq!(client.greeting.code, 220, "{:?}", client.greeting);
        client.cmd("EHLO other.test", 250);
        client.cmd(&format!("AUTH PLAIN {}", plain(JOE.0, JOE.1)), 235);
        client.cmd("QUIT", 221);
    }
    a.terminate();
    b.terminate();
    assert!(b.log().contains("login locked out"), "{}", b.log());
    assert!(a.log().contains("connected to Redis"), "{}", a.log());
    assert!(b.log().contains("connected to Redis"), "{}", b.log());
}

#[test]
fn redis_dying_mid_run_fails_open() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut binary = receiver(dir.path(), &redis);
    let port = binary.port("smtp");
    let mut session = Client::connect(port);
    session.cmd("EHLO client.test", 250);
    assert_eq!(wrong_auth(&mut session).code, 535);
    assert_eq!(redis.query(&format!("GET {FAIL_IP}")).as_deref(), Some("1"));

    redis.stop();
    // The open session goes on: mail is taken, failures lock nothing.
    send_mail(&mut session, "during the outage, old session");
    for _ in 0..3 {
        let reply = wrong_auth(&mut session);
        assert_eq!((reply.code, reply.text()), (535, BAD_CREDENTIALS));
    }
    session.send(format!("AUTH PLAIN {}\r\n", plain(JOE.0, JOE.1)).as_bytes());
    session.expect_enhanced(235, "2.7.0");
    send_mail(&mut session, "during the outage, authenticated");
    session.quit();
    // New sessions are served.
    let mut client = Client::connect(port);
    client.cmd("EHLO client.test", 250);
    send_mail(&mut client, "during the outage, new session");
    client.quit();
    expect_messages(&dir.path().join("Maildir"), 3);

    // Redis back (empty): counting resumes once the receiver has reconnected.
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    while redis.query(&format!("GET {FAIL_IP}")).is_none() {
        assert!(
            Instant::now() < deadline,
            "failures not counted in Redis again; log:\n{}",
            binary.log()
        );
        let mut client = Client::connect(port);
        client.cmd("EHLO client.test", 250);
        assert_eq!(wrong_auth(&mut client).code, 535);
        client.quit();
        std::thread::sleep(Duration::from_millis(200));
    }

    let stdout = binary.terminate();
    let mails = json_lines(&stdout);
    assert_eq!(mails.len(), 3, "{stdout}");
    assert_eq!(mails[1]["authenticated"], JOE.0);
    let log = binary.log();
    assert!(log.contains("failing open"), "{log}");
}
