//! Tests of `proxy`.
use super::*;
use ProxyError::*;
use proptest::prelude::*;

fn pair(source: SocketAddr, destination: SocketAddr) -> ProxiedAddresses {
    ProxiedAddresses::Tcp {
        source,
        destination,
    }
}

fn tcp(source: &str, destination: &str) -> ProxiedAddresses {
    pair(source.parse().unwrap(), destination.parse().unwrap())
}

fn complete(consumed: usize, addresses: ProxiedAddresses) -> Result<ProxyStatus, ProxyError> {
    Ok(ProxyStatus::Complete {
        consumed,
        addresses,
    })
}

fn v2(ver_cmd: u8, family: u8, block: &[u8]) -> Vec<u8> {
    let length = u16::try_from(block.len()).unwrap().to_be_bytes();
    [V2_SIG, &[ver_cmd, family], &length, block].concat()
}

/// Every strict prefix of the header is Partial; the header alone and the whole
/// input give the same Complete.
fn assert_complete(input: &[u8], len: usize, addresses: ProxiedAddresses) {
    for n in 0..len {
        let status = parse_proxy_header(&input[..n]);
        assert_eq!(status, Ok(ProxyStatus::Partial), "{n} of {input:?}");
    }
    let want = complete(len, addresses);
    assert_eq!(parse_proxy_header(&input[..len]), want, "{input:?}");
    assert_eq!(parse_proxy_header(input), want, "{input:?}");
}

/// Gives `error`; no prefix completes, and once a prefix fails all longer ones do.
fn assert_error(input: &[u8], error: ProxyError) {
    assert_eq!(parse_proxy_header(input), Err(error), "{input:?}");
    let mut failed = false;
    for n in 0..=input.len() {
        let status = parse_proxy_header(&input[..n]);
        let ok = status == Ok(ProxyStatus::Partial) || (n > 0 && status.is_err());
        assert!(ok && (!failed || status.is_err()), "{n} of {input:?}");
        failed = status.is_err();
    }
}

#[test]
fn valid_v1() {
    let full = "0000:0000:0000:0000:0000:0000:0000:0001";
    let cases = [
        "PROXY TCP4 1.2.3.4 5.6.7.8 1024 25\r\n => 1.2.3.4:1024 5.6.7.8:25".into(),
        "PROXY TCP4 0.0.0.0 10.0.0.1 0 65535\r\nEHLO => 0.0.0.0:0 10.0.0.1:65535".into(),
        "PROXY TCP6 ::1 ::ffff:1.2.3.4 1 2\r\n => [::1]:1 [::ffff:1.2.3.4]:2".into(),
        format!("PROXY TCP6 {full} {full} 65535 1\r\n => [::1]:65535 [::1]:1"),
        "PROXY UNKNOWN\r\nQUIT\r\n => local".into(),
        "PROXY UNKNOWN ffff::1 ::2 1 2\r\n => local".into(),
        "PROXY UNKNOWN a\rb\nc\r\n\r\n => local".into(),
        format!("PROXY UNKNOWN {}\r\n => local", "x".repeat(91)),
    ];
    for case in cases {
        let (input, want) = case.split_once(" => ").unwrap();
        let len = input.find("\r\n").unwrap() + 2;
        assert!(len <= V1_MAX);
        let addresses = match want.split_once(' ') {
            Some((source, destination)) => tcp(source, destination),
            None => ProxiedAddresses::Local,
        };
        assert_complete(input.as_bytes(), len, addresses);
    }
}

#[test]
fn invalid_v1() {
    let long = format!("PROXY UNKNOWN {}", "x".repeat(94));
    let mapped = "0000:0000:0000:0000:0000:ffff:255.255.255.255";
    let long6 = format!("PROXY TCP6 {mapped} {mapped} 1 1\r\n");
    let cases = [
        ("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", Malformed),
        ("PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", Malformed),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", Malformed),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n", Malformed),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", Malformed),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", Malformed),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", Malformed),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", Malformed),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", Malformed),
        ("PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n", Malformed),
        ("PROXY TCP4 ::1 ::2 1 2\r\n", Malformed),
        ("PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n", Malformed),
        ("PROXY TCP6 1.2.3.4:: ::2 1 2\r\n", Malformed),
        ("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", Malformed),
        ("PROXY UNKNOWNX\r\n", Malformed),
        ("PROXY \r\n", Malformed),
        (&long, TooLong),
        (&long6, TooLong),
        ("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", NotProxy),
    ];
    for (input, error) in cases {
        assert_error(input.as_bytes(), error);
    }
    assert_eq!(long.len(), V1_MAX + 1);
    // The over-long TCP6 line is refused as soon as its CRLF cannot fit.
    let long6 = long6.as_bytes();
    assert_eq!(parse_proxy_header(&long6[..101]), Ok(ProxyStatus::Partial));
    assert_eq!(parse_proxy_header(&long6[..102]), Err(TooLong));
}

