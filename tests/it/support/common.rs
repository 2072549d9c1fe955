//! Shared helpers: an in-process server on a loopback port with its own runtime
//! and Maildir, a raw SMTP client speaking exact bytes with read timeouts, Maildir
//! inspection, and running external clients (python3, swaks) with a time bound.

use std::io::{BufRead, BufReader, Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use net_receiver::config::{ListenerMode, ListenerSpec};
use net_receiver::server::TlsHandle;
use net_receiver::{Config, Context, DeliveryError, Mail, Maildir, Receiver, Server, defaults};
use tokio::sync::oneshot;

/// How long any single read from the server may take before the test fails.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The server name every in-process server uses.
pub(crate) const SERVER_NAME: &str = "mx.test";

/// The default configuration with a fixed server name.
pub(crate) fn config() -> Config {
    Config {
        server_name: Some(SERVER_NAME.to_owned()),
        ..Config::default()
    }
}

/// An in-process server on `127.0.0.1:<random port>`, delivering into a fresh
/// Maildir. Dropping it shuts the server down.
pub(crate) struct TestServer {
    /// The bound port (of the first listener).
    pub(crate) port: u16,
    /// The bound port of every listener, in the order they were given.
    pub(crate) ports: Vec<u16>,
    /// The Maildir root (a temporary directory).
    pub(crate) maildir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl TestServer {
    /// The default receiver with `config`.
    pub(crate) fn start(config: Config) -> Self {
        Self::start_with(config, Plain)
    }

    /// `receiver` with `config`.
    pub(crate) fn start_with<R: Receiver>(config: Config, receiver: R) -> Self {
        Self::start_listeners(config, receiver, &[(ListenerMode::Smtp, false)], None)
    }

    /// `receiver` with `config`, one listener on `127.0.0.1:<random port>` per
    /// `(mode, proxy_protocol)` entry, and `tls` for STARTTLS and implicit TLS.
    pub(crate) fn start_listeners<R: Receiver>(
        config: Config,
        receiver: R,
        listeners: &[(ListenerMode, bool)],
        tls: Option<Arc<TlsHandle>>,
    ) -> Self {
        let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let specs: Vec<ListenerSpec> = listeners
            .iter()
            .map(|&(mode, proxy_protocol)| ListenerSpec {
                addr,
                mode,
                proxy_protocol,
            })
            .collect();
        Self::start_specs(config, receiver, &specs, tls)
    }

    /// `receiver` with `config` on exactly these listeners (loopback only).
    pub(crate) fn start_specs<R: Receiver>(
        config: Config,
        receiver: R,
        specs: &[ListenerSpec],
        tls: Option<Arc<TlsHandle>>,
    ) -> Self {
        Self::start_custom(config, receiver, specs, |server| match tls {
            Some(tls) => server.with_tls(tls),
            None => server,
        })
    }

    /// `receiver` with `config` on exactly these listeners (loopback only), the
    /// bound server (delivering into the Maildir) passed through `customize`
    /// before it runs.
    pub(crate) fn start_custom<R: Receiver>(
        config: Config,
        receiver: R,
        specs: &[ListenerSpec],
        customize: impl FnOnce(Server<R>) -> Server<R>,
    ) -> Self {
        assert!(specs.iter().all(|s| s.addr.ip().is_loopback()), "{specs:?}");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let maildir = tempfile::tempdir().expect("tempdir");
        let settings = config.settings().expect("settings");
        let delivery = Maildir::open(maildir.path()).expect("maildir");
        let server = customize(
            runtime
                .block_on(Server::bind(specs, settings, receiver))
                .expect("bind")
                .with_delivery(delivery),
        );
        let addrs = server.local_addrs();
        assert_eq!(addrs.len(), specs.len(), "{addrs:?}");
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
        let (tx, rx) = oneshot::channel::<()>();
        runtime.spawn(server.run_until(async move {
            let _ = rx.await;
        }));
        Self {
            port: addrs[0].port(),
            ports: addrs.iter().map(SocketAddr::port).collect(),
            maildir,
            shutdown: Some(tx),
            runtime: Some(runtime),
        }
    }

    /// The Maildir root.
    pub(crate) fn dir(&self) -> &Path {
        self.maildir.path()
    }

    /// Asserts `new/` holds exactly `n` files and `tmp/` none; returns them.
    pub(crate) fn expect_messages(&self, n: usize) -> Vec<Vec<u8>> {
        expect_messages(self.dir(), n)
    }

    /// Runs `future` on the server's runtime (e.g. a call on its lockout store).
    pub(crate) fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.as_ref().expect("runtime").block_on(future)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

/// The default hooks.
pub(crate) struct Plain;

impl Receiver for Plain {}

/// One SMTP reply: the code and its lines without code and separator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    /// The three-digit code.
    pub(crate) code: u16,
    /// The text of each line (after `250-` / `250 `).
    pub(crate) lines: Vec<String>,
}

impl Reply {
    /// The text of the last line.
    pub(crate) fn text(&self) -> &str {
        self.lines.last().map_or("", String::as_str)
    }

    /// Asserts the code; returns the reply.
    pub(crate) fn assert_code(self, code: u16) -> Self {
        assert_eq!(self.code, code, "unexpected reply {self:?}");
        self
    }

    /// Asserts the code and the enhanced status code; returns the reply.
    pub(crate) fn assert_enhanced(self, code: u16, enhanced: &str) -> Self {
        let reply = self.assert_code(code);
        assert!(
            reply.text().starts_with(&format!("{enhanced} ")),
            "expected {code} {enhanced}, got {reply:?}"
        );
        reply
    }
}

/// A raw SMTP client over a std TCP socket; every read times out.
pub(crate) struct Client {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    /// The greeting.
    pub(crate) greeting: Reply,
}

impl Client {
    /// Connects and reads the greeting, which must be 220.
    pub(crate) fn connect(port: u16) -> Self {
        let client = Self::connect_any(port);
        assert_eq!(client.greeting.code, 220, "greeting {:?}", client.greeting);
        client
    }

    /// Connects and reads the greeting, whatever it is.
    pub(crate) fn connect_any(port: u16) -> Self {
        let mut client = Self::open(SocketAddr::from(([127, 0, 0, 1], port)));
        client.greeting = client.reply();
        client
    }

    /// Connects without reading anything (the greeting is left as code 0).
    pub(crate) fn open(addr: SocketAddr) -> Self {
        assert!(addr.ip().is_loopback(), "{addr}");
        Self::from_stream(TcpStream::connect(addr).expect("connect"))
    }

    /// A client on a connected socket, without reading anything (the greeting is
    /// left as code 0).
    pub(crate) fn from_stream(stream: TcpStream) -> Self {
        stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .expect("timeout");
        stream
            .set_write_timeout(Some(READ_TIMEOUT))
            .expect("timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone"));
        Self {
            stream,
            reader,
            greeting: Reply {
                code: 0,
                lines: Vec::new(),
            },
        }
    }

    /// Reads the greeting after [`Client::open`] and asserts its code.
    pub(crate) fn read_greeting(&mut self, code: u16) -> &Reply {
        self.greeting = self.expect(code);
        &self.greeting
    }

    /// The socket, for a TLS handshake after STARTTLS. Asserts that nothing the
    /// server sent is left unread.
    pub(crate) fn into_stream(self) -> TcpStream {
        assert!(
            self.reader.buffer().is_empty(),
            "unread bytes from the server: {:?}",
            String::from_utf8_lossy(self.reader.buffer())
        );
        self.stream
    }

    /// Connects, reads the 220 and sends `EHLO client.test` (expects 250).
    pub(crate) fn ehlo(port: u16) -> Self {
        let mut client = Self::connect(port);
        client.send(b"EHLO client.test\r\n");
        client.expect(250);
        client
    }

    /// Writes bytes as they are.
    pub(crate) fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Sends `line` + CRLF and reads one reply, which must have `code`.
    pub(crate) fn cmd(&mut self, line: &str, code: u16) -> Reply {
        self.send(format!("{line}\r\n").as_bytes());
        self.expect(code)
    }

    /// Reads one complete reply (all its lines).
    pub(crate) fn reply(&mut self) -> Reply {
        read_reply(&mut self.reader)
    }

    /// Reads one reply, or `None` if the server closed the connection first.
    pub(crate) fn try_reply(&mut self) -> Option<Reply> {
        let buffered = self
            .reader
            .fill_buf()
            .unwrap_or_else(|e| panic!("reading a reply: {e}"));
        (!buffered.is_empty()).then(|| self.reply())
    }

    /// Reads one reply and asserts its code.
    pub(crate) fn expect(&mut self, code: u16) -> Reply {
        self.reply().assert_code(code)
    }

    /// Reads one reply and asserts its code and enhanced status code.
    pub(crate) fn expect_enhanced(&mut self, code: u16, enhanced: &str) -> Reply {
        self.reply().assert_enhanced(code, enhanced)
    }

    /// Reads `n` replies (after a pipelined send).
    pub(crate) fn replies(&mut self, n: usize) -> Vec<Reply> {
        (0..n).map(|_| self.reply()).collect()
    }

    /// Asserts the server closed the connection: the next read returns 0 bytes.
    pub(crate) fn expect_eof(&mut self) {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => assert!(
                rest.is_empty(),
                "expected EOF, got {:?}",
                String::from_utf8_lossy(&rest)
            ),
            Err(e) => panic!("expected EOF, got error {e}"),
        }
    }

    /// Asserts the server closed the connection without sending anything: EOF,
    /// or a reset (a socket closed with our unread bytes in it), never a timeout.
    pub(crate) fn expect_closed(&mut self) {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => assert!(
                rest.is_empty(),
                "expected the connection closed, got {:?}",
                String::from_utf8_lossy(&rest)
            ),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                assert!(rest.is_empty(), "got {:?}", String::from_utf8_lossy(&rest));
            }
            Err(e) => panic!("expected the connection closed, got error {e}"),
        }
    }

    /// Sends QUIT, expects 221 and then EOF.
    pub(crate) fn quit(mut self) {
        self.send(b"QUIT\r\n");
        let reply = self.expect(221);
        assert!(reply.text().starts_with("2.0.0 "), "{reply:?}");
        self.expect_eof();
    }

    /// Closes our sending side (the server reads EOF).
    pub(crate) fn shutdown_write(&self) {
        self.stream.shutdown(Shutdown::Write).expect("shutdown");
    }

    /// MAIL, RCPT and DATA (each expected positive), ready for the message.
    pub(crate) fn start_data(&mut self, from: &str, to: &str) {
        self.cmd(&format!("MAIL FROM:<{from}>"), 250);
        self.cmd(&format!("RCPT TO:<{to}>"), 250);
        self.cmd("DATA", 354);
    }
}

