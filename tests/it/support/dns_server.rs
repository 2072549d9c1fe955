//! A real DNS server for the tests: hickory-server in the test process, on
//! `127.0.0.1:<ephemeral port>` over UDP and TCP, on its own runtime (so sync tests
//! and `#[tokio::test]`s can both use it), authoritative for in-memory zones built
//! from a small zone-file-like text — and a [`SilentDnsServer`] that never answers.
//!
//! ```ignore
//! let dns = DnsServer::start_with("sel._domainkey TXT \"v=DKIM1; k=ed25519; p=…\"");
//! let config = dns_config(dns.addr, Duration::from_secs(2)); // servers = [dns.addr]
//! ```
//!
//! Zones served: `example.` (the test domain `test.example.` and its neighbours),
//! the reverse zones of `192.0.2.0/24` and `2001:db8::/32` (the documentation
//! ranges the tests use as client addresses) and `127.in-addr.arpa.` (127.0.0.1 is
//! `loop.test.example`, for tests whose client really is 127.0.0.1); other names
//! are REFUSED. Every query for a
//! name at or under `slow.test.example.` is answered only after a minute — far past
//! any test's timeout — so looking one up is a real timeout. Dropping the server
//! stops it.
//!
//! Record lines are `owner TYPE data`: the owner is relative to `test.example.`
//! unless it ends with `.`, `@` is `test.example.` itself, and an IP address as the
//! owner of a PTR record stands for its reverse name. Types: A, AAAA, MX
//! (`pref host`, `.` = null MX), TXT (one or more `"quoted"` strings, or the bare
//! rest of the line; strings over 255 bytes are split), PTR, CNAME, NS. `;` starts
//! a comment line.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::proto::rr::rdata::{A, AAAA, CNAME, MX, NS, PTR, SOA, TXT};
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
use net_receiver::dns::DnsConfig;

/// The test domain; relative owners are under it.
pub(crate) const ORIGIN: &str = "test.example.";

/// Names at or under this one are answered only after [`SLOW_DELAY`].
pub(crate) const SLOW: &str = "slow.test.example.";

/// How long a query for a [`SLOW`] name waits for its answer.
const SLOW_DELAY: Duration = Duration::from_secs(60);

/// The zones served, by apex.
const ZONES: [&str; 4] = [
    "example.",
    "2.0.192.in-addr.arpa.",
    "8.b.d.0.1.0.0.2.ip6.arpa.",
    "127.in-addr.arpa.",
];

/// The standard records of every [`DnsServer`].
pub(crate) const TEST_ZONE: &str = r#"
; MX: three preferences in the wrong order, an IPv6-only exchange.
@                 MX    30 mx3
@                 MX    10 mx1
@                 MX    20 mx2
@                 A     192.0.2.1
@                 A     192.0.2.100
@                 AAAA  2001:db8::1
@                 TXT   "v=spf1 ip4:192.0.2.1 -all"
mx1               A     192.0.2.11
mx2               A     192.0.2.12
mx2               AAAA  2001:db8::12
mx3               AAAA  2001:db8::13
; Equal preferences keep their DNS order.
ties              MX    10 tie-b
ties              MX    10 tie-a
ties              MX    5 tie-c
tie-a             A     192.0.2.21
tie-b             A     192.0.2.22
tie-c             A     192.0.2.23
; RFC 7505 null MX; an implicit MX; a name with neither MX nor address; a broken MX.
nullmx            MX    0 .
implicit          A     192.0.2.20
noaddr            TXT   "exists, no address"
dangling          MX    10 missing

; The EHLO name of 192.0.2.1, forward-confirmed; its SPF (HELO identity).
mail              A     192.0.2.1
mail              TXT   "v=spf1 a -all"
192.0.2.1         PTR   mail
; 192.0.2.2 names a host that does not point back (iprev fail).
192.0.2.2         PTR   liar
liar              A     192.0.2.99
; 192.0.2.3 has no PTR at all (iprev permerror).
; 192.0.2.4 has two PTR names; the second points back.
192.0.2.4         PTR   nomatch
192.0.2.4         PTR   multi
nomatch           A     192.0.2.50
multi             A     192.0.2.4
; IPv6, forward-confirmed.
v6                AAAA  2001:db8::1
2001:db8::1       PTR   v6
; 192.0.2.5 points into the slow zone (iprev temperror).
192.0.2.5         PTR   host.slow
; The loopback client, forward-confirmed; 127.0.0.2 has no PTR.
loop              A     127.0.0.1
127.0.0.1         PTR   loop

