//! Removing `Authentication-Results` header fields that claim our authserv-id.
//!
//! RFC 8601 §5: a receiver MUST delete (or otherwise obscure) instances of the field
//! that claim to come from its own ADMD, or downstream filters would trust the
//! client's word. We delete them; fields naming any other authserv-id stay, and the
//! body is never looked at. Run it on the message *after* DKIM/ARC verification
//! (which must see the bytes as received) and before prepending our own header.

/// The header field removed.
const NAME: &[u8] = b"Authentication-Results";

/// Removes every `Authentication-Results` field in `raw`'s header section whose
/// authserv-id equals `server_name` (ASCII case-insensitive, a trailing dot
/// ignored); returns the new message, or `None` when nothing was removed.
///
/// The header section ends at the first empty line; a field runs on over its
/// continuation lines (those starting with space or tab). CRLF and bare LF line
/// ends are both understood and kept as they are.
pub fn strip_forged_authentication_results(raw: &[u8], server_name: &str) -> Option<Vec<u8>> {
    let ours = server_name.trim().trim_end_matches('.');
    if ours.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut removed = false;
    let mut pos = 0;
    while pos < raw.len() {
        let end = field_end(raw, pos);
        let field = &raw[pos..end];
        if is_blank_line(field) {
            break;
        }
        if claims(field, ours) {
            removed = true;
        } else {
            out.extend_from_slice(field);
        }
        pos = end;
    }
    if !removed {
        return None;
    }
    out.extend_from_slice(&raw[pos..]);
    Some(out)
}

/// The end of the header field (or blank line) starting at `start`: after its last
/// continuation line's line end.
fn field_end(raw: &[u8], start: usize) -> usize {
    let mut end = line_end(raw, start);
    if is_blank_line(&raw[start..end]) {
        return end;
    }
    while end < raw.len() && matches!(raw[end], b' ' | b'\t') {
        end = line_end(raw, end);
    }
    end
}

/// The index after the LF ending the line at `start` (or the end of `raw`).
fn line_end(raw: &[u8], start: usize) -> usize {
    match memchr::memchr(b'\n', &raw[start..]) {
        Some(i) => start + i + 1,
        None => raw.len(),
    }
}

fn is_blank_line(line: &[u8]) -> bool {
    matches!(line, b"\r\n" | b"\n")
}

/// Whether `field` is an `Authentication-Results` field whose authserv-id is `ours`.
fn claims(field: &[u8], ours: &str) -> bool {
    let Some(colon) = memchr::memchr(b':', field) else {
        return false;
    };
    let name = field[..colon].trim_ascii_end();
    if !name.eq_ignore_ascii_case(NAME) {
        return false;
    }
    match authserv_id(&field[colon + 1..]) {
        Some(id) => {
            let id = id.strip_suffix(b".").unwrap_or(&id);
            id.eq_ignore_ascii_case(ours.as_bytes())
        }
        None => false,
    }
}

/// The authserv-id at the start of an `Authentication-Results` value (RFC 8601
/// §2.2: `[CFWS] authserv-id [CFWS authres-version] ...`): a token, or a quoted
/// string (unquoted here), after any folding white space and comments.
fn authserv_id(value: &[u8]) -> Option<Vec<u8>> {
    let mut i = skip_cfws(value, 0);
    let mut id = Vec::new();
    if value.get(i) == Some(&b'"') {
        i += 1;
        while let Some(&c) = value.get(i) {
            match c {
                b'"' => return Some(id),
                b'\\' => {
                    id.extend(value.get(i + 1));
                    i += 2;
                }
                b'\r' | b'\n' => i += 1,
                _ => {
                    id.push(c);
                    i += 1;
                }
            }
        }
        return None;
    }
    while let Some(&c) = value.get(i) {
        if c.is_ascii_whitespace() || matches!(c, b';' | b'(' | b'"') {
            break;
        }
        id.push(c);
        i += 1;
    }
    (!id.is_empty()).then_some(id)
}

/// The index after the white space and (nested) comments starting at `i`.
fn skip_cfws(value: &[u8], mut i: usize) -> usize {
    let mut depth = 0usize;
    while let Some(&c) = value.get(i) {
        match c {
            b'(' => depth += 1,
            b')' if depth > 0 => depth -= 1,
            b'\\' if depth > 0 => i += 1,
            c if c.is_ascii_whitespace() => {}
            _ if depth > 0 => {}
            _ => break,
        }
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip(raw: &str, ours: &str) -> Option<String> {
        strip_forged_authentication_results(raw.as_bytes(), ours)
            .map(|v| String::from_utf8(v).unwrap())
    }

    #[test]
    fn ids() {
        let id = |v: &str| authserv_id(v.as_bytes()).map(|i| String::from_utf8(i).unwrap());
        assert_eq!(id(" mx.example; spf=pass").as_deref(), Some("mx.example"));
        assert_eq!(id(" mx.example 1; none").as_deref(), Some("mx.example"));
        assert_eq!(
            id("\r\n\t(c (nested)) mx.example;").as_deref(),
            Some("mx.example")
        );
        assert_eq!(id(" \"mx.example\"; none").as_deref(), Some("mx.example"));
        assert_eq!(id(" mx.example(comment);").as_deref(), Some("mx.example"));
        assert_eq!(id(" ; none"), None);
        assert_eq!(id(" \"open"), None);
        assert_eq!(id(" (never closed"), None);
    }

    #[test]
    fn removes_only_ours() {
        let raw = "Received: x\r\n\
                   Authentication-Results: MX.Example.; spf=pass\r\n\
                   \tsmtp.mailfrom=a@b\r\n\
                   authentication-results : (c) mx.example ; dkim=pass\r\n\
                   Authentication-Results: other.example; spf=fail\r\n\
                   Subject: hi\r\n\
                   \r\n\
                   Authentication-Results: mx.example; body line\r\n";
        let got = strip(raw, "mx.example").unwrap();
        assert_eq!(
            got,
            "Received: x\r\n\
             Authentication-Results: other.example; spf=fail\r\n\
             Subject: hi\r\n\
             \r\n\
             Authentication-Results: mx.example; body line\r\n"
        );
        assert_eq!(strip(&got, "mx.example"), None);
        assert_eq!(strip(raw, "mx.example.net"), None);
        assert_eq!(strip(raw, ""), None);
    }

    #[test]
    fn bare_lf_and_no_body() {
        let raw = "Authentication-Results: mx.example; none\nX: y\n";
        assert_eq!(strip(raw, "mx.example").as_deref(), Some("X: y\n"));
        let raw = "Authentication-Results: mx.example; none";
        assert_eq!(strip(raw, "mx.example").as_deref(), Some(""));
        assert_eq!(strip("", "mx.example"), None);
        assert_eq!(
            strip("\r\nAuthentication-Results: mx.example;\r\n", "mx.example"),
            None
        );
    }
}
