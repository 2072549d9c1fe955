//! The SMTP `DATA` decoder (RFC 5321 §4.1.1.4, §4.5.2): turns the dot-stuffed
//! bytes a client sends after `354` back into the message and finds the end of
//! data, strictly enough that SMTP smuggling cannot work.
//!
//! This module owns un-stuffing, end-of-data detection, the bare-line-ending
//! policy and the size and line-length limits on message content. It is
//! sans-IO: [`DataDecoder::decode`] is fed chunks split anywhere (even inside
//! the end marker), appends the message to the caller's `Vec` and holds O(1)
//! state of its own. Nothing here allocates except that `Vec` growing.
//!
//! # End of data (the smuggling rule)
//! Data ends only at `<CRLF>.<CRLF>`, the first line counting as preceded by a
//! CRLF. Put another way, it ends at the first occurrence of those exact five
//! bytes in the stream, and nowhere else. None of `<LF>.<LF>`, `<LF>.<CRLF>`,
//! `<CR>.<LF>`, `<CR>.<CRLF>`, `<LF>.<CR>`, `<CR>.<CR>`, `<CRLF>.<LF>`,
//! `<CRLF>.<CR>x`, `<CRLF>.<CR><CRLF>`, `<CRLF><NUL>.<CRLF>` or
//! `<CRLF>.<NUL><CRLF>` ends it. Each of them is message content, so whatever
//! follows (a `MAIL FROM`, `RCPT TO`, `DATA` …) stays inside this message. It
//! can never start a second transaction that a lenient server further along
//! would see. The final `.<CRLF>` is not part of the message, and the bytes
//! after it are not consumed: they are the next pipelined command.
//!
//! # Un-stuffing
//! A line that starts with `.` and is not the end marker loses that first
//! `.`, so `..x` becomes `.x` and `.x` becomes `x`. That includes a `.` followed
//! by a bare CR or bare LF: the dot is dropped and the bare ending is then
//! handled by the policy below.
//!
//! # Bare line endings
//! A bare CR or bare LF is one that is not part of a CRLF.
//! [`BareLineEnding::Reject`] (the default) records
//! [`DataOutcome::BareLineEnding`] and keeps scanning to the real end, so the
//! whole message is refused. [`BareLineEnding::Normalize`] writes CRLF in its
//! place. A lone CR followed by another byte becomes CRLF and then that byte.
//! A normalized bare ending starts a *soft* line: un-stuffing applies to it
//! (a leading `.` is dropped) and the line-length count restarts, but
//! `.<CRLF>` there is **not** the end of data. It becomes an empty line,
//! because the five end-marker bytes are not in the stream. In Reject mode the
//! distinction does not matter, since the message is refused.
//!
//! # Limits and refusal
//! [`DataLimits`] bound the message size and the line length. Size is counted
//! after un-stuffing, every line with its CRLF, and a bare ending as the two
//! octets of the CRLF it would become, in both modes. Line length is content
//! plus CRLF, without the dropped stuffing dot (RFC 5321 §4.5.3.1.6). A line
//! is flagged as soon as its content plus the CRLF it must still end with is
//! too long. Once any refusal is recorded, nothing more is appended to the
//! caller's `Vec`. What was already appended is a partial message to discard.
//! The decoder still scans to the end marker. The `Vec` never grows by more
//! than `max_message_size` octets in all.

use memchr::memchr2;

/// What to do with a bare CR or bare LF (one not part of CRLF) in the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BareLineEnding {
    /// The message is refused after end-of-data (550 5.6.2 elsewhere), nothing delivered.
    #[default]
    Reject,
    /// Each bare CR or bare LF becomes CRLF.
    Normalize,
}

/// Limits and policy applied to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataLimits {
    /// Largest message in octets (after un-stuffing); beyond it the decoder
    /// stops storing but keeps scanning to the end marker.
    pub max_message_size: u64,
    /// Longest text line in octets INCLUDING its CRLF (RFC 5321: 1000); 0 = no limit.
    pub max_line_length: usize,
    /// Policy for bare CR and bare LF.
    pub bare_line_ending: BareLineEnding,
}

