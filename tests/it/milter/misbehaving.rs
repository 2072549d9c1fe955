//! Milters that misbehave, written here (blocking sockets on loopback, one
//! thread per connection): one that never answers, one that dies in the middle
//! of the message, one that speaks garbage, one nobody runs. Each time the
//! configured `default_action` applies, the session goes on or ends cleanly,
//! nothing panics, and other sessions are not held.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use net_receiver::policy::milter::DefaultAction;
use net_receiver::policy::{MilterConfig, Stage};

use super::{MESSAGE, ask, milter_at, send, start};
use crate::support::common::Client;

/// What the fake milter does.
#[derive(Clone, Copy, PartialEq)]
enum Behaviour {
    /// Reads the negotiation and never answers.
    Hang,
    /// Answers continue until the first body chunk, then closes.
    DieInBody,
    /// Answers continue, then bytes that are no frame at RCPT.
    GarbageAtRcpt,
    /// Answers continue, then an unknown reply at end of message.
    UnknownReplyAtEnd,
    /// Answers continue until the body, then holds the answer until the
    /// session gives up; says on `body_seen` when the body came.
    HangInBody,
}

/// How long a fake milter connection waits for bytes before it gives up.
const IDLE: Duration = Duration::from_secs(30);

/// Serves `connections` connections on a loopback port, each in a thread.
fn fake_milter(
    behaviour: Behaviour,
    connections: usize,
    body_seen: Option<mpsc::Sender<()>>,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for _ in 0..connections {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let body_seen = body_seen.clone();
            std::thread::spawn(move || serve(stream, behaviour, body_seen.as_ref()));
        }
    });
    addr
}

fn frame(command: u8, data: &[u8]) -> Vec<u8> {
    let len = u32::try_from(data.len() + 1).expect("small frame");
    let mut out = len.to_be_bytes().to_vec();
    out.push(command);
    out.extend_from_slice(data);
    out
}

/// Reads one frame's command byte (`None`: closed or idle too long).
fn read_command(stream: &mut TcpStream) -> Option<u8> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).ok()?;
    let len = usize::try_from(u32::from_be_bytes(len)).ok()?;
    let mut data = vec![0u8; len];
    stream.read_exact(&mut data).ok()?;
    data.first().copied()
}

fn serve(mut stream: TcpStream, behaviour: Behaviour, body_seen: Option<&mpsc::Sender<()>>) {
    stream.set_read_timeout(Some(IDLE)).expect("timeout");
    // At most a few hundred frames per connection: every loop ends.
    for _ in 0..1000 {
        let Some(command) = read_command(&mut stream) else {
            return;
        };
        let answer = match (behaviour, command) {
            (Behaviour::Hang, _) => continue,
            (_, b'O') => {
                let mut data = 6u32.to_be_bytes().to_vec();
                data.extend_from_slice(&0x1FFu32.to_be_bytes());
                data.extend_from_slice(&0u32.to_be_bytes());
                frame(b'O', &data)
            }
            // Macros, abort and quit are not answered.
            (_, b'D' | b'A' | b'Q') => continue,
            (Behaviour::DieInBody, b'B') => return,
            (Behaviour::HangInBody, b'B') => {
                if let Some(seen) = body_seen {
                    let _ = seen.send(());
                }
                continue;
            }
            (Behaviour::GarbageAtRcpt, b'R') => b"HELLO, I am not a milter\r\n".to_vec(),
            (Behaviour::UnknownReplyAtEnd, b'E') => frame(b'Z', b"what"),
            _ => frame(b'c', b""),
        };
        if stream.write_all(&answer).is_err() {
            return;
        }
    }
}

fn config(addr: SocketAddr, default_action: DefaultAction) -> MilterConfig {
    MilterConfig {
        default_action,
        connect_timeout: 1.0,
        command_timeout: 1.0,
        content_timeout: 1.0,
        ..milter_at(&format!("inet:{addr}"))
    }
}

