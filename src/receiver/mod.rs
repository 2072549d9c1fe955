//! The hooks: the [`Receiver`] trait, one overridable method per SMTP step, and the
//! [`Context`] each hook gets.
//!
//! Every method has a default that calls the same-named function in [`defaults`], so
//! `impl Receiver for Mine {}` is a working receiver, and an override can do its own
//! checks and then call the default — the Ruby gem's `super`:
//!
//! ```
//! use net_receiver::{Context, MailFrom, Receiver, Reply, defaults};
//!
//! struct Mine;
//! impl Receiver for Mine {
//!     async fn mail_from(&self, cx: &mut Context<'_>, from: &MailFrom) -> Reply {
//!         if cx.mail.authenticated.is_none() {
//!             return Reply::new(556, (5, 7, 27), "Traffic on this port must be authenticated");
//!         }
//!         defaults::mail_from(cx, from).await
//!     }
//! }
//! ```
//!
//! Hooks see parsed values and the mail structure, never sockets or bytes. A hook
//! answers with a [`Reply`]: a 2xx/3xx accepts, a 4xx/5xx refuses, a reply made with
//! [`Reply::and_close`] (or any 421) closes the connection after it is sent. Setting
//! `cx.mail.prohibited` makes every later command but QUIT get 450 4.7.1 and close.
//! Panics in hooks are caught by the session: the client gets 451 or 421, the server
//! lives on.

pub mod defaults;
mod extensions;

use std::future::Future;
use std::sync::Arc;

pub use extensions::Extensions;

use crate::auth::{AuthUnavailable, Password, PasswordLookup};
use crate::config::Settings;
use crate::delivery::{Deliver, DeliveryError};
use crate::dns::Dns;
use crate::lockout::Lockout;
use crate::mail::{Ehlo, Mail, MailFrom, RcptTo};
use crate::protocol::{Credentials, Reply};

/// What a hook can see and change.
pub struct Context<'a> {
    /// The seed's mail structure for the current transaction (connection facts
    /// included). Hooks may read and change it; `received` gets it complete.
    pub mail: &'a mut Mail,
    /// Transactions of this connection that already ended (delivered, refused or
    /// reset), oldest first, the last
    /// [`MAX_KEPT_TRANSACTIONS`](crate::session::MAX_KEPT_TRANSACTIONS), without
    /// their message: no `raw`, `headers` or `text` (see [`crate::Data::forget_message`]).
    pub transactions: &'a std::collections::VecDeque<Mail>,
    /// Per-connection state of your own: `cx.extensions.insert(MyState { .. })`.
    pub extensions: &'a mut Extensions,
    /// The server's settings.
    pub settings: &'a Settings,
    pub(crate) services: &'a Services,
}

impl Context<'_> {
    /// The delivery the server was configured with (e.g. a Maildir), if any.
    pub fn delivery(&self) -> Option<&dyn Deliver> {
        self.services.delivery.as_deref()
    }

    /// The password store the server was configured with, if any.
    pub fn passwords(&self) -> Option<&dyn PasswordLookup> {
        self.services.passwords.as_deref()
    }

    /// The resolver of the DNS checks, for lookups of your own.
    pub fn dns(&self) -> Option<&Dns> {
        self.services.dns.as_deref()
    }

    /// The server's metrics (`metrics_listen`), if it counts: a layer of your
    /// own reports its calls with [`Metrics::layer_call`](crate::metrics::Metrics::layer_call).
    pub fn metrics(&self) -> Option<&crate::metrics::Metrics> {
        self.services.metrics.as_deref()
    }

    /// The failure counters (`max_failed_msgs_per_period`), if the server keeps them.
    pub fn lockout(&self) -> Option<&Lockout> {
        self.services.lockout.as_deref()
    }

    /// Counts this hook's refusal (a 4xx/5xx from `mail_from`, `rcpt_to`, `data` or
    /// the message) toward the lockout, once per transaction. Without it a hook's
    /// refusal is policy, not abuse, and counts for nothing.
    pub fn count_failure(&mut self) {
        self.extensions.insert(crate::lockout::HookCountedFailure);
    }
}

