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
//! Every error reply is produced by one function, [`Machine::refuse`], which also
//! counts errors and closes the session after `max_errors`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::address::{self, AddressError, PathKind};
use super::command::{Command, CommandError, parse_command};
use super::data::{BareLineEnding, DataDecoder, DataLimits, DataOutcome};
use super::reply::Reply;
use super::{Path, address::parameters};

/// Limits and names the machine enforces; shared by all sessions of a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Name used in the greeting and replies.
    pub server_name: String,
    /// Longest command line in octets, CRLF included (RFC 5321: 512).
    pub max_command_line: usize,
    /// Longest text line in DATA in octets, CRLF included (RFC 5321: 1000); 0 = none.
    pub max_text_line: usize,
    /// Largest message in octets, advertised as SIZE.
    pub max_message_size: u64,
    /// Most accepted recipients per transaction.
    pub max_recipients: usize,
    /// Error replies tolerated per session before 421 and close.
    pub max_errors: u32,
    /// Time allowed to send one command line.
    pub command_timeout: Duration,
    /// Time allowed between two reads while receiving message data.
    pub data_timeout: Duration,
    /// What to do with a bare CR or LF inside DATA.
    pub bare_line_ending: BareLineEnding,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            server_name: "localhost".into(),
            max_command_line: 512,
            max_text_line: 1000,
            max_message_size: 25 * 1024 * 1024,
            max_recipients: 100,
            max_errors: 10,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(600),
            bare_line_ending: BareLineEnding::Reject,
        }
    }
}

/// The BODY= parameter of MAIL (RFC 6152).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// `BODY=7BIT`
    SevenBit,
    /// `BODY=8BITMIME`
    EightBitMime,
}

impl Body {
    /// The parameter value as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SevenBit => "7BIT",
            Self::EightBitMime => "8BITMIME",
        }
    }
}

/// A MAIL FROM or RCPT TO that passed syntax and sequence checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRequest {
    /// The raw argument after `FROM:` / `TO:` (the seed's `value`).
    pub argument: String,
    /// Text before `<`, if any (the seed's `name`).
    pub name: String,
    /// The parsed path.
    pub path: Path,
    /// `SIZE=` (MAIL only).
    pub size: Option<u64>,
    /// `BODY=` (MAIL only).
    pub body: Option<Body>,
    /// `SMTPUTF8` was given (MAIL) or is in force for the transaction (RCPT).
    pub smtputf8: bool,
}

/// Something the machine needs a decision on; answer it with [`Machine::answer`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// EHLO (`extended`) or HELO with its argument.
    Ehlo {
        /// The argument as sent.
        domain: String,
        /// EHLO rather than HELO.
        extended: bool,
    },
    /// MAIL FROM; a positive answer opens the transaction.
    MailFrom(PathRequest),
    /// RCPT TO; a positive answer adds the recipient.
    RcptTo(PathRequest),
    /// DATA (`bdat == false`, answer 354 to go on) or the first BDAT of a transaction
    /// (any non-negative answer goes on; the chunk follows).
    DataStart {
        /// The message comes in BDAT chunks.
        bdat: bool,
    },
    /// The message is complete: take it with [`Machine::take_message`]; the answer is
    /// the final reply of the transaction. `outcome` other than `Ok` means the machine
    /// already knows the message must be refused ([`refusal`] gives the reply).
    Message {
        /// Whether the message may be delivered.
        outcome: DataOutcome,
    },
    /// RSET.
    Rset,
    /// NOOP.
    Noop,
    /// HELP with its (possibly empty) argument.
    Help(String),
    /// VRFY with its argument.
    Vrfy(String),
    /// EXPN with its argument.
    Expn(String),
    /// QUIT; the connection closes after the answer.
    Quit,
}

/// What [`Machine::handle_input`] did with the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Bytes of the input used; the caller drops them and keeps the rest.
    pub consumed: usize,
    /// A decision to make before more input is handled.
    pub event: Option<Event>,
}

