//! The `HAProxy` PROXY protocol header, versions 1 (text) and 2 (binary), as the
//! first bytes of a connection accepted behind a load balancer (`HAProxy`'s
//! `proxy-protocol.txt`).
//!
//! This module owns the sans-IO parse only: [`parse_proxy_header`] looks at the
//! bytes received so far and says whether they are a complete header (and how many
//! octets it took), a valid prefix that needs more bytes, or not a usable header.
//! Every byte is checked as it arrives, so [`ProxyStatus::Partial`] is only ever
//! returned for input that can still become a valid header, and a client that does
//! not speak the protocol is reported as [`ProxyError::NotProxy`] at its first
//! deviating byte.
//!
//! It leaves to the server everything that needs context or a clock: whether the
//! peer is a trusted proxy at all (never parse this header from untrusted peers,
//! since it lets the sender choose its apparent address), how long to wait for the
//! header, how many bytes to buffer (at most [`MAX_HEADER`]), what to do on an
//! error (close the connection; the protocol has no error reply), and, for
//! [`ProxiedAddresses::Local`], using the socket's own addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// Largest header accepted, in octets: 16 + 520.
///
/// A v1 header is at most 107 octets by definition. A v2 header is its 16-octet
/// fixed part plus the announced length; 520 covers the IPv6 address block (36)
/// and common TLVs (ALPN, authority, unique ID, SSL details). A longer v2 header is
/// [`ProxyError::TooLong`], so a caller never needs to buffer more than this.
pub const MAX_HEADER: usize = 536;

/// Longest v1 header, CRLF included (the spec's worst case for `UNKNOWN`).
const V1_MAX: usize = 107;
/// The v1 signature: the word `PROXY` and one space.
const V1_SIG: &[u8] = b"PROXY ";
/// The v2 signature.
const V2_SIG: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
/// The v2 fixed part: signature, version/command, family/protocol, length.
const V2_FIXED: usize = 16;

/// The connection endpoints a PROXY header announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxiedAddresses {
    /// A real client: source (the client) and destination (what it connected to).
    Tcp {
        /// The client's address and port.
        source: SocketAddr,
        /// The address and port the client connected to (at the proxy).
        destination: SocketAddr,
    },
    /// `PROXY UNKNOWN` (v1) or the LOCAL command / UNSPEC family (v2): the proxy's
    /// own connection (e.g. a health check); use the socket's addresses.
    Local,
}

/// The outcome of parsing the bytes received so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyStatus {
    /// Need more bytes (the input so far is a valid prefix).
    Partial,
    /// Parsed: `consumed` octets are the header; what follows is the SMTP stream.
    Complete {
        /// Length of the header, in octets.
        consumed: usize,
        /// The endpoints the header announces.
        addresses: ProxiedAddresses,
    },
}

/// Why the input is not a usable PROXY header. Each is final: more bytes never help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyError {
    /// The first bytes are neither the v1 nor the v2 signature.
    NotProxy,
    /// A signature was found but the header breaks the grammar.
    Malformed,
    /// v1 without CRLF within 107 octets, or v2 longer than [`MAX_HEADER`].
    TooLong,
    /// A v2 signature with a version other than 2.
    UnsupportedVersion,
    /// A v2 PROXY command for UDP or a UNIX socket.
    UnsupportedFamily,
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NotProxy => "no PROXY protocol signature",
            Self::Malformed => "malformed PROXY protocol header",
            Self::TooLong => "PROXY protocol header too long",
            Self::UnsupportedVersion => "unsupported PROXY protocol version",
            Self::UnsupportedFamily => "unsupported PROXY protocol address family",
        })
    }
}

impl std::error::Error for ProxyError {}

/// Parses the start of a connection's input. Call again with more bytes on Partial.
///
/// `input` is everything received so far (not just the new bytes). Never panics.
///
/// # Errors
///
/// A [`ProxyError`] once the input can no longer become a valid header; it is
/// final, whatever bytes follow.
pub fn parse_proxy_header(input: &[u8]) -> Result<ProxyStatus, ProxyError> {
    // Agreeing with a signature on the octets seen so far keeps the input possible.
    let agrees = |signature: &[u8]| input.iter().zip(signature).all(|(a, b)| a == b);
    let (signature, parse): (_, fn(&[u8]) -> _) = if agrees(V2_SIG) {
        (V2_SIG, parse_v2)
    } else if agrees(V1_SIG) {
        (V1_SIG, parse_v1)
    } else {
        return Err(ProxyError::NotProxy);
    };
    if input.len() < signature.len() {
        return Ok(ProxyStatus::Partial);
    }
    parse(input)
}

