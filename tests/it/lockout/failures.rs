//! The lockout (`max_failed_msgs_per_period`, `lockout_period`, `lockout_counts`)
//! with short periods: N failures lock the client IP (the session gets 450 4.7.1
//! and is closed, new connections `421 4.7.0 … temporarily prohibited`), the
//! period's end unlocks it, the defaults already stop a brute-force client (loopback
//! made non-exempt), a login is refused (same 535, even with the right password) only
//! to the client that guessed it while its owner gets in from elsewhere and is then
//! trusted, another IP is served while one is locked, rejected transactions count
//! once each, every kind is configurable, and the real binary stops a brute-force
//! loop over STARTTLS from one IP but not from another. Loopback exemption, policy
//! refusals and `max_failed_msgs_per_period = 0`: `policy.rs`.

use std::ffi::OsStr;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use net_receiver::Config;
use net_receiver::config::FailureKind;
use net_receiver::lockout::{Lockout, MemoryStore, Policy, Subject};
use serde_json::Value;

use crate::support::auth::{
    BAD_CREDENTIALS, Extras, USERS, Users, auth_server, connect_from, plain, plaintext_auth_config,
    start_binary, write_file,
};
use crate::support::common::{Client, Reply, TestServer, python};

const JOE: (&str, &str) = USERS[0];
const ANN: (&str, &str) = USERS[1];

/// The text of the 421 a locked-out client's connection gets (after the
/// enhanced code, see [`the_locked_out_greeting_has_its_enhanced_code`]).
const LOCKED_GREETING: &str =
    "mx.test Sender IP 127.0.0.1 is temporarily prohibited from sending, try again later";
/// The reply that ends the session in which the client got locked out.
const PROHIBITED: &str = "4.7.1 Sender IP 127.0.0.1 is temporarily prohibited from sending";

/// Plaintext AUTH, tiny failure delays, `max` failures per `period` seconds, and
/// loopback not exempt from the IP lockout (the tests' clients are on loopback).
pub(crate) fn lockout_config(max: u32, period: f64) -> Config {
    Config {
        max_failed_msgs_per_period: max,
        lockout_period: period,
        auth_failure_delay: 0.01,
        per_ip_limit_exceptions: Vec::new(),
        ..plaintext_auth_config()
    }
}

pub(crate) fn server(config: Config) -> (TestServer, Users) {
    let users = Users::default();
    let server = auth_server(config, users.clone(), Extras::default());
    (server, users)
}

pub(crate) fn wrong_auth(client: &mut Client) -> Reply {
    client.send(format!("AUTH PLAIN {}\r\n", plain(JOE.0, "wrong")).as_bytes());
    client.reply()
}

/// A new connection from 127.0.0.1 gets the 421 and is closed; returns its text.
pub(crate) fn assert_locked_out(port: u16) -> String {
    let mut client = Client::connect_any(port);
    assert_eq!(client.greeting.code, 421, "{:?}", client.greeting);
    let text = client.greeting.text().to_owned();
    assert_eq!(text.trim_start_matches("4.7.0 "), LOCKED_GREETING);
    client.expect_eof();
    text
}

/// The 450 that ends a session, then EOF.
fn assert_prohibited(client: &mut Client, reply: &Reply) {
    assert_eq!(reply.code, 450, "{reply:?}");
    assert_eq!(reply.text(), PROHIBITED);
    client.expect_eof();
}

#[test]
fn auth_failures_lock_the_ip_until_the_period_ends() {
    let (server, _) = server(lockout_config(3, 1.0));
    let port = server.port;
    let mut client = Client::connect(port);
    client.cmd("EHLO client.test", 250);
    for _ in 0..2 {
        let reply = wrong_auth(&mut client);
        assert_eq!((reply.code, reply.text()), (535, BAD_CREDENTIALS));
    }
    let reply = wrong_auth(&mut client);
    let locked_at = Instant::now();
    assert_prohibited(&mut client, &reply);
    assert_locked_out(port);
    assert_locked_out(port);
    std::thread::sleep(
        (locked_at + Duration::from_millis(1150)).saturating_duration_since(Instant::now()),
    );
    // The period is over: the IP and the login are free again.
    let mut client = Client::connect(port);
    client.cmd("EHLO client.test", 250);
    client.cmd(&format!("AUTH PLAIN {}", plain(JOE.0, JOE.1)), 235);
    client.quit();
}

/// The issue and the README promise `421 4.7.0 … temporarily prohibited` (as the
/// per-IP connection limit sends `421 4.7.0 … Too many connections`).
#[test]
fn the_locked_out_greeting_has_its_enhanced_code() {
    let (server, _) = server(lockout_config(1, 600.0));
    let mut client = Client::connect(server.port);
    client.cmd("EHLO client.test", 250);
    let reply = wrong_auth(&mut client);
    assert_prohibited(&mut client, &reply);
    let text = assert_locked_out(server.port);
    assert_eq!(text, format!("4.7.0 {LOCKED_GREETING}"));
}