#[test]
fn valid_v2() {
    let v4 = [192, 0, 2, 1, 198, 51, 100, 2, 0xdc, 0x04, 0, 25];
    let mut v6 = [0; 36];
    v6[15] = 1;
    v6[16] = 0x20;
    v6[32..].copy_from_slice(&[0, 80, 1, 0]);
    let tlvs = [&v4[..], &[4, 0, 3, 1, 2, 3, 1, 0, 2, b'h', b'2', 4, 0, 0]].concat();
    let biggest = [&v6[..], &[4, 0x01, 0xe1], &[7; 481]].concat();
    let four = tcp("192.0.2.1:56324", "198.51.100.2:25");
    let six = tcp("[::1]:80", "[2000::]:256");
    let cases = [
        (v2(0x21, 0x11, &v4), four),
        (v2(0x21, 0x21, &v6), six),
        (v2(0x21, 0x11, &tlvs), four),
        (v2(0x21, 0x21, &biggest), six),
        (v2(0x20, 0x00, &[]), ProxiedAddresses::Local),
        (v2(0x20, 0x11, &[1, 2, 3]), ProxiedAddresses::Local),
        (v2(0x21, 0x00, &[0xff; 5]), ProxiedAddresses::Local),
    ];
    for (header, addresses) in cases {
        let input = [&header[..], b"220 trailing"].concat();
        assert_complete(&input, header.len(), addresses);
    }
    assert_eq!(v2(0x21, 0x21, &biggest).len(), MAX_HEADER);
}

#[test]
fn invalid_v2() {
    let v4 = [192, 0, 2, 1, 198, 51, 100, 2, 0xdc, 0x04, 0, 25];
    let overrun = [&v4[..], &[4, 0, 5, 1]].concat();
    let cut = [&v4[..], &[4, 0]].concat();
    let cases = [
        (v2(0x11, 0x11, &v4), UnsupportedVersion),
        (v2(0x31, 0x11, &v4), UnsupportedVersion),
        (v2(0x22, 0x11, &v4), Malformed),
        (v2(0x21, 0x31, &[0; 216]), UnsupportedFamily),
        (v2(0x21, 0x12, &v4), UnsupportedFamily),
        (v2(0x21, 0x41, &v4), Malformed),
        (v2(0x21, 0x10, &v4), Malformed),
        (v2(0x21, 0x11, &v4[..11]), Malformed),
        (v2(0x21, 0x21, &[0; 35]), Malformed),
        (v2(0x21, 0x11, &overrun), Malformed),
        (v2(0x21, 0x11, &cut), Malformed),
        (v2(0x20, 0x00, &[0; 521]), TooLong),
    ];
    for (input, error) in cases {
        assert_error(&input, error);
    }
    // Too long is known from the length field alone.
    let huge = v2(0x21, 0x11, &[0; 521]);
    assert_eq!(parse_proxy_header(&huge[..16]), Err(TooLong));
}

#[test]
fn not_proxy_at_first_deviation() {
    let smtp = ["EHLO x\r\n", "GET / HTTP/1.0\r\n"];
    for input in smtp
        .into_iter()
        .chain(["PROXX", "\r\n\r\nX", "\r\n\r\n\0\r\nQUIX"])
    {
        assert_error(input.as_bytes(), NotProxy);
    }
    assert_eq!(parse_proxy_header(b"E"), Err(NotProxy));
    assert_eq!(parse_proxy_header(b""), Ok(ProxyStatus::Partial));
}

/// Whether `text` can be completed with exactly `more` octets from `alphabet`.
fn completes(field: Field, text: &mut Vec<u8>, alphabet: &[u8], more: usize) -> bool {
    if more == 0 {
        return field.is_valid(text);
    }
    alphabet.iter().any(|&b| {
        text.push(b);
        let found = completes(field, text, alphabet, more - 1);
        text.pop();
        found
    })
}

