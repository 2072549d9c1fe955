//! What the state machine hands to its caller: the [`Event`]s that need a
//! decision, the requests they carry, and the [`Progress`] of one input call.

use super::{Credentials, Refusal};
use crate::protocol::Path;

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

/// Something the machine needs a decision on; answer it with [`Machine::answer`](super::Machine::answer).
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
    /// The message ended — DATA's final dot or the last BDAT chunk, or a BDAT
    /// chunk that pushed it over `max_message_size` — complete or refused; the
    /// answer is the final reply of the transaction (for a refused message,
    /// answer `Reply::from(refusal)` or a refusal of your own).
    Message {
        /// The message, or why the machine refused it.
        end: MessageEnd,
        /// The session's facts as the message ended (for the trace header's
        /// `with` keyword: ESMTP, ESMTPS, ESMTPSA…).
        facts: Facts,
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
    /// AUTH credentials to check: answer 235 2.7.0 to accept, 535 5.7.8 to refuse.
    Auth(Credentials),
    /// STARTTLS was accepted and its 220 queued: flush it, throw away any input
    /// still buffered (RFC 3207, CVE-2011-0411), run the TLS handshake and call
    /// [`Machine::tls_established`](super::Machine::tls_established). This event gets no [`Machine::answer`](super::Machine::answer).
    StartTls,
}

/// How the client greeted ([`Facts::greeting`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Greeting {
    /// HELO (RFC 821 SMTP).
    Helo,
    /// EHLO (ESMTP).
    Ehlo,
}

/// What the session has established, owned by the machine (it sequences the
/// commands by them) and handed to the caller, never tracked twice: read it
/// with [`Machine::facts`](super::Machine::facts) or from [`Event::Message`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Facts {
    /// The greeting in force: the last EHLO/HELO answered positively since the
    /// connection (or TLS) began.
    pub greeting: Option<Greeting>,
    /// SMTP AUTH succeeded (since TLS began, if it did).
    pub authenticated: bool,
    /// The connection is encrypted (implicit TLS or after STARTTLS).
    pub tls: bool,
}

/// How a message ended ([`Event::Message`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageEnd {
    /// The whole message, dot-unstuffed (DATA) or joined (BDAT), ready to deliver.
    Complete(Vec<u8>),
    /// The machine refused it (size, header section, line length, bare line
    /// endings); what was received is gone.
    Refused(Refusal),
}

/// What [`Machine::handle_input`](super::Machine::handle_input) did with the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Bytes of the input used; the caller drops them and keeps the rest.
    pub consumed: usize,
    /// A decision to make before more input is handled.
    pub event: Option<Event>,
}
