//! Milters as a policy layer ([`Milter`], one per `[[milter]]` table): the
//! mail world's filters — OpenDKIM, rspamd, ClamAV, SpamAssassin's milters —
//! called over the Sendmail/Postfix milter protocol (version 6), with
//! Postfix's conventions as defaults so existing milter set-ups behave the
//! same.
//!
//! - `config.rs`: the `[[milter]]` keys and their checks.
//! - `connection.rs`: one connection (TCP or unix socket) per SMTP session
//!   and milter, driven by the sans-IO codec [`crate::protocol::milter`],
//!   under the connect / command / content timeouts.
//! - `conversation.rs`: which commands go at which stage (what a stage not
//!   configured would have sent goes at the next one), the answers turned into
//!   [`Verdict`]s.
//! - `macros.rs`: Postfix's macro lists and their values.
//! - `edits.rs`: end-of-message modifications into [`Changes`](crate::policy::Changes).
//!
//! Each SMTP session gets its own connection to each milter, opened at the
//! first stage that needs it and kept in the session's extensions; it is
//! closed when the session ends. A milter that cannot be reached, times out or
//! breaks the protocol is its `default_action` from then on for the session
//! (`tempfail`: 451 4.7.1, 421 at connect; `accept`; `reject`: 550 5.7.1),
//! recorded in the mail structure's `milter` key with `action: "failed"`. A
//! slow milter holds only the sessions that wait for it, each for at most its
//! timeouts.

mod config;
mod connection;
mod conversation;
mod edits;
mod macros;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

pub use config::{DefaultAction, MilterConfig};

use super::{Policy, PolicyFuture, Stage, Verdict};
use crate::config::ConfigError;
use crate::mail::{Ehlo, MailFrom, RcptTo};
use crate::metrics::LayerKind;
use crate::receiver::Context;
use conversation::{Current, MilterStates};

/// Gives each milter layer its key in the session's [`MilterStates`].
static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

/// One milter as a policy layer.
#[derive(Debug)]
pub struct Milter {
    id: usize,
    checked: config::Checked,
    default_action: DefaultAction,
    stages: Vec<Stage>,
    /// Failures logged at most once per 10 s (as the HTTP hooks do).
    errors: super::http::error_log::ErrorLog,
}

impl Milter {
    /// The milter a `[[milter]]` table describes; the error names the bad
    /// key. Connections are made per session, so the milter need not be up yet.
    pub fn new(config: &MilterConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            checked: config::check(config)?,
            default_action: config.default_action,
            stages: config.stages.clone(),
            errors: super::http::error_log::ErrorLog::default(),
        })
    }

    /// One stage: the conversation with this session's connection, kept in
    /// `cx.extensions` between stages.
    async fn run(&self, cx: &mut Context<'_>, stage: Stage, current: Current<'_>) -> Verdict {
        if stage == Stage::MailFrom {
            // A new transaction: the last one's records go (they were filed
            // with it).
            let name = &self.checked.name;
            cx.mail
                .milter
                .retain(|v| &v.name != name || v.is_connection_stage());
        }
        if !self.stages.contains(&stage) {
            return Verdict::Continue;
        }
        let mut state = cx.extensions.get_or_default::<MilterStates>().take(self.id);
        let (started, had_failed) = (Instant::now(), state.has_failed());
        let verdict = self.stage(&mut state, cx, stage, current).await;
        if let Some(metrics) = cx.metrics() {
            let failed = !had_failed && state.has_failed();
            metrics.layer_call(LayerKind::Milter, stage, started.elapsed(), failed);
        }
        cx.extensions
            .get_or_default::<MilterStates>()
            .put(self.id, state);
        verdict
    }
}

impl Policy for Milter {
    fn name(&self) -> &str {
        &self.checked.name
    }

    fn connect<'a>(&'a self, cx: &'a mut Context<'_>) -> PolicyFuture<'a> {
        Box::pin(self.run(cx, Stage::Connect, Current::Nothing))
    }

    fn ehlo<'a>(&'a self, cx: &'a mut Context<'_>, ehlo: &'a mut Ehlo) -> PolicyFuture<'a> {
        Box::pin(self.run(cx, Stage::Ehlo, Current::Ehlo(&ehlo.value)))
    }

    fn mail_from<'a>(
        &'a self,
        cx: &'a mut Context<'_>,
        from: &'a mut MailFrom,
    ) -> PolicyFuture<'a> {
        Box::pin(self.run(cx, Stage::MailFrom, Current::Mail(from)))
    }

    fn rcpt_to<'a>(&'a self, cx: &'a mut Context<'_>, to: &'a mut RcptTo) -> PolicyFuture<'a> {
        Box::pin(self.run(cx, Stage::RcptTo, Current::Rcpt(to)))
    }

    fn message<'a>(&'a self, cx: &'a mut Context<'_>, _raw: &'a [u8]) -> PolicyFuture<'a> {
        Box::pin(self.run(cx, Stage::Data, Current::Nothing))
    }
}

impl MilterStates {
    fn take(&mut self, id: usize) -> conversation::MilterState {
        self.0.remove(&id).unwrap_or_default()
    }

    fn put(&mut self, id: usize, state: conversation::MilterState) {
        self.0.insert(id, state);
    }
}

/// Keeps `HashMap` out of the conversation's imports.
type StateMap = HashMap<usize, conversation::MilterState>;
