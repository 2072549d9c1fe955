//! Writing a message for DATA: a `.` at the start of a line is doubled
//! (RFC 5321 §4.5.2), the message is given a final CRLF if it lacks one, and
//! `.\r\n` ends it. The message comes in parts (trace headers, then the body as
//! received) and leaves in buffers of a bounded size, so a large message is
//! never copied whole.

/// Dot-stuffs parts of a message into a caller's buffer. A line starts after
/// any LF, bare or not, so a server that takes a bare LF as a line end can never
/// read the end of the message early (no smuggling into the LMTP session).
#[derive(Debug)]
pub struct DotStuffer {
    at_line_start: bool,
    after_cr: bool,
    /// The octets so far end with CRLF (or there are none).
    ended_crlf: bool,
}

impl Default for DotStuffer {
    fn default() -> Self {
        Self {
            at_line_start: true,
            after_cr: false,
            ended_crlf: true,
        }
    }
}

impl DotStuffer {
    /// Appends `part` to `out`, stuffed; returns nothing to keep: the state of
    /// the line carries over to the next part.
    pub fn push(&mut self, part: &[u8], out: &mut Vec<u8>) {
        out.reserve(part.len() + 2);
        let mut start = 0;
        for (i, &byte) in part.iter().enumerate() {
            if self.at_line_start && byte == b'.' {
                out.extend_from_slice(part.get(start..i).unwrap_or_default());
                out.push(b'.');
                start = i;
            }
            self.ended_crlf = byte == b'\n' && self.after_cr;
            self.at_line_start = byte == b'\n';
            self.after_cr = byte == b'\r';
        }
        out.extend_from_slice(part.get(start..).unwrap_or_default());
    }

    /// Ends the message: CRLF if the last line was not ended with one, then `.\r\n`.
    pub fn finish(self, out: &mut Vec<u8>) {
        if !self.ended_crlf {
            out.extend_from_slice(if self.after_cr { b"\n" } else { b"\r\n" });
        }
        out.extend_from_slice(b".\r\n");
    }
}
