//! Splitting a message into the seed's `headers` map and `text` lines.

use indexmap::IndexMap;

use bytes::Bytes;

use super::HeaderValue;
use super::text::{Lines, Text};

/// Splits a message into the seed's `headers` map and `text` lines.
///
/// The header section is the lines up to the first empty line. Each key is
/// the header name lower-cased with `-` → `_` (`Message-ID` → `message_id`);
/// each value is the raw `Name: value` text, unfolded (continuation lines
/// starting with SP/HTAB are joined, only the line break removed) and without
/// the line ending. Repeated names keep every occurrence in order.
///
/// A header-section line that is neither a header (`name:`, the name being
/// printable ASCII without space or `:`, optionally followed by blanks before
/// the colon as in the obsolete syntax) nor a continuation ends the header
/// section and is the first body line. Lines split on CRLF or bare LF; a last
/// line without a line ending is kept. Bytes that are not UTF-8 are replaced
/// with U+FFFD.
pub fn split_message(raw: &Bytes) -> (IndexMap<String, HeaderValue>, Text) {
    // Room for a usual header section, not grown header by header.
    let mut headers: IndexMap<String, HeaderValue> = IndexMap::with_capacity(8);
    let mut lines = Lines::new(raw);
    let mut current: Option<(String, Pending<'_>)> = None;
    let mut body_start = raw.len();

    loop {
        let line_start = raw.len() - lines.remaining();
        let Some(line) = lines.next() else { break };
        if line.is_empty() {
            body_start = raw.len() - lines.remaining();
            break;
        }
        if let (Some(b' ' | b'\t'), Some((_, value))) = (line.first(), current.as_mut()) {
            value.fold(line);
            continue;
        }
        if let Some(key) = header_key(line) {
            if let Some((k, v)) = current.replace((key, Pending::Line(line))) {
                insert_header(&mut headers, k, v.bytes());
            }
            continue;
        }
        body_start = line_start;
        break;
    }
    if let Some((k, v)) = current {
        insert_header(&mut headers, k, v.bytes());
    }

    (headers, Text::from_body(raw.slice(body_start..)))
}

/// A header's value while its continuation lines may still come: the line
/// itself until one does (no copy), then the lines joined.
enum Pending<'a> {
    Line(&'a [u8]),
    Folded(Vec<u8>),
}

impl Pending<'_> {
    /// Joins a continuation line (only the line break between them removed).
    fn fold(&mut self, line: &[u8]) {
        match self {
            Pending::Line(first) => {
                let mut joined = Vec::with_capacity(first.len() + line.len());
                joined.extend_from_slice(first);
                joined.extend_from_slice(line);
                *self = Pending::Folded(joined);
            }
            Pending::Folded(joined) => joined.extend_from_slice(line),
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Pending::Line(line) => line,
            Pending::Folded(joined) => joined,
        }
    }
}

fn insert_header(headers: &mut IndexMap<String, HeaderValue>, key: String, value: &[u8]) {
    // The check alone first: it is quicker than the lossy conversion's.
    let value = match std::str::from_utf8(value) {
        Ok(text) => text.to_owned(),
        Err(_) => String::from_utf8_lossy(value).into_owned(),
    };
    match headers.entry(key) {
        indexmap::map::Entry::Occupied(mut e) => e.get_mut().push(value),
        indexmap::map::Entry::Vacant(e) => {
            e.insert(HeaderValue::One(value));
        }
    }
}

/// The map key for a header line, or `None` if the line is not a header.
fn header_key(line: &[u8]) -> Option<String> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = &line[..colon];
    let trimmed_len = name
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(0, |i| i + 1);
    let name = &name[..trimmed_len];
    if name.is_empty() || !name.iter().all(|&b| (33..=126).contains(&b)) {
        return None;
    }
    let key: Vec<u8> = name
        .iter()
        .map(|&b| match b {
            b'-' => b'_',
            b => b.to_ascii_lowercase(),
        })
        .collect();
    // Printable ASCII (checked above), so this never fails.
    String::from_utf8(key).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Headers as `key=value` per occurrence, one a line; text as Debug.
    fn render(raw: &[u8]) -> (String, String) {
        let (h, t) = split_message(&Bytes::copy_from_slice(raw));
        let h: Vec<String> = h
            .iter()
            .flat_map(|(k, v)| v.all().map(move |v| format!("{k}={v}")))
            .collect();
        (h.join("\n"), format!("{t:?}"))
    }

    #[test]
    fn split_table() {
        let table: &[(&[u8], &str, &str)] = &[
            (
                b"Subject: a\r\n b\r\n\tc\r\nMessage-ID: <x@y>\r\n\r\nbody\r\n",
                "subject=Subject: a b\tc\nmessage_id=Message-ID: <x@y>",
                r#"["body"]"#,
            ),
            (
                b"Received: one\r\nTo: t\r\nReceived: two\r\n  more\r\n\r\n",
                "received=Received: one\nreceived=Received: two  more\nto=To: t",
                "[]",
            ),
            // No blank line: the first non-header line starts the body.
            (
                b"From: a\r\nthis is body\r\nX: y\r\n",
                "from=From: a",
                r#"["this is body", "X: y"]"#,
            ),
            (
                b"A: 1\nB: 2\n\nl1\nl2\r\nl3",
                "a=A: 1\nb=B: 2",
                r#"["l1", "l2", "l3"]"#,
            ),
            (b"Subject: x\r\n\r\n", "subject=Subject: x", "[]"),
            (b"Subject: x\r\n\r\n\r\n", "subject=Subject: x", r#"[""]"#),
            (b"Subject: x", "subject=Subject: x", "[]"),
            (b"", "", "[]"),
            (b"\r\nonly body", "", r#"["only body"]"#),
            (b" leading space\r\n", "", r#"[" leading space"]"#),
            (b"Bad Name: v\r\n", "", r#"["Bad Name: v"]"#),
            (b": v\r\n", "", r#"[": v"]"#),
            (b"Obs-Name : v\r\n\r\n", "obs_name=Obs-Name : v", "[]"),
            (
                b"S: x\r\n\r\n\xff\xfe\r\n",
                "s=S: x",
                "[\"\u{fffd}\u{fffd}\"]",
            ),
            (
                "Subject: caf\u{e9}\r\n\r\nna\u{ef}ve \u{1F600}\r\n".as_bytes(),
                "subject=Subject: caf\u{e9}",
                "[\"na\u{ef}ve \u{1F600}\"]",
            ),
        ];
        for (raw, headers, text) in table {
            let raw_text = String::from_utf8_lossy(raw);
            assert_eq!(
                render(raw),
                (headers.to_string(), text.to_string()),
                "{raw_text:?}"
            );
        }
    }
}
