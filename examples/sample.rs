//! The Ruby gem's sample program (`example/test3.rb`), in Rust.
//!
//! Listens on 127.0.0.1:2000 and 127.0.0.1:2001, like the sample, with STARTTLS
//! (a self-signed certificate for `www.example.com` is generated at start-up) and
//! AUTH offered once the connection is encrypted (`auth = true`: the `password`
//! hook below is the user store). Port 2001 plays the submission port of the
//! README's override: MAIL there is refused with `556 5.7.27` unless the client
//! encrypted and authenticated as `admin@example.com` with password `secret`.
//! Accepted mail is printed (the sample's `pretty_inspect`) and then stored in the
//! Maildir `./sample-mail` by calling the default `received` — our `super`.
//! SIGTERM or Ctrl-C stops it (idle clients get 421).
//!
//! ```sh
//! cargo run --example sample
//! # port 2000: plain, 250
//! swaks -s 127.0.0.1:2000 -t abuse@example.com -f admin@example.com --ehlo example.com
//! # port 2001 without TLS and AUTH: 556 5.7.27 Traffic on port 2001 must be authenticated
//! swaks -s 127.0.0.1:2001 -t abuse@example.com -f admin@example.com --ehlo example.com
//! # port 2001 with STARTTLS and AUTH: 235, then 250
//! swaks -tls -s 127.0.0.1:2001 -t abuse@example.com -f admin@example.com --ehlo example.com \
//!       -a PLAIN -au admin@example.com -ap secret
//! ```

use std::collections::HashMap;

use net_receiver::auth::{AuthUnavailable, Password};
use net_receiver::{Config, Context, DeliveryError, MailFrom, Receiver, Reply, Server, defaults};

/// The sample's `class Receiver < Net::ReceiverCore`.
struct SampleReceiver {
    /// Stands in for the sample's `DB[:mailboxes]` lookup: plain passwords, as
    /// the sample's database held them.
    mailboxes: HashMap<String, String>,
    /// The sample's `@options[:submission_port]`.
    submission_port: u16,
}

impl Receiver for SampleReceiver {
    /// `#(4)`: the password of a user, for AUTH.
    async fn password(
        &self,
        _cx: &mut Context<'_>,
        username: &str,
    ) -> Result<Option<Password>, AuthUnavailable> {
        Ok(self.mailboxes.get(username).cloned().map(Password::Plain))
    }

    /// The README's override: refuse unauthenticated or unencrypted traffic on the
    /// submission port, else do what the default does (`super`).
    async fn mail_from(&self, cx: &mut Context<'_>, from: &MailFrom) -> Reply {
        if cx.mail.local_port == self.submission_port.to_string() {
            let port = self.submission_port;
            if cx.mail.authenticated.is_none() {
                return Reply::new(
                    556,
                    (5, 7, 27),
                    format!("Traffic on port {port} must be authenticated"),
                );
            }
            if !cx.mail.encrypted {
                return Reply::new(
                    556,
                    (5, 7, 27),
                    format!("Traffic on port {port} must be encrypted"),
                );
            }
        }
        defaults::mail_from(cx, from).await
    }

    /// `#(5)`: the finished mail structure.
    async fn received(&self, cx: &mut Context<'_>) -> Result<(), DeliveryError> {
        let pretty = serde_json::to_string_pretty(&*cx.mail).unwrap_or_default();
        println!("--> *99* {pretty}");
        defaults::received(cx).await
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    // `#(8)`: the sample's options hash.
    let config = Config {
        server_name: Some("www.example.com".to_owned()),
        listening_ports: vec!["127.0.0.1:2000".to_owned(), "127.0.0.1:2001".to_owned()],
        auth: Some(true),
        maildir: "sample-mail".into(),
        workers: 1,
        ..Config::default()
    };
    let receiver = SampleReceiver {
        mailboxes: HashMap::from([("admin@example.com".to_owned(), "secret".to_owned())]),
        submission_port: 2001,
    };
    let server = Server::from_config(&config, receiver).await?;
    eprintln!(
        "listening on {:?}; SIGTERM or ^C to stop",
        server.local_addrs()
    );
    server.run_until(net_receiver::server::stop_signal()?).await;
    Ok(())
}