#[test]
fn sessions_already_open_are_stopped_at_their_next_failure() {
    let (server, _) = server(lockout_config(3, 600.0));
    let port = server.port;
    // A client guessing over parallel connections.
    let mut sessions: Vec<Client> = (0..4).map(|_| Client::connect(port)).collect();
    for session in &mut sessions {
        session.cmd("EHLO client.test", 250);
    }
    let mut first = sessions.remove(0);
    for _ in 0..2 {
        assert_eq!(wrong_auth(&mut first).code, 535);
    }
    let reply = wrong_auth(&mut first);
    assert_prohibited(&mut first, &reply);
    for mut session in sessions {
        let reply = wrong_auth(&mut session);
        assert_prohibited(&mut session, &reply);
    }
    assert_locked_out(port);
}

#[test]
fn defaults_lock_out_a_brute_force_client() {
    let defaults = Config::default();
    assert_eq!(defaults.max_failed_msgs_per_period, 3);
    assert_eq!(defaults.lockout_period, 600.0);
    assert_eq!(defaults.lockout_counts.len(), 5);
    let (server, _) = server(Config {
        auth_failure_delay: 0.01,
        per_ip_limit_exceptions: Vec::new(),
        ..plaintext_auth_config()
    });
    let port = server.port;
    // A new connection per guess: the count is per IP, not per session.
    let mut codes = Vec::new();
    for _ in 0..3 {
        let mut client = Client::connect(port);
        client.cmd("EHLO brute.test", 250);
        let reply = wrong_auth(&mut client);
        codes.push(reply.code);
        if reply.code == 450 {
            assert_prohibited(&mut client, &reply);
        } else {
            client.quit();
        }
    }
    assert_eq!(codes, [535, 535, 450]);
    assert_locked_out(port);
}

/// Issue 19 item 5 (CWE-645): three wrong passwords used to lock joe out for
/// everyone, his owner on a clean IP included. Now only the guessing client is
/// refused joe; the owner elsewhere gets in and is then trusted.
#[test]
fn a_login_is_refused_only_to_the_client_that_guessed_it() {
    // Loopback exempt from the IP lockout (the default), to see the login rules alone.
    let (server, users) = server(Config {
        per_ip_limit_exceptions: vec!["127.0.0.0/8".to_owned()],
        ..lockout_config(3, 2.0)
    });
    let port = server.port;
    let (guesser, owner) = (Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3));
    let mut client = connect_from(guesser, port);
    client.cmd("EHLO guesser.test", 250);
    for _ in 0..3 {
        let reply = client.cmd(&format!("AUTH PLAIN {}", plain(JOE.0, "wrong")), 535);
        assert_eq!(reply.text(), BAD_CREDENTIALS);
    }
    let reply = client.cmd(&format!("AUTH PLAIN {}", plain(JOE.0, JOE.1)), 535);
    let refused_at = Instant::now();
    assert_eq!(reply.text(), BAD_CREDENTIALS, "no oracle: the same 535");
    // The same client, another login: accepted.
    client.cmd(&format!("AUTH PLAIN {}", plain(ANN.0, ANN.1)), 235);
    client.cmd("QUIT", 221);
    // The owner, elsewhere: in, and then trusted — his own typos lock nothing.
    let mut client = connect_from(owner, port);
    client.cmd("EHLO owner.test", 250);
    client.cmd(&format!("AUTH PLAIN {}", plain(JOE.0, JOE.1)), 235);
    client.cmd("QUIT", 221);
    let mut client = connect_from(owner, port);
    client.cmd("EHLO owner.test", 250);
    for _ in 0..4 {
        client.cmd(&format!("AUTH PLAIN {}", plain(JOE.0, "typo")), 535);
    }
    client.cmd(&format!("AUTH PLAIN {}", plain(JOE.0, JOE.1)), 235);
    client.cmd("MAIL FROM:<a@example.com>", 250);
    client.cmd("RCPT TO:<b@example.com>", 250);
    client.cmd("DATA", 354);
    client.cmd("Subject: joe\r\n\r\nbody\r\n.", 250);
    client.cmd("QUIT", 221);
    // The refused attempt counted too; its period over, the guesser may try again.
    std::thread::sleep(
        (refused_at + Duration::from_millis(2150)).saturating_duration_since(Instant::now()),
    );
    let mut client = connect_from(guesser, port);
    client.cmd("EHLO guesser.test", 250);
    client.cmd(&format!("AUTH PLAIN {}", plain(JOE.0, JOE.1)), 235);
    client.cmd("QUIT", 221);
    let mails = users.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].authenticated.as_deref(), Some(JOE.0));
    assert_eq!(mails[0].remote_ip, "127.0.0.3");
}

