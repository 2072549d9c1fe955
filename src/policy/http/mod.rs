//! HTTP stage hooks: a policy layer ([`HttpHook`], one per `[[hook]]` table)
//! that POSTs the mail structure as JSON to a URL at the stages it is configured
//! for, and turns the answer into a [`Verdict`] — policy in any language that
//! speaks HTTP, in the shape of Stalwart's MTA hooks and Postfix's policy
//! delegation, with this receiver's mail structure as the payload.
//!
//! - `config.rs`: the `[[hook]]` keys and their checks.
//! - `wire.rs`: the request body and the answer's rules (sans-IO; the JSON
//!   Schema of both is `docs/hook.schema.json`).
//! - `client.rs`: the pooled keep-alive client, the concurrency bound, the
//!   deadline and the bounded answer.
//! - `tls.rs`: the rustls settings of an `https://` hook (system CAs plus
//!   `tls_ca`) and the handshake `check-config` makes.
//! - `error_log.rs`: failures logged once per 10 s per hook, with a count.
//!
//! A failed call (no answer in time, no connection, a status other than 200 or
//! 204, an answer that breaks a rule) is the hook's `on_error`: `tempfail` (451
//! 4.3.0; 421 4.3.0 at connect) or `accept` (go on). A slow hook holds only the
//! sessions that wait for it, each for at most its `timeout`; other sessions and
//! other stages are not held.

mod client;
mod config;
pub(super) mod error_log;
mod tls;
mod wire;

use std::time::Instant;

pub use client::MAX_ANSWER;
pub(crate) use client::{CallError, HookClient};
pub use config::{HookConfig, OnError};

use super::{Policy, PolicyFuture, Stage, Verdict, go_on};
use crate::config::ConfigError;
use crate::mail::{Ehlo, MailFrom, RcptTo};
use crate::metrics::LayerKind;
use crate::protocol::Reply;
use crate::receiver::Context;
use error_log::ErrorLog;
use wire::{Command, request_body, verdict_from_response};

/// One HTTP hook as a policy layer.
#[derive(Debug)]
pub struct HttpHook {
    name: String,
    stages: Vec<Stage>,
    on_error: OnError,
    max_body: usize,
    client: HookClient,
    errors: ErrorLog,
}

impl HttpHook {
    /// The hook a `[[hook]]` table describes; the error names the bad key.
    /// Connections are made on first use, so the hook need not be up yet.
    pub fn new(config: &HookConfig) -> Result<Self, ConfigError> {
        let checked = config::check(config)?;
        let client = HookClient::new(
            checked.url,
            checked.headers,
            config.max_concurrency,
            checked.timeout,
            config.tls_ca.as_deref(),
        )
        .map_err(|reason| ConfigError::Invalid {
            key: "hook.tls_ca",
            reason,
        })?;
        Ok(Self {
            client,
            name: checked.name,
            stages: config.stages.clone(),
            on_error: config.on_error,
            max_body: config.max_body,
            errors: ErrorLog::default(),
        })
    }

    /// A TCP connection to the hook's host (for https with a verified TLS
    /// handshake) within `limit`, nothing sent: what `check-config` asks.
    pub(crate) async fn reach(&self, limit: std::time::Duration) -> Result<String, String> {
        self.client.reach(limit).await
    }

    fn wants(&self, stage: Stage) -> bool {
        self.stages.contains(&stage)
    }

    /// One call at `stage`: the request, the answer, its verdict (or `on_error`).
    async fn ask(
        &self,
        stage: Stage,
        cx: &Context<'_>,
        command: Command<'_>,
        raw: Option<&[u8]>,
    ) -> Verdict {
        let body =
            || request_body(stage, cx.mail, command, raw, self.max_body).map_err(|e| e.to_string());
        let max_recipients = cx.settings.limits.max_recipients;
        let started = Instant::now();
        let verdict = match self.client.call(body).await {
            Ok((status, answer)) => {
                verdict_from_response(stage, status, &answer, &self.name, max_recipients)
            }
            Err(error) => Err(error.to_string()),
        };
        if let Some(metrics) = cx.metrics() {
            metrics.layer_call(LayerKind::Hook, stage, started.elapsed(), verdict.is_err());
        }
        verdict.unwrap_or_else(|error| self.failed(stage, &error))
    }

    /// A failed call: logged (at most once per 10 s) and turned into `on_error`.
    fn failed(&self, stage: Stage, error: &str) -> Verdict {
        if let Some(held_back) = self.errors.note(Instant::now()) {
            tracing::warn!(
                "hook {} failed at {}: {error} ({held_back} more failures not logged since the last report)",
                self.name,
                stage.as_str()
            );
        }
        match self.on_error {
            OnError::Accept => Verdict::Continue,
            OnError::Tempfail if stage == Stage::Connect => Verdict::Refuse(Reply::new(
                421,
                (4, 3, 0),
                "Policy service unavailable, try again later",
            )),
            OnError::Tempfail => Verdict::Refuse(Reply::new(
                451,
                (4, 3, 0),
                "Policy service unavailable, try again later",
            )),
        }
    }
}

impl Policy for HttpHook {
    fn name(&self) -> &str {
        &self.name
    }

    fn connect<'a>(&'a self, cx: &'a mut Context<'_>) -> PolicyFuture<'a> {
        if !self.wants(Stage::Connect) {
            return go_on();
        }
        Box::pin(self.ask(Stage::Connect, cx, Command::None, None))
    }

    fn ehlo<'a>(&'a self, cx: &'a mut Context<'_>, ehlo: &'a mut Ehlo) -> PolicyFuture<'a> {
        if !self.wants(Stage::Ehlo) {
            return go_on();
        }
        Box::pin(self.ask(Stage::Ehlo, cx, Command::Ehlo(ehlo), None))
    }

    fn auth<'a>(
        &'a self,
        cx: &'a mut Context<'_>,
        username: &'a str,
        mechanism: &'a str,
    ) -> PolicyFuture<'a> {
        if !self.wants(Stage::Auth) {
            return go_on();
        }
        let command = Command::Auth {
            mechanism,
            username,
        };
        Box::pin(self.ask(Stage::Auth, cx, command, None))
    }

    fn mail_from<'a>(
        &'a self,
        cx: &'a mut Context<'_>,
        from: &'a mut MailFrom,
    ) -> PolicyFuture<'a> {
        if !self.wants(Stage::MailFrom) {
            return go_on();
        }
        Box::pin(self.ask(Stage::MailFrom, cx, Command::MailFrom(from), None))
    }

    fn rcpt_to<'a>(&'a self, cx: &'a mut Context<'_>, to: &'a mut RcptTo) -> PolicyFuture<'a> {
        if !self.wants(Stage::RcptTo) {
            return go_on();
        }
        Box::pin(self.ask(Stage::RcptTo, cx, Command::RcptTo(to), None))
    }

    fn message<'a>(&'a self, cx: &'a mut Context<'_>, raw: &'a [u8]) -> PolicyFuture<'a> {
        if !self.wants(Stage::Data) {
            return go_on();
        }
        Box::pin(self.ask(Stage::Data, cx, Command::None, Some(raw)))
    }
}
