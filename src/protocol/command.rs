//! One SMTP command line → [`Command`], borrowing the line (RFC 5321 §4.1.1).
//!
//! The line arrives without its line ending. Verbs are matched case-insensitively;
//! the arguments of MAIL and RCPT are handed on unparsed (see [`super::address`]).
//! Nothing here allocates. Sequence rules live in the state machine, not here.

/// A syntactically valid command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// `EHLO domain` (the argument, trimmed; never empty).
    Ehlo(&'a str),
    /// `HELO domain` (the argument, trimmed; never empty).
    Helo(&'a str),
    /// `MAIL FROM:` and the rest of the line, leading spaces removed.
    Mail(&'a str),
    /// `RCPT TO:` and the rest of the line, leading spaces removed.
    Rcpt(&'a str),
    /// `DATA`.
    Data,
    /// `BDAT size [LAST]` (RFC 3030).
    Bdat {
        /// Octets in the chunk that follows the command line.
        size: u64,
        /// This is the last chunk of the message.
        last: bool,
    },
    /// `RSET`.
    Rset,
    /// `NOOP` with any argument.
    Noop,
    /// `QUIT`.
    Quit,
    /// `HELP [topic]` (the topic may be empty).
    Help(&'a str),
    /// `VRFY string`.
    Vrfy(&'a str),
    /// `EXPN string`.
    Expn(&'a str),
    /// `STARTTLS`.
    StartTls,
    /// `AUTH mechanism [initial-response]`.
    Auth(&'a str),
}

/// Why a command line was refused before any hook saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommandError {
    /// The verb is not one we know (500 5.5.2).
    Unrecognized,
    /// The line is not valid UTF-8 (501 5.5.2).
    InvalidUtf8,
    /// The line holds NUL, CR or another control character (501 5.5.2).
    ControlCharacter,
    /// The command takes no argument but got one (501 5.5.4).
    UnexpectedArgument(&'static str),
    /// The command needs an argument but got none (501 5.5.4).
    MissingArgument(&'static str),
    /// The argument does not have the command's syntax (501 5.5.4).
    Syntax(&'static str),
    /// BDAT without a well-formed `<size> [LAST]`: how many octets follow the line
    /// is unknown, so they cannot be skipped (501 5.5.4, then the session closes).
    ChunkSyntax,
    /// BDAT with a size that 64 bits cannot hold (RFC 3030 allows any number of
    /// digits): such a chunk can be neither taken nor skipped (552 5.3.4, then the
    /// session closes).
    ChunkSizeTooLarge,
}

impl CommandError {
    /// True when the octets after the line cannot be told apart from commands:
    /// the session must close after the reply, or a client could hide commands in
    /// what it declared as chunk data (a BDAT it cannot parse).
    pub fn loses_framing(self) -> bool {
        matches!(self, Self::ChunkSyntax | Self::ChunkSizeTooLarge)
    }
}

/// Parses one command line (without CRLF).
///
/// ```text
/// command = verb [SP argument]    ; verb case-insensitive
/// mail    = "MAIL FROM:" [SP] reverse-path [SP params]
/// rcpt    = "RCPT TO:" [SP] forward-path [SP params]
/// bdat    = "BDAT" SP chunk-size [SP "LAST"]
/// ```
pub fn parse_command(line: &[u8]) -> Result<Command<'_>, CommandError> {
    let line = std::str::from_utf8(line).map_err(|_| CommandError::InvalidUtf8)?;
    if line.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(CommandError::ControlCharacter);
    }
    let line = line.trim_start_matches([' ', '\t']);
    let (verb, rest) = match line.find([' ', '\t']) {
        Some(i) => (&line[..i], line[i..].trim_matches([' ', '\t'])),
        None => (line, ""),
    };
    let verb_is = |v: &str| verb.eq_ignore_ascii_case(v);
    if verb_is("EHLO") || verb_is("HELO") {
        if rest.is_empty() {
            return Err(CommandError::MissingArgument(if verb_is("EHLO") {
                "EHLO"
            } else {
                "HELO"
            }));
        }
        return Ok(if verb_is("EHLO") {
            Command::Ehlo(rest)
        } else {
            Command::Helo(rest)
        });
    }
    if verb_is("MAIL") {
        return path_argument(rest, "FROM:")
            .map(Command::Mail)
            .ok_or(CommandError::Syntax("MAIL FROM:<address>"));
    }
    if verb_is("RCPT") {
        return path_argument(rest, "TO:")
            .map(Command::Rcpt)
            .ok_or(CommandError::Syntax("RCPT TO:<address>"));
    }
    if verb_is("BDAT") {
        return parse_bdat(rest);
    }
    let no_argument = |cmd: Command<'static>, name: &'static str| {
        if rest.is_empty() {
            Ok(cmd)
        } else {
            Err(CommandError::UnexpectedArgument(name))
        }
    };
    let needs_argument = |name: &'static str| {
        if rest.is_empty() {
            Err(CommandError::MissingArgument(name))
        } else {
            Ok(rest)
        }
    };
    match verb.len() {
        4 if verb_is("DATA") => no_argument(Command::Data, "DATA"),
        4 if verb_is("RSET") => no_argument(Command::Rset, "RSET"),
        4 if verb_is("QUIT") => no_argument(Command::Quit, "QUIT"),
        4 if verb_is("NOOP") => Ok(Command::Noop),
        4 if verb_is("HELP") => Ok(Command::Help(rest)),
        4 if verb_is("VRFY") => needs_argument("VRFY").map(Command::Vrfy),
        4 if verb_is("EXPN") => needs_argument("EXPN").map(Command::Expn),
        4 if verb_is("AUTH") => needs_argument("AUTH").map(Command::Auth),
        8 if verb_is("STARTTLS") => no_argument(Command::StartTls, "STARTTLS"),
        _ => Err(CommandError::Unrecognized),
    }
}

/// `FROM:` / `TO:` (case-insensitive, spaces allowed before and after the colon)
/// followed by the path; returns the text after the colon, leading spaces removed.
fn path_argument<'a>(rest: &'a str, keyword: &str) -> Option<&'a str> {
    let name = &keyword[..keyword.len() - 1];
    let head = rest.get(..name.len())?;
    if !head.eq_ignore_ascii_case(name) {
        return None;
    }
    let after = rest[name.len()..].trim_start_matches([' ', '\t']);
    let arg = after.strip_prefix(':')?.trim_start_matches([' ', '\t']);
    (!arg.is_empty()).then_some(arg)
}

/// `BDAT chunk-size [LAST]`, `chunk-size = 1*DIGIT` (RFC 3030 §2): any number of
/// digits, leading zeros included. The size is checked before the rest of the
/// line, so a size too large is reported as such whatever follows it.
fn parse_bdat(rest: &str) -> Result<Command<'_>, CommandError> {
    let mut words = rest.split([' ', '\t']).filter(|w| !w.is_empty());
    let size = words.next().ok_or(CommandError::ChunkSyntax)?;
    if !size.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CommandError::ChunkSyntax);
    }
    // All digits: the only way parsing fails is a value over u64::MAX.
    let size = size
        .parse::<u64>()
        .map_err(|_| CommandError::ChunkSizeTooLarge)?;
    let last = match words.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return Err(CommandError::ChunkSyntax),
    };
    if words.next().is_some() {
        return Err(CommandError::ChunkSyntax);
    }
    Ok(Command::Bdat { size, last })
}

