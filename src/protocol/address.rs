//! The argument of `MAIL FROM:` / `RCPT TO:` → [`PathArgument`] (RFC 5321 §4.1.2,
//! RFC 6531 UTF-8 addresses), the ESMTP parameter splitter ([`parameters`]) and the
//! local-part analysis ([`analyze_local_part`], the seed's `psych_value` flags).
//!
//! Sans-IO and `std` only. Parsing borrows the input and allocates only the owned
//! strings of a successful [`Path`]. The local part is taken leniently (odd characters
//! are recorded by [`analyze_local_part`], not rejected); the domain, the brackets,
//! control characters and lengths are checked strictly.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use AddressError::{Syntax, TooLong};

/// Longest local part, in octets (RFC 5321 §4.5.3.1.1).
const MAX_LOCAL_PART: usize = 64;
/// Longest domain, in octets (RFC 5321 §4.5.3.1.2).
const MAX_DOMAIN: usize = 255;
/// Longest path including `<`, `>` and any source route (RFC 5321 §4.5.3.1.3).
const MAX_PATH: usize = 256;
/// Longest domain label, in octets (RFC 1035 §2.3.4).
const MAX_LABEL: usize = 63;

/// Which command the path came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// `MAIL FROM:` (the reverse-path).
    Reverse,
    /// `RCPT TO:` (a forward-path).
    Forward,
}

/// A parsed path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Path {
    /// `<>`, the null reverse-path of bounces (only valid for [`PathKind::Reverse`]).
    Null,
    /// `<postmaster>` without a domain (only valid for [`PathKind::Forward`]; matched
    /// case-insensitively; the original spelling is kept).
    Postmaster(String),
    /// `local-part@domain`.
    Mailbox(Mailbox),
}

/// A mailbox `local-part@domain`, both parts as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// As written, quotes kept if it was a quoted-string (e.g. `"john doe"`).
    pub local_part: String,
    /// The domain or address literal as written (e.g. `example.com`, `[192.0.2.1]`,
    /// `[IPv6:2001:db8::1]`).
    pub domain: String,
}

impl Mailbox {
    /// `local_part@domain`.
    pub fn address(&self) -> String {
        let mut s = String::with_capacity(self.local_part.len() + 1 + self.domain.len());
        s.push_str(&self.local_part);
        s.push('@');
        s.push_str(&self.domain);
        s
    }
}

/// The argument split into its parts, borrowing the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathArgument<'a> {
    /// Text before `<`, trimmed of SP/HTAB (the seed's `name`; normally empty).
    pub name: &'a str,
    /// The path between `<` and `>`.
    pub path: Path,
    /// Everything after `>`, leading SP/HTAB trimmed (the ESMTP parameters, unparsed;
    /// see [`parameters`]).
    pub parameters: &'a str,
}

/// Why a path argument or parameter was refused; each maps to one reply elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddressError {
    /// No `<...>` found, unbalanced brackets, empty local part or domain, `<>` in RCPT,
    /// bad domain syntax, bad source route, control characters, whitespace inside the
    /// brackets (outside a quoted local part), a quoted-string that does not close, a
    /// malformed ESMTP parameter, etc.
    Syntax,
    /// Address longer than RFC 5321 allows (local part > 64 octets, domain > 255
    /// octets, path > 256 octets). Only reported for an otherwise valid path.
    TooLong,
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Syntax => "syntax error in mailbox address or parameters",
            Self::TooLong => "mailbox address too long",
        })
    }
}

impl std::error::Error for AddressError {}

/// Parses the argument of `MAIL FROM:` (`kind` = [`PathKind::Reverse`]) or `RCPT TO:`
/// ([`PathKind::Forward`]), verb and leading spaces already removed, e.g.
/// `<a@b.com> SIZE=1000`.
///
/// Text before the first `<` outside double quotes becomes `name` (it must not hold a
/// `>` outside quotes). A source route `<@a,@b:x@y>` is checked and dropped. Control
/// characters are refused everywhere (HTAB only outside the brackets).
pub fn parse_path_argument(arg: &str, kind: PathKind) -> Result<PathArgument<'_>, AddressError> {
    let (name, rest) = arg
        .split_at_checked(find_open_bracket(arg)?)
        .ok_or(Syntax)?;
    let inner = rest.strip_prefix('<').ok_or(Syntax)?;
    let (parsed, after) = parse_bracketed(inner)?;
    if after.chars().any(|c| c.is_control() && c != '\t') {
        return Err(Syntax);
    }
    let path = match parsed {
        Parsed::Null if kind == PathKind::Reverse => Path::Null,
        Parsed::Bare(local)
            if kind == PathKind::Forward && local.eq_ignore_ascii_case("postmaster") =>
        {
            Path::Postmaster(local.to_owned())
        }
        Parsed::Null | Parsed::Bare(_) => return Err(Syntax),
        Parsed::Mailbox { local, domain } => {
            let path_len = rest.len() - after.len();
            if local.len() > MAX_LOCAL_PART || domain.len() > MAX_DOMAIN || path_len > MAX_PATH {
                return Err(TooLong);
            }
            Path::Mailbox(Mailbox {
                local_part: local.to_owned(),
                domain: domain.to_owned(),
            })
        }
    };
    Ok(PathArgument {
        name: name.trim_matches(is_wsp),
        path,
        parameters: after.trim_start_matches(is_wsp),
    })
}

