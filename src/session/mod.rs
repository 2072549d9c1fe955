//! The async glue between the sans-IO machine and the hooks: turns each
//! [`Event`] into a call of the matching [`Receiver`] hook, keeps the seed's mail
//! structure up to date, and returns the reply for [`Machine::answer`](crate::protocol::Machine::answer).
//!
//! This is the only caller of hooks and policy layers. Before each hook it runs
//! the layers and applies their decisions (`layers.rs`: refusals, accept,
//! discard, quarantine, header edits, recipients, extensions). It catches
//! panics (451 for `received`, 421 for the others), applies `prohibited`, and
//! turns `received`'s result into 250 / 451 / 554. It knows nothing of sockets:
//! `server::conn` moves the bytes.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt as _;

use crate::config::{FailureKind, ListenerSpec, Settings};
use crate::delivery::DeliveryError;
use crate::lockout::HookCountedFailure;
use crate::mail::{Address, Connect, Data, Ehlo, Listener, Mail, MailFrom, RcptTo};
use crate::mail::{id, trace};
use crate::metrics::{self, DeliveryFailure, MessageRefused, Metrics, Verb};
use crate::policy::{Stage, Verdict};
use crate::protocol::DataOutcome;
use crate::protocol::address::analyze_local_part;
use crate::protocol::{Event, Facts, Greeting, MessageEnd, Path, PathRequest, Reply};
use crate::receiver::{Context, Extensions, Receiver, Services};

/// Finished transactions kept for `closed`; older ones are dropped.
pub const MAX_KEPT_TRANSACTIONS: usize = 32;

/// What the server knows about a connection when it starts.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionInfo {
    /// Our side of the connection.
    pub local: SocketAddr,
    /// The client's side.
    pub remote: SocketAddr,
    /// The listener it came in on.
    pub listener: ListenerSpec,
}

/// What TLS negotiated, recorded in the mail structure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFacts {
    /// Protocol version, e.g. `TLSv1.3`.
    pub version: Option<String>,
    /// Cipher suite, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher: Option<String>,
}

/// One connection's hook state: the mail structure, earlier transactions and the
/// user's extensions.
pub struct Session<R> {
    receiver: Arc<R>,
    settings: Arc<Settings>,
    services: Services,
    /// Boxed: the structure is large and mostly empty, and a session future that
    /// holds it inline carries it more than once.
    mail: Box<Mail>,
    /// A counted failure was already recorded for the current transaction.
    transaction_failure_counted: bool,
    /// Failed AUTH attempts in this session (each waits longer).
    failed_auths: u32,
    transactions: std::collections::VecDeque<Mail>,
    extensions: Extensions,
    /// Discard, quarantine and extensions decided at connect, EHLO or AUTH.
    connection_policy: layers::ConnectionPolicy,
}

/// The [`Context`] a hook or a policy layer gets, borrowed from the session.
macro_rules! context {
    ($self:ident) => {
        Context {
            mail: &mut $self.mail,
            transactions: &$self.transactions,
            extensions: &mut $self.extensions,
            settings: &$self.settings,
            services: &$self.services,
        }
    };
}

/// Calls the `Receiver` hook `$method`, its panic caught.
macro_rules! hook {
    ($self:ident, $method:ident $(, $arg:expr)*) => {{
        let mut cx = context!($self);
        AssertUnwindSafe($self.receiver.$method(&mut cx $(, $arg)*))
            .catch_unwind()
            .await
    }};
}

/// Runs the policy layers' `$method` in order at `$stage`, applying each verdict
/// (`layers.rs`); what they decided, the first refusal included (a panicking
/// layer is a 421 like a panicking hook).
macro_rules! layers {
    ($self:ident, $stage:expr, $method:ident $(, $arg:expr)*) => {{
        let mut outcome = layers::StageOutcome::default();
        let policies = Arc::clone(&$self.services.policies);
        for policy in policies.iter() {
            let mut cx = context!($self);
            let verdict = AssertUnwindSafe(policy.$method(&mut cx $(, $arg)*))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| {
                    tracing::error!(layer = policy.name(), "a policy layer panicked");
                    Verdict::Refuse(internal_error())
                });
            if !$self.apply_verdict($stage, policy.name(), verdict, &mut outcome) {
                break;
            }
        }
        outcome
    }};
}

