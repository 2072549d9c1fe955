//! Numbers and socket addresses written as text without `core::fmt`, for the
//! paths every connection takes (its ports and addresses in the mail
//! structure, the enhanced codes of its replies, the dates of its trace
//! header): `to_string()` and `write!` cost a thousand or more instructions
//! each there (callgrind), these a few dozen.

use std::net::{IpAddr, SocketAddr};

/// The decimal digits of `n`, without leading zeros, at the end of `buf`.
pub(crate) fn decimal(mut n: u16, buf: &mut [u8; 5]) -> &[u8] {
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[start..]
}

/// Appends `n` in decimal.
pub(crate) fn push_decimal(out: &mut String, n: u16) {
    let mut buf = [0; 5];
    for &digit in decimal(n, &mut buf) {
        out.push(char::from(digit));
    }
}

/// Appends the last `width` decimal digits of `n`, zero-padded (dates).
pub(crate) fn push_zero_padded(out: &mut String, n: u32, width: u32) {
    for place in (0..width).rev() {
        let digit = n / 10u32.pow(place) % 10;
        out.push(char::from(b'0' + digit as u8));
    }
}

/// `n` in decimal.
pub(crate) fn decimal_string(n: u16) -> String {
    let mut out = String::with_capacity(5);
    push_decimal(&mut out, n);
    out
}

/// The address as `Display` writes it (`192.0.2.1`, `2001:db8::1`); IPv4
/// written directly, IPv6 by `Display` (its zero compression is not worth
/// repeating here).
pub(crate) fn ip_string(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let mut out = String::with_capacity(15);
            for (n, octet) in v4.octets().into_iter().enumerate() {
                if n > 0 {
                    out.push('.');
                }
                push_decimal(&mut out, u16::from(octet));
            }
            out
        }
        IpAddr::V6(v6) => v6.to_string(),
    }
}

/// The socket address as `Display` writes it (`192.0.2.1:25`, `[::1]:25`).
pub(crate) fn socket_addr_string(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(v4) => {
            let mut out = ip_string(IpAddr::V4(*v4.ip()));
            out.push(':');
            push_decimal(&mut out, v4.port());
            out
        }
        SocketAddr::V6(v6) => v6.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

    proptest! {
        /// Each writes what `Display` writes.
        #[test]
        fn written_as_display_writes(n: u16, v4: u32, v6: u128, port: u16) {
            prop_assert_eq!(decimal_string(n), n.to_string());
            let v4 = Ipv4Addr::from(v4);
            let v6 = Ipv6Addr::from(v6);
            prop_assert_eq!(ip_string(IpAddr::V4(v4)), v4.to_string());
            prop_assert_eq!(ip_string(IpAddr::V6(v6)), v6.to_string());
            let a4 = SocketAddr::V4(SocketAddrV4::new(v4, port));
            let a6 = SocketAddr::V6(SocketAddrV6::new(v6, port, 0, 0));
            prop_assert_eq!(socket_addr_string(a4), a4.to_string());
            prop_assert_eq!(socket_addr_string(a6), a6.to_string());
        }
    }

    #[test]
    fn edges() {
        assert_eq!(decimal_string(0), "0");
        assert_eq!(decimal_string(u16::MAX), "65535");
        assert_eq!(ip_string(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), "0.0.0.0");
        assert_eq!(
            ip_string(IpAddr::V4(Ipv4Addr::BROADCAST)),
            "255.255.255.255"
        );
    }
}
