//! The seed's `data.text`: the body's lines without their line endings, held as
//! a view into the received message (no copy, no allocation per line) and
//! serialized as the seed's array of strings.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The message body, line by line: lines split on CRLF or a bare LF, a last line
/// without a line ending kept, an empty segment after the last line ending not a
/// line. Bytes that are not UTF-8 read as U+FFFD. In JSON: `["line", ...]`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Text {
    body: Bytes,
}

impl Text {
    /// The body part of a message (everything after the header section).
    pub fn from_body(body: Bytes) -> Self {
        Self { body }
    }

    /// The body's bytes as received (line endings included).
    pub fn as_bytes(&self) -> &[u8] {
        &self.body
    }

    /// The lines, in order; borrowed unless a line is not UTF-8. A body that is
    /// all UTF-8 (the usual case) is checked once, not line by line.
    pub fn lines(&self) -> impl Iterator<Item = Cow<'_, str>> {
        let (checked, lossy) = match std::str::from_utf8(&self.body) {
            Ok(text) => (Some(StrLines { rest: text }), None),
            Err(_) => (
                None,
                Some(Lines::new(&self.body).map(String::from_utf8_lossy)),
            ),
        };
        checked
            .into_iter()
            .flatten()
            .map(Cow::Borrowed)
            .chain(lossy.into_iter().flatten())
    }

    /// The number of lines.
    pub fn len(&self) -> usize {
        Lines::new(&self.body).count()
    }

    /// No lines at all.
    pub fn is_empty(&self) -> bool {
        self.body.is_empty()
    }

    /// The lines as owned strings (the seed's array).
    pub fn to_vec(&self) -> Vec<String> {
        self.lines().map(Cow::into_owned).collect()
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.lines()).finish()
    }
}

impl<S: AsRef<str>> From<&[S]> for Text {
    /// Each line followed by CRLF.
    fn from(lines: &[S]) -> Self {
        let mut body = Vec::new();
        for line in lines {
            body.extend_from_slice(line.as_ref().as_bytes());
            body.extend_from_slice(b"\r\n");
        }
        Self::from_body(Bytes::from(body))
    }
}

impl Serialize for Text {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.lines())
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let lines = Vec::<String>::deserialize(deserializer)?;
        Ok(Self::from(lines.as_slice()))
    }
}

/// Lines split on LF with one trailing CR removed; a final segment without LF is
/// a line, an empty one after the last LF is not.
pub(super) struct Lines<'a> {
    rest: &'a [u8],
}

impl<'a> Lines<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    /// Octets not yet returned.
    pub(super) fn remaining(&self) -> usize {
        self.rest.len()
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let line = match memchr::memchr(b'\n', self.rest) {
            Some(i) => {
                let (line, rest) = self.rest.split_at(i);
                self.rest = rest.get(1..).unwrap_or_default();
                line
            }
            None => std::mem::take(&mut self.rest),
        };
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    }
}

/// [`Lines`] over text already known to be UTF-8.
struct StrLines<'a> {
    rest: &'a str,
}

impl<'a> Iterator for StrLines<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.rest.is_empty() {
            return None;
        }
        let line = match memchr::memchr(b'\n', self.rest.as_bytes()) {
            Some(i) => {
                let (line, rest) = self.rest.split_at(i);
                self.rest = rest.get(1..).unwrap_or_default();
                line
            }
            None => std::mem::take(&mut self.rest),
        };
        Some(line.strip_suffix('\r').unwrap_or(line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_on_crlf_and_lf_and_keep_a_last_partial_line() {
        let text = Text::from_body(Bytes::from_static(b"a\r\nb\nc\r\n\r\nd"));
        assert_eq!(text.to_vec(), ["a", "b", "c", "", "d"]);
        assert_eq!(text.len(), 5);
        assert!(Text::default().is_empty());
        assert_eq!(Text::from_body(Bytes::from_static(b"x\r\n")).len(), 1);
    }

    #[test]
    fn valid_and_invalid_bodies_split_alike() {
        for body in [
            &b"a\r\nb\nc\r\n\r\nd"[..],
            b"a\r\nb\nc\r\n\r\nd\xff",
            b"\r\n\n\r",
            b"\xc3\xa9t\xc3\xa9\r\nx\r\n",
            b"\xc3\r\n\xa9\r\n",
        ] {
            let text = Text::from_body(Bytes::copy_from_slice(body));
            let by_bytes: Vec<String> = Lines::new(body)
                .map(|l| String::from_utf8_lossy(l).into_owned())
                .collect();
            assert_eq!(text.to_vec(), by_bytes, "{body:?}");
        }
    }

    #[test]
    fn json_is_the_seeds_array_and_reads_back() -> serde_json::Result<()> {
        let text = Text::from_body(Bytes::from_static(b"one\r\n\xff two\r\n"));
        let json = serde_json::to_string(&text)?;
        assert_eq!(json, "[\"one\",\"\u{fffd} two\"]");
        let back: Text = serde_json::from_str(&json)?;
        assert_eq!(back.to_vec(), text.to_vec());
        Ok(())
    }
}
