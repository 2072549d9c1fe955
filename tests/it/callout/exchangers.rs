//! Callouts against the Rust exchangers of `support/exchanger.rs` and a second
//! net-receiver binary.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::support::{
    ZONE, counter, json_lines, mail_from, metrics_addr, rcpt_to, send_mail, start,
};
use crate::support::dns_server::DnsServer;
use crate::support::exchanger::{Behaviour, Exchanger, start_group};
use crate::support::running::Binary;
use crate::support::running::listening_command;

const KNOWN: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const ALL: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const TEMP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 4);
const SILENT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 5);

/// The four exchangers of the zone on one port; `known` knows alice and bob.
fn exchangers(delay: Duration) -> (u16, Vec<Exchanger>) {
    start_group(
        &[
            (KNOWN, Behaviour::Knows(vec!["alice", "bob"])),
            (ALL, Behaviour::AcceptAll),
            (TEMP, Behaviour::Tempfail),
            (SILENT, Behaviour::Silent),
        ],
        delay,
    )
}

fn config(port: u16, extra: &str) -> String {
    config_with_timeout(port, 1, extra)
}

/// `config` with each reply awaited at most `seconds`.
fn config_with_timeout(port: u16, seconds: u32, extra: &str) -> String {
    format!(
        "sender_callout = true\ncallout_port = {port}\ncallout_connect_timeout = 2\n\
         callout_command_timeout = {seconds}\n{extra}\n"
    )
}