#[test]
fn another_ip_is_served_while_one_is_locked() {
    let lockout = Arc::new(Lockout::new(
        Arc::new(MemoryStore::new(1000)),
        Policy::new(3, Duration::from_secs(600)),
    ));
    let users = Users::default();
    let server = auth_server(
        lockout_config(3, 600.0),
        users.clone(),
        Extras {
            lockout: Some(Arc::clone(&lockout)),
            ..Extras::default()
        },
    );
    let port = server.port;
    let local = Subject::ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let statuses: Vec<bool> = (0..3)
        .map(|_| server.block_on(lockout.record_failure(&local)).locked)
        .collect();
    assert_eq!(statuses, [false, false, true]);
    assert_locked_out(port);
    let other = Ipv4Addr::new(127, 0, 0, 2);
    let mut client = connect_from(other, port);
    assert_eq!(client.greeting.code, 220, "{:?}", client.greeting);
    client.cmd("EHLO other.test", 250);
    client.cmd(&format!("AUTH PLAIN {}", plain(JOE.0, JOE.1)), 235);
    client.cmd("MAIL FROM:<a@example.com>", 250);
    client.cmd("RCPT TO:<b@example.com>", 250);
    client.cmd("DATA", 354);
    client.cmd("Subject: other\r\n\r\nbody\r\n.", 250);
    client.cmd("QUIT", 221);
    let mails = users.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].remote_ip, "127.0.0.2");
    assert_eq!(mails[0].authenticated.as_deref(), Some(JOE.0));
    // Still locked; clearing the subject (what a hook may do) lets it in.
    assert_locked_out(port);
    server.block_on(lockout.clear(&local));
    Client::connect(port).quit();
}

/// One failure of `kind` in `client`'s session; returns the code of the refusal
/// (or of the 450 that replaced it). The transaction is reset after a refusal.
fn fail(client: &mut Client, kind: FailureKind) -> u16 {
    let code = match kind {
        FailureKind::Auth => wrong_auth(client).code,
        FailureKind::Mail => {
            client.send(b"MAIL FROM:<reject@example.com>\r\n");
            client.reply().code
        }
        FailureKind::Rcpt => {
            client.cmd("MAIL FROM:<a@example.com>", 250);
            client.send(b"RCPT TO:<reject@example.com>\r\n");
            client.reply().code
        }
        FailureKind::Data => {
            client.cmd("MAIL FROM:<nodata@example.com>", 250);
            client.cmd("RCPT TO:<b@example.com>", 250);
            client.send(b"DATA\r\n");
            client.reply().code
        }
        FailureKind::Abuse => panic!("abuse is counted as a session ends: see lockout::policy"),
    };
    if code != 450 && kind != FailureKind::Auth {
        client.cmd("RSET", 250);
    }
    code
}

fn refusal_code(kind: FailureKind) -> u16 {
    match kind {
        FailureKind::Auth => 535,
        FailureKind::Mail | FailureKind::Rcpt => 550,
        FailureKind::Data => 554,
        _ => panic!("no refusal code for {kind:?}"),
    }
}

#[test]
fn rejected_transactions_count_once_each() {
    let (server, _) = server(Config {
        lockout_counts: vec![FailureKind::Rcpt],
        ..lockout_config(3, 600.0)
    });
    let mut client = Client::connect(server.port);
    client.cmd("EHLO client.test", 250);
    // Three refused recipients in one transaction count once.
    client.cmd("MAIL FROM:<a@example.com>", 250);
    for _ in 0..3 {
        client.cmd("RCPT TO:<reject@example.com>", 550);
    }
    client.cmd("RSET", 250);
    assert_eq!(fail(&mut client, FailureKind::Rcpt), 550);
    client.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<reject@example.com>\r\n");
    let replies = client.replies(2);
    assert_eq!(replies[0].code, 250, "{replies:?}");
    assert_prohibited(&mut client, &replies[1]);
    assert_locked_out(server.port);
}

