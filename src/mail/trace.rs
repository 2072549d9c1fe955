//! The trace headers we prepend to a delivered message (`Received:` per
//! RFC 5321 §4.4 and `Return-Path:`), and the sanitizing of anything the
//! client supplied before it goes into a header.
//!
//! The EHLO argument is the client's word, not ours: it becomes the `from`
//! clause only when it is what RFC 5321 §4.1.1.1 allows there (a `Domain` or an
//! address literal, [`is_ehlo_domain_or_literal`]). Anything else (a spaced
//! argument that would write a fake `by`, `with`, `id` or a `;` handing the date
//! to the client) gives `from unknown` and is kept, as Exim keeps a HELO it did
//! not trust, in the comment as `helo=` with every space, `;`, parenthesis,
//! quote, backslash, control and non-ASCII character made a `?` (one word, so
//! no structural word of its own). Refusing such an EHLO with 501 (Exim's
//! default) would also do, but it is the protocol's decision and would turn away
//! the sloppy clients the seed accepted; the mail structure's `ehlo.value` keeps
//! the raw text either way. The same rule applies to the reverse-DNS name
//! (a PTR record may hold anything), and `for <recipient>`, optional in the
//! grammar, is left out when the address holds a space, `;` or a control.

use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr};

use chrono::{DateTime, Datelike as _, FixedOffset, Timelike as _};

use crate::digits::push_zero_padded;

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
/// Without a recipient (or with one that is not a single safe word) the date
/// follows the id after `;` on a third line. An IPv6 address is written as
/// `[IPv6:...]` (RFC 5321 §4.1.3). A HELO that is not a domain or address
/// literal gives `from unknown (... [<ip>] helo=<one word>)` (see the module
/// doc); every other value goes through [`sanitize_header_text`].
pub fn received_header(info: &ReceivedInfo<'_>) -> String {
    let (helo, helo_note) = match info.helo {
        None => (Cow::Borrowed("unknown"), String::new()),
        Some(helo) if is_ehlo_domain_or_literal(helo) => (Cow::Borrowed(helo), String::new()),
        Some(helo) => (
            Cow::Borrowed("unknown"),
            format!(" helo={}", one_word(helo)),
        ),
    };
    let host = match info.remote_hostname {
        Some(host) if is_domain(host) => Cow::Borrowed(host),
        Some(host) => Cow::Owned(one_word(host)),
        None => Cow::Borrowed("unknown"),
    };
    let ip = sanitize_header_text(info.remote_ip);
    let ip_tag = if ip.contains(':') { "IPv6:" } else { "" };
    let server = sanitize_header_text(info.server_name);
    let protocol = sanitize_header_text(info.protocol);
    let id = sanitize_header_text(info.id);
    let date = rfc5322_date(&info.time);
    let recipient = info.recipient.filter(|rcpt| is_one_word(rcpt));
    // Written piece by piece into one string sized up front (`format!` took
    // about 5,000 instructions a message here).
    let pieces = [
        "Received: from ",
        &helo,
        " (",
        &host,
        " [",
        ip_tag,
        &ip,
        "]",
        &helo_note,
        ")\r\n\tby ",
        &server,
        " (net-receiver) with ",
        &protocol,
        " id ",
        &id,
    ];
    let tail: [&str; 5] = match recipient {
        Some(rcpt) => ["\r\n\tfor <", rcpt, ">; ", &date, "\r\n"],
        None => [";\r\n\t", &date, "\r\n", "", ""],
    };
    let len = pieces.iter().chain(&tail).map(|p| p.len()).sum();
    let mut out = String::with_capacity(len);
    for piece in pieces.iter().chain(&tail) {
        out.push_str(piece);
    }
    out
}

/// True for what RFC 5321 §4.1.1.1 allows as the EHLO argument:
///
/// ```text
/// Domain         = sub-domain *("." sub-domain)
/// sub-domain     = Let-dig [Ldh-str]
/// address-literal = "[" ( IPv4-address-literal / IPv6-address-literal ) "]"
/// IPv6-address-literal = "IPv6:" IPv6-addr
/// ```
///
/// (The General-address-literal with a standardized tag is not taken: none is
/// registered.)
pub fn is_ehlo_domain_or_literal(helo: &str) -> bool {
    match helo
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
    {
        Some(literal) => match literal.get(..5) {
            Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => {
                literal[5..].parse::<Ipv6Addr>().is_ok()
            }
            _ => literal.parse::<Ipv4Addr>().is_ok(),
        },
        None => is_domain(helo),
    }
}