mod archive;
mod auth;
mod layers;
mod replies;

use replies::{delivery_error_reply, internal_error, other_failures, prohibited};

impl<R: Receiver> Session<R> {
    /// A session for a new connection.
    pub fn new(
        receiver: Arc<R>,
        settings: Arc<Settings>,
        services: Services,
        info: ConnectionInfo,
    ) -> Self {
        // Written without `core::fmt`: this runs for every connection.
        let remote_ip = crate::digits::ip_string(info.remote.ip().to_canonical());
        let mail = Mail {
            local_port: crate::digits::decimal_string(info.local.port()),
            local_hostname: settings.local_hostname.clone(),
            remote_port: crate::digits::decimal_string(info.remote.port()),
            remote_hostname: None,
            remote_ip: remote_ip.clone(),
            id: id::new_mail_id(),
            time: crate::mail::trace::seed_time(&chrono::Utc::now().fixed_offset()),
            connect: Connect {
                value: remote_ip,
                ..Connect::default()
            },
            listener: Some(Listener {
                address: crate::digits::socket_addr_string(info.listener.addr),
                mode: info.listener.mode.as_str().to_owned(),
            }),
            ..Mail::default()
        };
        Self {
            receiver,
            settings,
            services,
            mail: Box::new(mail),
            transaction_failure_counted: false,
            failed_auths: 0,
            transactions: std::collections::VecDeque::new(),
            extensions: Extensions::default(),
            connection_policy: layers::ConnectionPolicy::default(),
        }
    }

    /// The current mail structure.
    pub fn mail(&self) -> &Mail {
        &self.mail
    }

    /// Where this session counts what happens, if anywhere.
    pub(crate) fn metrics(&self) -> Option<&Arc<Metrics>> {
        self.services.metrics.as_ref()
    }

    /// Calls the `connect` hook; its reply is the greeting. A locked-out client
    /// gets 421 4.7.0 instead and is closed.
    pub async fn connect(&mut self) -> Reply {
        if let Some(lockout) = &self.services.lockout
            && !self.exempt_from_ip_lockout()
            && lockout.is_locked(&self.ip_subject()).await
        {
            self.mail.prohibited = true;
            tracing::warn!(name: "locked_out", remote = %self.mail.remote_ip, "refused: locked out after repeated failures");
            if let Some(m) = self.metrics() {
                m.connection_refused(metrics::Refused::LockedOut);
            }
            return Reply::new(
                421,
                (4, 7, 0),
                format!(
                    "{} Sender IP {} is temporarily prohibited from sending, try again later",
                    self.settings.server_name, self.mail.remote_ip
                ),
            );
        }
        let outcome = layers!(self, Stage::Connect, connect);
        if let Some(refusal) = outcome.refusal {
            return refusal;
        }
        outcome.answer(hook!(self, connect).unwrap_or_else(|_| internal_error()))
    }

