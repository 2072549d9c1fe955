//! The login rules of [`Lockout`] (see the module documentation): a guessing client
//! is refused the login, its owner elsewhere is not; a client that authenticated is
//! trusted; a login under attack delays untrusted clients; IPv6 counts per prefix.
//! Run against the memory store and a real Redis (as `redis_tests` starts it).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use super::redis_tests::RedisServer;
use super::*;

const BASE: Duration = Duration::from_millis(100);

fn net(text: &str) -> IpAddr {
    client_network(text.parse().unwrap(), 64)
}

#[test]
fn ipv6_is_counted_per_prefix_and_ipv4_per_address() {
    let cases = [
        ("192.0.2.7", 64, "192.0.2.7"),
        ("::ffff:192.0.2.7", 64, "192.0.2.7"),
        ("2001:db8::1", 64, "2001:db8::"),
        ("2001:db8::ffff:1:2:3", 64, "2001:db8::"),
        ("2001:db8:0:1::1", 64, "2001:db8:0:1::"),
        ("2001:db8:aaaa:bbbb::1", 48, "2001:db8:aaaa::"),
        ("2001:db8::1", 128, "2001:db8::1"),
        ("2001:db8::1", 200, "2001:db8::1"),
        ("2001:db8::1", 0, "::"),
        ("::1", 64, "::"),
    ];
    for (addr, bits, expected) in cases {
        let got = client_network(addr.parse().unwrap(), bits);
        assert_eq!(got, expected.parse::<IpAddr>().unwrap(), "{addr}/{bits}");
    }
    assert_eq!(
        Subject::client("2001:db8::1".parse().unwrap(), 64),
        Subject::client("2001:db8::2".parse().unwrap(), 64)
    );
}

#[test]
fn the_attack_delay_doubles_up_to_its_cap() {
    assert_eq!(login::attack_delay(BASE, 0), BASE * 2);
    assert_eq!(login::attack_delay(BASE, 1), BASE * 4);
    assert_eq!(login::attack_delay(BASE, 3), BASE * 16);
    assert_eq!(login::attack_delay(BASE, u32::MAX), MAX_AUTH_DELAY);
    assert_eq!(
        login::attack_delay(Duration::MAX, 0),
        MAX_AUTH_DELAY,
        "no overflow"
    );
}

/// The rules, with a policy of 3 failures, whatever the store.
async fn login_rules(lockout: &Lockout) {
    let (attacker, owner, other) = (net("2001:db8:bad::1"), net("192.0.2.10"), net("192.0.2.20"));
    // Two failures: nothing refused, nothing delayed.
    for _ in 0..2 {
        let failure = lockout.record_login_failure("joe", attacker).await;
        assert!(!failure.refused_from_client);
    }
    assert!(!lockout.login_refused("joe", attacker).await);
    assert_eq!(
        lockout.login_delay("joe", owner, BASE).await,
        Duration::ZERO
    );
    // The third: the attacker's network is refused joe, from any address in its /64.
    let failure = lockout.record_login_failure("joe", attacker).await;
    assert_eq!(
        failure,
        LoginFailure {
            refused_from_client: true,
            login_failures: 3
        }
    );
    assert!(lockout.login_refused("joe", net("2001:db8:bad::99")).await);
    assert!(!lockout.login_refused("ann", attacker).await, "only joe");
    // The owner on a clean network is not refused (CWE-645), only delayed.
    assert!(!lockout.login_refused("joe", owner).await);
    assert_eq!(lockout.login_delay("joe", owner, BASE).await, BASE * 2);
    lockout.record_login_success("joe", owner).await;
    // Trusted now: never delayed, and its own typos never lock it out of joe.
    assert_eq!(
        lockout.login_delay("joe", owner, BASE).await,
        Duration::ZERO
    );
    for _ in 0..5 {
        let failure = lockout.record_login_failure("joe", owner).await;
        assert!(!failure.refused_from_client);
    }
    assert!(!lockout.login_refused("joe", owner).await);
    // Everyone else waits longer with every failure (3 + 5 = 8 so far).
    assert_eq!(lockout.login_delay("joe", other, BASE).await, BASE * 64);
    assert!(!lockout.login_refused("joe", other).await);
    // Client networks: two addresses of one /64 share one count.
    let first = Subject::client("2001:db8:1::1".parse().unwrap(), 64);
    let second = Subject::client("2001:db8:1::2".parse().unwrap(), 64);
    lockout.record_failure(&first).await;
    lockout.record_failure(&first).await;
    assert!(lockout.record_failure(&second).await.locked);
}

#[tokio::test]
async fn login_rules_in_memory() {
    let lockout = Lockout::in_memory(Policy::new(3, Duration::from_secs(600)));
    login_rules(&lockout).await;
}

#[tokio::test]
async fn login_rules_in_redis() {
    let server = RedisServer::start();
    let store = RedisStore::new(&server.url(), Duration::from_secs(2)).unwrap();
    let lockout = Lockout::new(Arc::new(store), Policy::new(3, Duration::from_secs(600)));
    login_rules(&lockout).await;
    assert_eq!(lockout.store_errors(), 0);
}

#[tokio::test]
async fn max_failures_zero_refuses_and_delays_nothing() {
    let lockout = Lockout::in_memory(Policy::new(0, Duration::from_secs(600)));
    let client = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    for _ in 0..10 {
        let failure = lockout.record_login_failure("joe", client).await;
        assert!(!failure.refused_from_client);
        assert!(
            !lockout
                .record_failure(&Subject::client(client, 64))
                .await
                .locked
        );
    }
    assert!(!lockout.login_refused("joe", client).await);
    assert_eq!(
        lockout.login_delay("joe", client, BASE).await,
        Duration::ZERO
    );
}
