//! Policy layers: checks that run at each SMTP stage *before* the user's
//! [`Receiver`](crate::Receiver) hook of that stage, each a value behind the one
//! [`Policy`] trait, never code wired into the session.
//!
//! The order is fixed and documented: built-in checks first (the DNS checks,
//! [`DnsChecks`]; sender/recipient callouts will join here), then HTTP stage hooks,
//! then milters, then the user's `Receiver`. At each stage the layers run in that
//! order; a layer records what it found in the mail structure (the seed's keys and
//! new keys) and answers [`Verdict::Continue`], or refuses with a reply, and the
//! first refusal wins: later layers and the `Receiver` hook of that stage are not
//! called. A new kind of policy is a new module here implementing [`Policy`], added
//! to the server's list ([`Server::with_policy`](crate::Server::with_policy)).
//!
//! The session is the only caller. A server without layers costs nothing per
//! stage; each call of a layer boxes its future.

mod dns;

use std::future::Future;
use std::pin::Pin;

pub use dns::DnsChecks;

use crate::mail::{Ehlo, MailFrom, RcptTo};
use crate::protocol::Reply;
use crate::receiver::Context;

/// A layer's answer at one stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Go on: the next layer, then the `Receiver` hook.
    Continue,
    /// Refuse with this reply (4xx/5xx; one made with [`Reply::and_close`]
    /// closes the connection); nothing after this layer runs for the stage.
    Refuse(Reply),
}

/// The future a [`Policy`] stage returns.
pub type PolicyFuture<'a> = Pin<Box<dyn Future<Output = Verdict> + Send + 'a>>;

fn go_on<'a>() -> PolicyFuture<'a> {
    Box::pin(std::future::ready(Verdict::Continue))
}

/// One policy layer. Every stage has a default that continues, so a layer
/// implements only the stages it cares about. Object-safe: the server keeps
/// `Arc<dyn Policy>`. Per-connection state goes in `cx.extensions`.
pub trait Policy: Send + Sync + 'static {
    /// The layer's name, for logs.
    fn name(&self) -> &'static str;

    /// A client connected (before the greeting).
    fn connect<'a>(&'a self, _cx: &'a mut Context<'_>) -> PolicyFuture<'a> {
        go_on()
    }

    /// EHLO/HELO; `ehlo` is what the `Receiver` hook will see.
    fn ehlo<'a>(&'a self, _cx: &'a mut Context<'_>, _ehlo: &'a mut Ehlo) -> PolicyFuture<'a> {
        go_on()
    }

    /// MAIL FROM; `from` is what the `Receiver` hook will see.
    fn mail_from<'a>(
        &'a self,
        _cx: &'a mut Context<'_>,
        _from: &'a mut MailFrom,
    ) -> PolicyFuture<'a> {
        go_on()
    }

    /// RCPT TO; `to` is what the `Receiver` hook will see.
    fn rcpt_to<'a>(&'a self, _cx: &'a mut Context<'_>, _to: &'a mut RcptTo) -> PolicyFuture<'a> {
        go_on()
    }

    /// The complete message, as the client sent it (`cx.mail.data` holds what will
    /// be delivered); before `received`. Trace headers to prepend go at the front
    /// of `cx.mail.data.received`.
    fn message<'a>(&'a self, _cx: &'a mut Context<'_>, _raw: &'a [u8]) -> PolicyFuture<'a> {
        go_on()
    }
}
