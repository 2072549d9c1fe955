//! SMTP replies: the code, the optional enhanced status code (RFC 3463 / RFC 2034)
//! and the text, and how they are written on the wire.
//!
//! A [`Reply`] is what every hook returns and what the state machine queues. Text
//! supplied by a hook is sanitised when written: each `\n` starts a new reply line
//! and control characters are replaced, so a hook cannot inject protocol lines.

use std::borrow::Cow;
use std::fmt;

/// An enhanced mail system status code, `class.subject.detail` (RFC 3463).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Enhanced(pub u8, pub u16, pub u16);

impl fmt::Display for Enhanced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// One SMTP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit reply code (200..=599).
    pub code: u16,
    /// The enhanced status code, written after the reply code when present.
    pub enhanced: Option<Enhanced>,
    /// Human-readable text; `\n` separates the lines of a multi-line reply.
    pub text: Cow<'static, str>,
    /// Close the connection once this reply is sent (always true for 421).
    pub close: bool,
}

impl Reply {
    /// A reply with an enhanced status code, e.g. `Reply::new(556, (5, 7, 27), "must authenticate")`.
    pub fn new(code: u16, enhanced: (u8, u16, u16), text: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            enhanced: Some(Enhanced(enhanced.0, enhanced.1, enhanced.2)),
            text: text.into(),
            close: code == 421,
        }
    }

    /// A reply without an enhanced status code (greeting, 354, EHLO).
    pub fn plain(code: u16, text: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            enhanced: None,
            text: text.into(),
            close: code == 421,
        }
    }

    /// The same reply, but the connection is closed after it is sent.
    #[must_use]
    pub fn and_close(mut self) -> Self {
        self.close = true;
        self
    }

    /// 2xx: the command succeeded.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 3xx: the command is accepted, more input is expected (354).
    pub fn is_intermediate(&self) -> bool {
        (300..400).contains(&self.code)
    }

    /// 4xx or 5xx.
    pub fn is_negative(&self) -> bool {
        self.code >= 400
    }

    /// Appends the reply in wire form (CRLF-terminated lines) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        self.write_with_extra_lines(out, &[]);
    }

    /// Appends the reply followed by more lines of the same reply (the EHLO keywords).
    pub(crate) fn write_with_extra_lines(&self, out: &mut Vec<u8>, extra: &[&str]) {
        let code = if (200..=599).contains(&self.code) {
            self.code
        } else {
            451
        };
        if extra.is_empty() && memchr::memchr(b'\n', self.text.as_bytes()).is_none() {
            // Most replies: one line.
            out.reserve(self.text.len() + 16);
            self.write_line(out, code, b' ', &self.text);
            return;
        }
        let lines = self.text.split('\n');
        // Room for the whole reply at once ("250-2.0.0 " and CRLF around each
        // line) instead of the vector doubling its way up from 8 bytes.
        let line_count = self.text.len() / 64 + 1 + extra.len();
        let text_bytes = self.text.len() + extra.iter().map(|l| l.len()).sum::<usize>();
        out.reserve(text_bytes + line_count * 16);
        let mut all = lines.chain(extra.iter().copied()).peekable();
        while let Some(line) = all.next() {
            let last = all.peek().is_none();
            self.write_line(out, code, if last { b' ' } else { b'-' }, line);
        }
    }

    /// One line of the reply: the code, `separator`, the enhanced code if
    /// any, `line` without a CR at its end and with other control bytes made
    /// `?`, CRLF.
    fn write_line(&self, out: &mut Vec<u8>, code: u16, separator: u8, line: &str) {
        write_code(out, code, separator);
        if let Some(Enhanced(class, subject, detail)) = self.enhanced {
            // Digits written directly: `write!` costs about a thousand
            // instructions a reply (six or more replies per message).
            push_decimal(out, u16::from(class));
            out.push(b'.');
            push_decimal(out, subject);
            out.push(b'.');
            push_decimal(out, detail);
            out.push(b' ');
        }
        push_sanitised(out, line.strip_suffix('\r').unwrap_or(line));
        out.extend_from_slice(b"\r\n");
    }
}

fn write_code(out: &mut Vec<u8>, code: u16, sep: u8) {
    let digits = [
        b'0' + (code / 100 % 10) as u8,
        b'0' + (code / 10 % 10) as u8,
        b'0' + (code % 10) as u8,
        sep,
    ];
    out.extend_from_slice(&digits);
}

/// Appends `n` in decimal, without leading zeros.
fn push_decimal(out: &mut Vec<u8>, n: u16) {
    out.extend_from_slice(crate::digits::decimal(n, &mut [0; 5]));
}

fn push_sanitised(out: &mut Vec<u8>, line: &str) {
    if line.bytes().all(|b| b >= 0x20 && b != 0x7f) {
        out.extend_from_slice(line.as_bytes());
    } else {
        out.extend(
            line.bytes()
                .map(|b| if b < 0x20 || b == 0x7f { b'?' } else { b }),
        );
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Vec::new();
        self.write_to(&mut out);
        f.write_str(String::from_utf8_lossy(&out).trim_end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The enhanced code written digit by digit reads as its `Display`.
        #[test]
        fn an_enhanced_code_is_written_as_it_displays(class: u8, subject: u16, detail: u16, code in 200u16..600) {
            let reply = Reply::new(code, (class, subject, detail), "text");
            let mut out = Vec::new();
            reply.write_to(&mut out);
            let want = format!("{code} {} text\r\n", Enhanced(class, subject, detail));
            prop_assert_eq!(String::from_utf8(out).unwrap(), want);
        }

        /// Every line but the last says "-"; each has the code, the enhanced
        /// code when there is one, and its own text, control bytes made `?`.
        #[test]
        fn multi_line_replies_are_written_line_by_line(
            text in "[a-z\x01 ]{0,12}(\r?\n[a-z ]{0,12}){0,3}",
            extra in proptest::collection::vec("[A-Z0-9 ]{1,10}", 0..4),
            enhanced: bool,
            after in "[a-z]{0,3}",
        ) {
            let reply = if enhanced {
                Reply::new(250, (2, 1, 0), text.clone())
            } else {
                Reply::plain(250, text.clone())
            };
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            let mut out = after.clone().into_bytes();
            reply.write_with_extra_lines(&mut out, &extra);
            let lines: Vec<String> = text
                .split('\n')
                .map(|l| l.trim_end_matches('\r').replace('\x01', "?"))
                .chain(extra.iter().map(|l| (*l).to_owned()))
                .collect();
            let mut want = after;
            for (index, line) in lines.iter().enumerate() {
                let separator = if index + 1 == lines.len() { ' ' } else { '-' };
                let code = if enhanced { "2.1.0 " } else { "" };
                want += &format!("250{separator}{code}{line}\r\n");
            }
            prop_assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }
}
