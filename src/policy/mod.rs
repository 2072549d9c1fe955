//! Policy layers: checks that run at each SMTP stage *before* the user's
//! [`Receiver`](crate::Receiver) hook of that stage, each a value behind the one
//! [`Policy`] trait, never code wired into the session.
//!
//! The order is fixed and documented: built-in checks first (the DNS checks,
//! [`DnsChecks`], then the sender/recipient SMTP callouts, [`Callouts`], when
//! configured), then HTTP stage hooks
//! ([`HttpHook`], one per `[[hook]]` table, in the order given), then milters
//! ([`Milter`], one per `[[milter]]` table, in the order given),
//! then the user's `Receiver`. At each stage the layers run in that order; a
//! layer records what it found in the mail structure (the seed's keys and new
//! keys) and answers with a [`Verdict`]:
//!
//! - [`Verdict::Continue`]: the next layer, then the `Receiver` hook.
//! - [`Verdict::Refuse`]: refuse with this reply (4xx/5xx; one made with
//!   [`Reply::and_close`] closes the connection). The first refusal wins: later
//!   layers and the `Receiver` hook of that stage are not called.
//! - [`Verdict::Decide`] with a [`Decision`]: an [`Action`] (continue, accept,
//!   refuse, discard, quarantine) and [`Changes`] (header edits and a new
//!   recipient list at the message stage; extensions at any stage). These are
//!   what HTTP hooks and milters can ask for, so both are the same kind of answer.
//!
//! The session applies every decision the same way, whoever made it (see
//! [`Action`] and [`Changes`] for the rules). A new kind of policy is a new module
//! here implementing [`Policy`], added to the server's list
//! ([`Server::with_policy`](crate::Server::with_policy)).
//!
//! The session is the only caller. A server without layers costs nothing per
//! stage; each call of a layer boxes its future.

pub mod callout;
mod changes;
mod dns;
mod header_edits;
pub mod http;
pub mod milter;

use std::future::Future;
use std::pin::Pin;

pub use callout::{CalloutSettings, Callouts};
pub use changes::{Changes, HeaderField, LayerExtensions, edit_headers, is_header_name};
pub use dns::DnsChecks;
pub use header_edits::{HeaderEdit, apply_header_edits, is_header_value, replace_body};
pub use http::{HookConfig, HttpHook, MAX_ANSWER, OnError};
pub use milter::{Milter, MilterConfig};

use crate::mail::{Ehlo, MailFrom, RcptTo};
use crate::protocol::Reply;
use crate::receiver::Context;

/// The SMTP stages a layer is asked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// A client connected (before the greeting).
    Connect,
    /// EHLO or HELO.
    Ehlo,
    /// AUTH succeeded (the credentials were checked and are good).
    Auth,
    /// MAIL FROM.
    MailFrom,
    /// RCPT TO.
    RcptTo,
    /// The complete message (end of DATA or the last BDAT).
    Data,
}

impl Stage {
    /// Every stage, in the order of a session.
    pub const ALL: [Stage; 6] = [
        Stage::Connect,
        Stage::Ehlo,
        Stage::Auth,
        Stage::MailFrom,
        Stage::RcptTo,
        Stage::Data,
    ];

    /// The stage's name: `connect`, `ehlo`, `auth`, `mail_from`, `rcpt_to`, `data`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Connect => "connect",
            Stage::Ehlo => "ehlo",
            Stage::Auth => "auth",
            Stage::MailFrom => "mail_from",
            Stage::RcptTo => "rcpt_to",
            Stage::Data => "data",
        }
    }

    /// Before any transaction: what is decided here holds for the whole connection.
    pub fn is_connection_stage(self) -> bool {
        matches!(self, Stage::Connect | Stage::Ehlo | Stage::Auth)
    }
}

/// A layer's answer at one stage.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Verdict {
    /// Go on: the next layer, then the `Receiver` hook.
    Continue,
    /// Refuse with this reply (4xx/5xx; one made with [`Reply::and_close`]
    /// closes the connection); nothing after this layer runs for the stage.
    Refuse(Reply),
    /// An action with changes (see [`Decision`]).
    Decide(Box<Decision>),
}

impl Verdict {
    /// A [`Verdict::Decide`].
    pub fn decide(action: Action, changes: Changes) -> Self {
        Verdict::Decide(Box::new(Decision { action, changes }))
    }
}

/// What a layer decided at one stage, and what it changes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    /// What happens next.
    pub action: Action,
    /// Changes to apply (see [`Changes`] for which apply with which action).
    pub changes: Changes,
}

/// What happens after a layer's [`Decision`].
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub enum Action {
    /// Go on to the next layer, then the `Receiver` hook.
    #[default]
    Continue,
    /// The stage is accepted: later layers are not asked at this stage. The
    /// `Receiver` hook of the stage still answers (it is the user's code, and at
    /// the message stage it stores the mail: 250 only once the mail is durable);
    /// when it answers positively and a reply is given here, that reply is sent
    /// instead of the hook's.
    Accept(Option<Reply>),
    /// Refuse with this reply, as [`Verdict::Refuse`].
    Refuse(Reply),
    /// Take the mail and drop it: the client sees the usual positive replies,
    /// later layers are not asked at this stage, and at the end of the message
    /// `received` is not called — nothing is stored, no JSON line is printed,
    /// the mail structure says `discarded: true`. At `connect`, `ehlo` and `auth`
    /// it holds for every message of the connection; at `mail_from`, `rcpt_to`
    /// and the message, for the current transaction (all its recipients).
    Discard,
    /// Deliver the mail into quarantine (the Maildir's `.Quarantine` folder)
    /// instead of the inbox; the mail structure's `quarantine` holds the reason.
    /// Later layers still run (a later refusal wins). At `connect`, `ehlo` and
    /// `auth` it holds for every message of the connection.
    Quarantine(String),
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
    fn name(&self) -> &str;

    /// A client connected (before the greeting).
    fn connect<'a>(&'a self, _cx: &'a mut Context<'_>) -> PolicyFuture<'a> {
        go_on()
    }

    /// EHLO/HELO; `ehlo` is what the `Receiver` hook will see.
    fn ehlo<'a>(&'a self, _cx: &'a mut Context<'_>, _ehlo: &'a mut Ehlo) -> PolicyFuture<'a> {
        go_on()
    }

    /// AUTH succeeded: `Receiver::authenticate` found the credentials good
    /// (a failed login never reaches the layers, so they see only verified
    /// names and no storm of guesses). `cx.mail.authenticated` is still unset;
    /// a refusal here refuses the login (the password is never passed on).
    fn auth<'a>(
        &'a self,
        _cx: &'a mut Context<'_>,
        _username: &'a str,
        _mechanism: &'a str,
    ) -> PolicyFuture<'a> {
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

    /// The complete message, `raw` exactly as the client sent it (dot-unstuffed);
    /// `cx.mail.data` holds what will be delivered, with the changes of earlier
    /// layers. Before `received`. Trace headers to prepend go at the front of
    /// `cx.mail.data.received`.
    fn message<'a>(&'a self, _cx: &'a mut Context<'_>, _raw: &'a [u8]) -> PolicyFuture<'a> {
        go_on()
    }
}