; SPF policies, all judged for 192.0.2.1.
spf-pass          TXT   "v=spf1 ip4:192.0.2.1 -all"
spf-fail          TXT   "v=spf1 ip4:198.51.100.1 -all"
spf-soft          TXT   "v=spf1 ip4:198.51.100.1 ~all"
spf-neutral       TXT   "v=spf1 ?all"
spf-include       TXT   "v=spf1 include:spf-pass.test.example -all"
spf-redirect      TXT   "v=spf1 redirect=spf-pass.test.example"
spf-a             TXT   "v=spf1 a:mail.test.example -all"
spf-mx            TXT   "v=spf1 mx -all"
spf-mx            MX    10 mail
spf-loop          TXT   "v=spf1 include:spf-loop2.test.example -all"
spf-loop2         TXT   "v=spf1 include:spf-loop.test.example -all"
spf-syntax        TXT   "v=spf1 ip4:not-an-address -all"
spf-slow          TXT   "v=spf1 include:x.slow.test.example -all"

; DMARC: reject for test.example (and below), none for lax.test.example.
_dmarc            TXT   "v=DMARC1; p=reject"
lax               A     192.0.2.30
_dmarc.lax        TXT   "v=DMARC1; p=none"
other.example.    A     192.0.2.31

; A DNSBL listing 192.0.2.2.
2.2.0.192.bl      A     127.0.0.2
2.2.0.192.bl      TXT   "192.0.2.2 is listed for testing"
"#;

/// A hickory DNS server on loopback serving [`TEST_ZONE`] (plus any extra records),
/// on a thread and runtime of its own; dropping it stops it.
pub(crate) struct DnsServer {
    /// The UDP and TCP address, e.g. `127.0.0.1:40123`.
    pub(crate) addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DnsServer {
    /// A server with the standard records.
    pub(crate) fn start() -> Self {
        Self::start_with("")
    }

    /// A server with the standard records and `extra` (same syntax).
    pub(crate) fn start_with(extra: &str) -> Self {
        let mut records = parse_records(TEST_ZONE);
        records.extend(parse_records(extra));
        let handler = SlowNames {
            catalog: catalog(records),
            slow: LowerName::from(Name::from_ascii(SLOW).unwrap()),
        };
        let (udp, tcp) = bind_pair();
        let addr = udp.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready, is_ready) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("dns-server-{}", addr.port()))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    let mut server = Server::new(handler);
                    server.register_socket(tokio::net::UdpSocket::from_std(udp).unwrap());
                    server.register_listener(
                        tokio::net::TcpListener::from_std(tcp).unwrap(),
                        Duration::from_secs(10),
                        64,
                    );
                    ready.send(()).unwrap();
                    let _ = stopped.await;
                    // Not `shutdown_gracefully`: that would wait out the slow answers.
                    server.shutdown_token().cancel();
                });
                // Dropping the server's tasks (sleeping slow answers included).
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .unwrap();
        is_ready.recv().unwrap();
        DnsServer {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A "DNS server" on loopback that receives queries (UDP and TCP) and never
/// answers: every lookup against it times out. Dropping it closes the sockets.
pub(crate) struct SilentDnsServer {
    /// The UDP and TCP address.
    pub(crate) addr: SocketAddr,
    _udp: UdpSocket,
    _tcp: std::net::TcpListener,
}

impl SilentDnsServer {
    /// Binds the sockets (the TCP listener accepts into its backlog, nothing reads).
    pub(crate) fn start() -> Self {
        let (udp, tcp) = bind_pair();
        SilentDnsServer {
            addr: udp.local_addr().unwrap(),
            _udp: udp,
            _tcp: tcp,
        }
    }
}

/// A [`DnsConfig`] asking only `server`, with `timeout` per lookup.
pub(crate) fn dns_config(server: SocketAddr, timeout: Duration) -> DnsConfig {
    DnsConfig {
        servers: vec![server],
        timeout,
        dnsbl_zones: Vec::new(),
    }
}

/// A UDP socket and a TCP listener on the same `127.0.0.1` port, non-blocking.
fn bind_pair() -> (UdpSocket, std::net::TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = udp.local_addr().unwrap();
        if let Ok(tcp) = std::net::TcpListener::bind(addr) {
            udp.set_nonblocking(true).unwrap();
            tcp.set_nonblocking(true).unwrap();
            return (udp, tcp);
        }
    }
    panic!("no port free for both UDP and TCP on 127.0.0.1");
}

