//! Helpers for the AUTH and lockout tests: an in-process server whose password
//! store and lockout the test chooses, a receiver with a few `{PLAIN}` users (the
//! seed's `password` hook) that refuses chosen senders and recipients, a raw client
//! whose socket is bound to any loopback address (127.0.0.2, ...) before it
//! connects, SASL PLAIN/LOGIN encodings, the real `net-receiver hash-password`, and
//! the real binary started with a config file.

use std::ffi::OsStr;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use net_receiver::auth::PasswordLookup;
use net_receiver::config::{ListenerMode, ListenerSpec};
use net_receiver::lockout::Lockout;
use net_receiver::server::TlsHandle;
use net_receiver::{Config, Context, DeliveryError, Mail, MailFrom, RcptTo, Receiver, defaults};

use crate::support::common::{Client, TestServer, config, finish_bounded};
use crate::support::running::{BIN, Binary, command};

/// The users of [`Users`]: name and password (stored as `{PLAIN}password`).
pub(crate) const USERS: [(&str, &str); 2] = [("joe", "joe-Secret-42"), ("ann", "ann-Secret-77")];

/// The 535 every failed AUTH gets, whatever the reason (no oracle).
pub(crate) const BAD_CREDENTIALS: &str = "5.7.8 Authentication credentials invalid";

/// base64 of `text`.
pub(crate) fn b64(text: &str) -> String {
    STANDARD.encode(text)
}

/// The PLAIN response (RFC 4616) for `user` / `password`, base64: `\0user\0password`.
pub(crate) fn plain(user: &str, password: &str) -> String {
    b64(&format!("\0{user}\0{password}"))
}

/// The in-process test configuration with AUTH on: failed AUTHs answered after
/// `auth_failure_delay` = 0.05 s, limits as the defaults otherwise.
pub(crate) fn auth_config() -> Config {
    Config {
        auth: Some(true),
        auth_failure_delay: 0.05,
        ..config()
    }
}

/// [`auth_config`] with AUTH offered in the clear too.
pub(crate) fn plaintext_auth_config() -> Config {
    Config {
        allow_plaintext_auth: true,
        ..auth_config()
    }
}

/// The seed's `password(username)` hook over [`USERS`]; refuses MAIL from
/// `reject@…` (550), RCPT to `reject@…` (550) and DATA from `nodata@…` (554), each
/// counted toward the lockout (`cx.count_failure()`); keeps a copy of every delivered
/// mail.
#[derive(Clone, Default)]
pub(crate) struct Users(Arc<Mutex<Vec<Mail>>>);

impl Users {
    /// The mails delivered so far.
    pub(crate) fn mails(&self) -> Vec<Mail> {
        self.0.lock().expect("mails").clone()
    }
}

fn local_part_is(address: &net_receiver::Address, local: &str) -> bool {
    address.local_part.as_deref() == Some(local)
}

impl Receiver for Users {
    async fn password(
        &self,
        _cx: &mut Context<'_>,
        username: &str,
    ) -> Result<Option<net_receiver::auth::Password>, net_receiver::auth::AuthUnavailable> {
        Ok(USERS
            .iter()
            .find(|(user, _)| *user == username)
            .map(|(_, password)| net_receiver::auth::Password::Plain((*password).to_owned())))
    }

    async fn mail_from(&self, cx: &mut Context<'_>, from: &MailFrom) -> net_receiver::Reply {
        if local_part_is(&from.address, "reject") {
            cx.count_failure();
            return net_receiver::Reply::new(550, (5, 7, 1), "Sender refused");
        }
        defaults::mail_from(cx, from).await
    }

    async fn rcpt_to(&self, cx: &mut Context<'_>, to: &RcptTo) -> net_receiver::Reply {
        if local_part_is(to, "reject") {
            cx.count_failure();
            return net_receiver::Reply::new(550, (5, 1, 1), "No such user");
        }
        defaults::rcpt_to(cx, to).await
    }

    async fn data(&self, cx: &mut Context<'_>) -> net_receiver::Reply {
        let from = cx.mail.mailfrom.as_ref().map(|m| &m.address);
        if from.is_some_and(|a| local_part_is(a, "nodata")) {
            cx.count_failure();
            return net_receiver::Reply::new(554, (5, 7, 1), "Not from you");
        }
        defaults::data(cx).await
    }