/// RFC 5321 `Domain`: dot-separated labels of letters, digits and inner
/// hyphens, each 1–63 characters, 255 in all.
fn is_domain(name: &str) -> bool {
    name.len() <= 255
        && name.split('.').all(|label| {
            let bytes = label.as_bytes();
            matches!((bytes.first(), bytes.last()), (Some(first), Some(last))
                if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric())
                && bytes.len() <= 63
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        })
}

/// Client text as one word for a header comment: at most
/// [`MAX_HEADER_TEXT`] characters, each that is not printable ASCII, or is
/// `(`, `)`, `\`, `;`, `"` or `<`/`>`, replaced by `?`.
fn one_word(text: &str) -> String {
    text.chars()
        .take(MAX_HEADER_TEXT)
        .map(|c| if word_char(c) { c } else { '?' })
        .collect()
}

/// Whether [`one_word`] would leave `text` as it is (without making the copy).
fn is_one_word(text: &str) -> bool {
    text.len() <= MAX_HEADER_TEXT && text.chars().all(word_char)
}

/// A character [`one_word`] keeps.
fn word_char(c: char) -> bool {
    c.is_ascii_graphic() && !matches!(c, '(' | ')' | '\\' | ';' | '"' | '<' | '>')
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

/// An RFC 5322 date-time, e.g. `Wed, 05 Oct 2016 14:51:46 +0000` (chrono's
/// `%a, %d %b %Y %H:%M:%S %z`, written directly: one per message, and chrono
/// parses its format string on every call).
pub fn rfc5322_date(time: &DateTime<FixedOffset>) -> String {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let mut out = String::with_capacity(31);
    out.push_str(DAYS[time.weekday().num_days_from_monday() as usize % 7]);
    out.push_str(", ");
    push_zero_padded(&mut out, time.day(), 2);
    out.push(' ');
    out.push_str(MONTHS[time.month0() as usize % 12]);
    out.push(' ');
    push_year(&mut out, time.year());
    out.push(' ');
    push_clock_and_offset(&mut out, time);
    out
}

/// The seed's `time` field, `2016-10-05 14:51:46 +0000` (chrono's `%Y-%m-%d
/// %H:%M:%S %z`, written directly: one per connection).
pub fn seed_time(time: &DateTime<FixedOffset>) -> String {
    let mut out = String::with_capacity(25);
    push_year(&mut out, time.year());
    out.push('-');
    push_zero_padded(&mut out, time.month(), 2);
    out.push('-');
    push_zero_padded(&mut out, time.day(), 2);
    out.push(' ');
    push_clock_and_offset(&mut out, time);
    out
}

/// `hh:mm:ss +hhmm` (chrono's `%H:%M:%S %z`).
fn push_clock_and_offset(out: &mut String, time: &DateTime<FixedOffset>) {
    push_zero_padded(out, time.hour(), 2);
    out.push(':');
    push_zero_padded(out, time.minute(), 2);
    out.push(':');
    push_zero_padded(out, time.second(), 2);
    out.push(' ');
    let offset = time.offset().local_minus_utc();
    out.push(if offset < 0 { '-' } else { '+' });
    let minutes = offset.unsigned_abs() / 60;
    push_zero_padded(out, minutes / 60, 2);
    push_zero_padded(out, minutes % 60, 2);
}

/// A year as chrono's `%Y` writes it: four digits from 0 to 9999, else with its sign.
fn push_year(out: &mut String, year: i32) {
    if (0..=9999).contains(&year) {
        push_zero_padded(out, year.unsigned_abs(), 4);
    } else {
        out.push_str(&format!("{year:+05}"));
    }
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

    proptest::proptest! {
        /// The check without a copy says what the copy would.
        #[test]
        fn is_one_word_is_one_word_unchanged(text in "\\PC{0,300}|[ -~]{0,300}") {
            proptest::prop_assert_eq!(is_one_word(&text), one_word(&text) == text);
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

    /// The clauses of a `Received:` header as a reader sees them: unfolded,
    /// comments removed, `(keyword, value)` pairs before the one `;`, and the
    /// date after it.
    fn parse_received(header: &str) -> (Vec<(String, String)>, String) {
        let unfolded = header
            .strip_prefix("Received: ")
            .and_then(|h| h.strip_suffix("\r\n"))
            .expect("a Received: header")
            .replace("\r\n\t", " ");
        let mut depth = 0usize;
        let mut bare = String::new();
        for c in unfolded.chars() {
            match c {
                '(' => depth += 1,
                ')' => depth = depth.checked_sub(1).expect("balanced comments"),
                c if depth == 0 => bare.push(c),
                _ => assert!(c != '\r' && c != '\n' && c != ';', "{c:?} in a comment"),
            }
        }
        assert_eq!(depth, 0, "{header:?}");
        let (clauses, date) = bare.split_once(';').expect("a ;");
        assert!(!date.contains(';'), "two ; in {header:?}");
        let words: Vec<&str> = clauses.split_whitespace().collect();
        assert_eq!(words.len() % 2, 0, "{header:?}");
        let pairs = words
            .chunks(2)
            .map(|pair| (pair[0].to_owned(), pair[1].to_owned()))
            .collect();
        (pairs, date.trim().to_owned())
    }

    #[test]
    fn issue19_spaced_ehlo_stays_out_of_the_clauses() {
        let attacks = [
            "trusted.bank.example [192.0.2.66] by mx.bank.example with ESMTPS id FAKE; \
             Mon, 01 Jan 2024 00:00:00 +0000",
            "a.example (b) by c; d",
            "x;y",
            "via x",
            "evil\u{2028}by\u{85}x",
            "from for",
            "a..b",
            "-lead.example",
            "[192.0.2.1",
            "[IPv6:nope]",
            "[300.1.1.1]",
            "",
        ];
        for helo in attacks {
            assert!(!is_ehlo_domain_or_literal(helo), "{helo:?}");
            let header = received_header(&ReceivedInfo {
                helo: Some(helo),
                ..info()
            });
            let (clauses, date) = parse_received(&header);
            let keywords: Vec<&str> = clauses.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(keywords, ["from", "by", "with", "id", "for"], "{header:?}");
            assert_eq!(clauses[0].1, "unknown", "{header:?}");
            assert_eq!(clauses[1].1, "mx.example.com", "{header:?}");
            assert_eq!(clauses[3].1, "OELGQA-A58QI3-AA", "{header:?}");
            assert_eq!(
                chrono::DateTime::parse_from_rfc2822(&date).ok(),
                Some(t()),
                "{header:?}"
            );
            // The raw text is still there, as one word in the comment.
            assert!(header.contains(" helo="), "{header:?}");
        }
        let spaced = received_header(&ReceivedInfo {
            helo: Some(attacks[0]),
            ..info()
        });
        assert!(
            spaced.starts_with(
                "Received: from unknown (host.example [192.0.2.1] \
                 helo=trusted.bank.example?[192.0.2.66]?by?mx.bank.example?with?ESMTPS?id?FAKE?\
                 ?Mon,?01?Jan?2024?00:00:00?+0000)\r\n"
            ),
            "{spaced:?}"
        );
    }

    #[test]
    fn valid_ehlo_names_are_the_from_clause() {
        for helo in [
            "client.example",
            "localhost",
            "a-b.c1.example",
            "[192.0.2.1]",
            "[IPv6:2001:db8::1]",
            "[ipv6:::1]",
        ] {
            assert!(is_ehlo_domain_or_literal(helo), "{helo:?}");
            let header = received_header(&ReceivedInfo {
                helo: Some(helo),
                ..info()
            });
            let (clauses, _) = parse_received(&header);
            assert_eq!(clauses[0], ("from".to_owned(), helo.to_owned()));
            assert!(!header.contains("helo="), "{header:?}");
        }
    }

    #[test]
    fn odd_reverse_names_and_recipients_stay_out_of_the_clauses() {
        let header = received_header(&ReceivedInfo {
            remote_hostname: Some("ptr.example by x; y"),
            recipient: Some("\"a; by b\"@example.com"),
            ..info()
        });
        let (clauses, _) = parse_received(&header);
        let keywords: Vec<&str> = clauses.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keywords, ["from", "by", "with", "id"], "{header:?}");
        assert!(
            header.contains("(ptr.example?by?x??y [192.0.2.1])"),
            "{header:?}"
        );
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

    /// The dates written by hand are chrono's, for every weekday and month,
    /// offsets east and west (with minutes), and single-digit fields.
    #[test]
    fn dates_match_chrono() {
        use chrono::TimeZone as _;
        for (offset, (y, mo, d, h, mi, sec)) in [
            (0, (2016, 10, 5, 14, 51, 46)),
            (-7 * 3600, (2016, 1, 3, 4, 5, 6)),
            (5 * 3600 + 45 * 60, (2026, 12, 31, 23, 59, 59)),
            (-(9 * 3600 + 30 * 60), (1999, 2, 28, 0, 0, 0)),
            (14 * 3600, (2024, 2, 29, 12, 1, 9)),
        ] {
            let zone = FixedOffset::east_opt(offset).unwrap();
            for extra_days in 0..40 {
                let time = zone.with_ymd_and_hms(y, mo, d, h, mi, sec).unwrap()
                    + chrono::Duration::days(extra_days * 9);
                assert_eq!(
                    rfc5322_date(&time),
                    time.format("%a, %d %b %Y %H:%M:%S %z").to_string()
                );
                assert_eq!(
                    seed_time(&time),
                    time.format("%Y-%m-%d %H:%M:%S %z").to_string()
                );
            }
        }
    }
}