/// SP or HTAB.
fn is_wsp(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Byte index of the first `<` outside double quotes (with `\` escapes inside them).
fn find_open_bracket(arg: &str) -> Result<usize, AddressError> {
    let (mut quoted, mut escaped) = (false, false);
    for (i, c) in arg.char_indices() {
        match c {
            _ if c.is_control() && c != '\t' => return Err(Syntax),
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' if !quoted => return Ok(i),
            '>' if !quoted => return Err(Syntax),
            _ => {}
        }
    }
    Err(Syntax)
}

/// What was between `<` and `>`, still borrowed.
enum Parsed<'a> {
    /// `<>`.
    Null,
    /// A local part without `@domain` and without a source route.
    Bare(&'a str),
    /// `local@domain`, both checked.
    Mailbox { local: &'a str, domain: &'a str },
}

/// Parses the text after `<`; returns the path and the text after its `>`.
fn parse_bracketed(s: &str) -> Result<(Parsed<'_>, &str), AddressError> {
    if let Some(after) = s.strip_prefix('>') {
        return Ok((Parsed::Null, after));
    }
    // Source route: "@" Domain *( "," "@" Domain ) ":", checked, then ignored.
    let has_route = s.starts_with('@');
    let mut rest = s;
    while let Some(route) = rest.strip_prefix('@') {
        let end = route.find([',', ':', '>']).ok_or(Syntax)?;
        let (domain, tail) = route.split_at_checked(end).ok_or(Syntax)?;
        if !is_domain_name(domain) {
            return Err(Syntax);
        }
        if let Some(next) = tail.strip_prefix(',').filter(|t| t.starts_with('@')) {
            rest = next;
        } else {
            rest = tail.strip_prefix(':').ok_or(Syntax)?;
            break;
        }
    }
    let (local, tail) = split_local_part(rest)?;
    let Some(tail) = tail.strip_prefix('@') else {
        let after = tail.strip_prefix('>').ok_or(Syntax)?;
        if has_route || local.starts_with('"') {
            return Err(Syntax);
        }
        return Ok((Parsed::Bare(local), after));
    };
    // An address literal runs to its ']', a domain name to the '>'.
    let end = if tail.starts_with('[') {
        tail.find(']').map(|i| i + 1)
    } else {
        tail.find('>')
    };
    let (domain, after) = tail.split_at_checked(end.ok_or(Syntax)?).ok_or(Syntax)?;
    let after = after.strip_prefix('>').ok_or(Syntax)?;
    let valid = match domain.strip_prefix('[') {
        Some(literal) => literal.strip_suffix(']').is_some_and(is_address_literal),
        None => is_domain_name(domain),
    };
    if !valid {
        return Err(Syntax);
    }
    Ok((Parsed::Mailbox { local, domain }, after))
}

/// Splits a non-empty local part off the front of `s`; the rest starts at `@` or `>`.
///
/// A quoted-string runs to its closing `"` (`\` escapes any non-control character);
/// anything else runs to the next `@` or `>` and may hold any character except
/// whitespace, controls and `<`.
fn split_local_part(s: &str) -> Result<(&str, &str), AddressError> {
    let mut chars = s.char_indices();
    let end = if s.starts_with('"') {
        chars.next();
        loop {
            match chars.next().ok_or(Syntax)? {
                (i, '"') => break i + 1,
                (_, '\\') => match chars.next() {
                    Some((_, e)) if !e.is_control() => {}
                    _ => return Err(Syntax),
                },
                (_, c) if c.is_control() => return Err(Syntax),
                _ => {}
            }
        }
    } else {
        let stop = |c: char| matches!(c, '@' | '>' | '<') || c.is_control() || c.is_whitespace();
        match chars.find(|&(_, c)| stop(c)) {
            Some((i, '@' | '>')) if i > 0 => i,
            _ => return Err(Syntax),
        }
    };
    s.split_at_checked(end).ok_or(Syntax)
}

/// `sub-domain *("." sub-domain)` with U-labels allowed; no trailing dot.
fn is_domain_name(d: &str) -> bool {
    !d.is_empty() && d.split('.').all(is_label)
}

/// Letter/digit, then letters/digits/hyphens, not ending in a hyphen, ≤ 63 octets.
/// Non-ASCII characters other than controls and whitespace count as letters.
fn is_label(label: &str) -> bool {
    let is_let_dig = |c: char| {
        c.is_ascii_alphanumeric() || (!c.is_ascii() && !c.is_control() && !c.is_whitespace())
    };
    label.len() <= MAX_LABEL
        && label.starts_with(is_let_dig)
        && label.ends_with(is_let_dig)
        && label.chars().all(|c| c == '-' || is_let_dig(c))
}

/// The text inside `[...]`: IPv4, `IPv6:` + IPv6, or `tag:content` (RFC 5321 §4.1.3);
/// an untagged IPv6 address is refused.
fn is_address_literal(inner: &str) -> bool {
    if inner.parse::<Ipv4Addr>().is_ok() {
        return true;
    }
    let Some((tag, content)) = inner.split_once(':') else {
        return false;
    };
    if tag.eq_ignore_ascii_case("IPv6") {
        return content.parse::<Ipv6Addr>().is_ok();
    }
    // Standardized-tag = Ldh-str; dcontent = %d33-90 / %d94-126. A bare IPv6 address
    // would fit that too (tag "2001"), but it lacks the required "IPv6:" tag.
    if inner.parse::<Ipv6Addr>().is_ok() {
        return false;
    }
    let ldh = |b: u8| b.is_ascii_alphanumeric() || b == b'-';
    let dcontent = |b: u8| matches!(b, 33..=90 | 94..=126);
    tag.ends_with(|c: char| c.is_ascii_alphanumeric())
        && tag.bytes().all(ldh)
        && !content.is_empty()
        && content.bytes().all(dcontent)
}

/// One ESMTP parameter `KEYWORD[=VALUE]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parameter<'a> {
    /// The esmtp-keyword as written (compare case-insensitively).
    pub keyword: &'a str,
    /// The esmtp-value after `=`, if any (never empty).
    pub value: Option<&'a str>,
}

/// Splits the parameter text on runs of SP/HTAB into parameters.
///
/// Keyword syntax per RFC 5321 esmtp-keyword (ALPHA/DIGIT then ALPHA/DIGIT/`-`);
/// value = esmtp-value (one or more printable characters other than `=` and SP; UTF-8
/// allowed per RFC 6531). An item that does not fit is `Err(AddressError::Syntax)`.
pub fn parameters(text: &str) -> impl Iterator<Item = Result<Parameter<'_>, AddressError>> {
    text.split(is_wsp)
        .filter(|item| !item.is_empty())
        .map(parse_parameter)
}