/// Reads one complete SMTP reply (all its lines) from `reader`, asserting CRLF
/// line ends, one code throughout and valid separators.
pub(crate) fn read_reply(reader: &mut impl BufRead) -> Reply {
    let mut lines = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = reader
            .read_until(b'\n', &mut line)
            .unwrap_or_else(|e| panic!("reading a reply after {lines:?}: {e}"));
        assert!(n > 0, "connection closed while reading a reply {lines:?}");
        let line = String::from_utf8(line).expect("reply is UTF-8");
        let line = line
            .strip_suffix("\r\n")
            .unwrap_or_else(|| panic!("reply line without CRLF: {line:?}"));
        assert!(line.len() >= 4, "short reply line {line:?}");
        let code: u16 = line[..3].parse().expect("reply code");
        let sep = line.as_bytes()[3];
        lines.push((code, line[4..].to_owned()));
        match sep {
            b' ' => break,
            b'-' => {}
            _ => panic!("bad reply separator in {line:?}"),
        }
    }
    let code = lines[0].0;
    assert!(
        lines.iter().all(|(c, _)| *c == code),
        "mixed codes {lines:?}"
    );
    Reply {
        code,
        lines: lines.into_iter().map(|(_, l)| l).collect(),
    }
}

/// Files in `<dir>/new`, sorted by name, with their contents.
pub(crate) fn messages(dir: &Path) -> Vec<Vec<u8>> {
    let mut paths = files_in(&dir.join("new"));
    paths.sort();
    paths
        .iter()
        .map(|p| std::fs::read(p).expect("read message"))
        .collect()
}