/// The reply for a message the decoder refused; `None` for [`DataOutcome::Ok`].
pub fn refusal(outcome: DataOutcome, limits: &Limits) -> Option<Reply> {
    Some(match outcome {
        DataOutcome::Ok => return None,
        DataOutcome::TooLarge => too_large(limits),
        DataOutcome::BareLineEnding => Reply::new(
            550,
            (5, 6, 2),
            "Message refused: bare CR or LF not allowed, lines must end in CRLF",
        ),
        DataOutcome::LineTooLong => Reply::new(
            500,
            (5, 5, 6),
            format!(
                "Message refused: line longer than {} octets",
                limits.max_text_line
            ),
        ),
    })
}

fn too_large(limits: &Limits) -> Reply {
    Reply::new(
        552,
        (5, 3, 4),
        format!(
            "Message size exceeds fixed maximum message size of {} octets",
            limits.max_message_size
        ),
    )
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
    Other,
}

#[derive(Debug, Default)]
struct Transaction {
    smtputf8: bool,
    recipients: usize,
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
    helo: Option<bool>,
    tx: Option<Transaction>,
    message: Vec<u8>,
    deferred: Option<Reply>,
    out: Vec<u8>,
    errors: u32,
    deadline_base: Instant,
}

impl Machine {
    /// A new session. The first answer it expects is the greeting (the connect hook's
    /// reply); input is held until then.
    pub fn new(limits: Arc<Limits>, now: Instant) -> Self {
        let ehlo_keywords = ehlo_keywords(&limits);
        Self::with_keywords(limits, ehlo_keywords, now)
    }