#[test]
fn a_milter_that_never_answers_is_its_default_action() {
    let hang = fake_milter(Behaviour::Hang, 3, None);
    // tempfail at connect: the greeting is 421 and the connection ends.
    let (server, _) = start(&[config(hang, DefaultAction::Tempfail)]);
    let mut client = Client::connect_any(server.port);
    assert_eq!(client.greeting.code, 421);
    client.expect_closed();
    drop(server);
    // accept: the mail goes through, the failure is recorded.
    let (server, recorder) = start(&[config(hang, DefaultAction::Accept)]);
    let code = send(
        server.port,
        "a@example.com",
        &[("b@example.com", 250)],
        MESSAGE,
    );
    assert_eq!(code, Some(250));
    let mail = recorder.only();
    assert_eq!(mail.milter.len(), 1, "{:?}", mail.milter);
    assert_eq!(mail.milter[0].action, "failed");
    assert_eq!(mail.milter[0].stage, "connect");
    assert!(
        mail.milter[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("no answer to connect and negotiation")),
        "{:?}",
        mail.milter[0]
    );
    drop(server);
    // reject, asked at data only: 550 after the message.
    let (server, _) = start(&[MilterConfig {
        stages: vec![Stage::Data],
        ..config(hang, DefaultAction::Reject)
    }]);
    let code = send(
        server.port,
        "a@example.com",
        &[("b@example.com", 250)],
        MESSAGE,
    );
    assert_eq!(code, Some(550));
}

#[test]
fn a_milter_that_dies_in_the_body_tempfails_the_rest_of_the_session() {
    let dies = fake_milter(Behaviour::DieInBody, 2, None);
    let (server, recorder) = start(&[config(dies, DefaultAction::Tempfail)]);
    let mut client = Client::ehlo(server.port);
    client.cmd("MAIL FROM:<a@example.com>", 250);
    client.cmd("RCPT TO:<b@example.com>", 250);
    client.cmd("DATA", 354);
    client.send(MESSAGE.as_bytes());
    client.send(b".\r\n");
    client.expect_enhanced(451, "4.7.1");
    // Failed for the rest of the session: tempfail at once.
    assert_eq!(ask(&mut client, "MAIL FROM:<a@example.com>").code, 451);
    client.quit();
    // A new session gets a new connection (and the same end).
    let code = send(
        server.port,
        "a@example.com",
        &[("b@example.com", 250)],
        MESSAGE,
    );
    assert_eq!(code, Some(451));
    assert!(recorder.mails().is_empty());
}

#[test]
fn garbage_and_unknown_replies_are_the_default_action() {
    let garbage = fake_milter(Behaviour::GarbageAtRcpt, 1, None);
    let (server, _) = start(&[config(garbage, DefaultAction::Reject)]);
    let mut client = Client::ehlo(server.port);
    client.cmd("MAIL FROM:<a@example.com>", 250);
    client.cmd("RCPT TO:<b@example.com>", 550);
    client.quit();
    drop(server);

    let unknown = fake_milter(Behaviour::UnknownReplyAtEnd, 1, None);
    let (server, recorder) = start(&[config(unknown, DefaultAction::Accept)]);
    let code = send(
        server.port,
        "a@example.com",
        &[("b@example.com", 250)],
        MESSAGE,
    );
    assert_eq!(code, Some(250), "accept: delivered without the milter");
    let mail = recorder.only();
    assert_eq!(mail.milter.len(), 1);
    assert_eq!(mail.milter[0].action, "failed");
    assert!(
        mail.milter[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("unexpected reply 'Z'")),
        "{:?}",
        mail.milter[0]
    );
}

#[test]
fn a_milter_nobody_runs_is_its_default_action() {
    // A port nobody listens on: bound, then closed.
    let addr = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port");
    let (server, _) = start(&[config(addr, DefaultAction::Reject)]);
    let client = Client::connect_any(server.port);
    assert_eq!(client.greeting.code, 554);
    drop(client);
    let (server, _) = start(&[MilterConfig {
        stages: vec![Stage::RcptTo],
        ..milter_at("unix:/nonexistent/milter.sock")
    }]);
    let mut client = Client::ehlo(server.port);
    client.cmd("MAIL FROM:<a@example.com>", 250);
    client.cmd("RCPT TO:<b@example.com>", 451);
    client.quit();
}

#[test]
fn a_hanging_milter_holds_only_its_own_session() {
    let (seen_tx, seen_rx) = mpsc::channel();
    let hang = fake_milter(Behaviour::HangInBody, 1, Some(seen_tx));
    let (server, recorder) = start(&[MilterConfig {
        content_timeout: 3.0,
        stages: vec![Stage::Data],
        ..config(hang, DefaultAction::Accept)
    }]);
    let port = server.port;
    let waiting =
        std::thread::spawn(move || send(port, "a@example.com", &[("b@example.com", 250)], MESSAGE));
    seen_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the milter got the body");
    // Meanwhile another session is served (no milter stage before data).
    let mut other = Client::ehlo(server.port);
    other.cmd("MAIL FROM:<c@example.com>", 250);
    other.cmd("RCPT TO:<d@example.com>", 250);
    other.cmd("RSET", 250);
    other.quit();
    assert_eq!(waiting.join().expect("session thread"), Some(250));
    assert_eq!(recorder.only().milter[0].action, "failed");
}
