//! The SMTP session state machine (RFC 5321, 2920, 1870, 6152, 6531, 3030, 2034).
//!
//! [`Machine`] owns the conversation state and nothing else: the caller feeds it the
//! bytes it read ([`Machine::handle_input`]), gets back how many it consumed and at
//! most one [`Event`] that needs a decision (a hook), answers each event with
//! [`Machine::answer`], and takes the reply bytes with [`Machine::poll_transmit`]
//! once the input is drained — which is what batches pipelined replies. Time only
//! enters as `now` ([`Machine::poll_timeout`], [`Machine::handle_timeout`]).
//!
//! Everything the RFCs decide on their own — syntax, sequence, limits, line length,
//! the strict end of DATA, BDAT chunk counting — is answered here without an event.
//! Every error reply is produced by one function, `Machine::refuse`, which also
//! counts errors and closes the session after `max_errors`.
//!
//! BDAT chunks, including those the machine will not take, are described in
//! the `chunk` module.
//!
//! # Too many recipients
//! RCPTs past `max_recipients` get `452 4.5.3` and do not count as errors (RFC
//! 5321 §4.5.3.1.10: the message goes to the accepted ones) until
//! [`RECIPIENT_OVERSHOOT_LIMIT`] of them in one transaction; each further one
//! counts toward `max_errors`.

use std::sync::Arc;
use std::time::Instant;

use super::data::{DataDecoder, DataLimits, DataOutcome};
use super::reply::Reply;

/// What one connection offers: decided by its listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConnectionOptions {
    /// STARTTLS can be offered (a certificate is loaded and TLS is not yet active).
    pub starttls: bool,
    /// The connection is already encrypted (implicit TLS, RFC 8314).
    pub tls_active: bool,
    /// MAIL needs a successful AUTH first (submission, RFC 6409): 530 5.7.0 otherwise.
    pub require_auth: bool,
    /// AUTH PLAIN/LOGIN is available (advertised inside TLS).
    pub auth: bool,
    /// AUTH is also advertised and accepted without TLS (test set-ups, TLS-terminating
    /// proxies); otherwise plaintext AUTH gets 538 5.7.11.
    pub allow_plaintext_auth: bool,
}

#[derive(Debug)]
enum Mode {
    Command,
    /// Discarding the rest of an over-long command line.
    SkipLine,
    Data(DataDecoder),
    /// Reading `remaining` octets of a BDAT chunk; `keep` false discards them and
    /// sends `deferred` afterwards.
    Chunk {
        remaining: u64,
        size: u64,
        last: bool,
        keep: bool,
    },
    /// Waiting for the client's next AUTH response line.
    Auth(auth::SaslStep),
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Greeting,
    Ehlo { extended: bool },
    Mail { smtputf8: bool },
    Rcpt,
    Data,
    Bdat { size: u64, last: bool },
    Message,
    Rset,
    Quit,
    Tls,
    Auth,
    Other,
}

#[derive(Debug, Default)]
struct Transaction {
    smtputf8: bool,
    recipients: usize,
    /// RCPTs refused with 452 because `max_recipients` were already accepted.
    excess_recipients: usize,
    bdat: bool,
}

/// The state of one SMTP session.
#[derive(Debug)]
pub struct Machine {
    limits: Arc<Limits>,
    ehlo_keywords: Arc<[String]>,
    mode: Mode,
    pending: Option<Pending>,
    /// Greeting was negative: only QUIT is accepted (RFC 5321 §3.1).
    refused: bool,
    options: ConnectionOptions,
    /// The server is shutting down: close at the next idle moment.
    draining: bool,
    /// The one owner of EHLO vs HELO, AUTH done and TLS active.
    facts: Facts,
    tx: Option<Transaction>,
    message: Vec<u8>,
    deferred: Option<Reply>,
    /// The BDAT chunk being read pushed the message over `max_message_size`
    /// after this many octets: its end is the message's refused end.
    chunk_overflow: Option<u64>,
    out: Vec<u8>,
    errors: u32,
    deadline_base: Instant,
}

impl Machine {
    /// A new session. The first answer it expects is the greeting (the connect hook's
    /// reply); input is held until then.
    pub fn new(limits: Arc<Limits>, now: Instant) -> Self {
        let ehlo_keywords = ehlo_keywords(&limits);
        Self::with_options(limits, ehlo_keywords, ConnectionOptions::default(), now)
    }

