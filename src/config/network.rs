//! The network parts of the configuration: listeners (`listening_ports`,
//! `[[listener]]`), their modes, and the CIDRs of the address lists.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use serde::Deserialize;

use super::{ConfigError, invalid};

/// Parses the CIDRs of option `key`.
pub(super) fn cidrs(key: &'static str, networks: &[String]) -> Result<Vec<Cidr>, ConfigError> {
    networks
        .iter()
        .map(|n| Cidr::parse(n).ok_or_else(|| invalid(key, format!("{n:?} is not ADDR/PREFIX"))))
        .collect()
}

/// One `[[listener]]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// `ADDR:PORT`, `[IPV6]:PORT` or `PORT`.
    pub address: String,
    /// `smtp` (default), `smtps` or `submission`.
    #[serde(default)]
    pub mode: ListenerMode,
    /// Expect a PROXY protocol header from a trusted peer first. Default: false.
    #[serde(default)]
    pub proxy_protocol: bool,
}

/// How a listener treats its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerMode {
    /// Plain SMTP, STARTTLS offered (port 25).
    #[default]
    Smtp,
    /// Implicit TLS from the first byte (RFC 8314, port 465).
    Smtps,
    /// Message submission (RFC 6409, port 587): STARTTLS offered, MAIL needs AUTH.
    Submission,
}

impl ListenerMode {
    /// The mode's name as the configuration writes it: `smtp`, `smtps`, `submission`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Smtp => "smtp",
            Self::Smtps => "smtps",
            Self::Submission => "submission",
        }
    }

    /// The mode a well-known port number implies: 465 smtps, 587 submission,
    /// anything else smtp.
    pub fn for_port(port: u16) -> Self {
        match port {
            465 => Self::Smtps,
            587 => Self::Submission,
            _ => Self::Smtp,
        }
    }
}

/// A validated listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerSpec {
    /// Where to listen.
    pub addr: SocketAddr,
    /// How to treat connections.
    pub mode: ListenerMode,
    /// Expect a PROXY protocol header first.
    pub proxy_protocol: bool,
}

impl ListenerSpec {
    /// A listener of the given mode without PROXY protocol.
    pub fn new(addr: SocketAddr, mode: ListenerMode) -> Self {
        Self {
            addr,
            mode,
            proxy_protocol: false,
        }
    }
}

impl From<SocketAddr> for ListenerSpec {
    fn from(addr: SocketAddr) -> Self {
        Self::new(addr, ListenerMode::Smtp)
    }
}

impl From<&SocketAddr> for ListenerSpec {
    fn from(addr: &SocketAddr) -> Self {
        Self::from(*addr)
    }
}

impl From<&ListenerSpec> for ListenerSpec {
    fn from(spec: &ListenerSpec) -> Self {
        *spec
    }
}

/// An IP network, `ADDR/PREFIX` (a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `ADDR/PREFIX` or `ADDR`.
    pub fn parse(text: &str) -> Option<Self> {
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text.trim(), None),
        };
        let network: IpAddr = addr.parse().ok()?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max)?,
            None => max,
        };
        Some(Self { network, prefix })
    }

    /// True when `ip` is inside the network (IPv4-mapped IPv6 counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// `PORT`, `ADDR:PORT` or `[IPV6]:PORT`; a bare port means every address.
pub fn parse_listen_addr(text: &str) -> Option<SocketAddr> {
    let text = text.trim();
    if let Ok(port) = text.parse::<u16>() {
        return Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port));
    }
    text.parse().ok()
}

/// `text` as a listening address, or the error for `key` (with the fix for
/// an IPv6 address written without brackets).
pub(super) fn listen_addr(key: &'static str, text: &str) -> Result<SocketAddr, ConfigError> {
    parse_listen_addr(text).ok_or_else(|| {
        let mut reason = format!("{text:?} is not PORT, ADDR:PORT or [IPV6]:PORT");
        // `::1:2525`: an IPv6 address and a port without the brackets.
        if let Some((ip, port)) = text.trim().rsplit_once(':')
            && ip.parse::<std::net::Ipv6Addr>().is_ok()
            && port.parse::<u16>().is_ok()
        {
            reason.push_str(&format!(
                "; an IPv6 address takes brackets: write \"[{ip}]:{port}\""
            ));
        }
        invalid(key, reason)
    })
}
