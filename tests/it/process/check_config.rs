//! `net-receiver check-config FILE` against real services: a chain of a real
//! Dovecot (LMTP), a real webhook endpoint and a Maildir checks out (exit 0,
//! one line per part, nothing delivered, nothing bound); a required LMTP
//! target on a port nobody listens on, or a hook nobody serves, fails with
//! the reason (exit 1); a bad key is named. An https hook or webhook is
//! reached with a TLS handshake: a certificate of a CA the config does not
//! trust fails with rustls's reason, one whose CA `tls_ca` names checks out.

use std::time::Duration;

use crate::support::common::run_bounded;
use crate::support::dovecot::Dovecot;
use crate::support::hook_server::{Answer, HookServer};
use crate::support::nats_server::Nats;
use crate::support::running::command;
use crate::support::test_ca::TestCa;
use crate::support::webhook_server::{SECRET, WebhookServer};

/// Runs `check-config` on `config`; (success, stdout, stderr).
fn check(config: &std::path::Path, flags: &[&str]) -> (bool, String, String) {
    let output = run_bounded(
        command().args(flags).arg("check-config").arg(config),
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (output.status.success(), stdout, stderr)
}

/// A loopback port nobody listens on.
fn unused_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_good_chain_checks_out_and_nothing_is_delivered() {
    let dovecot = Dovecot::start();
    let webhook = WebhookServer::start(&[]);
    let nats = Nats::single();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let listen = format!("127.0.0.1:{}", unused_port());
    let config = dir.path().join("good.toml");
    let passwd = dir.path().join("passwd");
    std::fs::write(&passwd, "joe:{PLAIN}joe-Secret-42\n").unwrap();
    std::fs::write(
        &config,
        format!(
            "listening_ports = [\"{listen}\"]\npasswd_file = \"{}\"\n\
             [[deliver]]\nkind = \"lmtp\"\naddress = \"127.0.0.1:{}\"\n\n\
             [[deliver]]\nkind = \"webhook\"\nurl = \"{}\"\nsecret = \"{SECRET}\"\n\n\
             [[deliver]]\nkind = \"maildir\"\npath = \"{}\"\nrequired = false\n\n\
             [[deliver]]\nkind = \"nats\"\nurl = \"{}\"\nsubject = \"mail.in\"\nstream = \"MAIL\"\n\n\
             [[deliver]]\nkind = \"nats\"\nurl = \"{}\"\nsubject = \"nowhere\"\nrequired = false\n",
            passwd.display(),
            dovecot.port,
            webhook.url(),
            archive.display(),
            nats.url(),
            nats.url(),
        ),
    )
    .unwrap();
    let spool = dir.path().join("spool");
    let (ok, stdout, stderr) = check(&config, &["--spool-dir", spool.to_str().unwrap()]);
    assert!(ok, "{stdout}{stderr}");
    for want in [
        format!("ok   listener  {listen} (smtp)"),
        format!(
            "ok   auth      AUTH users from {} (1 users)",
            passwd.display()
        ),
        format!(
            "ok   deliver   lmtp 127.0.0.1:{} (required): greeted, LHLO answered 250",
            dovecot.port
        ),
        format!(
            "ok   deliver   webhook {} (required): TCP connection to 127.0.0.1:{} made; \
             the spool retries after 5 s, doubling to 600 s, for 86400 s",
            webhook.url(),
            webhook.port
        ),
        format!(
            "ok   deliver   maildir {} (optional): writable",
            archive.display()
        ),
        format!(
            "ok   spool     250 once durable in the spool {}",
            spool.display()
        ),
        "ok   policy    1. the receiver's hooks".to_owned(),
        format!(
            "ok   deliver   nats {} mail.in (required): JetStream answers; stream MAIL will be created for mail.in",
            nats.url()
        ),
        format!(
            "warn deliver   nats {} nowhere (optional): no stream takes the subject nowhere",
            nats.url()
        ),
        format!("{}: no problem found", config.display()),
    ] {
        assert!(stdout.contains(&want), "{want:?} not in:\n{stdout}");
    }
    assert!(!stdout.contains("FAIL"), "{stdout}");
    assert_eq!(stdout.matches("\nwarn ").count(), 1, "{stdout}");
    // Nothing was bound, posted, delivered, or spooled.
    std::net::TcpListener::bind(&listen).expect("the listener's port is still free");
    assert!(webhook.requests().is_empty());
    assert!(dovecot.messages("alice").is_empty());
    assert_eq!(std::fs::read_dir(archive.join("new")).unwrap().count(), 0);
    assert!(!spool.exists());
}

#[test]
fn an_unreachable_target_or_hook_fails_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (lmtp_port, hook_port) = (unused_port(), unused_port());
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        format!(
            "[[hook]]\nurl = \"http://127.0.0.1:{hook_port}/hook\"\nstages = [\"rcpt_to\"]\n\n\
             [[deliver]]\nkind = \"lmtp\"\naddress = \"127.0.0.1:{lmtp_port}\"\n\n\
             [[deliver]]\nkind = \"maildir\"\npath = \"{}\"\nrequired = false\n",
            dir.path().join("archive").display()
        ),
    )
    .unwrap();
    let (ok, stdout, stderr) = check(&config, &[]);
    assert!(!ok, "{stdout}");
    for want in [
        format!(
            "FAIL deliver   lmtp 127.0.0.1:{lmtp_port} (required): cannot connect: Connection refused"
        ),
        format!(
            "FAIL policy    1. HTTP hook 127.0.0.1:{hook_port}/hook at rcpt_to: cannot connect to 127.0.0.1:{hook_port}"
        ),
        "ok   policy    2. the receiver's hooks".to_owned(),
        format!("{}: 2 problem(s) found", config.display()),
    ] {
        assert!(stdout.contains(&want), "{want:?} not in:\n{stdout}{stderr}");
    }

    std::fs::write(
        &config,
        "[[deliver]]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:1/\"\nsecret = \"not base64!\"\n",
    )
    .unwrap();
    let (ok, stdout, _) = check(&config, &[]);
    assert!(!ok);
    assert!(
        stdout.contains(
            "FAIL deliver   invalid deliver: the webhook secret is not whsec_ followed by base64"
        ),
        "{stdout}"
    );

    std::fs::write(
        &config,
        "[[deliver]]\nkind = \"webhook\"\nurl = \"http://x/\"\nsecrets = \"x\"\n",
    )
    .unwrap();
    let (ok, stdout, stderr) = check(&config, &[]);
    assert!(!ok);
    assert!(
        stderr.contains("unknown field `secrets`"),
        "{stdout}{stderr}"
    );
}

