//! OpenDKIM (Debian's `opendkim`) in signing mode as a milter: a key made by
//! `opendkim-genkey` for `test.example`, OpenDKIM in the foreground on a
//! loopback port with its own configuration, a mail through us; the stored
//! message's DKIM-Signature verified by our own verifier (mail-auth, against
//! a loopback DNS server holding the public key) and by dkimpy, and shown to
//! fail once a signed header is touched.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use net_receiver::dns::{AuthContext, Dns};

use super::{PYTHON, PythonMilter, START_LIMIT, milter_at, send, start};
use crate::support::common::{messages, run_bounded};
use crate::support::dns_server::{DnsServer, dns_config};

/// OpenDKIM as a child process; killed when dropped.
struct OpenDkim {
    child: Child,
    addr: SocketAddr,
    /// The `TXT` record's strings for `sel._domainkey.test.example`.
    record: String,
    _dir: tempfile::TempDir,
}

impl Drop for OpenDkim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl OpenDkim {
    fn start(canonicalization: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path();
        let genkey = Command::new("opendkim-genkey")
            .args(["-b", "1024", "-d", "test.example", "-s", "sel", "-D"])
            .arg(path)
            .output();
        match genkey {
            Ok(out) => assert!(
                out.status.success(),
                "opendkim-genkey: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(_) => {
                panic!("opendkim-genkey not found: install opendkim-tools (scripts/test does it)")
            }
        }
        let txt = std::fs::read_to_string(path.join("sel.txt")).expect("sel.txt");
        // The quoted strings of `sel._domainkey IN TXT ( "…" "…" )`.
        let record: Vec<&str> = txt.split('"').skip(1).step_by(2).collect();
        let record = record
            .iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(" ");
        // A free loopback port: bound, then given to OpenDKIM.
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port");
        let config = format!(
            "Syslog no\nMode s\nDomain test.example\nSelector sel\nKeyFile {key}\n\
             Socket inet:{port}@127.0.0.1\nCanonicalization {canonicalization}\n\
             SignHeaders From,To,Subject,X-Folded,X-Test-Milter\nOversignHeaders From\n\
             InternalHosts 127.0.0.1\nRequireSafeKeys false\nPidFile {pid}\n",
            key = path.join("sel.private").display(),
            port = addr.port(),
            pid = path.join("opendkim.pid").display(),
        );
        let conf = path.join("opendkim.conf");
        std::fs::write(&conf, config).expect("config");
        let child = Command::new("opendkim")
            .arg("-f")
            .arg("-x")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start opendkim ({e}): install opendkim (scripts/test does it)")
            });
        let deadline = Instant::now() + START_LIMIT;
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "opendkim never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            addr,
            record,
            _dir: dir,
        }
    }
}

/// Our verifier's DKIM results for `message`.
fn our_verdict(dns: &Dns, message: &[u8]) -> Vec<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let cx = AuthContext {
        ip: "192.0.2.1".parse().expect("ip"),
        helo: "client.test",
        mail_from: Some("a@test.example"),
        server_name: "mx.test",
        iprev: None,
        spf: None,
    };
    let found = runtime.block_on(dns.authenticate_message(message, &cx));
    found.dkim.iter().map(|d| d.result.clone()).collect()
}

/// dkimpy's verdict, the key given directly (no DNS).
fn dkimpy_verdict(record: &str, message: &Path) -> String {
    let script = "import dkim, sys\n\
        record = sys.argv[1].encode()\n\
        message = open(sys.argv[2], 'rb').read()\n\
        ok = dkim.verify(message, dnsfunc=lambda name, timeout=5: record)\n\
        print('pass' if ok else 'fail')";
    let output = run_bounded(
        Command::new(PYTHON)
            .args(["-c", script, record])
            .arg(message),
        Duration::from_secs(30),
    );
    assert!(
        output.status.success(),
        "dkimpy: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn signed_through_us(canonicalization: &str) {
    let opendkim = OpenDkim::start(canonicalization);
    let dns_server = DnsServer::start_with(&format!("sel._domainkey TXT {}", opendkim.record));
    let (server, recorder) = start(&[milter_at(&format!("inet:{}", opendkim.addr))]);
    let message = "From: <a@test.example>\r\nTo: <rcpt@example.com>\r\n\
        Subject:  spaced   out \r\nX-Folded: one\r\n\ttwo\r\n\r\nbody  with  spaces \r\n";
    let code = send(
        server.port,
        "a@test.example",
        &[("rcpt@example.com", 250)],
        message,
    );
    assert_eq!(code, Some(250));
    let mail = recorder.only();
    let added: Vec<&str> = mail.milter[0]
        .headers
        .iter()
        .map(|[name, _]| name.as_str())
        .collect();
    assert_eq!(added, ["DKIM-Signature"], "{:?}", mail.milter);
    let stored = messages(server.dir());
    assert_eq!(stored.len(), 1);
    let stored = &stored[0];
    let dns = Dns::new(&dns_config(dns_server.addr, Duration::from_secs(3))).expect("resolver");
    assert_eq!(our_verdict(&dns, stored), ["pass"], "our verifier");
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), stored).expect("write");
    let key = opendkim.record.replace("\" \"", "").replace('"', "");
    assert_eq!(dkimpy_verdict(&key, file.path()), "pass");
    // The checks can fail: a signed header touched.
    let tampered = String::from_utf8_lossy(stored).replace("spaced   out", "spaced   OUT");
    assert_eq!(our_verdict(&dns, tampered.as_bytes()), ["fail"]);
    std::fs::write(file.path(), tampered).expect("write");
    assert_eq!(dkimpy_verdict(&key, file.path()), "fail");
}

#[test]
fn opendkim_signs_and_the_signature_verifies_simple() {
    signed_through_us("simple/simple");
}

#[test]
fn opendkim_signs_and_the_signature_verifies_relaxed() {
    signed_through_us("relaxed/relaxed");
}

#[test]
fn milters_run_in_order_and_the_second_signs_the_firsts_header() {
    let python = PythonMilter::start();
    let opendkim = OpenDkim::start("simple/simple");
    let dns_server = DnsServer::start_with(&format!("sel._domainkey TXT {}", opendkim.record));
    let (server, recorder) = start(&[
        milter_at(&python.address),
        milter_at(&format!("inet:{}", opendkim.addr)),
    ]);
    let message = "From: <a@test.example>\r\nTo: <b@example.com>\r\nSubject: two\r\n\r\nbody\r\n";
    let code = send(
        server.port,
        "a@test.example",
        &[("addheader@example.com", 250)],
        message,
    );
    assert_eq!(code, Some(250));
    let mail = recorder.only();
    let actions: Vec<(&str, &str)> = mail
        .milter
        .iter()
        .map(|m| (m.name.as_str(), m.headers[0][0].as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            (python.address.as_str(), "X-Test-Milter"),
            (format!("inet:{}", opendkim.addr).as_str(), "DKIM-Signature")
        ]
    );
    let signature = &mail.milter[1].headers[0][1];
    let signed: String = signature.chars().filter(|c| !c.is_whitespace()).collect();
    assert!(
        signed.to_ascii_lowercase().contains("x-test-milter"),
        "OpenDKIM saw the first milter's header: {signature}"
    );
    let stored = messages(server.dir());
    assert_eq!(stored.len(), 1);
    let dns = Dns::new(&dns_config(dns_server.addr, Duration::from_secs(3))).expect("resolver");
    assert_eq!(our_verdict(&dns, &stored[0]), ["pass"]);
}
