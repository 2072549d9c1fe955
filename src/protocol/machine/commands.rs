//! Command handling of the state machine: one method per command that checks
//! sequence, syntax and limits and either refuses (through [`Machine::refuse`]) or
//! returns the [`Event`] a hook decides on; and the reply of every protocol error.

use std::sync::Arc;

use super::{
    Body, Event, Greeting, Limits, Machine, Mode, PathRequest, Pending, RECIPIENT_OVERSHOOT_LIMIT,
    too_large,
};
use crate::protocol::address::{self, AddressError, PathArgument, PathKind, parameters};
use crate::protocol::command::{Command, CommandError, parse_command};
use crate::protocol::{Path, Reply};

impl Machine {
    /// Handles one complete command line; returns the event if a hook must decide.
    pub(super) fn command(&mut self, line: &[u8]) -> Option<Event> {
        let command = match parse_command(line) {
            Ok(command) => command,
            Err(error) => {
                self.refuse(command_error_reply(error, &self.limits));
                if error.loses_framing() {
                    self.close_unframed();
                }
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
            Command::StartTls => self.starttls(),
            Command::Auth(argument) => self.auth(argument),
        }
    }

    /// STARTTLS (RFC 3207).
    fn starttls(&mut self) -> Option<Event> {
        let refusal = if self.facts.tls {
            out_of_sequence("Already running TLS")
        } else if !self.options.starttls {
            Reply::new(454, (4, 7, 0), "TLS not available")
        } else if self.facts.greeting != Some(Greeting::Ehlo) {
            out_of_sequence("Send EHLO first")
        } else if self.tx.is_some() {
            out_of_sequence("STARTTLS not allowed inside a mail transaction")
        } else {
            self.out_reply(&Reply::new(220, (2, 0, 0), "Ready to start TLS"), &[]);
            return self.wait(Pending::Tls, Event::StartTls);
        };
        self.refuse(refusal);
        None
    }

    fn mail(&mut self, argument: &str) -> Option<Event> {
        let Some(greeting) = self.facts.greeting else {
            self.refuse(out_of_sequence("Send EHLO or HELO first"));
            return None;
        };
        if self.options.require_auth && !self.facts.authenticated {
            self.refuse(Reply::new(530, (5, 7, 0), "Authentication required"));
            return None;
        }
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
            let result = if greeting == Greeting::Helo {
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
            } else if keyword.eq_ignore_ascii_case("AUTH") && parameter.value.is_some() {
                // RFC 4954 §5: the original submitter; accepted and not used.
                Ok(())
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
        let request = self.path_request(argument, parsed, smtputf8, size, body)?;
        self.wait(Pending::Mail { smtputf8 }, Event::MailFrom(request))
    }

    /// The request a hook sees; non-ASCII addresses need SMTPUTF8 (RFC 6531).
    fn path_request(
        &mut self,
        argument: &str,
        parsed: PathArgument<'_>,
        smtputf8: bool,
        size: Option<u64>,
        body: Option<Body>,
    ) -> Option<PathRequest> {
        if !smtputf8 && path_is_non_ascii(&parsed.path) {
            self.refuse(needs_smtputf8());
            return None;
        }
        Some(PathRequest {
            argument: argument.to_owned(),
            name: parsed.name.to_owned(),
            path: parsed.path,
            size,
            body,
            smtputf8,
        })
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
            // RFC 5321 §4.5.3.1.10: the client sends the message to the accepted
            // ones and the rest later, so this is not an error, up to an
            // overshoot that only abuse reaches (as Postfix's
            // smtpd_recipient_overshoot_limit).
            let reply = Reply::new(452, (4, 5, 3), "Too many recipients");
            if let Some(tx) = &mut self.tx {
                tx.excess_recipients += 1;
                if tx.excess_recipients > RECIPIENT_OVERSHOOT_LIMIT {
                    self.refuse(reply);
                    return None;
                }
            }
            self.out_reply(&reply, &[]);
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
        let request = self.path_request(argument, parsed, smtputf8, None, None)?;
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
        if size > self.limits.max_message_size {
            // Skipping is bounded by max_message_size: a larger chunk can be
            // neither taken nor skipped, so its octets must not be read as
            // commands either.
            self.reset_transaction();
            self.refuse(too_large(&self.limits));
            self.close_unframed();
            return None;
        }
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

pub(super) fn out_of_sequence(text: &'static str) -> Reply {
    Reply::new(503, (5, 5, 1), text)
}

pub(super) fn line_too_long() -> Reply {
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

fn command_error_reply(error: CommandError, limits: &Limits) -> Reply {
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
        CommandError::ChunkSyntax => {
            Reply::new(501, (5, 5, 4), "Syntax error, expected BDAT <size> [LAST]")
        }
        CommandError::ChunkSizeTooLarge => too_large(limits),
    }
}
