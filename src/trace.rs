//! The trace headers we prepend to a delivered message (`Received:` per
//! RFC 5321 §4.4 and `Return-Path:`), and the sanitizing of anything the
//! client supplied before it goes into a header.

use std::borrow::Cow;

use chrono::{DateTime, FixedOffset};

/// Longest text (in characters) [`sanitize_header_text`] lets through.
pub const MAX_HEADER_TEXT: usize = 255;

/// Makes client-supplied text safe to put into a header, including inside a
/// comment: CR, LF, NUL and every other control character, the Unicode line
/// and paragraph separators, and `(`, `)` and `\` become `?`, so nothing from
/// the client can start a new header line or end a comment. The result is
/// capped at [`MAX_HEADER_TEXT`] characters. Borrows when nothing changes.
pub fn sanitize_header_text(s: &str) -> Cow<'_, str> {
    let needs_change = s
        .chars()
        .enumerate()
        .any(|(i, c)| i >= MAX_HEADER_TEXT || unsafe_char(c));
    if !needs_change {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .take(MAX_HEADER_TEXT)
            .map(|c| if unsafe_char(c) { '?' } else { c })
            .collect(),
    )
}

fn unsafe_char(c: char) -> bool {
    c.is_control() || matches!(c, '(' | ')' | '\\' | '\u{2028}' | '\u{2029}')
}

/// What goes into one `Received:` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceivedInfo<'a> {
    /// The EHLO/HELO argument, if the client gave one.
    pub helo: Option<&'a str>,
    /// The client's reverse-DNS name, if known.
    pub remote_hostname: Option<&'a str>,
    /// The client's IP address (`"192.0.2.1"`, `"2001:db8::1"`).
    pub remote_ip: &'a str,
    /// Our host name.
    pub server_name: &'a str,
    /// The protocol, chosen by the caller: `"SMTP"`, `"ESMTP"`, `"ESMTPS"`,
    /// `"ESMTPSA"`, `"UTF8SMTP"`, ...
    pub protocol: &'a str,
    /// The mail id.
    pub id: &'a str,
    /// The recipient; only given when there is exactly one.
    pub recipient: Option<&'a str>,
    /// When the message was received.
    pub time: DateTime<FixedOffset>,
}

/// The `Received:` trace header (RFC 5321 §4.4), folded with CRLF + TAB and
/// ending in CRLF:
///
/// ```text
/// Received: from <helo> (<remote_hostname or unknown> [<ip>])
///         by <server_name> (net-receiver) with <protocol> id <id>
///         for <<recipient>>; Wed, 05 Oct 2016 14:51:46 +0000
/// ```
///
/// Without a recipient the date follows the id after `;` on a third line.
/// An IPv6 address is written as `[IPv6:...]` (RFC 5321 §4.1.3). Every value
/// goes through [`sanitize_header_text`].
pub fn received_header(info: &ReceivedInfo<'_>) -> String {
    let helo = sanitize_header_text(info.helo.unwrap_or("unknown"));
    let host = sanitize_header_text(info.remote_hostname.unwrap_or("unknown"));
    let ip = sanitize_header_text(info.remote_ip);
    let ip_tag = if ip.contains(':') { "IPv6:" } else { "" };
    let server = sanitize_header_text(info.server_name);
    let protocol = sanitize_header_text(info.protocol);
    let id = sanitize_header_text(info.id);
    let date = rfc5322_date(&info.time);
    let mut out = format!(
        "Received: from {helo} ({host} [{ip_tag}{ip}])\r\n\
         \tby {server} (net-receiver) with {protocol} id {id}"
    );
    match info.recipient {
        Some(rcpt) => {
            let rcpt = sanitize_header_text(rcpt);
            out.push_str(&format!("\r\n\tfor <{rcpt}>; {date}\r\n"));
        }
        None => out.push_str(&format!(";\r\n\t{date}\r\n")),
    }
    out
}

/// `Return-Path: <reverse-path>` ending in CRLF; `<>` for the null path (an
/// empty `reverse_path` or `"<>"`). The path is sanitized.
pub fn return_path_header(reverse_path: &str) -> String {
    let path = match reverse_path {
        "" | "<>" => Cow::Borrowed(""),
        p => sanitize_header_text(p),
    };
    format!("Return-Path: <{path}>\r\n")
}

