//! What a policy layer may change besides its verdict ([`Changes`]), and the one
//! byte-level operation behind header edits ([`edit_headers`]): header fields
//! added at the top, fields of given names removed, and every other byte of the
//! message — untouched fields, their order and folding, the body — kept exactly,
//! so a DKIM signature with `simple` header canonicalisation still verifies.
//!
//! The session applies the changes (see `session::layers`); layers only say what
//! they want.

use serde_json::{Map, Value};

/// One header field to add: `Name: value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderField {
    /// The field name (checked with [`is_header_name`]).
    pub name: String,
    /// The field body, one line: no CR, LF or NUL.
    pub value: String,
}

/// Changes a layer asks for with its [`Decision`](super::Decision).
///
/// - `extensions` apply at every stage and with every action (a refusal's
///   reasons are worth keeping): merged key by key into the mail structure's
///   `extensions` (a later layer's key replaces an earlier one) and into
///   `cx.extensions` as [`LayerExtensions`]. Those set at `connect`, `ehlo` or
///   `auth` stay for the connection; those set later only for the transaction.
/// - `add_headers`, `remove_headers`, `set_recipients`, `header_edits`,
///   `replace_body` and `set_sender` apply at the message
///   stage only, and only with `Continue`, `Accept` or `Quarantine` (a refused or
///   discarded message is not delivered). A layer that asks for them at another
///   stage is told so in the log and they are ignored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    /// Fields added at the top of the header section, in this order (below our
    /// own trace headers, which are prepended at delivery).
    pub add_headers: Vec<HeaderField>,
    /// Field names (any case) whose every occurrence is removed.
    pub remove_headers: Vec<String>,
    /// The accepted recipients from now on: a recipient already accepted keeps
    /// its record, a new address gets a new accepted record, accepted ones not
    /// listed are dropped from `rcptto` (refused ones stay as they were).
    pub set_recipients: Option<Vec<String>>,
    /// Values to record under the mail structure's `extensions` key.
    pub extensions: Map<String, Value>,
    /// Positional header edits (a milter's), made after `add_headers` and
    /// `remove_headers`, in order.
    pub header_edits: Vec<super::HeaderEdit>,
    /// The new body: every byte after the empty line that ends the header
    /// section (a milter's `SMFIR_REPLBODY`).
    pub replace_body: Option<Vec<u8>>,
    /// The new envelope sender, without angle brackets (`""`: the null
    /// sender; a milter's `SMFIR_CHGFROM`).
    pub set_sender: Option<String>,
}

impl Changes {
    /// Whether any message edit (headers or recipients) is asked for.
    pub fn edits_message(&self) -> bool {
        !self.add_headers.is_empty()
            || !self.remove_headers.is_empty()
            || self.set_recipients.is_some()
            || !self.header_edits.is_empty()
            || self.replace_body.is_some()
            || self.set_sender.is_some()
    }
}

/// The `extensions` the layers recorded for the current transaction (the same
/// map as the mail structure's `extensions`), for a `Receiver` hook:
/// `cx.extensions.get::<LayerExtensions>()`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LayerExtensions(pub Map<String, Value>);

/// A header field name: 1 to 76 printable US-ASCII characters other than `:`
/// (RFC 5322 §3.6.8 `ftext`), short enough to stay on a 78-character line.
pub fn is_header_name(name: &str) -> bool {
    (1..=76).contains(&name.len()) && name.bytes().all(|b| (33..=126).contains(&b) && b != b':')
}