#[cfg(test)]
mod tests {
    use super::*;
    use CommandError as E;

    #[test]
    fn table() {
        let cases: &[(&[u8], Result<Command<'_>, CommandError>)] = &[
            (b"EHLO client.example", Ok(Command::Ehlo("client.example"))),
            (
                b"ehlo  client.example  ",
                Ok(Command::Ehlo("client.example")),
            ),
            (b"HELO x", Ok(Command::Helo("x"))),
            (b"EHLO", Err(E::MissingArgument("EHLO"))),
            (b"HELO   ", Err(E::MissingArgument("HELO"))),
            (b"MAIL FROM:<a@b.c>", Ok(Command::Mail("<a@b.c>"))),
            (
                b"mail from: <a@b.c> SIZE=10",
                Ok(Command::Mail("<a@b.c> SIZE=10")),
            ),
            (b"MAIL FROM :<a@b.c>", Ok(Command::Mail("<a@b.c>"))),
            (b"MAIL FROM:", Err(E::Syntax("MAIL FROM:<address>"))),
            (b"MAIL TO:<a@b.c>", Err(E::Syntax("MAIL FROM:<address>"))),
            (b"MAIL", Err(E::Syntax("MAIL FROM:<address>"))),
            (b"RCPT TO:<a@b.c>", Ok(Command::Rcpt("<a@b.c>"))),
            (b"RCPT to:<postmaster>", Ok(Command::Rcpt("<postmaster>"))),
            (b"RCPT FROM:<a@b.c>", Err(E::Syntax("RCPT TO:<address>"))),
            (b"DATA", Ok(Command::Data)),
            (b"data", Ok(Command::Data)),
            (b"DATA x", Err(E::UnexpectedArgument("DATA"))),
            (b"RSET", Ok(Command::Rset)),
            (b"RSET now", Err(E::UnexpectedArgument("RSET"))),
            (b"NOOP", Ok(Command::Noop)),
            (b"NOOP hello there", Ok(Command::Noop)),
            (b"QUIT", Ok(Command::Quit)),
            (b"HELP", Ok(Command::Help(""))),
            (b"HELP MAIL", Ok(Command::Help("MAIL"))),
            (b"VRFY joe", Ok(Command::Vrfy("joe"))),
            (b"VRFY", Err(E::MissingArgument("VRFY"))),
            (b"EXPN list", Ok(Command::Expn("list"))),
            (b"STARTTLS", Ok(Command::StartTls)),
            (b"AUTH PLAIN", Ok(Command::Auth("PLAIN"))),
            (
                b"BDAT 100",
                Ok(Command::Bdat {
                    size: 100,
                    last: false,
                }),
            ),
            (
                b"BDAT 0 LAST",
                Ok(Command::Bdat {
                    size: 0,
                    last: true,
                }),
            ),
            (
                b"bdat 5 last",
                Ok(Command::Bdat {
                    size: 5,
                    last: true,
                }),
            ),
            (b"BDAT", Err(E::ChunkSyntax)),
            (b"BDAT x", Err(E::ChunkSyntax)),
            (b"BDAT -1", Err(E::ChunkSyntax)),
            (b"BDAT +1", Err(E::ChunkSyntax)),
            (b"BDAT 1 LAST x", Err(E::ChunkSyntax)),
            (b"BDAT 1 FIRST", Err(E::ChunkSyntax)),
            (b"BDAT 99999999999999999999", Err(E::ChunkSizeTooLarge)),
            (b"BDAT 18446744073709551616 LAST", Err(E::ChunkSizeTooLarge)),
            (
                b"BDAT 1234567890123456789012345678901234567890 LAST",
                Err(E::ChunkSizeTooLarge),
            ),
            (b"BDAT 18446744073709551616 x", Err(E::ChunkSizeTooLarge)),
            (
                b"BDAT 18446744073709551615 LAST",
                Ok(Command::Bdat {
                    size: u64::MAX,
                    last: true,
                }),
            ),
            (
                b"BDAT 9223372036854775808",
                Ok(Command::Bdat {
                    size: 1 << 63,
                    last: false,
                }),
            ),
            (
                b"BDAT 0000000000000000000000000000000000000005 LAST",
                Ok(Command::Bdat {
                    size: 5,
                    last: true,
                }),
            ),
            (b"VFRY x", Err(E::Unrecognized)),
            (b"", Err(E::Unrecognized)),
            (b"FOO", Err(E::Unrecognized)),
            (b"NOOP\0", Err(E::ControlCharacter)),
            (b"NOOP\rMAIL", Err(E::ControlCharacter)),
            (b"NOOP \xff", Err(E::InvalidUtf8)),
        ];
        for (line, want) in cases {
            assert_eq!(
                &parse_command(line),
                want,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }
}
