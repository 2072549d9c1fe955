//! Issue 16, metrics: the real binary with `metrics_listen`, a known traffic mix
//! (3 accepted mails, a RCPT out of sequence, a failed AUTH, a STARTTLS
//! session), then the exact
//! counters scraped over HTTP — and through a real Prometheus server (Debian
//! `prometheus`) scraping the binary, with PromQL queries on its HTTP API.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::server_process::send_one;
use crate::support::auth::{BAD_CREDENTIALS, plain, start_binary};
use crate::support::common::Client;
use crate::support::running::Binary;
use crate::support::tls::{Pair, TlsClient};

/// How long a counter may take to reach its value (sessions close after QUIT).
const SETTLE: Duration = Duration::from_secs(15);

/// The binary with AUTH on plain SMTP (user `joe`), the certificate `pair`, a
/// metrics endpoint (by `--metrics-listen` when `flag`, else `metrics_listen`),
/// and its SMTP port and metrics address.
fn start(dir: &Path, pair: &Pair, flag: bool) -> (Binary, u16, SocketAddr) {
    let passwd = dir.join("passwd");
    std::fs::write(&passwd, "joe:{PLAIN}joe-Secret-42\n").unwrap();
    let toml = format!(
        "allow_plaintext_auth = true\nauth_failure_delay = 0.01\n\
         passwd_file = {passwd:?}\n{}",
        if flag {
            ""
        } else {
            "metrics_listen = \"127.0.0.1:0\"\n"
        }
    );
    let metrics_flag: &[&std::ffi::OsStr] = if flag {
        &["--metrics-listen".as_ref(), "127.0.0.1:0".as_ref()]
    } else {
        &[]
    };
    let mut binary = start_binary(
        dir,
        &toml,
        "info",
        &[
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--cert".as_ref(),
            pair.cert.as_os_str(),
            "--key".as_ref(),
            pair.key.as_os_str(),
        ]
        .into_iter()
        .chain(metrics_flag.iter().copied())
        .collect::<Vec<_>>(),
        1,
    );
    let line = binary.wait_for_lines("metrics on ", 1).remove(0);
    let addr = line
        .rsplit("metrics on ")
        .next()
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    let port = binary.port("smtp");
    (binary, port, addr)
}

/// The traffic mix every test here sends.
fn traffic(port: u16, pair: &Pair) {
    for subject in ["one", "two", "three"] {
        send_one(port, subject);
    }
    let mut client = Client::ehlo(port);
    client.cmd("RCPT TO:<b@example.com>", 503);
    client.quit();
    let mut client = Client::ehlo(port);
    let reply = client.cmd(&format!("AUTH PLAIN {}", plain("joe", "wrong")), 535);
    assert!(reply.text().contains(BAD_CREDENTIALS), "{reply:?}");
    client.quit();
    let mut client = Client::ehlo(port);
    client.cmd("STARTTLS", 220);
    let mut tls = TlsClient::after_starttls(client, pair.client_config());
    tls.cmd("EHLO client.test", 250);
    tls.quit();
}

/// `GET path` over HTTP/1.0 (no chunking); the status line, and the body.
fn http_get(addr: SocketAddr, path: &str, accept: &str) -> (String, String) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: {accept}\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (head.to_owned(), body.to_owned())
}

/// The value of the sample line that starts with `sample `.
fn value(text: &str, sample: &str) -> Option<f64> {
    let prefix = format!("{sample} ");
    let line = text.lines().find(|l| l.starts_with(&prefix))?;
    line[prefix.len()..].split(' ').next()?.parse().ok()
}