/// Parses a v2 header; `input` holds at least the whole signature.
fn parse_v2(input: &[u8]) -> Result<ProxyStatus, ProxyError> {
    let Some(&ver_cmd) = input.get(12) else {
        return Ok(ProxyStatus::Partial);
    };
    if ver_cmd >> 4 != 2 {
        return Err(ProxyError::UnsupportedVersion);
    }
    let local = match ver_cmd & 0x0f {
        0 => true,
        1 => false,
        _ => return Err(ProxyError::Malformed),
    };
    let Some(&family) = input.get(13) else {
        return Ok(ProxyStatus::Partial);
    };
    // Octets per IP address, or None when the block is skipped whole (LOCAL
    // ignores the family byte, as the spec says; UNSPEC carries no addresses).
    let ip_len = match (local, family) {
        (true, _) | (false, 0x00) => None,
        (false, 0x11) => Some(4),
        (false, 0x21) => Some(16),
        (false, 0x12 | 0x22 | 0x31 | 0x32) => return Err(ProxyError::UnsupportedFamily),
        (false, _) => return Err(ProxyError::Malformed),
    };
    let (Some(&hi), Some(&lo)) = (input.get(14), input.get(15)) else {
        return Ok(ProxyStatus::Partial);
    };
    let total = V2_FIXED + usize::from(u16::from_be_bytes([hi, lo]));
    if total > MAX_HEADER {
        return Err(ProxyError::TooLong);
    }
    // Two addresses and two ports, then TLVs. The TLVs are skipped, but each
    // (type, 2-octet length, value) must fit in the announced length; checked as
    // far as their headers have arrived.
    let mut offset = V2_FIXED + ip_len.map_or(total - V2_FIXED, |n| 2 * n + 4);
    if offset > total {
        return Err(ProxyError::Malformed);
    }
    while offset < total {
        if total - offset < 3 {
            return Err(ProxyError::Malformed);
        }
        let (Some(&hi), Some(&lo)) = (input.get(offset + 1), input.get(offset + 2)) else {
            return Ok(ProxyStatus::Partial);
        };
        offset += 3 + usize::from(u16::from_be_bytes([hi, lo]));
        if offset > total {
            return Err(ProxyError::Malformed);
        }
    }
    if input.len() < total {
        return Ok(ProxyStatus::Partial);
    }
    let block = input.get(V2_FIXED..).unwrap_or_default();
    let addresses = match ip_len {
        None => Some(ProxiedAddresses::Local),
        Some(4) => v2_endpoints::<4>(block),
        Some(_) => v2_endpoints::<16>(block),
    };
    let addresses = addresses.ok_or(ProxyError::Malformed)?;
    Ok(ProxyStatus::Complete {
        consumed: total,
        addresses,
    })
}

/// The endpoints at the start of a v2 address block: `N`-octet source and
/// destination addresses, then source and destination ports, all big-endian.
fn v2_endpoints<const N: usize>(block: &[u8]) -> Option<ProxiedAddresses>
where
    IpAddr: From<[u8; N]>,
{
    let (source, rest) = block.split_first_chunk::<N>()?;
    let (destination, rest) = rest.split_first_chunk::<N>()?;
    let (source_port, rest) = rest.split_first_chunk::<2>()?;
    let destination_port = rest.first_chunk::<2>()?;
    Some(ProxiedAddresses::Tcp {
        source: SocketAddr::new(IpAddr::from(*source), u16::from_be_bytes(*source_port)),
        destination: SocketAddr::new(
            IpAddr::from(*destination),
            u16::from_be_bytes(*destination_port),
        ),
    })
}

/// How a v1 line ends so far: with CRLF (whole), a lone CR (only LF may follow),
/// or neither (the last field may still grow).
#[derive(Clone, Copy, PartialEq, Eq)]
enum LineEnd {
    Crlf,
    Cr,
    Open,
}

/// A v1 line checked so far: parsed, or a valid prefix that needs at least this
/// many more octets (CRLF included).
enum Line {
    Done(ProxiedAddresses),
    Need(usize),
}

/// A field of a v1 TCP line.
#[derive(Clone, Copy)]
enum Field {
    Ipv4,
    Ipv6,
    Port,
}

impl Field {
    /// Whether `text` is a complete, valid value of this field.
    fn is_valid(self, text: &[u8]) -> bool {
        match self {
            Self::Ipv4 => parse_text::<Ipv4Addr>(text).is_some(),
            Self::Ipv6 => parse_text::<Ipv6Addr>(text).is_some(),
            Self::Port => parse_port(text).is_some(),
        }
    }

    /// The fewest octets that turn `prefix` into a valid field, or None if no
    /// suffix can. The candidates, shortest first, include the shortest completion
    /// of every prefix of the std grammar: finish a hex group or octet with `0`,
    /// the dotted quad with `.0`s, the IPv6 groups with `:`/`::`.
    fn completion(self, prefix: &[u8]) -> Option<usize> {
        let candidates: &[&[u8]] = match self {
            Self::Ipv4 => &[
                b"", b"0", b".0", b"0.0", b".0.0", b"0.0.0", b".0.0.0", b"0.0.0.0",
            ],
            Self::Ipv6 => &[b"", b"0", b":", b".0", b"::", b"0.0", b".0.0", b"0.0.0"],
            Self::Port => &[b"", b"0"],
        };
        let mut text = Vec::with_capacity(prefix.len() + 8);
        let valid = |suffix: &&[u8]| {
            text.clear();
            text.extend_from_slice(prefix);
            text.extend_from_slice(suffix);
            self.is_valid(&text)
        };
        candidates.iter().copied().find(valid).map(<[u8]>::len)
    }
}

