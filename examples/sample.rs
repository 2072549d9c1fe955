//! The Ruby gem's sample program (`example/test3.rb`), in Rust.
//!
//! Listens on 127.0.0.1:2000 and 127.0.0.1:2001, like the sample. Port 2001 plays
//! the submission port of the README's override example: MAIL there is refused
//! unless the client authenticated and encrypted. Accepted mail is printed
//! (the sample's `pretty_inspect`) and then stored in the Maildir `./sample-mail`
//! by calling the default `received` — our `super`.
//!
//! ```sh
//! cargo run --example sample
//! swaks -s 127.0.0.1:2000 -t abuse@example.com -f admin@example.com --ehlo example.com
//! ```

use std::collections::HashMap;

use net_receiver::{
    Config, Context, DeliveryError, MailFrom, Maildir, Receiver, Reply, Server, defaults,
};

/// The sample's `class Receiver < Net::ReceiverCore`.
struct SampleReceiver {
    /// Stands in for the sample's `DB[:mailboxes]` lookup.
    mailboxes: HashMap<String, String>,
    submission_port: String,
}

impl Receiver for SampleReceiver {
    /// `#(4)`: the stored secret of a user, for AUTH.
    async fn password(&self, _cx: &mut Context<'_>, username: &str) -> Option<String> {
        self.mailboxes.get(username).cloned()
    }

    /// The README's override: refuse unauthenticated or unencrypted traffic on the
    /// submission port, else do what the default does (`super`).
    async fn mail_from(&self, cx: &mut Context<'_>, from: &MailFrom) -> Reply {
        if cx.mail.local_port == self.submission_port {
            if cx.mail.authenticated.is_none() {
                return Reply::new(
                    556,
                    (5, 7, 27),
                    format!(
                        "Traffic on port {} must be authenticated",
                        self.submission_port
                    ),
                );
            }
            if !cx.mail.encrypted {
                return Reply::new(
                    556,
                    (5, 7, 27),
                    format!("Traffic on port {} must be encrypted", self.submission_port),
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
        ..Config::default()
    };
    let receiver = SampleReceiver {
        mailboxes: HashMap::from([("admin@example.com".to_owned(), "{PLAIN}secret".to_owned())]),
        submission_port: "2001".to_owned(),
    };
    let server = Server::bind(&config.listeners()?, config.settings()?, receiver)
        .await?
        .with_delivery(Maildir::open("sample-mail")?);
    eprintln!("listening on {:?}; ^C to stop", server.local_addrs());
    server
        .run_until(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    Ok(())
}