    /// Calls the hook for `event` and returns the reply for the machine.
    pub async fn handle(&mut self, event: Event) -> Reply {
        let quit = event == Event::Quit;
        if self.mail.prohibited && !quit {
            // Prohibited while a message was on its way: it is not taken.
            return prohibited(&self.mail.remote_ip);
        }
        if let Some(m) = self.metrics()
            && let Some(verb) = verb(&event)
        {
            m.command(verb);
        }
        let is_message = matches!(event, Event::Message { .. });
        self.extensions.remove::<HookCountedFailure>();
        let counted = match &event {
            Event::MailFrom(_) => Some(FailureKind::Mail),
            Event::RcptTo(_) => Some(FailureKind::Rcpt),
            Event::DataStart { .. } | Event::Message { .. } => Some(FailureKind::Data),
            _ => None,
        };
        let reply = match event {
            Event::Ehlo { domain, extended } => self.ehlo(domain, extended).await,
            Event::MailFrom(request) => self.mail_from(request).await,
            Event::RcptTo(request) => self.rcpt_to(request).await,
            Event::DataStart { .. } => hook!(self, data).unwrap_or_else(|_| internal_error()),
            Event::Message { end, facts } => self.message(end, facts).await,
            Event::Rset => {
                let reply = hook!(self, rset).unwrap_or_else(|_| internal_error());
                if reply.is_positive() {
                    self.archive();
                }
                reply
            }
            Event::Noop => hook!(self, noop).unwrap_or_else(|_| internal_error()),
            Event::Help(topic) => hook!(self, help, &topic).unwrap_or_else(|_| internal_error()),
            Event::Vrfy(who) => hook!(self, vrfy, &who).unwrap_or_else(|_| internal_error()),
            Event::Expn(list) => hook!(self, expn, &list).unwrap_or_else(|_| internal_error()),
            Event::Quit => hook!(self, quit).unwrap_or_else(|_| internal_error()),
            Event::Auth(credentials) => self.auth(credentials).await,
            // The connection handles STARTTLS itself; it never gets here.
            Event::StartTls => Reply::new(454, (4, 7, 0), "TLS not available"),
        };
        // Only a refusal its hook asked to count (`Context::count_failure`).
        let hook_counted = self.extensions.remove::<HookCountedFailure>().is_some();
        if let Some(kind) = counted
            && hook_counted
            && reply.is_negative()
            && self.count_failure(kind).await
        {
            return prohibited(&self.mail.remote_ip);
        }
        // A message already delivered keeps its 250, whatever happened meanwhile.
        let delivered = is_message && reply.is_positive();
        if self.mail.prohibited && !quit && !delivered && !reply.is_negative() {
            // A hook prohibited the client: refuse from now on and close. A 354
            // becomes 450 too, so a prohibited client's message is never read.
            return prohibited(&self.mail.remote_ip);
        }
        reply
    }

    /// TLS is up (implicit, or after STARTTLS): recorded in the mail structure; the
    /// session starts over as just connected (any transaction and EHLO are gone).
    /// Call it once the machine says so ([`Facts::tls`]): the machine owns the
    /// fact and sequences commands by it; `encrypted`, `tls_version` and
    /// `tls_cipher` are the mail structure's record of it.
    pub fn tls_established(&mut self, facts: TlsFacts) {
        self.archive();
        self.mail.ehlo = None;
        self.mail.authenticated = None;
        self.mail.encrypted = true;
        self.mail.tls_version = facts.version;
        self.mail.tls_cipher = facts.cipher;
    }

    /// The connection ended: files the open transaction and calls `closed`.
    pub async fn finish(&mut self) {
        self.archive();
        // A panic here has no one left to tell.
        let _ = hook!(self, closed);
    }

    async fn ehlo(&mut self, domain: String, extended: bool) -> Reply {
        let mut ehlo = Ehlo {
            value: domain,
            verb: if extended { "EHLO" } else { "HELO" }.to_owned(),
            ..Ehlo::default()
        };
        let outcome = layers!(self, Stage::Ehlo, ehlo, &mut ehlo);
        let reply = match outcome.refusal {
            Some(refusal) => refusal,
            None => outcome.answer(hook!(self, ehlo, &ehlo).unwrap_or_else(|_| internal_error())),
        };
        self.mail.ehlo = Some(ehlo);
        if reply.is_positive() {
            self.archive();
        }
        reply
    }

    async fn mail_from(&mut self, request: PathRequest) -> Reply {
        self.archive();
        self.transaction_failure_counted = false;
        let (size, body, smtputf8) = (request.size, request.body, request.smtputf8);
        let mut from = MailFrom {
            address: address_record(request, self.settings.sender_character_check),
            size,
            body: body.map(|b| b.as_str().to_owned()),
            smtputf8,
            ..MailFrom::default()
        };
        let outcome = layers!(self, Stage::MailFrom, mail_from, &mut from);
        let reply = match outcome.refusal {
            Some(refusal) => refusal,
            None => {
                outcome.answer(hook!(self, mail_from, &from).unwrap_or_else(|_| internal_error()))
            }
        };
        from.accepted = reply.is_positive();
        self.mail.mailfrom = Some(from);
        reply
    }