#[test]
fn a_known_sender_passes_an_unknown_one_is_refused_and_both_are_cached() {
    let dns = DnsServer::start_with(ZONE);
    let (port, servers) = exchangers(Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let mut binary = start(
        dns.addr,
        dir.path(),
        &config(port, "metrics_listen = \"127.0.0.1:0\""),
    );
    let smtp = binary.port("smtp");
    let metrics = metrics_addr(&mut binary);
    let known = &servers[0];

    send_mail(smtp, "alice@known.test.example", "x@test.example");
    assert_eq!(known.connections(), 1);
    send_mail(smtp, "alice@known.test.example", "x@test.example");
    assert_eq!(
        known.connections(),
        1,
        "the second is answered from the cache"
    );

    let refused = mail_from(smtp, "mallory@known.test.example");
    assert_eq!(refused.code, 550, "{refused:?}");
    assert!(refused.text().starts_with("5.1.7 "), "{refused:?}");
    assert!(
        refused.text().contains("mx-known.test.example[127.0.0.2]"),
        "{refused:?}"
    );
    assert!(refused.text().contains("5.1.1"), "{refused:?}");
    assert_eq!(known.connections(), 2);
    let again = mail_from(smtp, "mallory@known.test.example");
    assert_eq!(
        (again.code, again.lines.clone()),
        (550, refused.lines.clone())
    );
    assert_eq!(known.connections(), 2, "the refusal is cached too");
    assert_eq!(
        known.rcpts(),
        [
            "RCPT TO:<alice@known.test.example>",
            "RCPT TO:<mallory@known.test.example>"
        ]
    );

    assert_eq!(
        counter(metrics, "net_receiver_callout_connections_total"),
        2
    );
    assert_eq!(counter(metrics, "net_receiver_callout_cache_hits_total"), 2);
    assert_eq!(
        counter(metrics, "net_receiver_callout_rate_limited_total"),
        0
    );

    let lines = json_lines(&binary.terminate());
    assert_eq!(lines.len(), 2);
    let first = &lines[0]["mailfrom"]["callout"];
    assert_eq!(first["result"], "pass");
    assert_eq!(first["code"], 250);
    assert_eq!(first["text"], "2.1.5 Ok");
    assert_eq!(
        first["host"],
        format!("mx-known.test.example[127.0.0.2]:{port}")
    );
    assert_eq!(first["cached"], false);
    assert_eq!(lines[1]["mailfrom"]["callout"]["cached"], true);
    assert_eq!(lines[1]["mailfrom"]["callout"]["result"], "pass");
    assert!(
        lines[0]["rcptto"][0]["callout"].is_null(),
        "no recipient callout"
    );
}

#[test]
fn accept_all_tempfail_silence_a_backup_mx_and_the_client_itself_are_recorded() {
    let dns = DnsServer::start_with(ZONE);
    let (port, servers) = exchangers(Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let mut binary = start(dns.addr, dir.path(), &config(port, "callout_random = true"));
    let smtp = binary.port("smtp");
    for sender in [
        "anyone@acceptall.test.example",
        "bob@known.test.example",
        "carol@tempfail.test.example",
        "dave@silent.test.example",
        "alice@backup.test.example",
        "eve@itself.test.example",
        // Domain-level results: accept-all and "no exchanger answered".
        "other@acceptall.test.example",
        "erin@silent.test.example",
        // Nothing listens there.
        "frank@closed.test.example",
    ] {
        send_mail(smtp, sender, "x@test.example");
    }
    let lines = json_lines(&binary.terminate());
    let results: Vec<(String, String)> = lines
        .iter()
        .map(|l| {
            (
                l["mailfrom"]["url"].as_str().unwrap().to_owned(),
                l["mailfrom"]["callout"]["result"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    let expected = [
        ("anyone@acceptall.test.example", "accept_all"),
        ("bob@known.test.example", "pass"),
        ("carol@tempfail.test.example", "tempfail"),
        ("dave@silent.test.example", "tempfail"),
        ("alice@backup.test.example", "pass"),
        ("eve@itself.test.example", "error"),
        ("other@acceptall.test.example", "accept_all"),
        ("erin@silent.test.example", "tempfail"),
        ("frank@closed.test.example", "tempfail"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(a, r)| ((*a).to_owned(), (*r).to_owned()))
        .collect();
    assert_eq!(results, expected);
    // The random local part was asked first, and only it at the accept-all server.
    let all = servers[1].rcpts();
    assert_eq!(all.len(), 1, "{all:?}");
    assert!(all[0].starts_with("RCPT TO:<nr-callout-"), "{all:?}");
    let known = servers[0].rcpts();
    assert!(known[0].starts_with("RCPT TO:<nr-callout-"), "{known:?}");
    assert_eq!(known[1], "RCPT TO:<bob@known.test.example>");
    assert_eq!(known[3], "RCPT TO:<alice@backup.test.example>");
    // The silent exchanger was tried for both domains, then the backup's
    // second MX; the domain-level results were taken from the cache.
    assert_eq!(servers[3].connections(), 2);
    assert_eq!(servers[1].connections(), 1);
    let closed = &lines[8]["mailfrom"]["callout"];
    assert!(
        closed["text"].as_str().unwrap().contains("cannot connect"),
        "{closed}"
    );
    assert_eq!(closed["cached"], false);
    for cached in &lines[6..8] {
        assert_eq!(cached["mailfrom"]["callout"]["cached"], true, "{cached}");
    }
    assert_eq!(lines[5]["mailfrom"]["callout"]["cached"], false);
    assert_eq!(
        lines[4]["mailfrom"]["callout"]["host"],
        format!("mx-known.test.example[127.0.0.2]:{port}")
    );
    assert_eq!(lines[2]["mailfrom"]["callout"]["code"], 451);
    assert!(
        lines[3]["mailfrom"]["callout"]["text"]
            .as_str()
            .unwrap()
            .contains("no reply within 1 s"),
        "{}",
        lines[3]
    );
    assert!(
        lines[5]["mailfrom"]["callout"]["text"]
            .as_str()
            .unwrap()
            .contains("client itself"),
        "{}",
        lines[5]
    );
}

#[test]
fn a_tempfail_defers_only_when_asked() {
    let dns = DnsServer::start_with(ZONE);
    let (port, servers) = exchangers(Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let binary = start(
        dns.addr,
        dir.path(),
        &config(port, "callout_defer_on_tempfail = true"),
    );
    let reply = mail_from(binary.port("smtp"), "carol@tempfail.test.example");
    assert_eq!(reply.code, 450, "{reply:?}");
    assert!(reply.text().starts_with("4.1.7 "), "{reply:?}");
    // A 4xx to RCPT is not cached: the next try asks again.
    let reply = mail_from(binary.port("smtp"), "carol@tempfail.test.example");
    assert_eq!(reply.code, 450, "{reply:?}");
    assert_eq!(servers[2].connections(), 2);
}

#[test]
fn one_callout_at_a_time_per_domain_and_the_rate_limit() {
    let dns = DnsServer::start_with(ZONE);
    // Each RCPT answer is held back, so the two sessions overlap.
    let (port, servers) = exchangers(Duration::from_millis(300));
    let dir = tempfile::tempdir().unwrap();
    let binary = start(
        dns.addr,
        dir.path(),
        &config_with_timeout(port, 5, "callout_rate_limit = 2"),
    );
    let smtp = binary.port("smtp");
    let sessions: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(move || mail_from(smtp, "alice@known.test.example")))
        .collect();
    for session in sessions {
        assert_eq!(session.join().unwrap().code, 250);
    }
    assert_eq!(
        servers[0].connections(),
        1,
        "the second session waited and took the first one's result"
    );
    // The allowance of 2 a minute: one more callout to the domain, then none.
    assert_eq!(mail_from(smtp, "mallory@known.test.example").code, 550);
    let limited = mail_from(smtp, "trent@known.test.example");
    assert_eq!(limited.code, 250, "a tempfail is accepted by default");
    assert_eq!(servers[0].connections(), 2);
}

#[test]
fn recipients_are_verified_against_callout_target_our_own_binary_among_them() {
    let dns = DnsServer::start_with(ZONE);
    let (_, servers) = start_group(&[(KNOWN, Behaviour::Knows(vec!["alice"]))], Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let target = servers[0].addr;
    let binary = start(
        dns.addr,
        dir.path(),
        &format!("recipient_callout = true\ncallout_target = \"{target}\"\n"),
    );
    let smtp = binary.port("smtp");
    assert_eq!(
        rcpt_to(smtp, "x@test.example", "alice@anywhere.example").code,
        250
    );
    let refused = rcpt_to(smtp, "x@test.example", "zed@anywhere.example");
    assert_eq!(refused.code, 550, "{refused:?}");
    assert!(refused.text().starts_with("5.1.1 "), "{refused:?}");
    assert_eq!(servers[0].connections(), 2);

    // Our own binary as the internal server: it takes any recipient, and
    // offers STARTTLS (a generated certificate), which the probe takes.
    let inner_dir = tempfile::tempdir().unwrap();
    let mut inner = Binary::spawn(
        listening_command(inner_dir.path()).args(["--metrics-listen", "127.0.0.1:0"]),
        1,
    );
    let inner_metrics = metrics_addr(&mut inner);
    let front_dir = tempfile::tempdir().unwrap();
    let mut front = start(
        dns.addr,
        front_dir.path(),
        &format!(
            "recipient_callout = true\ncallout_target = \"{}\"\n",
            inner.addr()
        ),
    );
    send_mail(
        front.port("smtp"),
        "x@test.example",
        "anyone@anywhere.example",
    );
    let lines = json_lines(&front.terminate());
    let callout = &lines[0]["rcptto"][0]["callout"];
    assert_eq!(callout["result"], "pass", "{callout}");
    assert_eq!(
        callout["host"],
        format!("[127.0.0.1]:{}", inner.addr().port())
    );
    assert!(lines[0]["mailfrom"]["callout"].is_null());
    assert_eq!(
        counter(
            inner_metrics,
            r#"net_receiver_tls_handshakes_total{version="TLSv1.3"}"#
        ),
        1,
        "the callout went over STARTTLS"
    );
    assert_eq!(
        counter(inner_metrics, r#"net_receiver_commands_total{verb="QUIT"}"#),
        1,
        "and ended with QUIT"
    );
}

#[test]
fn a_sender_callout_without_dns_servers_is_a_start_error_that_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "sender_callout = true\n").unwrap();
    let mut binary = Binary::start(
        listening_command(&dir.path().join("mail"))
            .arg("--config")
            .arg(&config),
    );
    let status = binary.wait_exit();
    assert!(!status.success());
    let log = binary.log();
    assert!(
        log.contains("sender_callout") && log.contains("needs dns_servers"),
        "{log}"
    );
}