/// One `KEYWORD[=VALUE]` item.
fn parse_parameter(item: &str) -> Result<Parameter<'_>, AddressError> {
    let (keyword, value) = match item.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (item, None),
    };
    let keyword_ok = keyword.starts_with(|c: char| c.is_ascii_alphanumeric())
        && keyword
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let value_ok = value.is_none_or(|v| {
        !v.is_empty()
            && v.chars()
                .all(|c| c != '=' && !c.is_control() && !c.is_whitespace())
    });
    if keyword_ok && value_ok {
        Ok(Parameter { keyword, value })
    } else {
        Err(Syntax)
    }
}

/// Result of the local-part analysis (the seed's flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LocalPartAnalysis {
    /// A character outside RFC 5322 `atext` (ALPHA DIGIT ! # $ % & ' * + - / = ? ^ _ `
    /// { | } ~) and outside '.', in an unquoted local part. Non-ASCII UTF-8 characters
    /// count as atext (RFC 6532). For a quoted local part: true only if the content
    /// has a character that qtext/quoted-pair does not allow (control characters, a
    /// bare `"`, a dangling `\`).
    pub bad_characters: bool,
    /// Unquoted local part that starts or ends with '.', or has '..'. Always false
    /// for a quoted local part.
    pub wrong_dot_usage: bool,
}

/// Analyses a local part as written (quotes kept), e.g. [`Mailbox::local_part`].
///
/// It is quoted when it starts and ends with `"` (and is at least 2 long).
pub fn analyze_local_part(local_part: &str) -> LocalPartAnalysis {
    let quoted = local_part
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'));
    if let Some(content) = quoted {
        let mut bad = false;
        let mut chars = content.chars();
        while let Some(c) = chars.next() {
            bad |= match c {
                '\\' => chars.next().is_none_or(char::is_control),
                '"' => true,
                c => c.is_control(),
            };
        }
        return LocalPartAnalysis {
            bad_characters: bad,
            wrong_dot_usage: false,
        };
    }
    LocalPartAnalysis {
        bad_characters: !local_part.chars().all(|c| c == '.' || is_atext(c)),
        wrong_dot_usage: local_part.starts_with('.')
            || local_part.ends_with('.')
            || local_part.contains(".."),
    }
}

/// RFC 5322 atext, extended by RFC 6532 to non-ASCII (non-control) characters.
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || "!#$%&'*+-/=?^_`{|}~".contains(c)
        || (!c.is_ascii() && !c.is_control())
}

/// True when the text has any non-ASCII character (used for the SMTPUTF8 check).
pub fn is_non_ascii(s: &str) -> bool {
    !s.is_ascii()
}

#[cfg(test)]
#[path = "address_tests.rs"]
mod tests;