    async fn received(&self, cx: &mut Context<'_>) -> Result<(), DeliveryError> {
        defaults::received(cx).await?;
        self.0.lock().expect("mails").push(cx.mail.clone());
        Ok(())
    }
}

/// What an [`auth_server`] is built with besides the configuration.
#[derive(Default)]
pub(crate) struct Extras {
    /// Listener modes (default: one smtp listener).
    pub(crate) modes: Vec<ListenerMode>,
    /// Certificate for STARTTLS / smtps.
    pub(crate) tls: Option<Arc<TlsHandle>>,
    /// The lockout (default: the server's own in-memory one from the settings).
    pub(crate) lockout: Option<Arc<Lockout>>,
    /// A password store for `defaults::password`.
    pub(crate) passwords: Option<Arc<dyn PasswordLookup>>,
}

/// An in-process [`TestServer`] on 127.0.0.1: `receiver` with `config` and
/// `extras`.
pub(crate) fn auth_server<R: Receiver>(config: Config, receiver: R, extras: Extras) -> TestServer {
    let modes = if extras.modes.is_empty() {
        vec![ListenerMode::Smtp]
    } else {
        extras.modes
    };
    let specs: Vec<ListenerSpec> = modes
        .iter()
        .map(|&mode| ListenerSpec::new(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), mode))
        .collect();
    TestServer::start_custom(config, receiver, &specs, |mut server| {
        if let Some(tls) = extras.tls {
            server = server.with_tls(tls);
        }
        if let Some(lockout) = extras.lockout {
            server = server.with_lockout(Some(lockout));
        }
        if let Some(passwords) = extras.passwords {
            server = server.with_passwords(passwords);
        }
        server
    })
}

/// A raw SMTP [`Client`] whose socket was bound to `source` (e.g. 127.0.0.2: Linux
/// routes all of 127/8 to lo) before connecting to `127.0.0.1:port`; the greeting
/// is read, whatever it is.
pub(crate) fn connect_from(source: Ipv4Addr, port: u16) -> Client {
    assert!(source.is_loopback(), "{source}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("runtime");
    let stream = runtime
        .block_on(async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::from((source, 0)))?;
            let stream = socket
                .connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
                .await?;
            stream.into_std()
        })
        .expect("connect from another loopback address");
    stream.set_nonblocking(false).expect("blocking");
    assert_eq!(stream.local_addr().expect("local").ip(), IpAddr::V4(source));
    let mut client = Client::from_stream(stream);
    client.greeting = client.reply();
    client
}

/// Runs the real `net-receiver hash-password` with `password` on stdin (not a
/// terminal) and returns the hash it prints.
pub(crate) fn hash_with_binary(password: &str) -> String {
    let mut child = Command::new(BIN)
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run net-receiver hash-password");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(format!("{password}\n").as_bytes())
        .expect("write the password");
    drop(stdin);
    let output = finish_bounded(child, "hash-password", Duration::from_secs(20));
    let status = output.status;
    let out = String::from_utf8(output.stdout).expect("stdout");
    let err = String::from_utf8(output.stderr).expect("stderr");
    assert!(status.success(), "hash-password: {status} {out} {err}");
    assert!(!out.contains(password) && !err.contains(password), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out:?}");
    assert!(lines[0].starts_with("$argon2id$"), "{out:?}");
    lines[0].to_owned()
}

/// Writes `text` to `dir/name` and returns the path.
pub(crate) fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path
}

/// The real binary with `--config dir/config.toml` (holding `toml`, which may
/// say `quiet = true`), the server name `mx.test`, the Maildir `dir/Maildir`,
/// `RUST_LOG` = `log_level`, and `extra` flags (listen flags among them:
/// `listeners` of them).
pub(crate) fn start_binary(
    dir: &Path,
    toml: &str,
    log_level: &str,
    extra: &[&OsStr],
    listeners: usize,
) -> Binary {
    let config = write_file(dir, "config.toml", toml);
    let mut command = command();
    command
        .env("RUST_LOG", log_level)
        .arg("--config")
        .arg(config)
        .args(["--server-name", "mx.test", "--maildir"])
        .arg(dir.join("Maildir"))
        .args(extra);
    Binary::spawn(&mut command, listeners)
}

/// The JSON lines a binary printed, one value each.
pub(crate) fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}
