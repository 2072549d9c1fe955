//! The spool mode of the real binary (`--spool-dir`, issue 18): concurrent
//! clients all get 250 and every message lands in the Maildir exactly once; a
//! SIGKILL right after the last 250, with a torn append at the spool's tail,
//! loses nothing on restart (repeats allowed, recognisable by their mail id).

use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::common::{Client, files_in, received_id, split_stored};
use crate::support::running::{Binary, listening_command};

/// The header that carries each message's token.
const TOKEN: &str = "X-Spool-Token: ";

/// Sends `count` messages on one session, tokens `prefix-0`…; asserts each 250
/// and returns (token, mail id from the 250 text).
fn send_all(port: u16, prefix: &str, count: usize) -> Vec<(String, String)> {
    let mut client = Client::ehlo(port);
    let mut acked = Vec::new();
    for i in 0..count {
        let token = format!("{prefix}-{i}");
        client.cmd("MAIL FROM:<sender@client.test>", 250);
        client.cmd("RCPT TO:<inbox@bin.test>", 250);
        client.cmd("DATA", 354);
        client.send(
            format!("Subject: spool {token}\r\n{TOKEN}{token}\r\n\r\nbody {token}\r\n.\r\n")
                .as_bytes(),
        );
        let reply = client.expect(250);
        acked.push((token, reply.text().to_owned()));
    }
    client.cmd("QUIT", 221);
    acked
}

/// token → how many files in `maildir/new` carry it, with their mail ids.
fn stored_tokens(maildir: &Path) -> HashMap<String, Vec<String>> {
    let mut found: HashMap<String, Vec<String>> = HashMap::new();
    for path in files_in(&maildir.join("new")) {
        let file = std::fs::read(&path).expect("read stored mail");
        let stored = split_stored(&file);
        let text = String::from_utf8_lossy(stored.body);
        let token = text
            .lines()
            .find_map(|l| l.strip_prefix(TOKEN))
            .unwrap_or_else(|| panic!("no token in {}", path.display()))
            .to_owned();
        found
            .entry(token)
            .or_default()
            .push(received_id(&stored.received));
    }
    found
}

/// Waits (at most 20 s) until `maildir/new` holds at least `count` files.
fn wait_for_files(maildir: &Path, count: usize, binary: &Binary) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while files_in(&maildir.join("new")).len() < count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} in new/; stderr:\n{}",
            files_in(&maildir.join("new")).len(),
            binary.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn spool_binary(maildir: &Path, spool: &Path) -> Binary {
    let mut command = listening_command(maildir);
    command.arg("--quiet").arg("--spool-dir").arg(spool);
    command.env("RUST_LOG", "info");
    Binary::spawn(&mut command, 1)
}

#[test]
fn concurrent_clients_all_land_in_the_maildir_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (maildir, spool) = (dir.path().join("mail"), dir.path().join("spool"));
    let mut binary = spool_binary(&maildir, &spool);
    let port = binary.addr().port();
    let clients: Vec<_> = (0..10)
        .map(|c| std::thread::spawn(move || send_all(port, &format!("c{c}"), 20)))
        .collect();
    let acked: Vec<(String, String)> = clients
        .into_iter()
        .flat_map(|c| c.join().expect("client"))
        .collect();
    assert_eq!(acked.len(), 200);
    wait_for_files(&maildir, 200, &binary);
    // Give a stray duplicate the chance to show up before counting.
    std::thread::sleep(Duration::from_millis(200));
    let stored = stored_tokens(&maildir);
    assert_eq!(stored.len(), 200, "every token stored");
    for (token, reply) in &acked {
        let ids = &stored[token];
        assert_eq!(ids.len(), 1, "{token} stored {} times", ids.len());
        assert!(reply.contains(&ids[0]), "250 {reply:?} names id {}", ids[0]);
    }
    assert!(files_in(&maildir.join("tmp")).is_empty());
    binary.terminate();
    let log = binary.log();
    assert!(log.contains("through the spool"), "{log}");
    let stats = log.lines().find(|l| l.contains("messages per fdatasync"));
    eprintln!(
        "{}",
        stats.unwrap_or_else(|| panic!("no flush statistics: {log}"))
    );
    assert!(!log.contains("ERROR"), "{log}");
}

#[test]
fn sigkill_after_the_250s_and_a_torn_tail_lose_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (maildir, spool) = (dir.path().join("mail"), dir.path().join("spool"));
    let mut binary = spool_binary(&maildir, &spool);
    let port = binary.addr().port();
    let clients: Vec<_> = (0..4)
        .map(|c| std::thread::spawn(move || send_all(port, &format!("k{c}"), 25)))
        .collect();
    let acked: Vec<(String, String)> = clients
        .into_iter()
        .flat_map(|c| c.join().expect("client"))
        .collect();
    binary.stop();
    // A crash in the middle of an append: half a record at the newest tail.
    let newest = files_in(&spool)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .max()
        .expect("a segment");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&newest)
        .expect("open segment")
        .write_all(b"NRS1\x01\xff\x00\x00\x00torn")
        .expect("tear");
    let mut binary = spool_binary(&maildir, &spool);
    wait_for_files(&maildir, acked.len(), &binary);
    std::thread::sleep(Duration::from_millis(300));
    let stored = stored_tokens(&maildir);
    let mut repeated = 0;
    for (token, reply) in &acked {
        let ids = stored
            .get(token)
            .unwrap_or_else(|| panic!("{token} lost; stderr:\n{}", binary.log()));
        assert!(ids.iter().all(|id| reply.contains(id)), "{token}: {ids:?}");
        repeated += ids.len() - 1;
    }
    assert_eq!(stored.len(), acked.len(), "nothing unknown stored");
    eprintln!(
        "{} acknowledged, {repeated} repeated after the SIGKILL",
        acked.len()
    );
    let log = binary.log();
    assert!(log.contains("torn tail"), "{log}");
    binary.terminate();
}

#[test]
fn maildir_down_250_from_the_spool_then_sigkill_and_redelivery() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (maildir, spool) = (dir.path().join("mail"), dir.path().join("spool"));
    let mut binary = spool_binary(&maildir, &spool);
    // The Maildir breaks: `new` becomes a plain file (root ignores modes).
    let new = maildir.join("new");
    let away = maildir.join("new.away");
    std::fs::rename(&new, &away).expect("move new/ away");
    std::fs::write(&new, b"not a directory").expect("block new/");
    let acked = send_all(binary.addr().port(), "down", 20);
    binary.wait_for_lines("retrying in", 1);
    binary.stop();
    std::fs::remove_file(&new).expect("unblock");
    std::fs::rename(&away, &new).expect("restore new/");
    assert!(files_in(&new).is_empty(), "nothing reached the Maildir");
    let mut binary = spool_binary(&maildir, &spool);
    binary.wait_for_lines("not yet delivered", 1);
    wait_for_files(&maildir, acked.len(), &binary);
    std::thread::sleep(Duration::from_millis(300));
    let stored = stored_tokens(&maildir);
    for (token, reply) in &acked {
        let ids = stored.get(token).unwrap_or_else(|| panic!("{token} lost"));
        assert_eq!(ids.len(), 1, "{token}: {ids:?}");
        assert!(reply.contains(&ids[0]), "{reply:?} vs {ids:?}");
    }
    binary.terminate();
}
