//! DNS checks and sender authentication: everything the receiver asks the DNS.
//!
//! One [`Dns`] is built at start-up from a [`DnsConfig`] and shared by all sessions
//! (it is a cheap `Clone` around an `Arc`). It holds one hickory resolver — with its
//! answer cache — the `mail-auth` record caches, and the caches of whole findings
//! (see `cache.rs`: each kept until the first TTL of the answers behind it, never
//! after a failure), so that the next message or session asks nothing the DNS
//! already said. Its methods fill the mail structure's DNS fields and the new
//! authentication results:
//!
//! | method | fills |
//! |---|---|
//! | [`Dns::reverse`] | `connect.domain` and the iprev result (RFC 8601) |
//! | [`Dns::ehlo`] | `ehlo.rip/domain/fip` and "does the EHLO name resolve to the client" |
//! | [`Dns::domain`] | `mailfrom`/`rcptto[]` `ip/mxs/ips`, AAAA, null MX, implicit MX |
//! | [`Dns::spf`] | `mailfrom.spf` (MAIL FROM identity) and the HELO identity (RFC 7208) |
//! | [`Dns::authenticate_message`] | DKIM, ARC, DMARC and one `Authentication-Results` header |
//! | [`Dns::dnsbl`] | whether the client IP is on each configured DNSBL |
//!
//! [`strip_forged_authentication_results`] removes `Authentication-Results` fields
//! a client wrote in our name.
//!
//! ## Failure is a finding, never an error
//!
//! Every method returns its findings, never a `Result`: a lookup that fails or times
//! out leaves its field `None` and records an error kind (`"timeout"`, `"nxdomain"`,
//! `"nodata"`, `"servfail"`, `"refused"`, `"invalid-name"`, `"network"`, `"error"`; see
//! [`ERROR_KINDS`]) — it never fails the session on its own. Authentication results
//! use the RFC words instead (`temperror` for a DNS failure).
//!
//! ## Time bounds
//!
//! Each single DNS query is bounded by [`DnsConfig::timeout`] in the resolver
//! (`ResolverOpts::timeout`, no retry rounds), and each method as a whole by the same
//! timeout through `tokio::time::timeout_at`, so a method returns within about one
//! timeout however many lookups it makes — except
//! [`Dns::authenticate_message`], which has two phases (DKIM ∥ ARC, then DMARC) of
//! one timeout each, and a third (SPF) when it is not given the SPF results. Lookups
//! that do not depend on each other run concurrently.
//!
//! ## Where the names come from
//!
//! With [`DnsConfig::servers`] empty the system configuration (`/etc/resolv.conf`) is
//! used; otherwise exactly the given servers, over UDP and TCP. `/etc/hosts` is never
//! consulted (the seed used Ruby's `Resolv::DNS`, which does not either) and search
//! domains are never appended: every name is looked up as a fully qualified name.
//!
//! hickory-resolver answers some special-use names itself (RFC 6761): `localhost.`
//! is 127.0.0.1 / ::1, and the PTR of any 127.0.0.0/8 address or of ::1 is
//! `localhost.`. The PTR of a loopback client is nevertheless asked of the name
//! servers — as `dig -x` does — so that a zone naming 127.0.0.1 is believed.
//!
//! Names in findings are lower case, without the trailing dot; addresses are
//! formatted by `std` (`"192.0.2.1"`, `"2001:db8::1"`). An IPv4-mapped client
//! address (`::ffff:192.0.2.1`) is treated as the IPv4 address it carries.

mod arc;
mod auth;
mod cache;
mod headers;
mod keys;
mod lookups;
mod records;

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError as HickoryDnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::{NameServerPool, PoolContext, TlsConfig, TokioResolver};
use mail_auth::MessageAuthenticator;
use tokio::time::Instant;

pub use self::auth::{AuthContext, DkimFinding, MessageAuth, SpfFindings};
pub use self::headers::strip_forged_authentication_results;
pub use self::lookups::{DnsblFinding, DomainFindings, EhloFindings, Reverse};

/// The default per-lookup timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Every error kind a finding's `error` can hold.
pub const ERROR_KINDS: [&str; 8] = [
    "timeout",
    "nxdomain",
    "nodata",
    "servfail",
    "refused",
    "invalid-name",
    "network",
    "error",
];