    async fn rcpt_to(&mut self, request: PathRequest) -> Reply {
        let mut to = RcptTo::from(address_record(
            request,
            self.settings.recipient_character_check,
        ));
        let outcome = layers!(self, Stage::RcptTo, rcpt_to, &mut to);
        let reply = match outcome.refusal {
            Some(refusal) => refusal,
            None => outcome.answer(hook!(self, rcpt_to, &to).unwrap_or_else(|_| internal_error())),
        };
        to.accepted = reply.is_positive();
        if let Some(m) = self.metrics() {
            m.recipient(to.accepted);
        }
        self.mail.rcptto.push(to);
        reply
    }

    /// The end of DATA or BDAT, alike: a refused message is recorded (its size)
    /// and kept for `closed`; a complete one goes to `received`.
    async fn message(&mut self, end: MessageEnd, facts: Facts) -> Reply {
        let raw = match end {
            MessageEnd::Complete(raw) => raw,
            MessageEnd::Refused(refusal) => {
                let mut data = Data::from_message(Vec::new(), String::new());
                data.size = refusal.size;
                self.mail.data = Some(data);
                self.archive();
                if let Some(m) = self.metrics() {
                    m.message_refused(match refusal.reason {
                        DataOutcome::BareLineEnding => MessageRefused::BareLineEnding,
                        DataOutcome::LineTooLong => MessageRefused::LineTooLong,
                        DataOutcome::HeaderTooLarge => MessageRefused::HeaderTooLarge,
                        DataOutcome::TooLarge | DataOutcome::Ok => MessageRefused::TooLarge,
                    });
                }
                return Reply::from(refusal);
            }
        };
        // Authenticated as received; then a client's Authentication-Results claiming
        // to be ours is removed from what is delivered.
        let original = bytes::Bytes::from(raw);
        let delivered =
            crate::dns::strip_forged_authentication_results(&original, &self.settings.server_name)
                .map_or_else(|| original.clone(), bytes::Bytes::from);
        let received = self.received_header(facts);
        self.mail.data = Some(Data::from_bytes(delivered, received));
        let mut outcome = layers!(self, Stage::Data, message, &original);
        drop(original);
        if let Some(refusal) = outcome.refusal.take() {
            self.archive();
            if let Some(m) = self.metrics() {
                m.message_refused(MessageRefused::Policy);
            }
            return refusal;
        }
        // The seed's meaning: `received` is called for a complete, acceptable
        // message, so it sees `accepted: true`; whether storing it worked is
        // `delivered`, decided below.
        if let Some(data) = &mut self.mail.data {
            data.accepted = true;
        }
        self.mail.accepted = true;
        if self.mail.discarded {
            // A layer's decision: taken, and dropped (nothing stored, no `received`).
            let reply = Reply::new(250, (2, 0, 0), ["OK id=", self.mail.id.as_str()].concat());
            if let Some(m) = &self.services.metrics {
                m.message_discarded();
            }
            self.archive();
            return outcome.answer(reply);
        }
        let started = std::time::Instant::now();
        let result = match hook!(self, received) {
            Ok(result) => result,
            Err(_) => {
                tracing::error!(id = %self.mail.id, "the received hook panicked");
                Err(DeliveryError::Temporary(
                    "the received hook panicked".to_owned(),
                ))
            }
        };
        // Recorded here when the hook did not record it (an override that stores
        // the mail itself, or a failure before delivery).
        crate::delivery::record_unrecorded(&mut self.mail, &result);
        if let Some(m) = self.metrics() {
            count_delivery(m, started.elapsed(), result.as_ref().err());
        }
        let reply = match result {
            Ok(()) => outcome.answer(Reply::new(
                250,
                (2, 0, 0),
                ["OK id=", self.mail.id.as_str()].concat(),
            )),
            Err(error) => {
                let reply = delivery_error_reply(&error, &self.mail);
                let others = other_failures(&self.mail, &error);
                tracing::warn!(name: "delivery_failed", code = reply.code, id = %self.mail.id, others, "delivery failed: {error}");
                reply
            }
        };
        self.archive();
        reply
    }

