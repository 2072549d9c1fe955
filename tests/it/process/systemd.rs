//! Issue 16, systemd: the real binary under `systemd-socket-activate` (the
//! sockets named smtp, smtps and submission each serve that mode), and the
//! notification protocol read from a `NOTIFY_SOCKET` the test binds: `READY=1`
//! once the port answers, `WATCHDOG=1` with `WATCHDOG_USEC` set, `STOPPING=1`
//! on SIGTERM. No systemd PID 1 is needed.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::common::{Client, READ_TIMEOUT, SERVER_NAME, expect_messages};
use crate::support::running::{BIN, Binary, PROCESS_LIMIT, listening_command};
use crate::support::service::service_port;
use crate::support::tls::{Pair, TlsClient};

/// `systemd-socket-activate`, from Debian's `systemd` package (scripts/test
/// installs it).
fn socket_activate() -> Command {
    let tool = "/usr/bin/systemd-socket-activate";
    assert!(
        Path::new(tool).exists(),
        "{tool} is missing: apt-get install systemd (scripts/test does)"
    );
    Command::new(tool)
}

#[test]
fn issue16_socket_activation_serves_each_socket_in_the_mode_of_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Maildir");
    let pair = Pair::new();
    let ports = [service_port(), service_port(), service_port()];
    let mut command = socket_activate();
    for port in ports {
        command.arg(format!("--listen=127.0.0.1:{port}"));
    }
    command
        .args(["--fdname=smtp:smtps:submission", "-E", "RUST_LOG=info", BIN])
        .args(["--server-name", SERVER_NAME, "--maildir"])
        .arg(&maildir)
        .arg("--cert")
        .arg(&pair.cert)
        .arg("--key")
        .arg(&pair.key);
    let mut binary = Binary::start(&mut command);
    // The tool's own lines: the sockets are bound and it waits for a client.
    binary.wait_for_lines("Listening on 127.0.0.1:", 3);

    // The first client starts the receiver (the tool execs it in its place).
    let mut smtp = Client::connect(ports[0]);
    let modes: Vec<(u16, String)> = binary
        .wait_for_lines("listening on ", 3)
        .iter()
        .map(|line| {
            let (addr, mode) = crate::support::running::parse_listening(line);
            (addr.port(), mode)
        })
        .collect();
    let want: Vec<(u16, String)> = ports
        .iter()
        .zip(["smtp", "smtps", "submission"])
        .map(|(port, mode)| (*port, mode.to_owned()))
        .collect();
    assert_eq!(modes, want, "{}", binary.log());

    // smtp: STARTTLS offered, mail accepted into the Maildir.
    let ehlo = smtp.cmd("EHLO client.test", 250);
    assert!(ehlo.text().contains("STARTTLS"), "{}", ehlo.text());
    smtp.start_data("a@example.com", "b@example.com");
    smtp.send(b"Subject: through fd 3\r\n\r\nhi\r\n.\r\n");
    smtp.expect(250);
    smtp.quit();

    // smtps: TLS from the first byte, then SMTP inside it.
    let mut smtps = TlsClient::implicit(ports[1], pair.client_config());
    smtps.cmd("EHLO client.test", 250);
    smtps.cmd("MAIL FROM:<a@example.com>", 250);
    smtps.cmd("RCPT TO:<b@example.com>", 250);
    smtps.cmd("DATA", 354);
    smtps.send(b"Subject: through fd 4\r\n\r\nhi\r\n.\r\n");
    smtps.expect(250);
    smtps.quit();

    // submission: MAIL needs AUTH.
    let mut submission = Client::connect(ports[2]);
    submission.cmd("EHLO client.test", 250);
    submission
        .cmd("MAIL FROM:<a@example.com>", 530)
        .assert_enhanced(530, "5.7.0");
    submission.quit();

    let stored = expect_messages(&maildir, 2);
    for subject in ["through fd 3", "through fd 4"] {
        assert!(
            stored
                .iter()
                .any(|m| String::from_utf8_lossy(m).contains(subject)),
            "no mail with {subject:?}"
        );
    }
    binary.terminate();
}