/// Why a message must be refused once its end is reached (`Ok` = deliverable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataOutcome {
    /// Nothing wrong: the message may be delivered.
    Ok,
    /// The message exceeded [`DataLimits::max_message_size`].
    TooLarge,
    /// A bare CR or bare LF was seen under [`BareLineEnding::Reject`].
    BareLineEnding,
    /// A line exceeded [`DataLimits::max_line_length`].
    LineTooLong,
    /// The header section (up to the first empty line) exceeded
    /// [`Limits::max_header_size`](crate::protocol::Limits::max_header_size).
    HeaderTooLarge,
}

/// Result of one [`DataDecoder::decode`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    /// Input bytes used; never more than up to and including the final `.<CRLF>`.
    pub consumed: usize,
    /// The end marker was seen.
    pub finished: bool,
}

/// What the decoder expects next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Start of a line after a real CRLF (or of the first line): a `.` here
    /// is the end marker's or a stuffed one.
    LineStart,
    /// Start of a line after a normalized bare CR/LF: a `.` here is stuffed,
    /// never the end marker's.
    SoftLineStart,
    /// Saw `.` at a [`State::LineStart`].
    Dot,
    /// Saw `.<CR>` at a [`State::LineStart`]: LF ends the data.
    DotCr,
    /// Inside a line's text.
    Text,
    /// Saw CR inside a line's text: LF ends the line, anything else makes it bare.
    Cr,
    /// The end marker was consumed.
    Done,
}

/// Incremental decoder for one message's `DATA` section.
#[derive(Debug, Clone)]
pub struct DataDecoder {
    limits: DataLimits,
    state: State,
    outcome: DataOutcome,
    /// Octets of message so far (un-stuffed, bare endings as CRLF).
    size: u64,
    /// Content octets of the current line so far (line ending excluded).
    line_len: usize,
}

impl DataDecoder {
    /// A decoder positioned at the beginning of the first line of the message.
    pub fn new(limits: DataLimits) -> Self {
        Self {
            limits,
            state: State::LineStart,
            outcome: DataOutcome::Ok,
            size: 0,
            line_len: 0,
        }
    }