/// `Field::completion` agrees with a brute-force search over short suffixes on
/// every short prefix (so Partial is never claimed for an impossible field).
#[test]
fn completion_matches_brute_force() {
    let ipv6 = (Field::Ipv6, &b"01a:."[..], 5, 5);
    for (field, alphabet, len, depth) in [ipv6, (Field::Ipv4, b"0129.", 4, 7)] {
        let (mut prefixes, mut next) = (vec![Vec::new()], 0);
        while let Some(prefix) = prefixes.get(next).filter(|p| p.len() < len).cloned() {
            prefixes.extend(alphabet.iter().map(|&b| [&prefix[..], &[b]].concat()));
            next += 1;
        }
        for mut text in prefixes {
            let want = (0..=depth).find(|&n| completes(field, &mut text, b"01:.", n));
            assert_eq!(field.completion(&text), want, "{text:?}");
        }
    }
}

/// A valid header (v1 or v2) and the addresses it carries.
fn header() -> impl Strategy<Value = (Vec<u8>, ProxiedAddresses)> {
    let group = prop_oneof![Just(0u16), Just(0xffff), any::<u16>()];
    let ip = prop_oneof![
        any::<u32>().prop_map(|ip| IpAddr::from(Ipv4Addr::from(ip))),
        prop::array::uniform8(group).prop_map(|g| IpAddr::from(Ipv6Addr::from(g))),
    ];
    let ends = (ip.clone(), ip, any::<u16>(), any::<u16>()).prop_map(|(s, d, sp, dp)| {
        let d = if s.is_ipv4() == d.is_ipv4() { d } else { s };
        (SocketAddr::new(s, sp), SocketAddr::new(d, dp))
    });
    let v1 = (ends.clone(), any::<bool>()).prop_map(|((s, d), full)| {
        let text = |a: SocketAddr| match a.ip() {
            IpAddr::V6(ip) if full => ip.segments().map(|g| format!("{g:04x}")).join(":"),
            ip => ip.to_string(),
        };
        let family = if s.is_ipv4() { "TCP4" } else { "TCP6" };
        let (sp, dp) = (s.port(), d.port());
        let line = format!("PROXY {family} {} {} {sp} {dp}\r\n", text(s), text(d));
        (line.into_bytes(), pair(s, d))
    });
    let unknown = "[a-z0-9 :.\r\n]{0,91}"
        .prop_filter("no CRLF", |t| !t.contains("\r\n") && !t.ends_with('\r'))
        .prop_map(|t| format!("PROXY UNKNOWN {t}\r\n").into_bytes())
        .prop_map(|line| (line, ProxiedAddresses::Local));
    // At most 36 + 6 * (3 + 77) = 516 octets: within the cap.
    let value = prop::collection::vec(any::<u8>(), 0..78);
    let tlvs = prop::collection::vec((any::<u8>(), value), 0..7);
    let v2_tcp = (ends, tlvs).prop_map(|((s, d), tlvs)| {
        let mut block = match (s.ip(), d.ip()) {
            (IpAddr::V4(a), IpAddr::V4(b)) => [a.octets(), b.octets()].concat(),
            (IpAddr::V6(a), IpAddr::V6(b)) => [a.octets(), b.octets()].concat(),
            _ => unreachable!("the strategy pairs one family"),
        };
        block.extend([s.port().to_be_bytes(), d.port().to_be_bytes()].concat());
        for (kind, value) in &tlvs {
            block.push(*kind);
            block.extend(u16::try_from(value.len()).unwrap().to_be_bytes());
            block.extend(value);
        }
        let family = if s.is_ipv4() { 0x11 } else { 0x21 };
        (v2(0x21, family, &block), pair(s, d))
    });
    let local = (any::<u8>(), prop::collection::vec(any::<u8>(), 0..=520))
        .prop_map(|(family, block)| (v2(0x20, family, &block), ProxiedAddresses::Local));
    prop_oneof![v1, unknown, v2_tcp, local]
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_and_outcomes_stick(
        start in prop_oneof![Just(&b""[..]), Just(V1_SIG), Just(V2_SIG)],
        rest in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        let input = [start, &rest[..]].concat();
        let mut before = Ok(ProxyStatus::Partial);
        for n in 0..=input.len() {
            let now = parse_proxy_header(&input[..n]);
            match before {
                Ok(ProxyStatus::Partial) => {}
                Ok(complete) => prop_assert_eq!(now, Ok(complete)),
                Err(_) => prop_assert!(now.is_err()),
            }
            before = now;
        }
    }

    #[test]
    fn valid_headers_parse(
        (header, addresses) in header(),
        trailing in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        prop_assert!(header.len() <= MAX_HEADER);
        let input = [&header[..], &trailing[..]].concat();
        for n in 0..header.len() {
            prop_assert_eq!(parse_proxy_header(&input[..n]), Ok(ProxyStatus::Partial));
        }
        prop_assert_eq!(parse_proxy_header(&input), complete(header.len(), addresses));
    }
}