/// The entries of a directory.
pub(crate) fn files_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect()
}

/// Asserts `<dir>/new` holds exactly `n` files and `<dir>/tmp` none.
pub(crate) fn expect_messages(dir: &Path, n: usize) -> Vec<Vec<u8>> {
    let tmp = files_in(&dir.join("tmp"));
    assert!(tmp.is_empty(), "tmp/ not empty: {tmp:?}");
    let found = messages(dir);
    assert_eq!(
        found.len(),
        n,
        "files in new/: {:?}",
        found
            .iter()
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .collect::<Vec<_>>()
    );
    found
}

/// A stored message split into our trace headers and the message as received.
#[derive(Debug)]
pub(crate) struct Stored<'a> {
    /// `Return-Path: <...>` without CRLF.
    pub(crate) return_path: String,
    /// The `Received:` header, folded, without its final CRLF.
    pub(crate) received: String,
    /// Everything after our two headers: the bytes the client sent.
    pub(crate) body: &'a [u8],
}

/// Splits a Maildir file into `Return-Path:`, `Received:` and the rest, asserting
/// the two headers are there and well-formed.
pub(crate) fn split_stored(file: &[u8]) -> Stored<'_> {
    let first = find_crlf(file, 0).expect("Return-Path line");
    let return_path = String::from_utf8(file[..first].to_vec()).expect("UTF-8");
    assert!(return_path.starts_with("Return-Path: <"), "{return_path:?}");
    assert!(return_path.ends_with('>'), "{return_path:?}");
    let start = first + 2;
    assert!(
        file[start..].starts_with(b"Received: from "),
        "no Received: {:?}",
        String::from_utf8_lossy(&file[start..])
    );
    let mut end = find_crlf(file, start).expect("Received line");
    // Folded continuation lines start with a tab.
    while file.get(end + 2) == Some(&b'\t') {
        end = find_crlf(file, end + 2).expect("Received continuation");
    }
    let received = String::from_utf8(file[start..end].to_vec()).expect("UTF-8");
    Stored {
        return_path,
        received,
        body: &file[end + 2..],
    }
}

