//! The callout cache shared through Redis (`callout_cache = "redis://…"`):
//! two receivers, one exchanger connection between them.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::support::{ZONE, json_lines, mail_from, send_mail, start};
use crate::support::dns_server::DnsServer;
use crate::support::exchanger::{Behaviour, start_group};
use crate::support::redis_server::RedisServer;

#[test]
fn a_second_receiver_takes_the_first_ones_results_from_redis() {
    let dns = DnsServer::start_with(ZONE);
    let redis = RedisServer::start();
    let (port, servers) = start_group(
        &[(Ipv4Addr::new(127, 0, 0, 2), Behaviour::Knows(vec!["alice"]))],
        Duration::ZERO,
    );
    let config = format!(
        "sender_callout = true\ncallout_port = {port}\ncallout_cache = \"{}\"\n",
        redis.url()
    );
    let first_dir = tempfile::tempdir().unwrap();
    let second_dir = tempfile::tempdir().unwrap();
    let first = start(dns.addr, first_dir.path(), &config);
    let mut second = start(dns.addr, second_dir.path(), &config);

    send_mail(
        first.port("smtp"),
        "alice@known.test.example",
        "x@test.example",
    );
    assert_eq!(
        mail_from(first.port("smtp"), "zed@known.test.example").code,
        550
    );
    assert_eq!(servers[0].connections(), 2);
    let kept = redis
        .query("GET net-receiver:callout:mx|alice@known.test.example")
        .expect("the pass is in Redis");
    assert!(kept.contains("\"pass\""), "{kept}");
    let ttl: i64 = redis
        .query("TTL net-receiver:callout:mx|zed@known.test.example")
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3 * 3600).contains(&ttl), "negative TTL {ttl}");

    send_mail(
        second.port("smtp"),
        "alice@known.test.example",
        "x@test.example",
    );
    let refused = mail_from(second.port("smtp"), "zed@known.test.example");
    assert_eq!(refused.code, 550, "{refused:?}");
    assert!(refused.text().starts_with("5.1.7 "), "{refused:?}");
    assert_eq!(
        servers[0].connections(),
        2,
        "the second receiver asked Redis only"
    );
    let lines = json_lines(&second.terminate());
    assert_eq!(lines[0]["mailfrom"]["callout"]["result"], "pass");
    assert_eq!(lines[0]["mailfrom"]["callout"]["cached"], true);
}

#[test]
fn a_dead_redis_leaves_the_memory_cache() {
    let dns = DnsServer::start_with(ZONE);
    let mut redis = RedisServer::start();
    let url = redis.url();
    redis.stop();
    let (port, servers) = start_group(
        &[(Ipv4Addr::new(127, 0, 0, 2), Behaviour::Knows(vec!["alice"]))],
        Duration::ZERO,
    );
    let dir = tempfile::tempdir().unwrap();
    let binary = start(
        dns.addr,
        dir.path(),
        &format!("sender_callout = true\ncallout_port = {port}\ncallout_cache = \"{url}\"\n"),
    );
    for _ in 0..2 {
        assert_eq!(
            mail_from(binary.port("smtp"), "alice@known.test.example").code,
            250
        );
        assert_eq!(
            mail_from(binary.port("smtp"), "zed@known.test.example").code,
            550
        );
    }
    assert_eq!(servers[0].connections(), 2);
    assert!(
        binary.log().contains("callout cache: Redis failed"),
        "{}",
        binary.log()
    );
}
