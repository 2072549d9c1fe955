//! rspamd (Debian's `rspamd`) in milter mode (its proxy worker with
//! `milter = yes` and `self_scan = yes`), run in the foreground with its own
//! configuration in a temporary directory: no Redis, no DNS servers of its own
//! (pointed at the test's loopback DNS server). GTUBE is refused with rspamd's
//! reply; a plain mail gets rspamd's `X-Spam-*` / `X-Spamd-Result` headers
//! (folded ones included) in the stored message and in the mail structure.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{MESSAGE, milter_at, send, start};
use crate::support::common::messages;
use crate::support::dns_server::DnsServer;
use crate::support::service::service_port;

/// rspamd compiles its TLD list and regular expressions at start: slow on a
/// busy machine.
const RSPAMD_START_LIMIT: Duration = Duration::from_secs(120);

/// rspamd's processes; the main one killed (with its workers) when dropped.
struct Rspamd {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Rspamd {
    fn drop(&mut self) {
        // SIGTERM lets the main process stop its workers.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(0)),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Rspamd {
    fn start(dns: std::net::SocketAddr) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path();
        let local = path.join("local.d");
        for sub in ["local.d", "db", "run", "log"] {
            std::fs::create_dir_all(path.join(sub)).expect("dir");
        }
        let port = service_port();
        let files = [
            (
                "worker-proxy.inc",
                format!(
                    "bind_socket = \"127.0.0.1:{port}\";\nmilter = yes;\ntimeout = 120s;\n\
                     count = 1;\nupstream \"local\" {{ default = yes; self_scan = yes; }}\n"
                ),
            ),
            (
                "worker-normal.inc",
                format!(
                    "bind_socket = \"127.0.0.1:{}\";\ncount = 1;\n",
                    service_port()
                ),
            ),
            (
                "worker-controller.inc",
                format!(
                    "bind_socket = \"127.0.0.1:{}\";\ncount = 1;\n",
                    service_port()
                ),
            ),
            (
                "logging.inc",
                "type = \"console\";\nlevel = \"error\";\n".to_owned(),
            ),
            (
                "options.inc",
                format!("dns {{ nameserver = [\"{dns}\"]; timeout = 1s; retransmits = 1; }}\n"),
            ),
            (
                "milter_headers.conf",
                "use = [\"x-spamd-result\", \"x-spam-status\", \"x-spam-level\"];\n\
                 skip_local = false;\nskip_authenticated = false;\n"
                    .to_owned(),
            ),
        ];
        for (name, text) in files {
            std::fs::write(local.join(name), text).expect("rspamd config");
        }
        let var = |name: &str, sub: &str| format!("--var={name}={}", path.join(sub).display());
        let child = Command::new("rspamd")
            .args([
                "-f",
                "-i",
                "-u",
                "root",
                "-g",
                "root",
                "-c",
                "/etc/rspamd/rspamd.conf",
            ])
            .arg(format!("--var=LOCAL_CONFDIR={}", path.display()))
            .arg(var("DBDIR", "db"))
            .arg(var("RUNDIR", "run"))
            .arg(var("LOGDIR", "log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start rspamd ({e}): install rspamd (scripts/test does it)")
            });
        let deadline = Instant::now() + RSPAMD_START_LIMIT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "rspamd never listened");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            child,
            port,
            _dir: dir,
        }
    }
}

#[test]
fn rspamd_refuses_gtube_and_adds_its_headers() {
    let dns_server = DnsServer::start();
    let rspamd = Rspamd::start(dns_server.addr);
    let (server, recorder) = start(&[super::MilterConfig {
        content_timeout: 60.0,
        ..milter_at(&format!("inet:127.0.0.1:{}", rspamd.port))
    }]);
    let gtube = "From: <a@example.com>\r\nTo: <b@example.com>\r\nSubject: gtube\r\n\r\n\
        XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n";
    let code = send(
        server.port,
        "a@example.com",
        &[("b@example.com", 250)],
        gtube,
    );
    assert_eq!(code, Some(554), "GTUBE: rspamd's reject");
    let code = send(
        server.port,
        "a@example.com",
        &[("b@example.com", 250)],
        MESSAGE,
    );
    assert_eq!(code, Some(250));
    let mail = recorder.only();
    let names: Vec<&str> = mail.milter[0]
        .headers
        .iter()
        .map(|[name, _]| name.as_str())
        .collect();
    assert!(names.contains(&"X-Spam-Status"), "{names:?}");
    assert!(names.contains(&"X-Spamd-Result"), "{names:?}");
    let stored = messages(server.dir());
    assert_eq!(stored.len(), 1);
    let text = String::from_utf8_lossy(&stored[0]);
    assert!(text.contains("\r\nX-Spam-Status: No, score="), "{text}");
    assert!(
        text.contains("\r\nX-Spamd-Result: default: False ["),
        "{text}"
    );
}