/// How to reach the DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// The name servers to ask, e.g. `127.0.0.1:5353` (config `dns_servers`,
    /// flag `--dns-server`); empty (the default) = the system configuration
    /// (`/etc/resolv.conf`).
    pub servers: Vec<SocketAddr>,
    /// The longest one lookup may take; default [`DEFAULT_TIMEOUT`] (5 s).
    pub timeout: Duration,
    /// DNSBL zones to check the client IP against, e.g. `"zen.spamhaus.org"`
    /// (config `dnsbl_zones`); default none.
    pub dnsbl_zones: Vec<String>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            servers: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            dnsbl_zones: Vec::new(),
        }
    }
}

/// Why a [`Dns`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    /// The timeout is zero.
    #[error("the DNS timeout must be more than zero")]
    ZeroTimeout,
    /// No servers were given and the system configuration could not be read.
    #[error("cannot read the system DNS configuration (/etc/resolv.conf): {0}")]
    SystemConfig(String),
    /// The resolver could not be built.
    #[error("cannot build the DNS resolver: {0}")]
    Resolver(String),
}

/// The DNS side of the receiver, shared by all sessions: one resolver (with its
/// cache) and `mail-auth`'s record caches. Cloning is cheap and shares both.
#[derive(Clone)]
pub struct Dns {
    inner: Arc<Inner>,
}

struct Inner {
    auth: MessageAuthenticator,
    /// The same name servers without hickory's cache and special-use shortcuts,
    /// for the queries those shortcuts would answer locally (see `lookups.rs`).
    direct: NameServerPool<TokioRuntimeProvider>,
    caches: cache::Caches,
    findings: cache::Findings,
    timeout: Duration,
    dnsbl_zones: Vec<String>,
}

impl fmt::Debug for Dns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dns")
            .field("timeout", &self.inner.timeout)
            .field("dnsbl_zones", &self.inner.dnsbl_zones)
            .finish_non_exhaustive()
    }
}

impl Dns {
    /// Builds the resolver: the given name servers over UDP and TCP (or the system
    /// configuration when there are none), one query bounded by `timeout` with no
    /// retry rounds, no `/etc/hosts`, no search domains. Nothing is sent yet.
    pub fn new(config: &DnsConfig) -> Result<Self, DnsError> {
        if config.timeout.is_zero() {
            return Err(DnsError::ZeroTimeout);
        }
        let (resolver_config, mut opts) = if config.servers.is_empty() {
            let (system, opts) = hickory_resolver::system_conf::read_system_conf()
                .map_err(|e| DnsError::SystemConfig(e.to_string()))?;
            // Keep the servers, drop the search list: names are always absolute.
            let (_, _, servers) = system.into_parts();
            (ResolverConfig::from_name_servers(servers), opts)
        } else {
            let servers = config.servers.iter().map(|addr| {
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
            });
            (
                ResolverConfig::from_name_servers(servers.collect()),
                ResolverOpts::default(),
            )
        };
        opts.timeout = config.timeout;
        opts.attempts = 0;
        opts.use_hosts_file = ResolveHosts::Never;
        opts.ndots = 0;
        let tls = TlsConfig::new().map_err(|e| DnsError::Resolver(e.to_string()))?;
        let direct = NameServerPool::from_config(
            resolver_config.name_servers().to_vec(),
            Arc::new(PoolContext::new(opts.clone(), tls)),
            TokioRuntimeProvider::default(),
        );
        let auth = MessageAuthenticator::new(resolver_config, opts)
            .map_err(|e| DnsError::Resolver(e.to_string()))?;
        Ok(Dns {
            inner: Arc::new(Inner {
                auth,
                direct,
                caches: cache::Caches::new(cache::CAPACITY),
                findings: cache::Findings::new(cache::CAPACITY),
                timeout: config.timeout,
                dnsbl_zones: config
                    .dnsbl_zones
                    .iter()
                    .map(|z| z.trim().trim_end_matches('.').to_ascii_lowercase())
                    .filter(|z| !z.is_empty())
                    .collect(),
            }),
        })
    }

    /// The per-lookup timeout.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// The configured DNSBL zones (lower case, without the trailing dot).
    pub fn dnsbl_zones(&self) -> &[String] {
        &self.inner.dnsbl_zones
    }

    fn resolver(&self) -> &TokioResolver {
        self.inner.auth.resolver()
    }

    /// When a method started now must be done.
    fn deadline(&self) -> Instant {
        Instant::now() + self.inner.timeout
    }
}