/// `raw` with `add` at the top of its header section and every field named in
/// `remove` (any case) cut out, continuation lines included; every other byte
/// stays as it was. The header section ends at the first empty line (or the end
/// of the message); a line there without a colon is kept as it is.
pub fn edit_headers(raw: &[u8], add: &[HeaderField], remove: &[String]) -> Vec<u8> {
    let added: usize = add.iter().map(|f| f.name.len() + f.value.len() + 4).sum();
    let mut out = Vec::with_capacity(raw.len() + added);
    for field in add {
        out.extend_from_slice(field.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(field.value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let mut at = 0;
    while at < raw.len() {
        let end = field_end(raw, at);
        if end == at {
            break; // the empty line: the body follows
        }
        let field = &raw[at..end];
        let removed = field_name(field).is_some_and(|name| {
            remove
                .iter()
                .any(|r| r.as_bytes().eq_ignore_ascii_case(name))
        });
        if !removed {
            out.extend_from_slice(field);
        }
        at = end;
    }
    out.extend_from_slice(&raw[at..]);
    out
}

/// Where the field starting at `start` ends: after its last line's LF, its
/// continuation lines (starting with SP or HT) included; `start` itself for the
/// empty line that ends the header section.
pub(super) fn field_end(raw: &[u8], start: usize) -> usize {
    let line_end =
        |from: usize| memchr::memchr(b'\n', &raw[from..]).map_or(raw.len(), |i| from + i + 1);
    let first = &raw[start..];
    if first.starts_with(b"\r\n") || first.starts_with(b"\n") {
        return start;
    }
    let mut end = line_end(start);
    while end < raw.len() && matches!(raw[end], b' ' | b'\t') {
        end = line_end(end);
    }
    end
}

/// The name of a field (before its colon, trailing blanks dropped), if it has one.
pub(super) fn field_name(field: &[u8]) -> Option<&[u8]> {
    let colon = memchr::memchr(b':', field)?;
    let name = field[..colon].trim_ascii_end();
    (!name.is_empty() && !name.contains(&b'\n')).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, value: &str) -> HeaderField {
        HeaderField {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn edits_keep_every_other_byte() {
        let raw = b"Received: a\r\n\tfolded\r\nSubject:  Hi \r\nX-Spam: yes\r\n  more\r\nx-spam : 2\r\nTo: b\r\n\r\nX-Spam: body\r\n";
        let cases: [(&[HeaderField], &[&str], &[u8]); 4] = [
            (&[], &[], raw),
            (
                &[field("X-Hook", "v 1")],
                &[],
                b"X-Hook: v 1\r\nReceived: a\r\n\tfolded\r\nSubject:  Hi \r\nX-Spam: yes\r\n  more\r\nx-spam : 2\r\nTo: b\r\n\r\nX-Spam: body\r\n",
            ),
            (
                &[],
                &["x-SPAM"],
                b"Received: a\r\n\tfolded\r\nSubject:  Hi \r\nTo: b\r\n\r\nX-Spam: body\r\n",
            ),
            (
                &[field("A", "1"), field("B", "2")],
                &["received", "to"],
                b"A: 1\r\nB: 2\r\nSubject:  Hi \r\nX-Spam: yes\r\n  more\r\nx-spam : 2\r\n\r\nX-Spam: body\r\n",
            ),
        ];
        for (add, remove, expected) in cases {
            let remove: Vec<String> = remove.iter().map(|s| (*s).to_owned()).collect();
            let got = edit_headers(raw, add, &remove);
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(expected)
            );
        }
    }

    #[test]
    fn odd_messages() {
        let remove = ["x".to_owned()];
        for (raw, expected) in [
            (&b""[..], &b""[..]),
            (b"\r\nbody", b"\r\nbody"),
            (b"X: 1", b""),
            (b"X: 1\nY: 2\n\nX: 3\n", b"Y: 2\n\nX: 3\n"),
            (b"no colon line\r\nX: 1\r\n\r\n", b"no colon line\r\n\r\n"),
            (b"\xff\xfe: bin\r\nX:\r\n", b"\xff\xfe: bin\r\n"),
        ] {
            assert_eq!(edit_headers(raw, &[], &remove), expected, "{raw:?}");
        }
    }

    #[test]
    fn header_names() {
        for (name, ok) in [
            ("X-Hook", true),
            ("", false),
            ("A:B", false),
            ("A B", false),
            ("Ä", false),
            (&"x".repeat(76), true),
            (&"x".repeat(77), false),
        ] {
            assert_eq!(is_header_name(name), ok, "{name}");
        }
    }
}
