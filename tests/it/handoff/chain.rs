//! `[[deliver]]` tables in the binary's config: LMTP to a real Dovecot as the
//! required target and an archive Maildir as an optional one; what a wrong
//! chain says at start-up.

use std::time::Duration;

use crate::support::common::{expect_messages, run_bounded, swaks_path};
use crate::support::dovecot::Dovecot;
use crate::support::running::{Binary, command, listening_command};

fn swaks(port: u16, to: &str) -> String {
    let output = run_bounded(
        std::process::Command::new(swaks_path())
            .args(["--server", &format!("127.0.0.1:{port}")])
            .args(["--from", "sender@example.org", "--to", to])
            .args(["--body", "through the chain"]),
        Duration::from_secs(30),
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn lmtp_required_and_an_optional_archive_maildir() {
    let dovecot = Dovecot::start();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let config = dir.path().join("chain.toml");
    std::fs::write(
        &config,
        format!(
            "[[deliver]]\nkind = \"lmtp\"\naddress = \"127.0.0.1:{}\"\n\n\
             [[deliver]]\nkind = \"maildir\"\npath = \"{}\"\nrequired = false\n",
            dovecot.port,
            archive.display()
        ),
    )
    .unwrap();
    let unused = dir.path().join("unused-maildir");
    let mut running = Binary::spawn(listening_command(&unused).arg("--config").arg(&config), 1);
    let log = running.log();
    assert!(
        log.contains(&format!(
            "delivering to lmtp 127.0.0.1:{}, maildir",
            dovecot.port
        )),
        "{log}"
    );
    let port = running.addr().port();
    let out = swaks(port, "alice@example.com");
    assert!(out.contains("<-  250 2.0.0 OK id="), "{out}");
    let stored = dovecot.messages("alice");
    assert_eq!(stored.len(), 1, "{}", dovecot.log());
    assert!(String::from_utf8_lossy(&stored[0]).contains("through the chain"));
    assert_eq!(expect_messages(&archive, 1).len(), 1);
    assert!(
        !unused.join("new").exists() || std::fs::read_dir(unused.join("new")).unwrap().count() == 0
    );

    // Dovecot refuses an unknown user for good: the message is refused (no
    // spool, no bounce), and the archive copy does not change the answer.
    let out = swaks(port, "nobody@example.com");
    assert!(out.contains("<** 554 5.3.0"), "{out}");
    running.terminate();
}

#[test]
fn a_wrong_chain_is_refused_at_start_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    for (chain, want) in [
        (
            "[[deliver]]\nkind = \"lmtp\"\naddress = \"localhost\"\n",
            "is not an LMTP address",
        ),
        (
            "[[deliver]]\nkind = \"maildir\"\npath = \"m\"\nrequired = false\n",
            "at least one required target",
        ),
        ("[[deliver]]\nkind = \"smtp\"\n", "unknown variant `smtp`"),
        (
            "[[deliver]]\nkind = \"lmtp\"\naddress = \"127.0.0.1:24\"\npath = \"x\"\n",
            "unknown field `path`",
        ),
    ] {
        let config = dir.path().join("bad.toml");
        std::fs::write(&config, chain).unwrap();
        let output = run_bounded(
            command()
                .args(["--listen", "127.0.0.1:0", "--config"])
                .arg(&config),
            Duration::from_secs(10),
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{chain}: started anyway");
        assert!(stderr.contains(want), "{chain}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