fn find_crlf(bytes: &[u8], from: usize) -> Option<usize> {
    bytes[from..]
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|p| p + from)
}

/// The `id` in our `Received:` header.
pub(crate) fn received_id(received: &str) -> String {
    let after = received
        .split(" id ")
        .nth(1)
        .unwrap_or_else(|| panic!("no id in {received:?}"));
    after
        .split(|c: char| c == ';' || c.is_whitespace())
        .next()
        .expect("id")
        .to_owned()
}

/// Whether `needle` occurs in `haystack`.
pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Runs a command to completion, killing it after `limit`.
pub(crate) fn run_bounded(command: &mut Command, limit: Duration) -> Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    finish_bounded(child, &format!("{command:?}"), limit)
}

/// Waits for `child` (stdout and stderr piped) to exit, killing it after `limit`
/// (the panic names it `what`); returns its status and output.
pub(crate) fn finish_bounded(mut child: Child, what: &str, limit: Duration) -> Output {
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stderr.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

/// Runs a Python 3 script (`python3 -c script args...`), asserting success;
/// returns its stdout.
pub(crate) fn python(script: &str, args: &[&str]) -> String {
    let output = run_bounded(
        Command::new("python3").arg("-c").arg(script).args(args),
        Duration::from_secs(20),
    );
    assert!(
        output.status.success(),
        "python3 failed ({}): stdout {} stderr {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("python output is UTF-8")
}

impl TestServer {
    /// How many files `new/` holds (no other checks).
    pub(crate) fn messages_count(&self) -> usize {
        files_in(&self.dir().join("new")).len()
    }
}

/// Stores like the default receiver and keeps a copy of every delivered mail
/// structure (clones share the list).
#[derive(Clone, Default)]
pub(crate) struct Recorder(Arc<Mutex<Vec<Mail>>>);

impl Recorder {
    /// The mails delivered so far.
    pub(crate) fn mails(&self) -> Vec<Mail> {
        self.0.lock().expect("recorder").clone()
    }

    /// Asserts exactly one mail was delivered and returns it.
    pub(crate) fn only(&self) -> Mail {
        let mails = self.mails();
        assert_eq!(mails.len(), 1, "{mails:?}");
        mails.into_iter().next().expect("one mail")
    }
}

impl Receiver for Recorder {
    async fn received(&self, cx: &mut Context<'_>) -> Result<(), DeliveryError> {
        defaults::received(cx).await?;
        self.0.lock().expect("recorder").push(cx.mail.clone());
        Ok(())
    }
}

/// The swaks on `PATH`.
pub(crate) fn swaks_path() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("swaks"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| panic!("swaks not found on PATH: install swaks (scripts/test does it)"))
}
