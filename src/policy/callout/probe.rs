//! The callout conversation as a client, sans-IO: one [`Probe`] talks to one
//! exchanger — greeting, EHLO (HELO if EHLO is refused), STARTTLS when offered
//! and wanted, `MAIL FROM:<>`, optionally `RCPT TO:` a made-up local part
//! (accept-all detection), `RCPT TO:<address>` — and ends with a
//! [`HostOutcome`]. The caller (`driver.rs`) reads, writes, keeps the clocks,
//! does the TLS handshake and sends `QUIT` ([`QUIT`]) once the probe is done.
//! No message is ever sent: the probe never says `DATA`.
//!
//! Commands go one at a time (no pipelining: a callout is three or four
//! commands). Replies are read with the LMTP client's bounded reader
//! ([`ReplyReader`]), so a server's garbage ends the probe as a
//! [`HostOutcome::NextHost`], never a panic.
//!
//! How replies map (Exim's `verify = …/callout` and Postfix's verify(8) agree on
//! the essentials):
//!
//! | reply | outcome |
//! |---|---|
//! | greeting not 220, EHLO and HELO refused, MAIL 4xx, malformed reply, connection closed | next host |
//! | MAIL 5xx (the null sender refused) | `error` |
//! | RCPT random 2xx | `accept_all` (the address itself is not asked) |
//! | RCPT random 4xx/5xx | go on with the address |
//! | RCPT 2xx / 5xx / 4xx | `pass` / `fail` / `tempfail` |

use crate::mail::CalloutResult;
use crate::protocol::lmtp::{ReplyReader, ServerReply};

/// The command that ends every probe.
pub const QUIT: &[u8] = b"QUIT\r\n";

/// What one probe asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeRequest {
    /// Our name for EHLO/HELO (`server_name`).
    pub helo_name: String,
    /// The address to verify, without brackets.
    pub address: String,
    /// A made-up address at the same domain to ask first (`callout_random`).
    pub random: Option<String>,
    /// Say STARTTLS when the server offers it (and TLS has not started yet).
    pub starttls: bool,
}

/// What the caller does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Write these bytes, then read the reply.
    Send(Vec<u8>),
    /// The server said 220 to STARTTLS: drop anything still buffered (it came
    /// before the handshake: an injection), do the TLS handshake, then call
    /// [`Probe::tls_started`] (or [`Probe::tls_failed`]).
    StartTls,
    /// This host is done: send [`QUIT`] and close.
    Done(HostOutcome),
}

/// What one exchanger said about the address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostOutcome {
    /// A conclusion about the address (or its domain).
    Answer {
        /// The conclusion.
        result: CalloutResult,
        /// The reply it rests on.
        code: u16,
        /// The reply's text.
        text: String,
    },
    /// No conclusion from this host: try the next one.
    NextHost {
        /// The reply that ended it, if there was one.
        code: Option<u16>,
        /// What happened.
        text: String,
    },
}

/// Where the conversation is: the reply awaited next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Greeting,
    Ehlo,
    Helo,
    StartTls,
    Mail,
    RandomRcpt,
    Rcpt,
    Done,
}

/// One conversation with one exchanger (see the module documentation).
#[derive(Debug)]
pub struct Probe {
    request: ProbeRequest,
    state: State,
    reader: ReplyReader,
    tls: bool,
    smtputf8: bool,
}

impl Probe {
    /// A probe waiting for the server's greeting.
    pub fn new(request: ProbeRequest) -> Self {
        Self {
            request,
            state: State::Greeting,
            reader: ReplyReader::default(),
            tls: false,
            smtputf8: false,
        }
    }

    /// Whether the conversation is under TLS.
    pub fn is_encrypted(&self) -> bool {
        self.tls
    }

    /// Reads the server's bytes: `(consumed, Some(step))` when a reply was
    /// whole, `(consumed, None)` when more input is needed. Call again with the
    /// rest of the input after a [`Step::Send`].
    pub fn handle_input(&mut self, input: &[u8]) -> (usize, Option<Step>) {
        if self.state == State::Done {
            return (input.len(), None);
        }
        match self.reader.read(input) {
            Err(error) => {
                let step = self.finish(HostOutcome::NextHost {
                    code: None,
                    text: format!("{error} from the server"),
                });
                (input.len(), Some(step))
            }
            Ok((used, None)) => (used, None),
            Ok((used, Some(reply))) => (used, Some(self.on_reply(&reply))),
        }
    }

    /// The TLS handshake after STARTTLS succeeded: EHLO again (RFC 3207 §4.2).
    pub fn tls_started(&mut self) -> Step {
        self.tls = true;
        self.reader = ReplyReader::default();
        self.state = State::Ehlo;
        self.send(format!("EHLO {}\r\n", self.request.helo_name))
    }