#[test]
fn each_kind_of_failure_is_configurable() {
    let all = [
        FailureKind::Auth,
        FailureKind::Mail,
        FailureKind::Rcpt,
        FailureKind::Data,
    ];
    for kind in all {
        // Counted: the third failure locks.
        let (counting, _) = server(Config {
            lockout_counts: vec![kind],
            ..lockout_config(3, 600.0)
        });
        let mut client = Client::connect(counting.port);
        client.cmd("EHLO client.test", 250);
        let codes: Vec<u16> = (0..3).map(|_| fail(&mut client, kind)).collect();
        let refused = refusal_code(kind);
        assert_eq!(codes, [refused, refused, 450], "{kind:?}");
        client.expect_eof();
        assert_locked_out(counting.port);
        drop(counting);

        // Not counted: any number of them locks nothing.
        let (other, _) = server(Config {
            lockout_counts: all.iter().copied().filter(|k| *k != kind).collect(),
            ..lockout_config(3, 600.0)
        });
        let mut client = Client::connect(other.port);
        client.cmd("EHLO client.test", 250);
        let codes: Vec<u16> = (0..4).map(|_| fail(&mut client, kind)).collect();
        assert_eq!(codes, [refused; 4], "{kind:?}");
        client.quit();
        let mut client = Client::connect(other.port);
        client.cmd("EHLO client.test", 250);
        client.cmd(&format!("AUTH PLAIN {}", plain(JOE.0, JOE.1)), 235);
        client.quit();
    }
}

/// smtplib over STARTTLS (no certificate check: the binary's generated one),
/// one connection per password from `argv[2]`, AUTH PLAIN as `argv[3]`; prints
/// `[code, text]` per attempt: the greeting's when it is not 220, else AUTH's.
const PY_BRUTE_FORCE: &str = r#"
import json, smtplib, ssl, sys
port, source, user, passwords = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
out = []
for password in passwords:
    try:
        s = smtplib.SMTP("127.0.0.1", port, local_hostname="brute.test", timeout=10, source_address=(source, 0))
    except smtplib.SMTPConnectError as e:
        out.append([e.smtp_code, e.smtp_error.decode()])
        continue
    s.starttls(context=ctx)
    s.ehlo()
    s.esmtp_features["auth"] = "PLAIN"
    try:
        code, text = s.login(user, password)
        s.quit()
    except smtplib.SMTPAuthenticationError as e:
        code, text = e.smtp_code, e.smtp_error
        s.close()
    out.append([code, text.decode()])
print(json.dumps(out))
"#;

fn brute_force(port: u16, source: &str, user: &str, passwords: &[&str]) -> Vec<(u64, String)> {
    let port = port.to_string();
    let mut args = vec![port.as_str(), source, user];
    args.extend_from_slice(passwords);
    let out: Value = serde_json::from_str(python(PY_BRUTE_FORCE, &args).trim()).unwrap();
    out.as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_u64().unwrap(), r[1].as_str().unwrap().to_owned()))
        .collect()
}

fn codes(results: &[(u64, String)]) -> Vec<u64> {
    results.iter().map(|r| r.0).collect()
}

#[test]
fn binary_stops_a_brute_force_loop_from_one_ip_only() {
    let dir = tempfile::tempdir().unwrap();
    let passwd = write_file(
        dir.path(),
        "passwd",
        &format!(
            "{}:{{PLAIN}}{}\n{}:{{PLAIN}}{}\n",
            JOE.0, JOE.1, ANN.0, ANN.1
        ),
    );
    let toml = "lockout_period = 2\nauth_failure_delay = 0.01\nper_ip_limit_exceptions = []\n";
    let args: [&OsStr; 4] = [
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--passwd-file".as_ref(),
        passwd.as_os_str(),
    ];
    let mut binary = start_binary(dir.path(), toml, "info", &args, 1);
    let port = binary.port("smtp");
    let guesses = ["123456", "password", "joe", "qwerty", JOE.1];
    let results = brute_force(port, "127.0.0.1", JOE.0, &guesses);
    assert_eq!(codes(&results), [535, 535, 450, 421, 421], "{results:?}");
    assert_eq!(results[0].1, BAD_CREDENTIALS);
    assert_eq!(results[2].1, PROHIBITED);
    assert!(
        results[3].1.contains("temporarily prohibited"),
        "{results:?}"
    );
    let locked_at = Instant::now();
    // From a second IP: served, and joe's owner gets in (joe is not locked out).
    let second = brute_force(port, "127.0.0.2", ANN.0, &[ANN.1]);
    assert_eq!(codes(&second), [235], "{second:?}");
    let second = brute_force(port, "127.0.0.2", JOE.0, &[JOE.1]);
    assert_eq!(codes(&second), [235], "{second:?}");
    // After the period, from the first IP again.
    std::thread::sleep(
        (locked_at + Duration::from_millis(2200)).saturating_duration_since(Instant::now()),
    );
    let later = brute_force(port, "127.0.0.1", JOE.0, &[JOE.1]);
    assert_eq!(codes(&later), [235], "{later:?}");
    binary.terminate();
    let log = binary.log();
    assert!(log.contains("locked out"), "{log}");
    assert!(log.contains("login locked out"), "{log}");
}