/// The catalog of [`ZONES`], each with an SOA and NS, holding `records`.
fn catalog(records: Vec<Record>) -> Catalog {
    let mut handlers: Vec<(Name, InMemoryZoneHandler)> = ZONES
        .iter()
        .map(|apex| {
            let origin = Name::from_ascii(apex).unwrap();
            let mut zone =
                InMemoryZoneHandler::empty(origin.clone(), ZoneType::Primary, AxfrPolicy::Deny);
            let ns = Name::from_ascii("ns.test.example.").unwrap();
            let soa = SOA::new(
                ns.clone(),
                Name::from_ascii("hostmaster.test.example.").unwrap(),
                1,
                3600,
                600,
                86_400,
                60,
            );
            assert!(zone.upsert_mut(Record::from_rdata(origin.clone(), 60, RData::SOA(soa)), 1));
            assert!(zone.upsert_mut(Record::from_rdata(origin.clone(), 60, RData::NS(NS(ns))), 1));
            (origin, zone)
        })
        .collect();
    for record in records {
        let (_, zone) = handlers
            .iter_mut()
            .filter(|(origin, _)| origin.zone_of(&record.name))
            .max_by_key(|(origin, _)| origin.num_labels())
            .unwrap_or_else(|| panic!("{} is in no served zone", record.name));
        assert!(zone.upsert_mut(record, 1));
    }
    let mut catalog = Catalog::new();
    for (origin, zone) in handlers {
        catalog.upsert(
            LowerName::from(origin),
            vec![Arc::new(zone) as Arc<dyn ZoneHandler>],
        );
    }
    catalog
}

/// The records of a zone text (see the module doc); panics on a bad line.
pub(crate) fn parse_records(text: &str) -> Vec<Record> {
    let origin = Name::from_ascii(ORIGIN).unwrap();
    let name = |s: &str| -> Name {
        if s == "@" {
            origin.clone()
        } else if s.ends_with('.') {
            Name::from_ascii(s).unwrap()
        } else {
            Name::from_ascii(s).unwrap().append_domain(&origin).unwrap()
        }
    };
    let mut records = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with(';') {
            continue;
        }
        let (owner, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let rest = rest.trim_start();
        let (kind, data) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        let data = data.trim();
        let (owner, rdata) = match kind {
            "A" => (name(owner), RData::A(A(data.parse().unwrap()))),
            "AAAA" => (name(owner), RData::AAAA(AAAA(data.parse().unwrap()))),
            "MX" => {
                let (pref, host) = data.split_once(char::is_whitespace).unwrap();
                let host = if host.trim() == "." {
                    Name::root()
                } else {
                    name(host.trim())
                };
                (name(owner), RData::MX(MX::new(pref.parse().unwrap(), host)))
            }
            "TXT" => (name(owner), RData::TXT(TXT::new(txt_strings(data)))),
            "PTR" => {
                let owner = match owner.parse::<IpAddr>() {
                    Ok(ip) => Name::from(ip),
                    Err(_) => name(owner),
                };
                (owner, RData::PTR(PTR(name(data))))
            }
            "CNAME" => (name(owner), RData::CNAME(CNAME(name(data)))),
            "NS" => (name(owner), RData::NS(NS(name(data)))),
            other => panic!("unknown record type {other:?} in {line:?}"),
        };
        records.push(Record::from_rdata(owner, 60, rdata));
    }
    records
}

/// The character-strings of a TXT record's data: each `"quoted"` part (split at
/// 255 bytes), or the whole text when nothing is quoted.
fn txt_strings(data: &str) -> Vec<String> {
    let mut parts: Vec<String> = data
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    if parts.is_empty() {
        parts.push(data.to_owned());
    }
    parts
        .iter()
        .flat_map(|p| {
            p.as_bytes()
                .chunks(255)
                .map(|c| String::from_utf8(c.to_vec()).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The catalog, except that queries for names under `slow` wait [`SLOW_DELAY`].
struct SlowNames {
    catalog: Catalog,
    slow: LowerName,
}

// `RequestHandler` is an `#[async_trait]` trait; this is the signature that macro
// gives it, written out (the crate does not depend on `async-trait`).
impl RequestHandler for SlowNames {
    fn handle_request<'life0, 'life1, 'async_trait, R, T>(
        &'life0 self,
        request: &'life1 Request,
        response_handle: R,
    ) -> Pin<Box<dyn Future<Output = ResponseInfo> + Send + 'async_trait>>
    where
        R: ResponseHandler + 'async_trait,
        T: Time + 'async_trait,
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            let slow = request
                .request_info()
                .is_ok_and(|info| self.slow.zone_of(info.query.name()));
            if slow {
                tokio::time::sleep(SLOW_DELAY).await;
            }
            self.catalog
                .handle_request::<R, T>(request, response_handle)
                .await
        })
    }
}

#[test]
fn zone_text_parses() {
    let records = parse_records(TEST_ZONE);
    assert!(records.len() > 40);
    let long = "x".repeat(600);
    let records = parse_records(&format!("k TXT \"{long}\""));
    match &records[0].data {
        RData::TXT(txt) => {
            assert_eq!(txt.txt_data.len(), 3);
            assert_eq!(txt.txt_data.iter().map(|s| s.len()).sum::<usize>(), 600);
        }
        other => panic!("{other:?}"),
    }
    let ptr = parse_records("192.0.2.1 PTR host");
    assert_eq!(ptr[0].name.to_ascii(), "1.2.0.192.in-addr.arpa.");
}
