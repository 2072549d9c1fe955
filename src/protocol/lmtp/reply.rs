//! Reading a server's replies as a client (LMTP here, any SMTP-family client
//! later): `NNN-text` continuation lines and a `NNN text` last line, bounded in
//! line length and line count, parsed without copying until a reply is whole.

use std::fmt;

/// The longest reply line taken (RFC 5321 §4.5.3.1.5 says 512 octets; servers
/// write longer texts, so this is generous but bounded).
pub const MAX_REPLY_LINE: usize = 4096;
/// The most lines one reply may have (an LHLO answer lists the extensions).
pub const MAX_REPLY_LINES: usize = 128;

/// One reply from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerReply {
    /// The three-digit code.
    pub code: u16,
    /// The text of each line after the code and separator (the enhanced status
    /// code, when the server sends one, is the start of the text).
    pub lines: Vec<String>,
}

impl ServerReply {
    /// 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 3xx (354 after DATA).
    pub fn is_intermediate(&self) -> bool {
        (300..400).contains(&self.code)
    }

    /// 5xx: the server refuses for good.
    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }

    /// The text of every line, joined with spaces.
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }

    /// True when a line (of an LHLO/EHLO answer) names this extension keyword.
    pub fn has_keyword(&self, keyword: &str) -> bool {
        self.lines.iter().skip(1).any(|line| {
            line.split_ascii_whitespace()
                .next()
                .is_some_and(|word| word.eq_ignore_ascii_case(keyword))
        })
    }
}

impl fmt::Display for ServerReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.text())
    }
}

/// What is wrong with what the server sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// A line that is not `NNN`, `NNN-text` or `NNN text`, or a code outside 200..=599.
    #[error("malformed reply line")]
    Malformed,
    /// The lines of one reply carry different codes.
    #[error("reply lines with different codes")]
    MixedCodes,
    /// A line longer than [`MAX_REPLY_LINE`].
    #[error("reply line over {MAX_REPLY_LINE} octets")]
    LineTooLong,
    /// More than [`MAX_REPLY_LINES`] lines.
    #[error("reply over {MAX_REPLY_LINES} lines")]
    TooManyLines,
}

/// Collects reply lines until a reply is whole.
#[derive(Debug, Default)]
pub struct ReplyReader {
    partial: Option<ServerReply>,
}

impl ReplyReader {
    /// Reads from `input`: `Ok((consumed, Some(reply)))` when a reply ended,
    /// `Ok((consumed, None))` when more input is needed (the consumed bytes
    /// were whole lines, kept here).
    pub fn read(&mut self, input: &[u8]) -> Result<(usize, Option<ServerReply>), ReplyError> {
        let mut used = 0;
        loop {
            let rest = input.get(used..).unwrap_or_default();
            let Some(end) = memchr::memchr(b'\n', rest) else {
                if rest.len() > MAX_REPLY_LINE {
                    return Err(ReplyError::LineTooLong);
                }
                return Ok((used, None));
            };
            if end > MAX_REPLY_LINE {
                return Err(ReplyError::LineTooLong);
            }
            let line = rest.get(..end).unwrap_or_default();
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            used += end + 1;
            let (code, last, text) = parse_line(line)?;
            let reply = self.partial.get_or_insert_with(|| ServerReply {
                code,
                lines: Vec::new(),
            });
            if reply.code != code {
                return Err(ReplyError::MixedCodes);
            }
            if reply.lines.len() >= MAX_REPLY_LINES {
                return Err(ReplyError::TooManyLines);
            }
            reply.lines.push(String::from_utf8_lossy(text).into_owned());
            if last {
                return Ok((used, self.partial.take()));
            }
        }
    }
}

/// `NNN`, `NNN text` or `NNN-text` → (code, is the last line, text).
fn parse_line(line: &[u8]) -> Result<(u16, bool, &[u8]), ReplyError> {
    let digits = line.get(..3).ok_or(ReplyError::Malformed)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return Err(ReplyError::Malformed);
    }
    let code = digits
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    if !(200..600).contains(&code) {
        return Err(ReplyError::Malformed);
    }
    match line.get(3) {
        None => Ok((code, true, &[])),
        Some(b' ') => Ok((code, true, line.get(4..).unwrap_or_default())),
        Some(b'-') => Ok((code, false, line.get(4..).unwrap_or_default())),
        Some(_) => Err(ReplyError::Malformed),
    }
}
