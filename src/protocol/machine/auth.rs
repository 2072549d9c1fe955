//! SMTP AUTH (RFC 4954) with the PLAIN (RFC 4616) and LOGIN mechanisms: the
//! command's sequence checks, the `334` exchange and the base64 decoding.
//! Checking the credentials is not done here: the machine hands an
//! [`Event::Auth`] to its caller and waits for the answer (235 or 535).
//!
//! What reaches the caller is checked first: base64 is decoded strictly (RFC
//! 4954 §4: the RFC 4648 alphabet with canonical padding, no whitespace), the
//! text must be UTF-8, and a user name or authorization identity holding NUL,
//! CR or LF is refused with `501 5.5.2` for PLAIN and LOGIN alike, before any
//! hook runs (LOGIN: before the password is asked for).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::commands::out_of_sequence;
use super::{Event, Greeting, Machine, Mode, Pending};
use crate::protocol::Reply;

/// Longest AUTH response line, CRLF included (RFC 4954 §4).
pub const MAX_AUTH_LINE: usize = 12288;

/// The SASL mechanisms offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// RFC 4616: `authzid NUL authcid NUL passwd` in one response.
    Plain,
    /// The de-facto LOGIN mechanism: user name, then password, each prompted.
    Login,
}

impl Mechanism {
    /// The name as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::Login => "LOGIN",
        }
    }
}

/// A password: its `Debug` never shows the text, so it cannot end up in a log.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(text: String) -> Self {
        Self(text)
    }

    /// The secret text, for checking it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// What the client authenticated with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The mechanism used.
    pub mechanism: Mechanism,
    /// PLAIN's authorization identity when it differs from the user name.
    pub authorization: Option<String>,
    /// The user name (authentication identity).
    pub username: String,
    /// The password.
    pub password: Secret,
}

/// Where an AUTH exchange stands while waiting for the client's next line.
#[derive(Debug)]
pub(super) enum SaslStep {
    PlainResponse,
    LoginUsername,
    LoginPassword { username: String },
}

const USERNAME_PROMPT: &str = "VXNlcm5hbWU6"; // "Username:"
const PASSWORD_PROMPT: &str = "UGFzc3dvcmQ6"; // "Password:"

impl Machine {
    /// True when EHLO advertises AUTH (and AUTH is accepted).
    pub fn auth_offered(&self) -> bool {
        self.options.auth && (self.facts.tls || self.options.allow_plaintext_auth)
    }

    /// `AUTH mechanism [initial-response]`.
    pub(super) fn auth(&mut self, argument: &str) -> Option<Event> {
        let refusal = if !self.options.auth {
            Some(Reply::new(502, (5, 5, 1), "AUTH not available"))
        } else if !self.auth_offered() {
            Some(Reply::new(
                538,
                (5, 7, 11),
                "Encryption required for requested authentication mechanism",
            ))
        } else if self.facts.greeting != Some(Greeting::Ehlo) {
            Some(out_of_sequence("Send EHLO first"))
        } else if self.facts.authenticated {
            Some(out_of_sequence("Already authenticated"))
        } else if self.tx.is_some() {
            Some(out_of_sequence(
                "AUTH not allowed during a mail transaction",
            ))
        } else {
            None
        };
        if let Some(reply) = refusal {
            self.refuse(reply);
            return None;
        }
        let mut words = argument.split([' ', '\t']).filter(|w| !w.is_empty());
        let mechanism = match words.next() {
            Some(m) if m.eq_ignore_ascii_case("PLAIN") => Mechanism::Plain,
            Some(m) if m.eq_ignore_ascii_case("LOGIN") => Mechanism::Login,
            _ => {
                self.refuse(Reply::new(
                    504,
                    (5, 5, 4),
                    "Unrecognized authentication type",
                ));
                return None;
            }
        };
        let initial = words.next();
        if words.next().is_some() {
            self.refuse(Reply::new(
                501,
                (5, 5, 4),
                "Syntax error, expected AUTH mechanism [response]",
            ));
            return None;
        }
        match (mechanism, initial) {
            (Mechanism::Plain, Some(response)) => {
                self.sasl_step(SaslStep::PlainResponse, response.as_bytes())
            }
            (Mechanism::Plain, None) => self.prompt(SaslStep::PlainResponse, ""),
            (Mechanism::Login, Some(response)) => {
                self.sasl_step(SaslStep::LoginUsername, response.as_bytes())
            }
            (Mechanism::Login, None) => self.prompt(SaslStep::LoginUsername, USERNAME_PROMPT),
        }
    }

    /// Sends `334 challenge` and waits for the client's response line.
    fn prompt(&mut self, step: SaslStep, challenge: &'static str) -> Option<Event> {
        self.out_reply(&Reply::plain(334, challenge), &[]);
        self.mode = Mode::Auth(step);
        None
    }

    /// One response line of the exchange (without CRLF).
    pub(super) fn sasl_step(&mut self, step: SaslStep, line: &[u8]) -> Option<Event> {
        if line == b"*" {
            self.refuse(Reply::new(501, (5, 5, 2), "Authentication cancelled"));
            return None;
        }
        // STANDARD is strict as RFC 4954 §4 wants: the RFC 4648 alphabet only
        // (no whitespace or line breaks inside), canonical padding required.
        let decoded = match line {
            b"=" => Some(Vec::new()),
            _ => STANDARD.decode(line).ok(),
        };
        let Some(text) = decoded.and_then(|d| String::from_utf8(d).ok()) else {
            self.refuse(Reply::new(501, (5, 5, 2), "Invalid base64 data"));
            return None;
        };
        match step {
            SaslStep::PlainResponse => {
                let mut fields = text.split('\0');
                let (Some(authz), Some(user), Some(pass), None) =
                    (fields.next(), fields.next(), fields.next(), fields.next())
                else {
                    self.refuse(Reply::new(501, (5, 5, 2), "Invalid PLAIN response"));
                    return None;
                };
                if !is_clean_identity(authz) || !is_clean_identity(user) {
                    self.refuse(bad_identity());
                    return None;
                }
                let authorization = (!authz.is_empty() && authz != user).then(|| authz.to_owned());
                let credentials = Credentials {
                    mechanism: Mechanism::Plain,
                    authorization,
                    username: user.to_owned(),
                    password: Secret::new(pass.to_owned()),
                };
                self.wait(Pending::Auth, Event::Auth(credentials))
            }
            SaslStep::LoginUsername if !is_clean_identity(&text) => {
                self.refuse(bad_identity());
                None
            }
            SaslStep::LoginUsername => {
                self.prompt(SaslStep::LoginPassword { username: text }, PASSWORD_PROMPT)
            }
            SaslStep::LoginPassword { username } => {
                let credentials = Credentials {
                    mechanism: Mechanism::Login,
                    authorization: None,
                    username,
                    password: Secret::new(text),
                };
                self.wait(Pending::Auth, Event::Auth(credentials))
            }
        }
    }
}

/// A user name or authorization identity a hook may see: no NUL, CR or LF. A
/// NUL would be a field separator of PLAIN smuggled through LOGIN, and CR/LF
/// could forge lines wherever the name is written.
fn is_clean_identity(identity: &str) -> bool {
    !identity.contains(['\0', '\r', '\n'])
}

fn bad_identity() -> Reply {
    Reply::new(
        501,
        (5, 5, 2),
        "Invalid user name: NUL, CR and LF are not allowed",
    )
}