    /// Decodes as much of `input` as possible, appending the un-stuffed
    /// message to `out` (unless the message is already refused).
    ///
    /// Consumes all of `input` unless the end marker is in it; then it stops
    /// right after the final `.<CRLF>` and reports `finished`. After that,
    /// every call consumes nothing and reports `finished` again.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Decoded {
        if self.outcome == DataOutcome::Ok {
            // One allocation for this input instead of doubling line by line:
            // the output is about as long as the input.
            let room = self.limits.max_message_size.saturating_sub(self.size);
            out.reserve(input.len().min(usize::try_from(room).unwrap_or(usize::MAX)));
        }
        let mut pos = 0;
        while let Some(&byte) = input.get(pos) {
            match self.state {
                State::Done => break,
                State::LineStart if byte == b'.' => {
                    self.state = State::Dot;
                    pos += 1;
                }
                State::LineStart => self.state = State::Text,
                State::SoftLineStart => {
                    pos += usize::from(byte == b'.'); // a stuffed dot, dropped
                    self.state = State::Text;
                }
                State::Dot if byte == b'\r' => {
                    self.state = State::DotCr;
                    pos += 1;
                }
                State::Dot if byte == b'\n' => {
                    pos += 1; // the dot was stuffed; this LF is bare
                    self.bare(out);
                }
                State::Dot => self.state = State::Text, // the dot was stuffed
                State::DotCr if byte == b'\n' => {
                    pos += 1;
                    self.state = State::Done;
                    break;
                }
                State::Cr if byte == b'\n' => {
                    pos += 1;
                    self.crlf(out);
                    self.state = State::LineStart;
                }
                // The CR was bare (after a stuffed dot for `DotCr`); `byte`
                // is looked at again in the soft line this starts.
                State::DotCr | State::Cr => self.bare(out),
                State::Text => pos += self.text(input.get(pos..).unwrap_or_default(), out),
            }
        }
        Decoded {
            consumed: pos,
            finished: self.state == State::Done,
        }
    }

    /// Why the message must be refused, or `Ok`. The first reason seen wins,
    /// except that `TooLarge` overrides any other.
    pub fn outcome(&self) -> DataOutcome {
        self.outcome
    }

    /// Octets of message seen so far after un-stuffing, every bare line
    /// ending counted as two (the CRLF it stands for); counts on past the
    /// size limit and after any refusal.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Handles text starting at a non-empty `rest` in [`State::Text`]: copies
    /// the complete lines there in one go (see [`Self::clean_lines`]), or else
    /// the run up to the next CR or LF, and deals with that byte. Returns the
    /// bytes used (at least one).
    fn text(&mut self, rest: &[u8], out: &mut Vec<u8>) -> usize {
        let clean = self.clean_lines(rest);
        if clean > 0 {
            // The common case: one copy for every line up to a dot, a bare
            // line ending or the end of the input, not one a line.
            self.write(rest.get(..clean).unwrap_or(rest), out);
            self.state = State::LineStart;
            return clean;
        }
        let at = memchr2(b'\r', b'\n', rest).unwrap_or(rest.len());
        let (run, tail) = rest.split_at_checked(at).unwrap_or((rest, &[]));
        self.grow_line(at, false);
        self.write(run, out);
        match tail.first() {
            None => at,
            Some(b'\r') => {
                self.state = State::Cr;
                at + 1
            }
            Some(_) => {
                self.bare(out); // a bare LF
                at + 1
            }
        }
    }

    /// The length of the run of complete lines at the start of `rest` that
    /// are copied as they are: each ends with CRLF (no bare CR or LF before
    /// it), and each after the first starts with something other than a dot.
    /// Their lengths are counted as they go; 0 when the first line is not
    /// complete there. A line that would take the message over
    /// `max_message_size` ends the run before it (it is then copied alone and
    /// refused alone), so an oversized message keeps every line up to the
    /// limit, as if each line were copied on its own.
    fn clean_lines(&mut self, rest: &[u8]) -> usize {
        // Once the message is refused nothing more is kept: no limit to keep.
        let room = match self.outcome {
            DataOutcome::Ok => self.limits.max_message_size.saturating_sub(self.size),
            _ => u64::MAX,
        };
        let room = usize::try_from(room).unwrap_or(usize::MAX);
        let mut clean = 0;
        while let Some(line) = rest.get(clean..) {
            let Some(at) = memchr2(b'\r', b'\n', line) else {
                break;
            };
            if line.get(at..at + 2) != Some(b"\r\n".as_slice()) {
                break;
            }
            if clean > 0 && clean + at + 2 > room {
                break;
            }
            self.grow_line(at, true);
            clean += at + 2;
            if matches!(rest.get(clean), None | Some(b'.')) {
                break;
            }
        }
        clean
    }

    /// A bare CR or LF ends the current line: refused or written as CRLF.
    fn bare(&mut self, out: &mut Vec<u8>) {
        if self.limits.bare_line_ending == BareLineEnding::Reject {
            self.refuse(DataOutcome::BareLineEnding);
        }
        self.crlf(out);
        self.state = State::SoftLineStart;
    }

    /// Ends the current line with a CRLF.
    fn crlf(&mut self, out: &mut Vec<u8>) {
        self.grow_line(0, true);
        self.write(b"\r\n", out);
    }

    /// Adds `n` content octets to the current line, flagging it as soon as
    /// it cannot fit with the CRLF it must still end with; `ends`: the line
    /// ends right after them.
    fn grow_line(&mut self, n: usize, ends: bool) {
        self.line_len = self.line_len.saturating_add(n);
        let max = self.limits.max_line_length;
        if max != 0 && self.line_len.saturating_add(2) > max {
            self.refuse(DataOutcome::LineTooLong);
        }
        if ends {
            self.line_len = 0;
        }
    }

    /// Counts `bytes` into the size and appends them while the message is
    /// still deliverable; the check comes first, so `out` never grows past
    /// the size limit.
    fn write(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        self.size = self.size.saturating_add(len);
        if self.size > self.limits.max_message_size {
            self.outcome = DataOutcome::TooLarge;
        }
        if self.outcome == DataOutcome::Ok {
            out.extend_from_slice(bytes);
        }
    }

    /// Records a refusal reason unless one is already recorded.
    fn refuse(&mut self, reason: DataOutcome) {
        if self.outcome == DataOutcome::Ok {
            self.outcome = reason;
        }
    }
}

#[cfg(test)]
#[path = "data_tests.rs"]
mod tests;