/// What the server provides to every connection besides the hooks: where mail
/// goes and who is locked out.
#[derive(Clone, Default)]
pub struct Services {
    /// Where `defaults::received` stores mail.
    pub delivery: Option<Arc<dyn Deliver>>,
    /// Failure counting and lockout.
    pub lockout: Option<Arc<Lockout>>,
    /// Where `defaults::password` looks up stored secrets.
    pub passwords: Option<Arc<dyn PasswordLookup>>,
    /// The resolver for the DNS checks; `None`: no lookups.
    pub dns: Option<Arc<Dns>>,
    /// The policy layers, in the order they run before each `Receiver` hook
    /// (see [`crate::policy`]).
    pub policies: Arc<[Arc<dyn crate::policy::Policy>]>,
    /// Where the session counts what happens; `None`: nothing is counted.
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("delivery", &self.delivery.is_some())
            .field("lockout", &self.lockout.is_some())
            .field("passwords", &self.passwords.is_some())
            .field("dns", &self.dns.is_some())
            .field("metrics", &self.metrics.is_some())
            .field(
                "policies",
                &self.policies.iter().map(|p| p.name()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// The hooks of an SMTP receiver: one method per step, each with a default.
///
/// The futures must be `Send`; implement the methods as `async fn`.
///
/// The seed's `password(username)`: AUTH users from your own table, then the
/// server's store (`passwd_file`, `password_db`) for everyone else.
///
/// ```
/// use net_receiver::auth::{AuthUnavailable, Password};
/// use net_receiver::{Context, Receiver, defaults};
///
/// struct Mine;
///
/// impl Receiver for Mine {
///     async fn password(
///         &self,
///         cx: &mut Context<'_>,
///         username: &str,
///     ) -> Result<Option<Password>, AuthUnavailable> {
///         match username {
///             "robot" => Ok(Some(Password::Hashed("{PLAIN}robot-secret".into()))),
///             _ => defaults::password(cx, username).await,
///         }
///     }
/// }
/// ```
pub trait Receiver: Send + Sync + 'static {
    /// A client connected; the reply is the greeting (220, or 421/554 to refuse).
    fn connect(&self, cx: &mut Context<'_>) -> impl Future<Output = Reply> + Send {
        defaults::connect(cx)
    }

    /// EHLO or HELO (`ehlo.verb` tells which). A positive reply is sent with the
    /// extension keywords appended after EHLO.
    fn ehlo(&self, cx: &mut Context<'_>, ehlo: &Ehlo) -> impl Future<Output = Reply> + Send {
        defaults::ehlo(cx, ehlo)
    }

    /// MAIL FROM, after syntax checks; `from` holds the seed's findings.
    fn mail_from(
        &self,
        cx: &mut Context<'_>,
        from: &MailFrom,
    ) -> impl Future<Output = Reply> + Send {
        defaults::mail_from(cx, from)
    }

    /// RCPT TO, after syntax and limit checks; `to` holds the seed's findings.
    fn rcpt_to(&self, cx: &mut Context<'_>, to: &RcptTo) -> impl Future<Output = Reply> + Send {
        defaults::rcpt_to(cx, to)
    }

    /// DATA (or the first BDAT) is about to start: 354 goes on.
    fn data(&self, cx: &mut Context<'_>) -> impl Future<Output = Reply> + Send {
        defaults::data(cx)
    }

    /// The message is complete and in `cx.mail.data`. Return `Ok` only once it is
    /// safely stored: that is what sends 250. An error sends 451 (452 when the
    /// store is full, see [`DeliveryError::is_insufficient_storage`]; 554 for
    /// [`DeliveryError::Permanent`]), so the sender keeps the mail and retries.
    /// The default asks the delivery target per recipient and combines the
    /// outcomes into that one result (see [`crate::delivery`]).
    fn received(
        &self,
        cx: &mut Context<'_>,
    ) -> impl Future<Output = Result<(), DeliveryError>> + Send {
        defaults::received(cx)
    }

    /// RSET.
    fn rset(&self, cx: &mut Context<'_>) -> impl Future<Output = Reply> + Send {
        defaults::rset(cx)
    }

    /// NOOP.
    fn noop(&self, cx: &mut Context<'_>) -> impl Future<Output = Reply> + Send {
        defaults::noop(cx)
    }

    /// HELP with its (possibly empty) topic.
    fn help(&self, cx: &mut Context<'_>, topic: &str) -> impl Future<Output = Reply> + Send {
        defaults::help(cx, topic)
    }

    /// VRFY; the default never reveals whether a user exists (252).
    fn vrfy(&self, cx: &mut Context<'_>, who: &str) -> impl Future<Output = Reply> + Send {
        defaults::vrfy(cx, who)
    }

    /// EXPN; the default refuses (502).
    fn expn(&self, cx: &mut Context<'_>, list: &str) -> impl Future<Output = Reply> + Send {
        defaults::expn(cx, list)
    }

    /// QUIT; the connection closes after the reply whatever it is.
    fn quit(&self, cx: &mut Context<'_>) -> impl Future<Output = Reply> + Send {
        defaults::quit(cx)
    }

    /// The secret of `username`, for AUTH (the seed's `password`); `Ok(None)` = no
    /// such user. Return [`Password::Plain`] for the password itself (what the
    /// seed's hook returned) or [`Password::Hashed`] for a stored hash
    /// (`$argon2id$…`, `$2b$…`, `$6$…`, `{PLAIN}…`: see [`crate::auth::password`]);
    /// `Err(AuthUnavailable)` when the secret cannot be had now (the client gets
    /// 454 4.7.0). The default asks the server's password store (`passwd_file`,
    /// `password_db`). AUTH is offered when `auth = true` or a store is configured.
    fn password(
        &self,
        cx: &mut Context<'_>,
        username: &str,
    ) -> impl Future<Output = Result<Option<Password>, AuthUnavailable>> + Send {
        defaults::password(cx, username)
    }

    /// AUTH: are these credentials good (235) or not (535)? `Err(AuthUnavailable)`:
    /// cannot tell now (454 4.7.0). The default gets the stored secret from
    /// [`Receiver::password`] and checks the password against it in constant time.
    /// Override it to use any other backend.
    fn authenticate(
        &self,
        cx: &mut Context<'_>,
        credentials: &Credentials,
    ) -> impl Future<Output = Result<bool, AuthUnavailable>> + Send {
        async move {
            let stored = self.password(cx, &credentials.username).await?;
            Ok(defaults::authenticate(cx, credentials, stored.as_ref()).await)
        }
    }

    /// The connection ended, whatever the reason. `cx.transactions` holds the
    /// session's transactions, delivered or refused (the last
    /// [`MAX_KEPT_TRANSACTIONS`](crate::session::MAX_KEPT_TRANSACTIONS));
    /// `cx.mail` the connection facts.
    fn closed(&self, cx: &mut Context<'_>) -> impl Future<Output = ()> + Send {
        defaults::closed(cx)
    }
}
