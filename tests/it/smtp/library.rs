//! The library as a program embeds it: a TOML file (generated certificate, a
//! passwd file, a loopback DNS server, a Redis lockout store, a Maildir) and a
//! `Receiver` that overrides two hooks, started with the one call
//! `Server::from_config`, then driven by swaks like the binary: plain, STARTTLS,
//! implicit TLS and AUTH, with the DNS findings, the listener and the lockout's
//! Redis keys checked.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use net_receiver::{Config, Context, DeliveryError, Mail, MailFrom, Receiver, Reply, Server};

use crate::support::common::{run_bounded, swaks_path};
use crate::support::dns_server::DnsServer;
use crate::support::redis_server::RedisServer;

/// Refuses MAIL from `blocked@…`; keeps each received mail, then stores it.
#[derive(Clone, Default)]
struct TwoHooks(Arc<Mutex<Vec<Mail>>>);

impl Receiver for TwoHooks {
    async fn mail_from(&self, cx: &mut Context<'_>, from: &MailFrom) -> Reply {
        if from.local_part.as_deref() == Some("blocked") {
            return Reply::new(550, (5, 7, 1), "Sender refused by the test");
        }
        net_receiver::defaults::mail_from(cx, from).await
    }

    async fn received(&self, cx: &mut Context<'_>) -> Result<(), DeliveryError> {
        let stored = net_receiver::defaults::received(cx).await;
        self.0.lock().expect("mails").push(cx.mail.clone());
        stored
    }
}

fn swaks(server: &str, args: &[&str]) -> String {
    let output = run_bounded(
        std::process::Command::new(swaks_path())
            .args(["--server", server, "--from", "alice@example.com"])
            .args(["--to", "bob@example.com", "--helo", "client.test"])
            .args(["--timeout", "10"])
            .args(args),
        Duration::from_secs(30),
    );
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

#[test]
fn from_config_serves_what_the_binary_serves() {
    let dir = tempfile::tempdir().unwrap();
    let dns = DnsServer::start();
    let redis = RedisServer::start();
    let passwd = dir.path().join("passwd");
    let hash = net_receiver::auth::hash_password("S3cret-Horse").unwrap();
    std::fs::write(&passwd, format!("alice@example.com:{hash}\n")).unwrap();
    let maildir = dir.path().join("Maildir");
    let toml = format!(
        r#"
server_name = "mx.test"
listening_ports = ["127.0.0.1:0"]
passwd_file = "{passwd}"
dns_servers = ["{dns}"]
lockout_store = "{redis}"
maildir = "{maildir}"
auth_failure_delay = 0.01
workers = 1
[[listener]]
address = "127.0.0.1:0"
mode = "smtps"
"#,
        passwd = passwd.display(),
        dns = dns.addr,
        redis = redis.url(),
        maildir = maildir.display(),
    );
    let file = dir.path().join("receiver.toml");
    std::fs::write(&file, toml).unwrap();
    let config = Config::load(&file).expect("the file loads");

    let receiver = TwoHooks::default();
    let mails = Arc::clone(&receiver.0);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (addrs_tx, addrs_rx) = std::sync::mpsc::channel();
    let server_thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let server = Server::from_config(&config, receiver)
                .await
                .expect("from_config");
            addrs_tx.send(server.local_addrs()).unwrap();
            server
                .run_until(async {
                    let _ = stopped.await;
                })
                .await;
        });
    });
    let addrs = addrs_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("listening");
    let (smtp, smtps) = (addrs[0].to_string(), addrs[1].to_string());

    let plain = swaks(&smtp, &[]);
    assert!(plain.contains("<-  250 2.0.0 OK id="), "{plain}");
    let refused = swaks(&smtp, &["--from", "blocked@example.com"]);
    assert!(
        refused.contains("550 5.7.1 Sender refused by the test"),
        "{refused}"
    );
    // AUTH is offered only once encrypted: with STARTTLS and with implicit TLS.
    let no_tls_auth = swaks(
        &smtp,
        &["-a", "PLAIN", "-au", "alice@example.com", "-ap", "x"],
    );
    assert!(
        no_tls_auth.contains("Host did not advertise authentication"),
        "{no_tls_auth}"
    );
    let auth = [
        "-a",
        "PLAIN",
        "-au",
        "alice@example.com",
        "-ap",
        "S3cret-Horse",
    ];
    let starttls = swaks(&smtp, &[&["--tls"][..], &auth[..]].concat());
    assert!(starttls.contains("235 2.7.0"), "{starttls}");
    assert!(starttls.contains("<~  250 2.0.0 OK id="), "{starttls}");
    let implicit = swaks(&smtps, &[&["--tlsc"][..], &auth[..]].concat());
    assert!(implicit.contains("<~  250 2.0.0 OK id="), "{implicit}");
    // A wrong password is counted in the Redis store.
    let wrong = swaks(
        &smtp,
        &[
            "--tls",
            "-a",
            "PLAIN",
            "-au",
            "alice@example.com",
            "-ap",
            "no",
        ],
    );
    assert!(wrong.contains("535 5.7.8"), "{wrong}");
    let keys: u64 = redis
        .query("DBSIZE")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(keys > 0, "the failed AUTH left no key in Redis");

    let _ = stop.send(());
    server_thread.join().unwrap();
    let mails = mails.lock().unwrap().clone();
    assert_eq!(mails.len(), 3, "plain, STARTTLS and implicit TLS");
    assert_eq!(std::fs::read_dir(maildir.join("new")).unwrap().count(), 3);
    let modes: Vec<_> = mails
        .iter()
        .map(|m| {
            m.listener
                .as_ref()
                .map(|l| l.mode.clone())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(modes, ["smtp", "smtp", "smtps"]);
    assert_eq!(mails[0].authenticated, None);
    assert!(!mails[0].encrypted);
    for mail in &mails[1..] {
        assert_eq!(mail.authenticated.as_deref(), Some("alice@example.com"));
        assert!(mail.encrypted);
    }
    for mail in &mails {
        assert!(mail.accepted && mail.delivered == Some(true), "{mail:?}");
        // The DNS server was asked: iprev of 127.0.0.1 has a result.
        assert!(
            mail.connect.iprev.is_some(),
            "no DNS findings: {:?}",
            mail.connect
        );
    }
}