    /// Like [`Machine::new`], with the connection's options and EHLO keywords built
    /// once with [`ehlo_keywords`].
    pub fn with_options(
        limits: Arc<Limits>,
        ehlo_keywords: Arc<[String]>,
        options: ConnectionOptions,
        now: Instant,
    ) -> Self {
        Self {
            limits,
            ehlo_keywords,
            mode: Mode::Command,
            pending: Some(Pending::Greeting),
            refused: false,
            options,
            draining: false,
            facts: Facts {
                tls: options.tls_active,
                ..Facts::default()
            },
            tx: None,
            message: Vec::new(),
            deferred: None,
            chunk_overflow: None,
            out: Vec::new(),
            errors: 0,
            deadline_base: now,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// True once the session is over; flush [`Machine::poll_transmit`] and close.
    pub fn is_closed(&self) -> bool {
        matches!(self.mode, Mode::Closed)
    }

    /// True while an event waits for [`Machine::answer`].
    pub fn is_waiting(&self) -> bool {
        self.pending.is_some()
    }

    /// Moves the queued reply bytes into `out`.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) {
        if out.is_empty() {
            std::mem::swap(out, &mut self.out);
        } else {
            out.append(&mut self.out);
        }
    }

    /// Bytes queued for sending.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// `outcome`, or [`DataOutcome::HeaderTooLarge`] when the complete message's
    /// header section is over the limit (then the message is dropped at once).
    fn check_header_section(&mut self, outcome: DataOutcome) -> DataOutcome {
        let limit = self.limits.max_header_size;
        if outcome != DataOutcome::Ok || limit == 0 || self.message.len() <= limit {
            return outcome;
        }
        let header = if self.message.starts_with(b"\r\n") {
            0
        } else {
            memchr::memmem::find(&self.message, b"\r\n\r\n")
                .map_or(self.message.len(), |end| end + 2)
        };
        if header <= limit {
            return outcome;
        }
        self.message = Vec::new();
        DataOutcome::HeaderTooLarge
    }

    /// The message is over (`outcome` as the decoder saw it): the event that
    /// hands it over, or its refusal, for the caller's decision.
    fn message_end(&mut self, outcome: DataOutcome) -> Event {
        let size = self.message.len() as u64;
        let outcome = self.check_header_section(outcome);
        self.pending = Some(Pending::Message);
        match Refusal::new(outcome, size, &self.limits) {
            Some(refusal) => {
                self.message = Vec::new();
                Event::Message {
                    end: MessageEnd::Refused(refusal),
                    facts: self.facts,
                }
            }
            None => Event::Message {
                end: MessageEnd::Complete(std::mem::take(&mut self.message)),
                facts: self.facts,
            },
        }
    }

    /// When the client will have waited too long, or `None` while a hook decides.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (&self.mode, self.pending) {
            (Mode::Closed, _) | (_, Some(_)) => None,
            (Mode::Data(_) | Mode::Chunk { .. }, None) => {
                Some(self.deadline_base + self.limits.data_timeout)
            }
            (_, None) => Some(self.deadline_base + self.limits.command_timeout),
        }
    }

    /// Closes the session with 421 4.4.2 if the deadline has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.poll_timeout().is_some_and(|deadline| now >= deadline) {
            let text = format!(
                "{} Timeout waiting for client input",
                self.limits.server_name
            );
            self.send(Reply::new(421, (4, 4, 2), text));
        }
    }

    /// The server is shutting down: an idle session gets 421 4.3.2 at once; one
    /// in the middle of a message or a hook finishes that first, then gets the 421.
    pub fn handle_shutdown(&mut self) {
        self.draining = true;
        self.close_if_draining();
    }

    fn close_if_draining(&mut self) {
        if self.draining
            && self.pending.is_none()
            && matches!(self.mode, Mode::Command | Mode::SkipLine)
        {
            let text = format!(
                "{} Service shutting down, try again later",
                self.limits.server_name
            );
            self.out_reply(&Reply::new(421, (4, 3, 2), text), &[]);
        }
    }

    /// The client closed its side: nothing more will come.
    pub fn handle_eof(&mut self) {
        self.mode = Mode::Closed;
    }

    /// True when EHLO advertises STARTTLS.
    pub fn starttls_offered(&self) -> bool {
        self.options.starttls && !self.facts.tls
    }

    /// What the session has established: the greeting, AUTH, TLS.
    pub fn facts(&self) -> Facts {
        self.facts
    }

    /// The TLS handshake after STARTTLS succeeded: the session starts over as if
    /// just connected (no greeting; the client must EHLO again, RFC 3207 §4.2).
    pub fn tls_established(&mut self, now: Instant) {
        if self.pending != Some(Pending::Tls) {
            return;
        }
        self.pending = None;
        self.facts = Facts {
            greeting: None,
            authenticated: false,
            tls: true,
        };
        self.reset_transaction();
        self.mode = Mode::Command;
        self.deadline_base = now;
    }

    /// Feeds bytes read from the client. Stops at the first event; call again with the
    /// unconsumed rest after answering it.
    pub fn handle_input(&mut self, input: &[u8], now: Instant) -> Progress {
        let mut used = 0;
        if self.pending.is_some() {
            return Progress {
                consumed: 0,
                event: None,
            };
        }
        loop {
            let rest = input.get(used..).unwrap_or_default();
            match &mut self.mode {
                Mode::Closed => break,
                Mode::Command => {
                    let Some(line) = self.next_line(rest, input.len(), &mut used, now) else {
                        break;
                    };
                    let Some(line) = line else { continue };
                    if let Some(event) = self.command(line) {
                        return Progress {
                            consumed: used,
                            event: Some(event),
                        };
                    }
                }
                Mode::SkipLine => match memchr::memchr(b'\n', rest) {
                    None => {
                        used = input.len();
                        break;
                    }
                    Some(lf) => {
                        used += lf + 1;
                        self.deadline_base = now;
                        self.mode = Mode::Command;
                        self.refuse(line_too_long());
                    }
                },
                Mode::Auth(_) => {
                    let Some(line) = self.next_line(rest, input.len(), &mut used, now) else {
                        break;
                    };
                    // Any line, even a refused one, ends the exchange (unless the
                    // refusal closed the session).
                    let step = match std::mem::replace(&mut self.mode, Mode::Command) {
                        Mode::Auth(step) => step,
                        other => {
                            self.mode = other;
                            continue;
                        }
                    };
                    let Some(line) = line else { continue };
                    if let Some(event) = self.sasl_step(step, line) {
                        return Progress {
                            consumed: used,
                            event: Some(event),
                        };
                    }
                }
                Mode::Data(decoder) => {
                    if !rest.is_empty() {
                        self.deadline_base = now;
                    }
                    let decoded = decoder.decode(rest, &mut self.message);
                    used += decoded.consumed;
                    if !decoded.finished {
                        break;
                    }
                    let outcome = decoder.outcome();
                    self.mode = Mode::Command;
                    let event = self.message_end(outcome);
                    return Progress {
                        consumed: used,
                        event: Some(event),
                    };
                }
                Mode::Chunk { .. } => {
                    let step = self.chunk_input(rest, now);
                    used += step.consumed;
                    if let Some(event) = step.event {
                        return Progress {
                            consumed: used,
                            event: Some(event),
                        };
                    }
                    if !step.finished {
                        break;
                    }
                }
            }
        }
        Progress {
            consumed: used,
            event: None,
        }
    }

    /// The next complete line of `rest` (without its line ending), for command and
    /// AUTH modes: `None` = wait for more input (an over-long partial line switches
    /// to skipping, so memory stays bounded); `Some(None)` = a line too long,
    /// already refused; `Some(Some(line))` = a line to handle. `used` advances past
    /// what was consumed (`total` = the whole input's length).
    fn next_line<'a>(
        &mut self,
        rest: &'a [u8],
        total: usize,
        used: &mut usize,
        now: Instant,
    ) -> Option<Option<&'a [u8]>> {
        let max = match self.mode {
            Mode::Auth(_) => MAX_AUTH_LINE,
            _ => self.limits.max_command_line,
        };
        let Some(lf) = memchr::memchr(b'\n', rest) else {
            if rest.len() >= max {
                *used = total;
                self.mode = Mode::SkipLine;
            }
            return None;
        };
        *used += lf + 1;
        self.deadline_base = now;
        if lf + 1 > max {
            self.refuse(line_too_long());
            return Some(None);
        }
        let line = rest.get(..lf).unwrap_or_default();
        Some(Some(line.strip_suffix(b"\r").unwrap_or(line)))
    }

    /// Answers the event last returned by [`Machine::handle_input`] (or, first of all,
    /// the greeting). Positive answers move the session on; negative ones leave it.
    pub fn answer(&mut self, reply: Reply) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        let positive = reply.is_positive();
        match pending {
            Pending::Greeting => {
                self.refused = !positive;
                // RFC 2034: no enhanced code on the greeting itself; a refusal
                // (421/554) keeps its code, as the client has nothing else to go on.
                let reply = if positive {
                    Reply {
                        enhanced: None,
                        ..reply
                    }
                } else {
                    reply
                };
                self.out_reply(&reply, &[]);
                return;
            }
            Pending::Ehlo { extended } if positive => {
                self.facts.greeting = Some(if extended {
                    Greeting::Ehlo
                } else {
                    Greeting::Helo
                });
                self.reset_transaction();
                let reply = Reply {
                    enhanced: None,
                    ..reply
                };
                if extended {
                    let keywords = Arc::clone(&self.ehlo_keywords);
                    let mut words: Vec<&str> = keywords.iter().map(String::as_str).collect();
                    if self.starttls_offered() {
                        words.push("STARTTLS");
                    }
                    if self.auth_offered() {
                        words.push("AUTH PLAIN LOGIN");
                    }
                    self.out_reply(&reply, &words);
                } else {
                    self.out_reply(&reply, &[]);
                }
                return;
            }
            Pending::Mail { smtputf8 } if positive => {
                self.tx = Some(Transaction {
                    smtputf8,
                    ..Transaction::default()
                });
            }
            Pending::Rcpt if positive => {
                if let Some(tx) = &mut self.tx {
                    tx.recipients += 1;
                }
            }
            Pending::Data if !reply.is_negative() => {
                // Whatever a hook said, a go-ahead for DATA is a 354: the client
                // sends the message next, which must never be read as commands.
                let reply = Reply {
                    code: 354,
                    enhanced: None,
                    ..reply
                };
                self.mode = Mode::Data(DataDecoder::new(DataLimits {
                    max_message_size: self.limits.max_message_size,
                    max_line_length: self.limits.max_text_line,
                    bare_line_ending: self.limits.bare_line_ending,
                }));
                self.message.clear();
                self.out_reply(&reply, &[]);
                return;
            }
            Pending::Bdat { size, last } => {
                let keep = !reply.is_negative();
                if !keep {
                    self.reset_transaction();
                    self.deferred = Some(reply);
                }
                self.mode = Mode::Chunk {
                    remaining: size,
                    size,
                    last,
                    keep,
                };
                return;
            }
            Pending::Message => self.reset_transaction(),
            Pending::Auth if positive => self.facts.authenticated = true,
            Pending::Rset if positive => self.reset_transaction(),
            Pending::Quit => {
                self.send(reply);
                self.mode = Mode::Closed;
                return;
            }
            _ => {}
        }
        self.send(reply);
        self.close_if_draining();
    }

    fn reset_transaction(&mut self) {
        self.tx = None;
        self.message = Vec::new();
    }

    /// Queues a reply; error replies are counted and may end the session.
    fn send(&mut self, reply: Reply) {
        if reply.is_negative() && reply.code != 421 {
            self.refuse(reply);
        } else {
            self.out_reply(&reply, &[]);
        }
    }

    /// Queues an error reply, counts it, and closes after `max_errors` of them.
    /// True once the session was closed for reaching `max_errors` error replies
    /// (protocol abuse, which the caller may count against the client).
    pub fn closed_for_too_many_errors(&self) -> bool {
        self.errors >= self.limits.max_errors
    }

    fn refuse(&mut self, reply: Reply) {
        self.out_reply(&reply, &[]);
        self.errors += 1;
        if self.errors >= self.limits.max_errors && !self.is_closed() {
            let text = format!(
                "{} Too many errors, closing connection",
                self.limits.server_name
            );
            self.out_reply(&Reply::new(421, (4, 7, 0), text), &[]);
        }
    }

    fn out_reply(&mut self, reply: &Reply, extra: &[&str]) {
        if self.is_closed() {
            return;
        }
        reply.write_with_extra_lines(&mut self.out, extra);
        if reply.close {
            self.mode = Mode::Closed;
        }
    }

    fn wait(&mut self, pending: Pending, event: Event) -> Option<Event> {
        self.pending = Some(pending);
        Some(event)
    }
}

mod auth;
mod chunk;
mod commands;
mod event;
mod limits;

use limits::too_large;
pub use limits::{Limits, RECIPIENT_OVERSHOOT_LIMIT, Refusal};

pub use auth::{Credentials, MAX_AUTH_LINE, Mechanism, Secret};

pub use event::{Body, Event, Facts, Greeting, MessageEnd, PathRequest, Progress};

pub use commands::ehlo_keywords;
use commands::line_too_long;

#[cfg(test)]
mod tests;