/// Reads datagrams from `socket` until one holds `line` (as a whole line), at
/// most [`PROCESS_LIMIT`]; returns every datagram read, that one last.
fn wait_for_state(socket: &UnixDatagram, line: &str, binary: &Binary) -> Vec<String> {
    let deadline = Instant::now() + PROCESS_LIMIT;
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match socket.recv(&mut buffer) {
            Ok(n) => {
                let text = String::from_utf8_lossy(&buffer[..n]).into_owned();
                let found = text.lines().any(|l| l == line);
                seen.push(text);
                if found {
                    return seen;
                }
            }
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(error) => panic!("notify socket: {error}"),
        }
        assert!(
            Instant::now() < deadline,
            "no {line} within {PROCESS_LIMIT:?}; got {seen:?}; stderr:\n{}",
            binary.log()
        );
    }
}

#[test]
fn issue16_notify_socket_gets_ready_watchdog_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let port = service_port();
    let mut command = listening_command(&dir.path().join("Maildir"));
    command
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("NOTIFY_SOCKET", &path)
        // 50 ms: a ping every 25 ms, so several arrive while the test runs.
        .env("WATCHDOG_USEC", "50000")
        .env_remove("WATCHDOG_PID");
    let mut binary = Binary::spawn(&mut command, 2);

    let ready = wait_for_state(&socket, "READY=1", &binary);
    let last = ready.last().expect("the READY datagram");
    assert!(
        last.lines()
            .any(|l| l == format!("MAINPID={}", binary.pid())),
        "{last:?}"
    );
    // Ready means listening: the port answers at once.
    Client::connect(port).cmd("NOOP", 250);

    // Two pings (the first may come with the start), none before READY=1.
    assert!(!ready.iter().any(|d| d.contains("WATCHDOG=1")), "{ready:?}");
    wait_for_state(&socket, "WATCHDOG=1", &binary);
    wait_for_state(&socket, "WATCHDOG=1", &binary);

    binary.terminate();
    // The datagram was sent before the exit; it is in the socket's queue.
    socket.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    let stopping = wait_for_state(&socket, "STOPPING=1", &binary);
    assert!(
        !stopping.iter().any(|d| d.contains("READY=1")),
        "READY=1 twice: {stopping:?}"
    );
}

/// A socket without a mode's name (systemd's default name is the unit's, and
/// the tool passes none) takes the mode of the configured listener with the
/// same address, and one the configuration does not know its port's.
#[test]
fn issue16_an_unnamed_socket_takes_the_mode_configured_for_its_address() {
    let dir = tempfile::tempdir().unwrap();
    let (configured, unknown) = (service_port(), service_port());
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!("[[listener]]\naddress = \"127.0.0.1:{configured}\"\nmode = \"submission\"\n"),
    )
    .unwrap();
    let mut command = socket_activate();
    command
        .arg(format!("--listen=127.0.0.1:{configured}"))
        .arg(format!("--listen=127.0.0.1:{unknown}"))
        .args(["-E", "RUST_LOG=info", BIN, "--config"])
        .arg(&config)
        .args(["--server-name", SERVER_NAME, "--maildir"])
        .arg(dir.path().join("Maildir"));
    let mut binary = Binary::start(&mut command);
    binary.wait_for_lines("Listening on 127.0.0.1:", 2);
    let mut client = Client::connect(configured);
    let modes: Vec<(u16, String)> = binary
        .wait_for_lines("listening on ", 2)
        .iter()
        .map(|line| {
            let (addr, mode) = crate::support::running::parse_listening(line);
            (addr.port(), mode)
        })
        .collect();
    assert_eq!(
        modes,
        [
            (configured, "submission".to_owned()),
            (unknown, "smtp".to_owned())
        ],
        "{}",
        binary.log()
    );
    client.cmd("EHLO client.test", 250);
    client.cmd("MAIL FROM:<a@example.com>", 530);
    client.quit();
    binary.terminate();
}
