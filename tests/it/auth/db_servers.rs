//! `password_db` on a real PostgreSQL and a real MariaDB, each made fresh by the
//! test on loopback (`support/database_server.rs`), through the binary: the right
//! password gets 235 (an argon2id hash and a `{PLAIN}` secret), a wrong one or an
//! unknown user 535, and a mail after AUTH is recorded with `authenticated`; the
//! database stopped mid-session gets 454 4.7.0, and 235 again in the same session
//! once it is back; a query the database refuses or that takes no parameter stops
//! the start; a query slower than `password_db_timeout` gets 454; an AUTH
//! waiting on a locked table holds up no other session; PostgreSQL over TLS with
//! its certificate checked (an untrusted one gets 454); a bad URL stops the start,
//! naming `password_db` but never the URL's password.

use std::ffi::OsStr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::auth::{b64, hash_with_binary, json_lines, plain, start_binary};
use crate::support::common::{Client, run_bounded};
use crate::support::database_server::{DatabaseServer, Flavor};
use crate::support::running::{BIN, Binary};
use crate::support::tls::Pair;

/// AUTH in the clear (these tests are about the store, not TLS), small delays, no
/// lockout in the way.
const TOML: &str =
    "allow_plaintext_auth = true\nauth_failure_delay = 0.01\nmax_failed_msgs_per_period = 20\n";

/// The password of the database user `mail` the receiver logs in as.
const DB_PASSWORD: &str = "Db-s3cret-pw";

/// A fresh server of `flavor` with the documented `users` table, readable by the
/// user `mail`: carol's secret an argon2id hash of `carol-pw`, dave's
/// `{PLAIN}dave-pw`. Returns the server and the receiver's URL.
fn database_with_users(flavor: Flavor, carol_hash: &str) -> (DatabaseServer, String) {
    users_on(DatabaseServer::start(flavor), carol_hash)
}

/// [`database_with_users`] on `server`.
fn users_on(server: DatabaseServer, carol_hash: &str) -> (DatabaseServer, String) {
    let flavor = server.flavor();
    let table = "CREATE TABLE users (username VARCHAR(64) PRIMARY KEY, \
                 password VARCHAR(255) NOT NULL)";
    let rows = format!(
        "INSERT INTO users (username, password) VALUES ('carol', '{carol_hash}'), \
         ('dave', '{{PLAIN}}dave-pw')"
    );
    let database = match flavor {
        Flavor::Postgres => {
            server.admin(&[
                &format!("CREATE ROLE mail LOGIN PASSWORD '{DB_PASSWORD}'"),
                table,
                &rows,
                "GRANT SELECT ON users TO mail",
            ]);
            "postgres"
        }
        Flavor::MariaDb => {
            server.admin(&[
                "CREATE DATABASE maildb",
                &format!("CREATE USER 'mail'@'127.0.0.1' IDENTIFIED BY '{DB_PASSWORD}'"),
                "USE maildb",
                table,
                &rows,
                "GRANT SELECT ON maildb.users TO 'mail'@'127.0.0.1'",
            ]);
            "maildb"
        }
    };
    let url = server.url("mail", DB_PASSWORD, database);
    (server, url)
}

/// The binary with `password_db = url`, `password_db_timeout = timeout` and, if
/// given, `password_query`.
fn start_with(dir: &Path, url: &str, timeout: f64, query: Option<&str>) -> Binary {
    let mut toml = format!("{TOML}password_db = {url:?}\npassword_db_timeout = {timeout}\n");
    if let Some(query) = query {
        toml.push_str(&format!("password_query = {query:?}\n"));
    }
    let args: [&OsStr; 2] = ["--listen".as_ref(), "127.0.0.1:0".as_ref()];
    start_binary(dir, &toml, "info", &args, 1)
}

/// The binary's start with `password_query = query` must fail; its stderr.
fn start_fails(dir: &Path, url: &str, query: &str) -> String {
    let config = dir.join("bad.toml");
    let toml = format!("password_db = {url:?}\npassword_query = {query:?}\n");
    std::fs::write(&config, toml).unwrap();
    let output = run_bounded(
        std::process::Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .args(["--listen", "127.0.0.1:0", "--maildir"])
            .arg(dir.join("Maildir")),
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "{query}: {stderr}");
    stderr
}

fn auth_line(user: &str, password: &str) -> String {
    format!("AUTH PLAIN {}", plain(user, password))
}

