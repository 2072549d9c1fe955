//! Callouts against a real, private Postfix (Debian `postfix`) as the MX of
//! `pf.test.example`: it knows alice (a virtual mailbox) and refuses other
//! users with 550 5.1.1; the cache is seen in the connections its log counts.

use std::net::Ipv4Addr;

use super::support::{ZONE, json_lines, mail_from, send_mail, start};
use crate::support::dns_server::DnsServer;
use crate::support::postfix::Postfix;

/// The address the zone gives `mx-pf.test.example`.
const PF: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 6);

fn free_port(ip: Ipv4Addr) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_known_and_an_unknown_sender_verified_at_postfix_and_cached() {
    let dns = DnsServer::start_with(ZONE);
    let port = free_port(PF);
    let postfix = Postfix::start(PF, port, "pf.test.example", &["alice"]);
    // The start-up check connected once.
    let baseline = postfix.wait_connections(1);
    let dir = tempfile::tempdir().unwrap();
    let mut binary = start(
        dns.addr,
        dir.path(),
        &format!("sender_callout = true\ncallout_port = {port}\n"),
    );
    let smtp = binary.port("smtp");

    send_mail(smtp, "alice@pf.test.example", "x@test.example");
    let refused = mail_from(smtp, "mallory@pf.test.example");
    assert_eq!(refused.code, 550, "{refused:?}");
    assert!(refused.text().starts_with("5.1.7 "), "{refused:?}");
    assert!(
        refused
            .text()
            .contains("User unknown in virtual mailbox table"),
        "{refused:?}"
    );
    // Both again: from the cache.
    send_mail(smtp, "alice@pf.test.example", "x@test.example");
    assert_eq!(mail_from(smtp, "mallory@pf.test.example").code, 550);
    // One more address: the only new connection; Postfix logs in order, so
    // once its line is there every earlier connection's is too.
    assert_eq!(mail_from(smtp, "trudy@pf.test.example").code, 550);
    assert_eq!(
        postfix.wait_connections(baseline + 3),
        baseline + 3,
        "{}",
        postfix.log()
    );

    let lines = json_lines(&binary.terminate());
    assert_eq!(lines.len(), 2);
    let first = &lines[0]["mailfrom"]["callout"];
    assert_eq!(first["result"], "pass", "{first}");
    assert_eq!(first["code"], 250);
    assert_eq!(
        first["host"],
        format!("mx-pf.test.example[127.0.0.6]:{port}")
    );
    assert_eq!(first["cached"], false);
    assert_eq!(lines[1]["mailfrom"]["callout"]["cached"], true);
}
