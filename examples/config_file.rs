//! The shortest honest library program: a receiver built from a configuration
//! file with one call, serving exactly what `net-receiver --config FILE` serves
//! (listeners, TLS, AUTH stores, DNS checks, lockout store, Maildir, limits),
//! with two hooks of its own that log a line and then do the default (`super`).
//!
//! ```sh
//! cargo run --release --example config_file -- net-receiver.toml
//! ```

use net_receiver::{Config, Context, DeliveryError, MailFrom, Receiver, Reply, Server, defaults};

struct Logging;

impl Receiver for Logging {
    async fn mail_from(&self, cx: &mut Context<'_>, from: &MailFrom) -> Reply {
        tracing::info!(id = %cx.mail.id, from = %from.url, "MAIL FROM");
        defaults::mail_from(cx, from).await
    }

    async fn received(&self, cx: &mut Context<'_>) -> Result<(), DeliveryError> {
        tracing::info!(id = %cx.mail.id, recipients = cx.mail.rcptto.len(), "received");
        defaults::received(cx).await
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let file = std::env::args().nth(1).ok_or("usage: config_file FILE")?;
    let config = Config::load(file.as_ref())?;
    let server = Server::from_config(&config, Logging).await?;
    server.run_until(net_receiver::server::stop_signal()?).await;
    Ok(())
}