    /// The TLS handshake failed: the connection is unusable.
    pub fn tls_failed(&mut self, why: &str) -> HostOutcome {
        self.state = State::Done;
        HostOutcome::NextHost {
            code: None,
            text: format!("TLS handshake failed: {why}"),
        }
    }

    /// The server closed the connection before the probe was done.
    pub fn handle_eof(&mut self) -> HostOutcome {
        self.state = State::Done;
        HostOutcome::NextHost {
            code: None,
            text: "connection closed by the server".to_owned(),
        }
    }

    fn on_reply(&mut self, reply: &ServerReply) -> Step {
        let code = reply.code;
        let class = code / 100;
        match self.state {
            State::Greeting if code == 220 => {
                self.state = State::Ehlo;
                self.send(format!("EHLO {}\r\n", self.request.helo_name))
            }
            State::Greeting => self.next_host(reply, "greeting"),
            State::Ehlo if class == 2 => {
                self.smtputf8 = reply.has_keyword("SMTPUTF8");
                if self.request.starttls && !self.tls && reply.has_keyword("STARTTLS") {
                    self.state = State::StartTls;
                    return self.send("STARTTLS\r\n".to_owned());
                }
                self.mail_from()
            }
            State::Ehlo if class == 5 && !self.tls => {
                self.state = State::Helo;
                self.send(format!("HELO {}\r\n", self.request.helo_name))
            }
            State::Ehlo | State::Helo if class != 2 => self.next_host(reply, "EHLO/HELO"),
            State::Helo => self.mail_from(),
            State::StartTls if code == 220 => Step::StartTls,
            // STARTTLS refused after it was offered: go on in plain text.
            State::StartTls => self.mail_from(),
            State::Mail if class == 2 => match self.request.random.clone() {
                Some(random) => {
                    self.state = State::RandomRcpt;
                    self.rcpt_to(&random)
                }
                None => {
                    self.state = State::Rcpt;
                    let address = self.request.address.clone();
                    self.rcpt_to(&address)
                }
            },
            State::Mail if class == 5 => self.answer(CalloutResult::Error, reply),
            State::Mail => self.next_host(reply, "MAIL FROM:<>"),
            State::RandomRcpt if class == 2 => self.answer(CalloutResult::AcceptAll, reply),
            State::RandomRcpt => {
                self.state = State::Rcpt;
                let address = self.request.address.clone();
                self.rcpt_to(&address)
            }
            State::Rcpt => {
                let result = match class {
                    2 => CalloutResult::Pass,
                    5 => CalloutResult::Fail,
                    _ => CalloutResult::Tempfail,
                };
                self.answer(result, reply)
            }
            State::Ehlo | State::Done => self.finish(HostOutcome::NextHost {
                code: Some(code),
                text: "unexpected reply".to_owned(),
            }),
        }
    }

    fn send(&self, command: String) -> Step {
        Step::Send(command.into_bytes())
    }

    /// `MAIL FROM:<>`, with `SMTPUTF8` when the address needs it (and the
    /// server offers it; otherwise the address cannot be asked: `error`).
    fn mail_from(&mut self) -> Step {
        let needs_utf8 = !self.request.address.is_ascii();
        if needs_utf8 && !self.smtputf8 {
            return self.finish(HostOutcome::Answer {
                result: CalloutResult::Error,
                code: 0,
                text: "the address needs SMTPUTF8, which the server does not offer".to_owned(),
            });
        }
        self.state = State::Mail;
        let parameter = if needs_utf8 { " SMTPUTF8" } else { "" };
        self.send(format!("MAIL FROM:<>{parameter}\r\n"))
    }

    fn rcpt_to(&self, address: &str) -> Step {
        self.send(format!("RCPT TO:<{address}>\r\n"))
    }

    fn answer(&mut self, result: CalloutResult, reply: &ServerReply) -> Step {
        self.finish(HostOutcome::Answer {
            result,
            code: reply.code,
            text: reply.text(),
        })
    }

    fn next_host(&mut self, reply: &ServerReply, after: &str) -> Step {
        self.finish(HostOutcome::NextHost {
            code: Some(reply.code),
            text: format!("{} (after {after})", reply.text()),
        })
    }

    fn finish(&mut self, outcome: HostOutcome) -> Step {
        self.state = State::Done;
        Step::Done(outcome)
    }
}

/// Whether `address` may be written in a command: no control characters, no
/// spaces or angle brackets, not empty, one `@` with text on both sides.
pub fn is_probe_safe(address: &str) -> bool {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && address.len() <= 320
        && address
            .chars()
            .all(|c| !c.is_control() && c != ' ' && c != '<' && c != '>')
}