/// What the mix must leave, sample by sample (the text format's names).
const EXPECTED: [(&str, f64); 23] = [
    ("net_receiver_connections_accepted_total", 6.0),
    ("net_receiver_sessions_open", 0.0),
    (r#"net_receiver_commands_total{verb="EHLO"}"#, 7.0),
    (r#"net_receiver_commands_total{verb="MAIL"}"#, 3.0),
    (r#"net_receiver_commands_total{verb="RCPT"}"#, 3.0),
    (r#"net_receiver_commands_total{verb="DATA"}"#, 3.0),
    (r#"net_receiver_commands_total{verb="AUTH"}"#, 1.0),
    (r#"net_receiver_commands_total{verb="QUIT"}"#, 6.0),
    (r#"net_receiver_commands_total{verb="STARTTLS"}"#, 1.0),
    // 6 greetings and the STARTTLS answer; 7 EHLO, 3 MAIL, 3 RCPT, 3 messages.
    (r#"net_receiver_replies_total{class="2xx",code="220"}"#, 7.0),
    (
        r#"net_receiver_replies_total{class="2xx",code="250"}"#,
        16.0,
    ),
    (r#"net_receiver_replies_total{class="3xx",code="354"}"#, 3.0),
    (r#"net_receiver_replies_total{class="2xx",code="221"}"#, 6.0),
    (r#"net_receiver_replies_total{class="5xx",code="503"}"#, 1.0),
    (r#"net_receiver_replies_total{class="5xx",code="535"}"#, 1.0),
    (r#"net_receiver_recipients_total{result="accepted"}"#, 3.0),
    ("net_receiver_messages_accepted_total", 3.0),
    ("net_receiver_delivery_duration_seconds_count", 3.0),
    (
        r#"net_receiver_delivery_target_outcomes_total{target="maildir",result="delivered"}"#,
        3.0,
    ),
    (
        r#"net_receiver_delivery_target_outcomes_total{target="maildir",result="temporary"}"#,
        0.0,
    ),
    (
        r#"net_receiver_delivery_target_duration_seconds_count{target="maildir"}"#,
        3.0,
    ),
    (r#"net_receiver_auth_total{result="failure"}"#, 1.0),
    (
        r#"net_receiver_tls_handshakes_total{version="TLSv1.3"}"#,
        1.0,
    ),
];

#[test]
fn issue16_the_endpoint_counts_a_known_traffic_mix_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let pair = Pair::new();
    let (mut binary, port, metrics) = start(dir.path(), &pair, false);
    traffic(port, &pair);
    let deadline = Instant::now() + SETTLE;
    let text = loop {
        let (head, body) = http_get(metrics, "/metrics", "*/*");
        assert!(head.starts_with("HTTP/1.0 200"), "{head}");
        assert!(head.contains("text/plain; version=0.0.4"), "{head}");
        if EXPECTED.iter().all(|(s, v)| value(&body, s) == Some(*v)) || Instant::now() > deadline {
            break body;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    for (sample, expected) in EXPECTED {
        assert_eq!(value(&text, sample), Some(expected), "{sample} in\n{text}");
    }
    let bytes = value(&text, "net_receiver_received_bytes_total").unwrap_or(0.0);
    assert!(bytes > 300.0, "{bytes} bytes received");
    let (head, open) = http_get(metrics, "/metrics", "application/openmetrics-text");
    assert!(head.contains("application/openmetrics-text"), "{head}");
    assert!(open.ends_with("# EOF\n"), "{open}");
    let (_, log) = binary.stop();
    assert!(log.contains("metrics on 127.0.0.1:"), "{log}");
}

/// A Prometheus server on loopback, killed on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Scrapes `target` every second.
    fn start(target: SocketAddr) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: net-receiver\n    static_configs:\n\
                 \x20     - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        // A free port: bound, read, let go.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start prometheus ({e}): install it (scripts/test does it)")
            });
        Self {
            child,
            addr,
            _dir: dir,
        }
    }

    /// The single value of an instant PromQL query, if it has one yet.
    fn query(&self, promql: &str) -> Option<f64> {
        let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        let request = format!(
            "GET /api/v1/query?query={} HTTP/1.0\r\nHost: {}\r\n\r\n",
            percent_encode(promql),
            self.addr
        );
        stream.write_all(request.as_bytes()).ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).ok()?;
        let (_, body) = answer.split_once("\r\n\r\n")?;
        let json: serde_json::Value = serde_json::from_str(body).ok()?;
        let result = json["data"]["result"].as_array()?;
        let [only] = result.as_slice() else {
            return None;
        };
        only["value"][1].as_str()?.parse().ok()
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn issue16_a_real_prometheus_scrapes_the_binary_and_promql_sees_the_mix() {
    let dir = tempfile::tempdir().unwrap();
    let pair = Pair::new();
    let (mut binary, port, metrics) = start(dir.path(), &pair, true);
    traffic(port, &pair);
    let prometheus = Prometheus::start(metrics);
    let queries = [
        ("net_receiver_messages_accepted_total", 3.0),
        (r#"net_receiver_auth_total{result="failure"}"#, 1.0),
        (r#"sum(net_receiver_replies_total{class="5xx"})"#, 2.0),
        (r#"net_receiver_commands_total{verb="EHLO"}"#, 7.0),
        ("sum(net_receiver_tls_handshakes_total)", 1.0),
        ("net_receiver_sessions_open", 0.0),
        (r#"up{job="net-receiver"}"#, 1.0),
        (r#"count(net_receiver_build_info{version!=""})"#, 1.0),
    ];
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = Vec::new();
    while Instant::now() < deadline {
        got = queries.iter().map(|(q, _)| prometheus.query(q)).collect();
        if queries.iter().zip(&got).all(|((_, v), g)| *g == Some(*v)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    for ((query, expected), got) in queries.iter().zip(&got) {
        assert_eq!(*got, Some(*expected), "{query}");
    }
    drop(prometheus);
    binary.stop();
}

/// Issue 18: with `--spool-dir` the endpoint also serves the spool's metrics,
/// read from the spool at each scrape; without a spool there are none.
#[test]
fn issue18_the_spool_metrics_follow_five_messages_through_the_spool() {
    let dir = tempfile::tempdir().unwrap();
    let (mut binary, addr) = with_metrics(dir.path(), true);
    let port = binary.addr().port();
    for subject in ["s1", "s2", "s3", "s4", "s5"] {
        send_one(port, subject);
    }
    let deadline = Instant::now() + SETTLE;
    let text = loop {
        let (_, text) = http_get(addr, "/metrics", "text/plain");
        if value(&text, "net_receiver_spool_done_total") == Some(5.0) {
            break text;
        }
        assert!(Instant::now() < deadline, "never 5 done:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    };
    for (sample, want) in [
        ("net_receiver_spool_messages_total", 5.0),
        ("net_receiver_spool_pending_messages", 0.0),
        ("net_receiver_spool_delivery_retries_total", 0.0),
        ("net_receiver_spool_dead_letters_total", 0.0),
    ] {
        assert_eq!(value(&text, sample), Some(want), "{sample} in\n{text}");
    }
    for (sample, low, high) in [
        ("net_receiver_spool_flushes_total", 1.0, 10.0),
        ("net_receiver_spool_delivery_batches_total", 1.0, 5.0),
        ("net_receiver_spool_written_bytes_total", 500.0, 1e6),
        ("net_receiver_spool_bytes", 500.0, 1e6),
    ] {
        let found = value(&text, sample).unwrap_or_else(|| panic!("no {sample} in\n{text}"));
        assert!((low..=high).contains(&found), "{sample} {found}");
    }
    assert!(
        text.contains("# TYPE net_receiver_spool_pending_messages gauge"),
        "{text}"
    );
    let (_, open) = http_get(addr, "/metrics", "application/openmetrics-text");
    assert_eq!(value(&open, "net_receiver_spool_messages_total"), Some(5.0));
    assert!(
        open.contains("# TYPE net_receiver_spool_messages counter"),
        "{open}"
    );
    binary.terminate();
    let log = binary.log();
    assert!(log.contains("fdatasyncs per message"), "{log}");

    // No spool, no spool metrics.
    let (mut plain, addr) = with_metrics(dir.path(), false);
    let (_, text) = http_get(addr, "/metrics", "text/plain");
    assert!(
        text.contains("net_receiver_messages_accepted_total"),
        "{text}"
    );
    assert!(!text.contains("net_receiver_spool_"), "{text}");
    plain.terminate();
}

/// The binary delivering into `dir/Maildir` (through `dir/spool` when
/// `spool`) with a metrics endpoint; and the endpoint's address.
fn with_metrics(dir: &Path, spool: bool) -> (Binary, SocketAddr) {
    let mut command = crate::support::running::listening_command(&dir.join("Maildir"));
    command.args(["--metrics-listen", "127.0.0.1:0"]);
    if spool {
        command.arg("--spool-dir").arg(dir.join("spool"));
    }
    let mut binary = Binary::spawn(&mut command, 1);
    let line = binary.wait_for_lines("metrics on ", 1).remove(0);
    let addr = line
        .rsplit("metrics on ")
        .next()
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (binary, addr)
}

/// Issue 16, layer metrics: the binary with the DNS checks (the loopback test
/// DNS server) and two HTTP hooks — one that answers, one on a port nobody
/// listens on (`on_error = "accept"`) — sends one mail; each layer's calls are
/// timed per stage, the dead hook's calls counted as errors, and what the DNS
/// checks found counted per check.
#[test]
fn issue16_policy_layers_and_dns_results_are_counted() {
    let dns = crate::support::dns_server::DnsServer::start_with("");
    let hook = crate::support::hook_server::HookServer::start(|request| {
        let action = if request["stage"] == "data" {
            "discard"
        } else {
            "continue"
        };
        crate::support::hook_server::Answer::action(action)
    });
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The dead hook first (it fails, `on_error = "accept"` goes on), then the
    // one that discards the message at data.
    let toml = format!(
        "metrics_listen = \"127.0.0.1:0\"\n\
         [[hook]]\nurl = \"http://{dead}/\"\nstages = [\"data\"]\non_error = \"accept\"\n\
         [[hook]]\nurl = \"http://{}/\"\nstages = [\"mail_from\", \"data\"]\n",
        hook.addr
    );
    let mut binary = start_binary(
        dir.path(),
        &toml,
        "info",
        &[
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--dns-server".as_ref(),
            dns.addr.to_string().as_ref(),
        ],
        1,
    );
    let line = binary.wait_for_lines("metrics on ", 1).remove(0);
    let metrics: SocketAddr = line
        .rsplit("metrics on ")
        .next()
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    send_one(binary.port("smtp"), "layers");
    let expected = [
        (
            r#"net_receiver_policy_duration_seconds_count{layer="dns",stage="connect"}"#,
            1.0,
        ),
        (
            r#"net_receiver_policy_duration_seconds_count{layer="dns",stage="ehlo"}"#,
            1.0,
        ),
        (
            r#"net_receiver_policy_duration_seconds_count{layer="dns",stage="mail_from"}"#,
            1.0,
        ),
        (
            r#"net_receiver_policy_duration_seconds_count{layer="dns",stage="rcpt_to"}"#,
            1.0,
        ),
        (
            r#"net_receiver_policy_duration_seconds_count{layer="dns",stage="data"}"#,
            1.0,
        ),
        (
            r#"net_receiver_policy_duration_seconds_count{layer="hook",stage="connect"}"#,
            0.0,
        ),
        (
            r#"net_receiver_policy_duration_seconds_count{layer="hook",stage="mail_from"}"#,
            1.0,
        ),
        (
            r#"net_receiver_policy_duration_seconds_count{layer="hook",stage="data"}"#,
            2.0,
        ),
        (r#"net_receiver_policy_errors_total{layer="hook"}"#, 1.0),
        ("net_receiver_messages_discarded_total", 1.0),
        ("net_receiver_messages_accepted_total", 0.0),
        // The test zone is test.example; its server refuses every other name,
        // so the EHLO name and example.com are errors (REFUSED), and SPF a
        // temperror: the stages ehlo, mail_from and rcpt_to failed.
        (r#"net_receiver_policy_errors_total{layer="dns"}"#, 3.0),
        (
            r#"net_receiver_dns_results_total{check="iprev",result="pass"}"#,
            1.0,
        ),
        (
            r#"net_receiver_dns_results_total{check="ehlo",result="refused"}"#,
            1.0,
        ),
        (
            r#"net_receiver_dns_results_total{check="domain",result="refused"}"#,
            2.0,
        ),
        (
            r#"net_receiver_dns_results_total{check="spf",result="temperror"}"#,
            1.0,
        ),
        (
            r#"net_receiver_dns_results_total{check="dmarc",result="none"}"#,
            1.0,
        ),
        (
            r#"net_receiver_dns_results_total{check="arc",result="none"}"#,
            1.0,
        ),
    ];
    let deadline = Instant::now() + SETTLE;
    let text = loop {
        let (_, body) = http_get(metrics, "/metrics", "*/*");
        if expected.iter().all(|(s, v)| value(&body, s) == Some(*v)) || Instant::now() > deadline {
            break body;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    for (sample, want) in expected {
        assert_eq!(value(&text, sample), Some(want), "{sample} in\n{text}");
    }
    drop(binary.stop());
}