    /// The trace header; its `with` keyword comes from the machine's facts (the
    /// greeting in force, TLS, SMTP AUTH), not from the mail record, which hooks
    /// may change.
    fn received_header(&self, facts: Facts) -> String {
        let mail = &self.mail;
        let ehlo = mail.ehlo.as_ref();
        let smtputf8 = mail.mailfrom.as_ref().is_some_and(|m| m.smtputf8);
        // RFC 3848 / RFC 6531 "with" keywords: ESMTP, ESMTPS, ESMTPA, ESMTPSA, UTF8SMTP…
        let extended = facts.greeting == Some(Greeting::Ehlo);
        let protocol = if extended || smtputf8 {
            format!(
                "{}{}{}",
                if smtputf8 { "UTF8SMTP" } else { "ESMTP" },
                if facts.tls { "S" } else { "" },
                if facts.authenticated { "A" } else { "" },
            )
        } else {
            "SMTP".to_owned()
        };
        let accepted: Vec<&RcptTo> = mail.rcptto.iter().filter(|r| r.accepted).collect();
        let recipient = match accepted.as_slice() {
            [only] => Some(only.url.as_str()),
            _ => None,
        };
        trace::received_header(&trace::ReceivedInfo {
            helo: ehlo.map(|e| e.value.as_str()),
            remote_hostname: mail.remote_hostname.as_deref(),
            remote_ip: &mail.remote_ip,
            server_name: &self.settings.server_name,
            protocol: &protocol,
            id: &mail.id,
            recipient,
            time: chrono::Utc::now().fixed_offset(),
        })
    }
}

/// The seed's record of a MAIL/RCPT address (not yet accepted); the local-part
/// analysis only when `check` is on.
fn address_record(request: PathRequest, check: bool) -> Address {
    let (url, local_part, domain) = match request.path {
        Path::Null => ("<>".to_owned(), None, None),
        Path::Postmaster(p) => (p.clone(), Some(p), None),
        Path::Mailbox(m) => (m.address(), Some(m.local_part), Some(m.domain)),
    };
    let analysis = local_part
        .as_deref()
        .filter(|_| check)
        .map(analyze_local_part);
    Address {
        accepted: false,
        value: request.argument,
        name: request.name,
        url,
        local_part,
        domain,
        bad_characters: analysis.map(|a| a.bad_characters),
        wrong_dot_usage: analysis.map(|a| a.wrong_dot_usage),
        ..Address::default()
    }
}

/// The verb an event stands for (`None`: the end of a message, not a command).
fn verb(event: &Event) -> Option<Verb> {
    Some(match event {
        Event::Ehlo { extended: true, .. } => Verb::Ehlo,
        Event::Ehlo { .. } => Verb::Helo,
        Event::MailFrom(_) => Verb::Mail,
        Event::RcptTo(_) => Verb::Rcpt,
        Event::DataStart { bdat: false } => Verb::Data,
        Event::DataStart { bdat: true } => Verb::Bdat,
        Event::Message { .. } => return None,
        Event::Rset => Verb::Rset,
        Event::Noop => Verb::Noop,
        Event::Help(_) => Verb::Help,
        Event::Vrfy(_) => Verb::Vrfy,
        Event::Expn(_) => Verb::Expn,
        Event::Quit => Verb::Quit,
        Event::Auth(_) => Verb::Auth,
        Event::StartTls => Verb::StartTls,
    })
}

/// Counts one `received` call: its time, and its failure if any.
fn count_delivery(m: &Metrics, took: std::time::Duration, error: Option<&DeliveryError>) {
    let failure = error.map(|error| match error {
        DeliveryError::Permanent(_) => DeliveryFailure::Permanent,
        error if error.is_insufficient_storage() => DeliveryFailure::Storage,
        _ => DeliveryFailure::Temporary,
    });
    m.delivery(took, failure);
    if failure.is_some() {
        m.message_refused(MessageRefused::DeliveryFailed);
    } else {
        m.message_accepted();
    }
}

#[cfg(test)]
mod tests;