/// A session after EHLO.
fn ehlo(port: u16) -> Client {
    let mut client = Client::connect(port);
    client.cmd("EHLO client.test", 250);
    client
}

/// One session: EHLO, AUTH PLAIN as `user`, which must get `code`; QUIT.
fn auth_plain(port: u16, user: &str, password: &str, code: u16) {
    let mut client = ehlo(port);
    client.cmd(&auth_line(user, password), code);
    client.quit();
}

/// A mail from this session, which must be accepted.
fn send_mail(client: &mut Client, subject: &str) {
    client.start_data("a@example.com", "b@example.com");
    client.send(format!("Subject: {subject}\r\n\r\nbody\r\n.\r\n").as_bytes());
    client.expect(250);
}

fn assert_temporary_failure(client: &mut Client, line: &str) {
    let reply = client.cmd(line, 454);
    assert_eq!(reply.text(), "4.7.0 Temporary authentication failure");
}

/// The whole story on one server of `flavor`.
fn password_db_on(flavor: Flavor) {
    let (mut server, url) = database_with_users(flavor, &hash_with_binary("carol-pw"));
    let dir = tempfile::tempdir().unwrap();

    // Right, wrong, unknown; then a mail after AUTH LOGIN.
    let mut binary = start_with(dir.path(), &url, 3.0, None);
    let port = binary.port("smtp");
    auth_plain(port, "carol", "carol-pw", 235);
    auth_plain(port, "dave", "dave-pw", 235);
    auth_plain(port, "carol", "dave-pw", 535);
    auth_plain(port, "dave", "carol-pw", 535);
    auth_plain(port, "erin", "carol-pw", 535);
    let mut client = ehlo(port);
    client.cmd("AUTH LOGIN", 334);
    client.cmd(&b64("carol"), 334);
    client.cmd(&b64("carol-pw"), 235);
    send_mail(&mut client, "carol");
    client.quit();

    // The database stops mid-session: 454, not 535; back, the same session logs in.
    let mut client = ehlo(port);
    client.cmd(&auth_line("dave", "wrong"), 535);
    server.stop();
    assert_temporary_failure(&mut client, &auth_line("dave", "dave-pw"));
    server.restart();
    client.cmd(&auth_line("dave", "dave-pw"), 235);
    send_mail(&mut client, "dave");
    client.quit();

    let stdout = binary.terminate();
    let log = binary.log();
    let mails = json_lines(&stdout);
    let authenticated: Vec<_> = mails.iter().map(|m| m["authenticated"].clone()).collect();
    assert_eq!(authenticated, ["carol", "dave"], "{stdout}");
    let kind = match flavor {
        Flavor::Postgres => "AUTH users from PostgreSQL postgres://mail@127.0.0.1:",
        Flavor::MariaDb => "AUTH users from MySQL/MariaDB mysql://mail@127.0.0.1:",
    };
    assert!(log.contains(kind), "{log}");
    assert_eq!(log.matches("AUTH answered 454").count(), 1, "{log}");
    assert!(!log.contains(DB_PASSWORD), "{log}");

    // An AUTH waiting on a locked table holds up no other session.
    let mut binary = start_with(dir.path(), &url, 300.0, None);
    let port = binary.port("smtp");
    let (lock, waiting) = match flavor {
        Flavor::Postgres => (
            ["BEGIN", "LOCK TABLE users IN ACCESS EXCLUSIVE MODE"],
            "SELECT count(*) FROM pg_stat_activity \
             WHERE usename = 'mail' AND wait_event_type = 'Lock'",
        ),
        Flavor::MariaDb => (
            ["USE maildb", "LOCK TABLES users WRITE"],
            "SELECT count(*) FROM information_schema.processlist \
             WHERE user = 'mail' AND state LIKE 'Waiting for table%lock'",
        ),
    };
    let held = server.hold(&lock);
    let mut waiter = ehlo(port);
    waiter.send(format!("{}\r\n", auth_line("carol", "carol-pw")).as_bytes());
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.admin_count(waiting) == 0 {
        assert!(
            Instant::now() < deadline,
            "the AUTH never waited on the lock"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut other = ehlo(port);
    send_mail(&mut other, "meanwhile");
    other.quit();
    assert_eq!(server.admin_count(waiting), 1, "the AUTH stopped waiting");
    held.close();
    waiter.expect(235);
    waiter.quit();
    let stdout = binary.terminate();
    assert_eq!(json_lines(&stdout).len(), 1, "{stdout}");

    // A query the database refuses, or with no parameter, stops the start.
    let (unknown_table, no_parameter) = match flavor {
        Flavor::Postgres => (
            "SELECT secret FROM no_such_table WHERE login = $1",
            "SELECT password FROM users",
        ),
        Flavor::MariaDb => (
            "SELECT secret FROM no_such_table WHERE login = ?",
            "SELECT password FROM users",
        ),
    };
    let stderr = start_fails(dir.path(), &url, unknown_table);
    assert!(
        stderr.contains("no_such_table") && stderr.contains("does not prepare"),
        "{stderr}"
    );
    let stderr = start_fails(dir.path(), &url, no_parameter);
    assert!(stderr.contains("exactly one parameter"), "{stderr}");
    assert!(!stderr.contains(DB_PASSWORD), "{stderr}");

    // A query slower than password_db_timeout: 454 (last: MariaDB goes on
    // sleeping after the receiver hangs up, holding the table).
    let slow = match flavor {
        Flavor::Postgres => {
            "SELECT (SELECT password FROM users WHERE username = $1) FROM pg_sleep(30)"
        }
        Flavor::MariaDb => {
            "SELECT (SELECT password FROM users WHERE username = ?) FROM (SELECT SLEEP(30)) AS pause"
        }
    };
    let mut binary = start_with(dir.path(), &url, 1.0, Some(slow));
    let mut client = ehlo(binary.port("smtp"));
    assert_temporary_failure(&mut client, &auth_line("carol", "carol-pw"));
    client.quit();
    binary.terminate();
    assert!(
        binary.log().contains("no answer within 1s"),
        "{}",
        binary.log()
    );
}

#[test]
fn password_db_on_postgresql() {
    password_db_on(Flavor::Postgres);
}

#[test]
fn password_db_on_mariadb() {
    password_db_on(Flavor::MariaDb);
}

#[test]
fn password_db_over_tls_on_postgresql() {
    let pair = Pair::for_names(&["127.0.0.1"]);
    let server =
        DatabaseServer::start_with_tls(Flavor::Postgres, Some((&pair.cert_pem, &pair.key_pem)));
    let (server, url) = users_on(server, "{PLAIN}carol-pw");
    let dir = tempfile::tempdir().unwrap();
    // The certificate checked, name (an IP address) included.
    let root = pair.cert.display();
    let url = format!("{url}?sslmode=verify-full&sslrootcert={root}");
    let mut binary = start_with(dir.path(), &url, 3.0, None);
    let port = binary.port("smtp");
    auth_plain(port, "carol", "carol-pw", 235);
    auth_plain(port, "carol", "wrong", 535);
    // The pooled connections are still open: each is TLS.
    let connections = |ssl: bool| {
        server.admin_count(&format!(
            "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
             WHERE usename = 'mail' AND ssl = {ssl}"
        ))
    };
    assert!(connections(true) >= 1);
    assert_eq!(connections(false), 0);
    binary.terminate();

    // A certificate the receiver does not trust: no connection, 454.
    let other = Pair::for_names(&["127.0.0.1"]);
    let url = url.replace(&root.to_string(), &other.cert.display().to_string());
    let mut binary = start_with(dir.path(), &url, 1.0, None);
    let mut client = ehlo(binary.port("smtp"));
    assert_temporary_failure(&mut client, &auth_line("carol", "carol-pw"));
    client.quit();
    binary.terminate();
    assert!(binary.log().contains("certificate"), "{}", binary.log());
}

#[test]
fn a_bad_password_db_url_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("postgres://mail:s3cret@[::1/mail", "password_db"),
        ("mysql://mail:s3cret@127.0.0.1:notaport/mail", "password_db"),
        ("ftp://mail:s3cret@127.0.0.1/mail", "unknown scheme"),
    ];
    for (url, expected) in cases {
        let config = dir.path().join("bad.toml");
        std::fs::write(&config, format!("password_db = {url:?}\n")).unwrap();
        let output = run_bounded(
            std::process::Command::new(BIN)
                .arg("--config")
                .arg(&config)
                .args(["--listen", "127.0.0.1:0", "--maildir"])
                .arg(dir.path().join("Maildir")),
            Duration::from_secs(20),
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{url}: {stderr}");
        assert!(stderr.contains(expected), "{url}: {stderr}");
        assert!(!stderr.contains("s3cret"), "{url}: {stderr}");
    }
}