    /// Like [`Machine::new`], sharing EHLO keywords built once with [`ehlo_keywords`].
    pub fn with_keywords(limits: Arc<Limits>, ehlo_keywords: Arc<[String]>, now: Instant) -> Self {
        Self {
            limits,
            ehlo_keywords,
            mode: Mode::Command,
            pending: Some(Pending::Greeting),
            refused: false,
            helo: None,
            tx: None,
            message: Vec::new(),
            deferred: None,
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

    /// The complete message of the last [`Event::Message`].
    pub fn take_message(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.message)
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

    /// The client closed its side: nothing more will come.
    pub fn handle_eof(&mut self) {
        self.mode = Mode::Closed;
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
                    let Some(lf) = memchr::memchr(b'\n', rest) else {
                        if rest.len() >= self.limits.max_command_line {
                            used = input.len();
                            self.mode = Mode::SkipLine;
                        }
                        break;
                    };
                    let line = rest.get(..lf).unwrap_or_default();
                    used += lf + 1;
                    self.deadline_base = now;
                    if lf + 1 > self.limits.max_command_line {
                        self.refuse(line_too_long());
                        continue;
                    }
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
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
                    self.pending = Some(Pending::Message);
                    return Progress {
                        consumed: used,
                        event: Some(Event::Message { outcome }),
                    };
                }
                Mode::Chunk {
                    remaining,
                    size,
                    last,
                    keep,
                } => {
                    let take = (*remaining).min(rest.len() as u64) as usize;
                    if take > 0 {
                        self.deadline_base = now;
                    }
                    let chunk = rest.get(..take).unwrap_or_default();
                    let room = self
                        .limits
                        .max_message_size
                        .saturating_sub(self.message.len() as u64);
                    if *keep && (take as u64) <= room {
                        self.message.extend_from_slice(chunk);
                    } else if *keep {
                        *keep = false;
                        self.message = Vec::new();
                        self.deferred = Some(too_large(&self.limits));
                        self.tx = None;
                    }
                    used += take;
                    *remaining -= take as u64;
                    if *remaining > 0 {
                        break;
                    }
                    let (size, last, keep) = (*size, *last, *keep);
                    self.mode = Mode::Command;
                    if let Some(reply) = self.deferred.take() {
                        self.refuse(reply);
                    } else if keep && last {
                        self.pending = Some(Pending::Message);
                        return Progress {
                            consumed: used,
                            event: Some(Event::Message {
                                outcome: DataOutcome::Ok,
                            }),
                        };
                    } else if keep {
                        let text = format!("{size} octets received");
                        self.send(Reply::new(250, (2, 0, 0), text));
                    }
                }
            }
        }
        Progress {
            consumed: used,
            event: None,
        }
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
                let reply = Reply {
                    enhanced: None,
                    ..reply
                };
                self.out_reply(&reply, &[]);
                return;
            }
            Pending::Ehlo { extended } if positive => {
                self.helo = Some(extended);
                self.reset_transaction();
                let reply = Reply {
                    enhanced: None,
                    ..reply
                };
                if extended {
                    let keywords = Arc::clone(&self.ehlo_keywords);
                    let words: Vec<&str> = keywords.iter().map(String::as_str).collect();
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
            Pending::Data if reply.code == 354 => {
                self.mode = Mode::Data(DataDecoder::new(DataLimits {
                    max_message_size: self.limits.max_message_size,
                    max_line_length: self.limits.max_text_line,
                    bare_line_ending: self.limits.bare_line_ending,
                }));
                self.message.clear();
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
            Pending::Rset if positive => self.reset_transaction(),
            Pending::Quit => {
                self.send(reply);
                self.mode = Mode::Closed;
                return;
            }
            _ => {}
        }
        self.send(reply);
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

    /// Handles one complete command line; returns the event if a hook must decide.
    fn command(&mut self, line: &[u8]) -> Option<Event> {
        let command = match parse_command(line) {
            Ok(command) => command,
            Err(error) => {
                self.refuse(command_error_reply(error));
                return None;
            }
        };
        if self.refused && command != Command::Quit {
            self.refuse(out_of_sequence("Session refused, only QUIT is accepted"));
            return None;
        }
        match command {
            Command::Ehlo(domain) | Command::Helo(domain) => {
                let extended = matches!(command, Command::Ehlo(_));
                self.wait(
                    Pending::Ehlo { extended },
                    Event::Ehlo {
                        domain: domain.to_owned(),
                        extended,
                    },
                )
            }
            Command::Mail(argument) => self.mail(argument),
            Command::Rcpt(argument) => self.rcpt(argument),
            Command::Data => self.data(),
            Command::Bdat { size, last } => self.bdat(size, last),
            Command::Rset => self.wait(Pending::Rset, Event::Rset),
            Command::Noop => self.wait(Pending::Other, Event::Noop),
            Command::Quit => self.wait(Pending::Quit, Event::Quit),
            Command::Help(topic) => self.wait(Pending::Other, Event::Help(topic.to_owned())),
            Command::Vrfy(who) => self.wait(Pending::Other, Event::Vrfy(who.to_owned())),
            Command::Expn(list) => self.wait(Pending::Other, Event::Expn(list.to_owned())),
            Command::StartTls => {
                self.refuse(Reply::new(454, (4, 7, 0), "TLS not available"));
                None
            }
            Command::Auth(_) => {
                self.refuse(Reply::new(502, (5, 5, 1), "AUTH not available"));
                None
            }
        }
    }

    fn mail(&mut self, argument: &str) -> Option<Event> {
        let Some(extended) = self.helo else {
            self.refuse(out_of_sequence("Send EHLO or HELO first"));
            return None;
        };
        if self.tx.is_some() {
            self.refuse(out_of_sequence("Nested MAIL command"));
            return None;
        }
        let parsed = match address::parse_path_argument(argument, PathKind::Reverse) {
            Ok(parsed) => parsed,
            Err(error) => {
                self.refuse(address_error_reply(error, (5, 1, 7), "sender"));
                return None;
            }
        };
        let (mut size, mut body, mut smtputf8) = (None, None, false);
        for parameter in parameters(parsed.parameters) {
            let Ok(parameter) = parameter else {
                self.refuse(Reply::new(
                    501,
                    (5, 5, 4),
                    "Syntax error in MAIL parameters",
                ));
                return None;
            };
            let keyword = parameter.keyword;
            let result = if !extended {
                Err(Reply::new(555, (5, 5, 4), "MAIL parameters require EHLO"))
            } else if keyword.eq_ignore_ascii_case("SIZE") && size.is_none() {
                self.size_parameter(parameter.value).map(|n| size = Some(n))
            } else if keyword.eq_ignore_ascii_case("BODY") && body.is_none() {
                body_parameter(parameter.value).map(|b| body = Some(b))
            } else if keyword.eq_ignore_ascii_case("SMTPUTF8") && !smtputf8 {
                match parameter.value {
                    None => {
                        smtputf8 = true;
                        Ok(())
                    }
                    Some(_) => Err(Reply::new(501, (5, 5, 4), "SMTPUTF8 takes no value")),
                }
            } else if ["SIZE", "BODY", "SMTPUTF8"]
                .iter()
                .any(|k| keyword.eq_ignore_ascii_case(k))
            {
                Err(Reply::new(501, (5, 5, 4), "Duplicate MAIL parameter"))
            } else {
                Err(unknown_parameter("MAIL"))
            };
            if let Err(reply) = result {
                self.refuse(reply);
                return None;
            }
        }
        if !smtputf8 && path_is_non_ascii(&parsed.path) {
            self.refuse(needs_smtputf8());
            return None;
        }
        let request = PathRequest {
            argument: argument.to_owned(),
            name: parsed.name.to_owned(),
            path: parsed.path,
            size,
            body,
            smtputf8,
        };
        self.wait(Pending::Mail { smtputf8 }, Event::MailFrom(request))
    }

    fn size_parameter(&self, value: Option<&str>) -> Result<u64, Reply> {
        let size = value
            .filter(|v| v.len() <= 20 && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| Reply::new(501, (5, 5, 4), "SIZE needs a number"))?;
        if size > self.limits.max_message_size {
            return Err(too_large(&self.limits));
        }
        Ok(size)
    }

    fn rcpt(&mut self, argument: &str) -> Option<Event> {
        let Some(tx) = &self.tx else {
            self.refuse(out_of_sequence("Send MAIL first"));
            return None;
        };
        if tx.bdat {
            self.refuse(out_of_sequence("RCPT not allowed after BDAT"));
            return None;
        }
        let smtputf8 = tx.smtputf8;
        if tx.recipients >= self.limits.max_recipients {
            self.refuse(Reply::new(452, (4, 5, 3), "Too many recipients"));
            return None;
        }
        let parsed = match address::parse_path_argument(argument, PathKind::Forward) {
            Ok(parsed) => parsed,
            Err(error) => {
                self.refuse(address_error_reply(error, (5, 1, 3), "recipient"));
                return None;
            }
        };
        if let Some(parameter) = parameters(parsed.parameters).next() {
            self.refuse(match parameter {
                Ok(_) => unknown_parameter("RCPT"),
                Err(_) => Reply::new(501, (5, 5, 4), "Syntax error in RCPT parameters"),
            });
            return None;
        }
        if !smtputf8 && path_is_non_ascii(&parsed.path) {
            self.refuse(needs_smtputf8());
            return None;
        }
        let request = PathRequest {
            argument: argument.to_owned(),
            name: parsed.name.to_owned(),
            path: parsed.path,
            size: None,
            body: None,
            smtputf8,
        };
        self.wait(Pending::Rcpt, Event::RcptTo(request))
    }

    /// Why DATA/BDAT cannot start now, if it cannot.
    fn data_refusal(&self) -> Option<Reply> {
        match &self.tx {
            None => Some(out_of_sequence("Send MAIL first")),
            Some(tx) if tx.recipients == 0 => {
                Some(out_of_sequence("Send RCPT first (no valid recipients)"))
            }
            Some(_) => None,
        }
    }

    fn data(&mut self) -> Option<Event> {
        if let Some(reply) = self.data_refusal() {
            self.refuse(reply);
            return None;
        }
        if self.tx.as_ref().is_some_and(|tx| tx.bdat) {
            self.refuse(out_of_sequence("DATA not allowed after BDAT"));
            return None;
        }
        self.wait(Pending::Data, Event::DataStart { bdat: false })
    }

    fn bdat(&mut self, size: u64, last: bool) -> Option<Event> {
        let chunk = |keep| Mode::Chunk {
            remaining: size,
            size,
            last,
            keep,
        };
        if let Some(reply) = self.data_refusal() {
            // The chunk is read and thrown away, never taken for commands.
            self.deferred = Some(reply);
            self.mode = chunk(false);
            return None;
        }
        let Some(tx) = &mut self.tx else {
            return None;
        };
        if tx.bdat {
            self.mode = chunk(true);
            return None;
        }
        tx.bdat = true;
        self.message.clear();
        self.wait(
            Pending::Bdat { size, last },
            Event::DataStart { bdat: true },
        )
    }
}

/// The EHLO keywords this machine implements, in the order advertised.
pub fn ehlo_keywords(limits: &Limits) -> Arc<[String]> {
    [
        "PIPELINING".to_owned(),
        format!("SIZE {}", limits.max_message_size),
        "8BITMIME".to_owned(),
        "SMTPUTF8".to_owned(),
        "ENHANCEDSTATUSCODES".to_owned(),
        "CHUNKING".to_owned(),
        "HELP".to_owned(),
    ]
    .into()
}

fn path_is_non_ascii(path: &Path) -> bool {
    match path {
        Path::Null => false,
        Path::Postmaster(p) => address::is_non_ascii(p),
        Path::Mailbox(m) => {
            address::is_non_ascii(&m.local_part) || address::is_non_ascii(&m.domain)
        }
    }
}

fn body_parameter(value: Option<&str>) -> Result<Body, Reply> {
    match value {
        Some(v) if v.eq_ignore_ascii_case("7BIT") => Ok(Body::SevenBit),
        Some(v) if v.eq_ignore_ascii_case("8BITMIME") => Ok(Body::EightBitMime),
        Some(_) => Err(Reply::new(555, (5, 5, 4), "Unsupported BODY type")),
        None => Err(Reply::new(501, (5, 5, 4), "BODY needs a value")),
    }
}

fn out_of_sequence(text: &'static str) -> Reply {
    Reply::new(503, (5, 5, 1), text)
}

fn line_too_long() -> Reply {
    Reply::new(500, (5, 5, 6), "Line too long")
}

fn unknown_parameter(command: &str) -> Reply {
    Reply::new(555, (5, 5, 4), format!("Unsupported {command} parameter"))
}

fn needs_smtputf8() -> Reply {
    Reply::new(553, (5, 6, 7), "Non-ASCII address requires SMTPUTF8")
}

fn address_error_reply(error: AddressError, enhanced: (u8, u16, u16), who: &str) -> Reply {
    let text = match error {
        AddressError::TooLong => format!("Bad {who} address: too long"),
        _ => format!("Bad {who} address syntax, expected <local-part@domain>"),
    };
    Reply::new(501, enhanced, text)
}

fn command_error_reply(error: CommandError) -> Reply {
    match error {
        CommandError::Unrecognized => Reply::new(500, (5, 5, 2), "Command not recognized"),
        CommandError::InvalidUtf8 => Reply::new(501, (5, 5, 2), "Invalid UTF-8 in command"),
        CommandError::ControlCharacter => {
            Reply::new(501, (5, 5, 2), "Control character in command")
        }
        CommandError::UnexpectedArgument(verb) => {
            Reply::new(501, (5, 5, 4), format!("{verb} takes no argument"))
        }
        CommandError::MissingArgument(verb) => {
            Reply::new(501, (5, 5, 4), format!("{verb} needs an argument"))
        }
        CommandError::Syntax(form) => {
            Reply::new(501, (5, 5, 4), format!("Syntax error, expected {form}"))
        }
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