#[test]
fn an_https_hook_or_webhook_is_checked_with_a_tls_handshake() {
    let ca = TestCa::new();
    let hook = HookServer::start_tls(&ca, |_| Answer::action("continue"));
    let webhook = WebhookServer::start_tls(&[], &ca);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("https.toml");
    let hook_at = hook.addr;
    let write = |tls_ca: &str| {
        std::fs::write(
            &config,
            format!(
                "[[hook]]\nurl = \"{}\"\nstages = [\"rcpt_to\"]\n{tls_ca}\n\
                 [[deliver]]\nkind = \"webhook\"\nurl = \"{}\"\nsecret = \"{SECRET}\"\n{tls_ca}",
                hook.url(),
                webhook.url(),
            ),
        )
        .unwrap();
    };

    write("");
    let (ok, stdout, stderr) = check(&config, &[]);
    assert!(!ok, "{stdout}");
    for want in [
        format!(
            "FAIL policy    1. HTTP hook {hook_at}/hook at rcpt_to: TLS handshake with {hook_at} \
             failed: invalid peer certificate: UnknownIssuer"
        ),
        format!(
            "FAIL deliver   webhook {} (required): TLS handshake with 127.0.0.1:{} failed: \
             invalid peer certificate: UnknownIssuer",
            webhook.url(),
            webhook.port
        ),
    ] {
        assert!(stdout.contains(&want), "{want:?} not in:\n{stdout}{stderr}");
    }

    write(&format!("tls_ca = \"{}\"\n", ca.ca_file.display()));
    let (ok, stdout, stderr) = check(&config, &[]);
    assert!(ok, "{stdout}{stderr}");
    for want in [
        format!(
            "ok   policy    1. HTTP hook {hook_at}/hook at rcpt_to: TCP connection to {hook_at} \
             made, certificate verified (TLSv1_3)"
        ),
        format!(
            "ok   deliver   webhook {} (required): TCP connection to 127.0.0.1:{} made, \
             certificate verified (TLSv1_3)",
            webhook.url(),
            webhook.port
        ),
    ] {
        assert!(stdout.contains(&want), "{want:?} not in:\n{stdout}{stderr}");
    }
    assert!(hook.requests().is_empty(), "nothing was posted to the hook");
    assert!(
        webhook.requests().is_empty(),
        "nothing was posted to the webhook"
    );

    std::fs::write(dir.path().join("empty.pem"), "").unwrap();
    write(&format!(
        "tls_ca = \"{}\"\n",
        dir.path().join("empty.pem").display()
    ));
    let (ok, stdout, _) = check(&config, &[]);
    assert!(!ok);
    let want = format!(
        "FAIL policy    invalid hook.tls_ca: {} holds no PEM certificate",
        dir.path().join("empty.pem").display()
    );
    assert!(stdout.contains(&want), "{want:?} not in:\n{stdout}");
}