/// `text` parsed by std's `FromStr` (strict: no leading zeros in IPv4 octets).
fn parse_text<T: FromStr>(text: &[u8]) -> Option<T> {
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// A decimal port, 0-65535, without sign or leading zeros (except `0` itself).
fn parse_port(text: &[u8]) -> Option<u16> {
    let (&first, _) = text.split_first()?;
    if !text.iter().all(u8::is_ascii_digit) || (first == b'0' && text.len() > 1) {
        return None;
    }
    parse_text(text)
}

/// Parses a v1 header; `input` holds at least the whole `PROXY ` signature.
fn parse_v1(input: &[u8]) -> Result<ProxyStatus, ProxyError> {
    let window = input.get(..V1_MAX).unwrap_or(input);
    let body = window.get(V1_SIG.len()..).unwrap_or_default();
    let (content, end) = match body.windows(2).position(|w| w == b"\r\n") {
        Some(at) => (body.get(..at).unwrap_or_default(), LineEnd::Crlf),
        None => match body.strip_suffix(b"\r") {
            Some(content) => (content, LineEnd::Cr),
            None => (body, LineEnd::Open),
        },
    };
    match v1_line(content, end)? {
        Line::Done(addresses) => Ok(ProxyStatus::Complete {
            consumed: V1_SIG.len() + content.len() + 2,
            addresses,
        }),
        Line::Need(more) if window.len() + more > V1_MAX => Err(ProxyError::TooLong),
        Line::Need(_) => Ok(ProxyStatus::Partial),
    }
}

/// Checks the line after `PROXY `, without its CRLF (or pending CR).
fn v1_line(content: &[u8], end: LineEnd) -> Result<Line, ProxyError> {
    let crlf_need = match end {
        LineEnd::Crlf => 0,
        LineEnd::Cr => 1,
        LineEnd::Open => 2,
    };
    if let Some(rest) = content.strip_prefix(b"UNKNOWN") {
        // Anything may follow `UNKNOWN ` up to the CRLF; it is ignored.
        return match (rest.first(), end) {
            (Some(&b), _) if b != b' ' => Err(ProxyError::Malformed),
            (_, LineEnd::Crlf) => Ok(Line::Done(ProxiedAddresses::Local)),
            _ => Ok(Line::Need(crlf_need)),
        };
    }
    let mut words = content.split(|&b| b == b' ');
    let protocol = words.next().unwrap_or_default();
    let texts: Vec<&[u8]> = words.collect();
    if texts.is_empty() {
        // Still in the protocol word: a prefix of one of the three, nothing else.
        // (The least any of them needs: `UNKNOWN` + CRLF, or `TCP6 :: :: 0 0` + CRLF.)
        return match end {
            LineEnd::Open if b"UNKNOWN".starts_with(content) => Ok(Line::Need(9 - content.len())),
            LineEnd::Open if b"TCP4".starts_with(content) || b"TCP6".starts_with(content) => {
                Ok(Line::Need(16 - content.len()))
            }
            _ => Err(ProxyError::Malformed),
        };
    }
    let kinds = match protocol {
        b"TCP4" => [Field::Ipv4, Field::Ipv4, Field::Port, Field::Port],
        b"TCP6" => [Field::Ipv6, Field::Ipv6, Field::Port, Field::Port],
        _ => return Err(ProxyError::Malformed),
    };
    if texts.len() > kinds.len() {
        return Err(ProxyError::Malformed);
    }
    let last = texts.len().saturating_sub(1);
    let mut need = crlf_need;
    for (i, kind) in kinds.iter().enumerate() {
        match texts.get(i) {
            // Only the last field of an open line may still be incomplete.
            Some(text) if i == last && end == LineEnd::Open => {
                need += kind.completion(text).ok_or(ProxyError::Malformed)?;
            }
            Some(text) if kind.is_valid(text) => {}
            None if end == LineEnd::Open => need += 1 + kind.completion(b"").unwrap_or(0),
            Some(_) | None => return Err(ProxyError::Malformed),
        }
    }
    if end != LineEnd::Crlf {
        return Ok(Line::Need(need));
    }
    let address = |ip: &[u8], port: &[u8]| -> Option<SocketAddr> {
        let ip = match protocol {
            b"TCP4" => IpAddr::V4(parse_text(ip)?),
            _ => IpAddr::V6(parse_text(ip)?),
        };
        Some(SocketAddr::new(ip, parse_port(port)?))
    };
    match texts.as_slice() {
        [src, dst, sport, dport] => Ok(Line::Done(ProxiedAddresses::Tcp {
            source: address(src, sport).ok_or(ProxyError::Malformed)?,
            destination: address(dst, dport).ok_or(ProxyError::Malformed)?,
        })),
        _ => Err(ProxyError::Malformed),
    }
}

#[cfg(test)]
#[path = "proxy_tests.rs"]
mod tests;