/// An RFC 5322 date-time, e.g. `Wed, 05 Oct 2016 14:51:46 +0000`.
pub fn rfc5322_date(time: &DateTime<FixedOffset>) -> String {
    time.format("%a, %d %b %Y %H:%M:%S %z").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t() -> DateTime<FixedOffset> {
        FixedOffset::east_opt(0)
            .unwrap()
            .with_ymd_and_hms(2016, 10, 5, 14, 51, 46)
            .unwrap()
    }

    fn info<'a>() -> ReceivedInfo<'a> {
        ReceivedInfo {
            helo: Some("client.example"),
            remote_hostname: Some("host.example"),
            remote_ip: "192.0.2.1",
            server_name: "mx.example.com",
            protocol: "ESMTP",
            id: "OELGQA-A58QI3-AA",
            recipient: Some("a@example.com"),
            time: t(),
        }
    }

    #[test]
    fn sanitize_table() {
        let long = "x".repeat(300);
        let long_multibyte = "é".repeat(300);
        for (input, want, borrowed) in [
            ("plain text", "plain text".to_owned(), true),
            ("a\r\nBcc: x", "a??Bcc: x".to_owned(), false),
            ("nul\0here", "nul?here".to_owned(), false),
            ("tab\tdel\u{7f}c1\u{85}", "tab?del?c1?".to_owned(), false),
            ("(comment) \\", "?comment? ?".to_owned(), false),
            ("ls\u{2028}ps\u{2029}", "ls?ps?".to_owned(), false),
            ("héllo", "héllo".to_owned(), true),
            (&long, "x".repeat(255), false),
            (&long_multibyte, "é".repeat(255), false),
            (&long[..255], "x".repeat(255), true),
            ("", String::new(), true),
        ] {
            let got = sanitize_header_text(input);
            assert_eq!(got, want, "{input:?}");
            assert_eq!(matches!(got, Cow::Borrowed(_)), borrowed, "{input:?}");
        }
    }

    #[test]
    fn received_exact() {
        assert_eq!(
            received_header(&info()),
            "Received: from client.example (host.example [192.0.2.1])\r\n\
             \tby mx.example.com (net-receiver) with ESMTP id OELGQA-A58QI3-AA\r\n\
             \tfor <a@example.com>; Wed, 05 Oct 2016 14:51:46 +0000\r\n"
        );
        let bare = ReceivedInfo {
            helo: None,
            remote_hostname: None,
            remote_ip: "2001:db8::1",
            recipient: None,
            protocol: "SMTP",
            ..info()
        };
        assert_eq!(
            received_header(&bare),
            "Received: from unknown (unknown [IPv6:2001:db8::1])\r\n\
             \tby mx.example.com (net-receiver) with SMTP id OELGQA-A58QI3-AA;\r\n\
             \tWed, 05 Oct 2016 14:51:46 +0000\r\n"
        );
    }

    #[test]
    fn injection_cannot_start_a_header() {
        let evil = [
            "x\r\nBcc: victim@example.com",
            "x\nBcc: y",
            "x\rBcc: y",
            "x\0y",
            "x)\r\n\r\nbody",
            "\r\n",
        ];
        for e in evil {
            let i = ReceivedInfo {
                helo: Some(e),
                remote_hostname: Some(e),
                remote_ip: e,
                server_name: e,
                protocol: e,
                id: e,
                recipient: Some(e),
                time: t(),
            };
            let h = received_header(&i);
            let body = h.strip_suffix("\r\n").unwrap();
            for (n, line) in body.split("\r\n").enumerate() {
                assert!(!line.contains(['\r', '\n', '\0']), "{h:?}");
                if n == 0 {
                    assert!(line.starts_with("Received: "), "{h:?}");
                } else {
                    assert!(line.starts_with('\t'), "{h:?}");
                }
            }
            assert_eq!(body.split("\r\n").count(), 3);
            let rp = return_path_header(e);
            assert!(
                rp.starts_with("Return-Path: <") && rp.ends_with(">\r\n"),
                "{rp:?}"
            );
            assert_eq!(rp.matches(['\r', '\n']).count(), 2, "{rp:?}");
        }
    }

    #[test]
    fn return_path_table() {
        for (input, want) in [
            ("", "Return-Path: <>\r\n"),
            ("<>", "Return-Path: <>\r\n"),
            ("a@b.example", "Return-Path: <a@b.example>\r\n"),
            ("a@b\r\nX: y", "Return-Path: <a@b??X: y>\r\n"),
        ] {
            assert_eq!(return_path_header(input), want);
        }
    }

    #[test]
    fn date_format() {
        assert_eq!(rfc5322_date(&t()), "Wed, 05 Oct 2016 14:51:46 +0000");
        let pdt = FixedOffset::west_opt(7 * 3600)
            .unwrap()
            .with_ymd_and_hms(2016, 1, 3, 4, 5, 6)
            .unwrap();
        assert_eq!(rfc5322_date(&pdt), "Sun, 03 Jan 2016 04:05:06 -0700");
    }
}
