//! Positional header edits ([`HeaderEdit`]), the kind milters ask for: append
//! at the end of the header section, insert before the n-th field, change or
//! delete the n-th field of a name. [`apply_header_edits`] makes them on the
//! message bytes, keeping every other byte (untouched fields, their order and
//! folding, the body) exactly, as [`edit_headers`](super::edit_headers) does.

use super::changes::{field_end, field_name};

/// One positional header edit. `value` is every byte after the colon as it
/// will be written (a leading space included when wanted; folded lines joined
/// by CRLF followed by a space or tab; no other CR, LF or NUL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderEdit {
    /// Append the field after the last one.
    Append {
        /// The field name.
        name: String,
        /// The bytes after the colon.
        value: String,
    },
    /// Insert the field before the `index`-th field (0: at the top; past the
    /// end: after the last).
    Insert {
        /// Position among all fields, from 0.
        index: usize,
        /// The field name.
        name: String,
        /// The bytes after the colon.
        value: String,
    },
    /// Replace the `index`-th (from 1) field of this name (any case), or
    /// delete it when `value` is `None`; when there is no such field, a
    /// `Some` value is appended.
    Change {
        /// Which occurrence, from 1.
        index: usize,
        /// The field name.
        name: String,
        /// The new bytes after the colon, or `None` to delete.
        value: Option<String>,
    },
}

/// Whether `value` may follow a colon: folded lines only (CRLF then SP/HT),
/// no other CR, LF or NUL.
pub fn is_header_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    bytes.iter().enumerate().all(|(i, &b)| match b {
        0 => false,
        b'\r' => bytes.get(i + 1) == Some(&b'\n') && matches!(bytes.get(i + 2), Some(b' ' | b'\t')),
        b'\n' => i > 0 && bytes[i - 1] == b'\r',
        _ => true,
    })
}

fn field(name: &str, value: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + value.len() + 3);
    out.extend_from_slice(name.as_bytes());
    out.push(b':');
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
    out
}

/// `raw` with `edits` made in order (each sees the fields as the earlier ones
/// left them).
pub fn apply_header_edits(raw: &[u8], edits: &[HeaderEdit]) -> Vec<u8> {
    let mut fields: Vec<std::borrow::Cow<'_, [u8]>> = Vec::new();
    let mut at = 0;
    while at < raw.len() {
        let end = field_end(raw, at);
        if end == at {
            break;
        }
        fields.push(raw[at..end].into());
        at = end;
    }
    // A header section without its final line end: the next field must not
    // run into it.
    if at == raw.len()
        && let Some(last) = fields.last_mut()
        && !last.ends_with(b"\n")
    {
        last.to_mut().extend_from_slice(b"\r\n");
    }
    for edit in edits {
        match edit {
            HeaderEdit::Append { name, value } => fields.push(field(name, value).into()),
            HeaderEdit::Insert { index, name, value } => {
                let index = (*index).min(fields.len());
                fields.insert(index, field(name, value).into());
            }
            HeaderEdit::Change { index, name, value } => {
                let found = fields
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| {
                        field_name(f).is_some_and(|n| n.eq_ignore_ascii_case(name.as_bytes()))
                    })
                    .nth(index.saturating_sub(1))
                    .map(|(i, _)| i);
                match (found, value) {
                    (Some(i), Some(value)) => fields[i] = field(name, value).into(),
                    (Some(i), None) => {
                        fields.remove(i);
                    }
                    (None, Some(value)) => fields.push(field(name, value).into()),
                    (None, None) => {}
                }
            }
        }
    }
    let mut out = Vec::with_capacity(raw.len() + 256);
    for f in &fields {
        out.extend_from_slice(f);
    }
    if at == raw.len() && !fields.is_empty() && raw.len() == at {
        // No empty line in the original: none is added.
    }
    out.extend_from_slice(&raw[at..]);
    out
}

/// `raw` with its body (everything after the empty line ending the header
/// section) replaced by `body`; a message without that line gets one.
pub fn replace_body(raw: &[u8], body: &[u8]) -> Vec<u8> {
    let mut at = 0;
    while at < raw.len() {
        let end = field_end(raw, at);
        if end == at {
            break;
        }
        at = end;
    }
    let mut out = Vec::with_capacity(at + body.len() + 2);
    out.extend_from_slice(&raw[..at]);
    if at < raw.len() {
        let blank = if raw[at] == b'\r' { 2 } else { 1 };
        out.extend_from_slice(&raw[at..at + blank]);
    } else {
        if !out.is_empty() && !out.ends_with(b"\n") {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(name: &str, value: &str) -> HeaderEdit {
        HeaderEdit::Append {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn edits_in_order_keep_every_other_byte() {
        let raw = b"Received: a\r\n\tb\r\nSubject:  Hi\r\nX-S: 1\r\nx-s:2\r\n\r\nX-S: body\r\n";
        let edits = [
            append("X-Spam", " yes"),
            HeaderEdit::Insert {
                index: 0,
                name: "DKIM-Signature".into(),
                value: " v=1;\r\n\tb=x".into(),
            },
            HeaderEdit::Change {
                index: 2,
                name: "X-S".into(),
                value: None,
            },
            HeaderEdit::Change {
                index: 1,
                name: "subject".into(),
                value: Some(" New".into()),
            },
            HeaderEdit::Change {
                index: 1,
                name: "X-New".into(),
                value: Some(" n".into()),
            },
            HeaderEdit::Change {
                index: 1,
                name: "X-None".into(),
                value: None,
            },
            HeaderEdit::Insert {
                index: 99,
                name: "X-Last".into(),
                value: " l".into(),
            },
        ];
        let got = apply_header_edits(raw, &edits);
        assert_eq!(
            String::from_utf8_lossy(&got),
            "DKIM-Signature: v=1;\r\n\tb=x\r\nReceived: a\r\n\tb\r\nsubject: New\r\nX-S: 1\r\nX-Spam: yes\r\nX-New: n\r\nX-Last: l\r\n\r\nX-S: body\r\n"
        );
        assert_eq!(apply_header_edits(raw, &[]), raw);
    }

    #[test]
    fn odd_messages() {
        assert_eq!(apply_header_edits(b"", &[append("A", " 1")]), b"A: 1\r\n");
        assert_eq!(
            apply_header_edits(b"X: 1", &[append("A", " 1")]),
            b"X: 1\r\nA: 1\r\n"
        );
        assert_eq!(
            apply_header_edits(b"\r\nbody", &[append("A", " 1")]),
            b"A: 1\r\n\r\nbody"
        );
    }

    #[test]
    fn body_replacement() {
        for (raw, expected) in [
            (&b"A: 1\r\n\r\nold\r\n"[..], &b"A: 1\r\n\r\nnew\r\n"[..]),
            (b"A: 1\n\nold\n", b"A: 1\n\nnew\r\n"),
            (b"A: 1\r\n", b"A: 1\r\n\r\nnew\r\n"),
            (b"A: 1", b"A: 1\r\n\r\nnew\r\n"),
            (b"", b"\r\nnew\r\n"),
        ] {
            assert_eq!(replace_body(raw, b"new\r\n"), expected, "{raw:?}");
        }
    }

    #[test]
    fn header_values() {
        for (value, ok) in [
            (" plain", true),
            (" a\r\n\tb", true),
            (" a\r\n b\r\n c", true),
            (" a\nb", false),
            (" a\r\nb", false),
            (" a\rb", false),
            (" a\r\n", false),
            ("\0", false),
        ] {
            assert_eq!(is_header_value(value), ok, "{value:?}");
        }
    }
}
