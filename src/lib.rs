//! # net-receiver
//!
//! A programmable SMTP receiver: a Rust re-implementation of the Ruby gem
//! Net::Receiver (and the net-server gem under it), with the gem's interface — one
//! overridable hook per SMTP command, `password(username)`, `received(mail)` and the
//! same mail structure — and its intent carried out per the RFCs.
//!
//! ## The data path
//!
//! ```text
//! socket ──bytes──▶ server::conn ──▶ protocol::Machine ──Event──▶ session ──▶ Receiver hook
//!    ▲                                   │  ▲                                   │
//!    └────────reply bytes────────────────┘  └─────────────Reply─────────────────┘
//! ```
//!
//! * [`protocol`] is sans-IO: command parsing, replies, the session state machine and
//!   the strict DATA decoder; bytes in, events and reply bytes out, no sockets.
//! * [`Receiver`] is the hook trait; [`defaults`] holds the default of every hook as a
//!   function an override can call (the gem's `super`).
//! * [`Mail`] is the gem's "structure that comes out", as serde types.
//! * [`Server`] binds the listening ports and runs one task per connection;
//!   [`Maildir`] is the durable delivery the `net-receiver` binary uses.
//!
//! ## A first receiver
//!
//! The binary's whole server — listeners, TLS, AUTH, DNS checks, HTTP hooks,
//! the spool and the `[[deliver]]` chain — from a [`Config`], with your own
//! hooks: refuse one recipient, log every stored mail, keep the defaults for
//! the rest (each override ends in the default, the gem's `super`).
//!
//! ```no_run
//! use net_receiver::{Config, Context, DeliveryError, RcptTo, Receiver, Reply, Server, defaults};
//!
//! struct Mine;
//!
//! impl Receiver for Mine {
//!     async fn rcpt_to(&self, cx: &mut Context<'_>, to: &RcptTo) -> Reply {
//!         if to.url.eq_ignore_ascii_case("nobody@example.com") {
//!             return Reply::new(550, (5, 1, 1), "No such user here");
//!         }
//!         defaults::rcpt_to(cx, to).await
//!     }
//!
//!     async fn received(&self, cx: &mut Context<'_>) -> Result<(), DeliveryError> {
//!         defaults::received(cx).await?;
//!         println!("{}", serde_json::to_string(&*cx.mail).unwrap_or_default());
//!         Ok(())
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let config = Config::parse(
//!         r#"
//!         listening_ports = ["127.0.0.1:2525"]
//!         maildir = "Maildir"
//!         "#,
//!     )?;
//!     let server = Server::from_config(&config, Mine).await?;
//!     server.run_until(async { let _ = tokio::signal::ctrl_c().await; }).await;
//!     Ok(())
//! }
//! ```

pub mod auth;
pub mod config;
pub mod delivery;
mod digits;
pub mod dns;
pub mod lockout;
pub mod logging;
pub mod mail;
pub mod metrics;
pub mod policy;
pub mod protocol;
pub mod receiver;
pub mod server;
pub mod session;
pub mod spool;
mod timers;

pub use config::{Config, Settings};
pub use delivery::{Deliver, DeliveryError, Maildir};
pub use mail::{Address, Connect, Data, Ehlo, HeaderValue, Mail, MailFrom, RcptTo, Text};
pub use metrics::Metrics;
pub use protocol::Reply;
pub use receiver::{Context, Extensions, Receiver, Services, defaults};
pub use server::{Server, ServerError};