/// Why one lookup produced nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// No answer within the timeout.
    Timeout,
    /// The name does not exist (RCODE 3).
    NxDomain,
    /// The name exists but has no record of the asked type.
    NoData,
    /// The server failed (RCODE 2).
    ServFail,
    /// The server refused (RCODE 5).
    Refused,
    /// The name is not a valid domain name.
    InvalidName,
    /// The server could not be reached.
    Network,
    /// Anything else.
    Other,
}

impl Failure {
    fn as_str(self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::NxDomain => "nxdomain",
            Failure::NoData => "nodata",
            Failure::ServFail => "servfail",
            Failure::Refused => "refused",
            Failure::InvalidName => "invalid-name",
            Failure::Network => "network",
            Failure::Other => "error",
        }
    }

    /// Whether the DNS gave a definite "no such record" (as opposed to an error
    /// where a later attempt might find something).
    fn is_negative(self) -> bool {
        matches!(
            self,
            Failure::NxDomain | Failure::NoData | Failure::InvalidName
        )
    }

    fn from_net(err: &NetError) -> Failure {
        match err {
            NetError::Timeout => Failure::Timeout,
            NetError::Dns(HickoryDnsError::NoRecordsFound(no)) => match no.response_code {
                ResponseCode::NXDomain => Failure::NxDomain,
                ResponseCode::NoError => Failure::NoData,
                code => Failure::from_code(code),
            },
            NetError::Dns(HickoryDnsError::ResponseCode(code)) => Failure::from_code(*code),
            NetError::Io(_) | NetError::NoConnections | NetError::Busy => Failure::Network,
            _ => Failure::Other,
        }
    }

    fn from_code(code: ResponseCode) -> Failure {
        match code {
            ResponseCode::ServFail => Failure::ServFail,
            ResponseCode::Refused => Failure::Refused,
            ResponseCode::NXDomain => Failure::NxDomain,
            ResponseCode::NoError => Failure::NoData,
            _ => Failure::Other,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `fut`, or [`Failure::Timeout`] if it is not done by `deadline`.
async fn bounded<T>(
    deadline: Instant,
    fut: impl Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    tokio::time::timeout_at(deadline, fut)
        .await
        .unwrap_or(Err(Failure::Timeout))
}

/// `::ffff:a.b.c.d` → `a.b.c.d`; every other address unchanged.
fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_timeout_is_refused() {
        let config = DnsConfig {
            servers: vec!["127.0.0.1:53".parse().unwrap()],
            timeout: Duration::ZERO,
            dnsbl_zones: vec![],
        };
        assert_eq!(Dns::new(&config).unwrap_err(), DnsError::ZeroTimeout);
    }

    #[test]
    fn builds_outside_a_runtime() {
        // Nothing is sent or spawned until a lookup runs.
        let config = DnsConfig {
            servers: vec!["127.0.0.1:9".parse().unwrap(), "[::1]:9".parse().unwrap()],
            ..DnsConfig::default()
        };
        let dns = Dns::new(&config).unwrap();
        assert_eq!(dns.timeout(), DEFAULT_TIMEOUT);
        assert!(format!("{dns:?}").starts_with("Dns {"));
    }

    #[test]
    fn error_kinds_are_listed() {
        for f in [
            Failure::Timeout,
            Failure::NxDomain,
            Failure::NoData,
            Failure::ServFail,
            Failure::Refused,
            Failure::InvalidName,
            Failure::Network,
            Failure::Other,
        ] {
            assert!(ERROR_KINDS.contains(&f.as_str()), "{f}");
        }
    }

    #[test]
    fn futures_are_send() {
        fn assert_send<T: Send>(_: &T) {}
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let config = DnsConfig {
            servers: vec!["127.0.0.1:9".parse().unwrap()],
            dnsbl_zones: vec!["Bl.Example.".into()],
            ..DnsConfig::default()
        };
        let dns = Dns::new(&config).unwrap();
        assert_eq!(dns.dnsbl_zones(), ["bl.example"]);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert_send(&dns.reverse(ip));
        assert_send(&dns.ehlo("a.example", ip));
        assert_send(&dns.domain("a.example"));
        assert_send(&dns.spf(ip, "a.example", Some("x@a.example"), "mx.example"));
        assert_send(&dns.dnsbl(ip));
        let cx = AuthContext {
            ip,
            helo: "a.example",
            mail_from: None,
            server_name: "mx.example",
            iprev: None,
            spf: None,
        };
        assert_send(&dns.authenticate_message(b"", &cx));
    }
}
