//! Issue 15, the scale-out of `deploy/scale-out/` brought up as its README says
//! — its own files, with free loopback ports in place of the fixed ones: a real
//! HAProxy sending PROXY v2 to three receivers, one Redis for the lockout, one
//! 3-node JetStream cluster with an R3 stream for the hand-off.
//!
//! Mail is driven through HAProxy from four client threads while a kill loop
//! runs: in each of three rounds, what the last round killed comes back (the
//! NATS node until the stream is whole again) and one receiver and one NATS
//! node chosen at random are SIGKILLed (the seed is
//! printed; `SCALE_OUT_SEED` repeats an order). A client retries what did not get a
//! 250 (a reset connection, a 451), as an MTA would. Afterwards every message
//! that got a 250 is in the stream exactly once by `Nats-Msg-Id` and complete,
//! and no `Nats-Msg-Id` is there twice. Then a client guessing passwords from
//! 127.0.0.9 (through HAProxy, so the receivers learn its address from the
//! PROXY header) is locked out of all three receivers, each asked directly.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::support::auth::{connect_from, plain};
use crate::support::common::Client;
use crate::support::nats_server::{stream_messages, wait_until_whole};
use crate::support::redis_server::RedisServer;
use crate::support::running::{Binary, command};
use crate::support::service::{service_port, spawn_quiet};

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/scale-out");
/// The fixed ports of the deploy files: HAProxy, the receivers, their metrics,
/// the NATS clients, routes and monitoring, Redis.
const FIXED_PORTS: [u16; 17] = [
    2525, 10025, 10026, 10027, 9464, 9465, 9466, 4222, 4223, 4224, 6222, 6223, 6224, 8222, 8223,
    8224, 6379,
];
const MESSAGES: usize = 120;
/// Rounds of the kill loop (each kills one receiver and one NATS node).
const KILL_ROUNDS: usize = 3;
const SENDERS: usize = 4;

/// The kill loop's choices: xorshift from `SCALE_OUT_SEED`, or from the clock
/// (printed, so a failing order can be run again).
struct Chance(u64);

impl Chance {
    fn new() -> Self {
        let seed = std::env::var("SCALE_OUT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            })
            .max(1);
        eprintln!("kill order: SCALE_OUT_SEED={seed}");
        Self(seed)
    }

    /// A number below `n`.
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// A child process killed on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The deploy file `name` with every fixed port replaced as `ports` says.
fn deploy_file(name: &str, ports: &HashMap<u16, u16>) -> String {
    let text = std::fs::read_to_string(Path::new(DEPLOY).join(name)).unwrap();
    replace_ports(&text, ports)
}

/// `text` with each whole port after `127.0.0.1:` that `ports` names replaced
/// in one pass, so a free port that begins with a fixed one (42223 after 4222)
/// is never replaced again.
fn replace_ports(text: &str, ports: &HashMap<u16, u16>) -> String {
    const HOST: &str = "127.0.0.1:";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(HOST) {
        let (before, after) = rest.split_at(at + HOST.len());
        out.push_str(before);
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        let (port, tail) = after.split_at(digits);
        match port.parse::<u16>().ok().and_then(|p| ports.get(&p)) {
            Some(free) => out.push_str(&free.to_string()),
            None => out.push_str(port),
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

#[test]
fn a_free_port_that_begins_with_a_fixed_one_is_replaced_once() {
    let ports = HashMap::from([(4222, 42223), (4223, 4224), (4224, 50000)]);
    assert_eq!(
        replace_ports(
            "a 127.0.0.1:4222,127.0.0.1:4223 127.0.0.1:42220 127.0.0.1:4224",
            &ports
        ),
        "a 127.0.0.1:42223,127.0.0.1:4224 127.0.0.1:42220 127.0.0.1:50000"
    );
}

/// Every port the deploy files name is one the test replaces, so the test never
/// binds a fixed port (nor collides with a fleet brought up by hand).
#[test]
fn every_port_of_the_deploy_files_is_replaced() {
    let mut names: Vec<String> = std::fs::read_dir(DEPLOY)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !name.ends_with(".md"))
        .collect();
    names.sort();
    assert_eq!(names.len(), 7, "{names:?}");
    for name in names {
        let text = std::fs::read_to_string(Path::new(DEPLOY).join(&name)).unwrap();
        let mut found = 0;
        for (at, _) in text.match_indices("127.0.0.1:") {
            let digits: String = text[at + 10..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            let port: u16 = digits.parse().unwrap();
            assert!(FIXED_PORTS.contains(&port), "{name}: port {port}");
            found += 1;
        }
        assert!(found > 0, "{name} names no port");
    }
}

fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One SMTP reply: code and text of the last line.
fn read_reply(reader: &mut BufReader<TcpStream>) -> Result<(u16, String), String> {
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => return Err("connection closed".into()),
            Ok(_) => {}
            Err(error) => return Err(error.to_string()),
        }
        if line.len() < 4 || line.as_bytes()[3] != b'-' {
            let code = line
                .get(..3)
                .and_then(|c| c.parse().ok())
                .ok_or(line.clone())?;
            return Ok((code, line.trim_end().to_owned()));
        }
    }
}

/// Sends one message carrying `token` to `port`; the final reply, or why there
/// was none (a killed receiver resets the connection: no panic, a retry).
fn try_send(port: u16, token: &str) -> Result<(u16, String), String> {
    let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .map_err(|e| e.to_string())?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    let greeting = read_reply(&mut reader)?;
    if greeting.0 != 220 {
        return Err(greeting.1);
    }
    let mut step = |line: &str, want: u16| -> Result<(u16, String), String> {
        writer
            .write_all(line.as_bytes())
            .map_err(|e| e.to_string())?;
        let reply = read_reply(&mut reader)?;
        if reply.0 == want {
            Ok(reply)
        } else {
            let verb = line.split_whitespace().next().unwrap_or_default();
            Err(format!("after {verb}: {}", reply.1))
        }
    };
    step("EHLO client.example\r\n", 250)?;
    step("MAIL FROM:<sender@example.org>\r\n", 250)?;
    step("RCPT TO:<rcpt@example.com>\r\n", 250)?;
    step("DATA\r\n", 354)?;
    let message =
        format!("Subject: {token}\r\n\r\n{token} first line\r\n{token} last line\r\n.\r\n");
    let last = step(&message, 250);
    let _ = step("QUIT\r\n", 221);
    match last {
        Ok(reply) => Ok(reply),
        Err(error) => match error.split_once(": ") {
            Some((_, text)) if text.starts_with("451") || text.starts_with("421") => {
                Ok((451, text.to_owned()))
            }
            _ => Err(error),
        },
    }
}

/// Attempts that got no 250 (printed: how much the faults did).
static RETRIES: AtomicUsize = AtomicUsize::new(0);

/// Sends `token` until it gets a 250 (bounded); the mail id from the reply.
fn send_until_accepted(port: u16, token: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match try_send(port, token) {
            Ok((250, text)) => {
                return text
                    .split("id=")
                    .nth(1)
                    .unwrap_or_default()
                    .trim()
                    .to_owned();
            }
            Ok((_, text)) | Err(text) => {
                RETRIES.fetch_add(1, Ordering::Relaxed);
                eprintln!("{token}: {text}; again");
            }
        }
        assert!(Instant::now() < deadline, "{token}: no 250 within 120 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Fleet {
    ports: HashMap<u16, u16>,
    dir: tempfile::TempDir,
    receivers: Vec<Option<Binary>>,
    nats: Vec<Option<Process>>,
    _haproxy: Process,
    _redis: RedisServer,
}

impl Fleet {
    fn port(&self, fixed: u16) -> u16 {
        self.ports[&fixed]
    }

    fn start_receiver(&mut self, n: usize) {
        let config = self.dir.path().join(format!("receiver-{n}.toml"));
        // For the test's guessing client only: AUTH without TLS (the deploy
        // file keeps the default: AUTH after STARTTLS), and loopback clients
        // not exempt from the lockout (every client here is on 127/8).
        let text = format!(
            "allow_plaintext_auth = true\nauth_failure_delay = 0.01\n\
             per_ip_limit_exceptions = []\n{}",
            deploy_file(&format!("receiver-{n}.toml"), &self.ports)
        );
        std::fs::write(&config, text).unwrap();
        let binary = Binary::spawn(
            command()
                .current_dir(self.dir.path())
                .arg("--config")
                .arg(&config),
            1,
        );
        self.receivers[n - 1] = Some(binary);
    }

    fn start_nats(&mut self, n: usize) {
        let config = self.dir.path().join(format!("nats-{n}.conf"));
        std::fs::write(&config, deploy_file(&format!("nats-{n}.conf"), &self.ports)).unwrap();
        let child = spawn_quiet(
            Command::new("nats-server")
                .current_dir(self.dir.path())
                .arg("-c")
                .arg(&config),
            "nats-server",
        );
        self.nats[n - 1] = Some(Process(child));
        wait_listening(self.port(4221 + n as u16), "nats-server");
    }

    fn start() -> Self {
        let redis = RedisServer::start();
        let redis_port: u16 = redis
            .url()
            .rsplit(':')
            .next()
            .and_then(|p| p.trim_end_matches('/').parse().ok())
            .unwrap();
        let mut ports: HashMap<u16, u16> =
            FIXED_PORTS.iter().map(|p| (*p, service_port())).collect();
        ports.insert(6379, redis_port);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("passwd"), "joe:{PLAIN}joe-Secret-42\n").unwrap();
        let haproxy_config = dir.path().join("haproxy.cfg");
        std::fs::write(&haproxy_config, deploy_file("haproxy.cfg", &ports)).unwrap();
        let haproxy = Process(spawn_quiet(
            Command::new("haproxy")
                .arg("-f")
                .arg(&haproxy_config)
                .arg("-db"),
            "haproxy",
        ));
        let mut fleet = Fleet {
            ports,
            dir,
            receivers: vec![None, None, None],
            nats: vec![None, None, None],
            _haproxy: haproxy,
            _redis: redis,
        };
        for n in 1..=3 {
            fleet.start_nats(n);
        }
        for n in 1..=3 {
            fleet.start_receiver(n);
        }
        wait_listening(fleet.port(2525), "haproxy");
        fleet
    }

    fn nats_url(&self) -> String {
        (4222..=4224u16)
            .map(|p| format!("nats://127.0.0.1:{}", self.port(p)))
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[test]
fn issue15_scale_out_loses_nothing_while_receivers_and_nats_nodes_die_at_random() {
    let mut fleet = Fleet::start();
    let front = fleet.port(2525);
    let next = Arc::new(AtomicUsize::new(0));
    let accepted: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let senders: Vec<_> = (0..SENDERS)
        .map(|_| {
            let (next, accepted) = (Arc::clone(&next), Arc::clone(&accepted));
            std::thread::spawn(move || {
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= MESSAGES {
                        break;
                    }
                    let token = format!("token-{n:04}");
                    let id = send_until_accepted(front, &token);
                    accepted.lock().unwrap().push((token, id));
                }
            })
        })
        .collect();
    let wait_for = |count: usize| {
        let deadline = Instant::now() + Duration::from_secs(120);
        while accepted.lock().unwrap().len() < count {
            assert!(Instant::now() < deadline, "fewer than {count} accepted");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // A kill loop: in each round, what the last round killed comes back, and
    // one receiver (SIGKILL) and one NATS node (SIGKILL) chosen at random die.
    let mut chance = Chance::new();
    let mut receiver_down = None;
    let mut nats_down = None;
    for round in 1..=KILL_ROUNDS {
        wait_for(MESSAGES * round / (KILL_ROUNDS + 1));
        if let Some(n) = receiver_down.take() {
            fleet.start_receiver(n);
        }
        let n = 1 + chance.below(3);
        if let Some(receiver) = &fleet.receivers[n - 1] {
            receiver.signal(Signal::SIGKILL);
        }
        receiver_down = Some(n);
        if let Some(n) = nats_down.take() {
            fleet.start_nats(n);
            // One node down at a time, as an R3 stream is meant to take: the
            // node back has caught up before the next dies (see
            // docs/delivery.md, "What a PubAck is worth").
            wait_until_whole(&fleet.nats_url(), "MAIL", 3);
        }
        let m = 1 + chance.below(3);
        fleet.nats[m - 1] = None; // killed
        nats_down = Some(m);
        eprintln!("round {round}: receiver {n} and NATS node {m} killed");
    }
    for sender in senders {
        sender.join().unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();
    assert_eq!(accepted.len(), MESSAGES);
    eprintln!(
        "{MESSAGES} accepted after {} attempts without a 250",
        RETRIES.load(Ordering::Relaxed)
    );

    let stored = stream_messages(&fleet.nats_url(), "MAIL");
    let mut by_id: HashMap<&str, Vec<&serde_json::Value>> = HashMap::new();
    for (id, payload) in &stored {
        by_id.entry(id.as_str()).or_default().push(payload);
    }
    for (id, copies) in &by_id {
        assert_eq!(
            copies.len(),
            1,
            "Nats-Msg-Id {id} is in the stream {} times",
            copies.len()
        );
    }
    for (token, id) in &accepted {
        let copies = by_id
            .get(id.as_str())
            .unwrap_or_else(|| panic!("{token} got 250 with id {id} but is not in the stream"));
        let text = copies[0]["data"]["text"].to_string();
        assert!(
            text.contains(&format!("{token} first line"))
                && text.contains(&format!("{token} last line")),
            "{token} ({id}) is not complete in the stream: {text}"
        );
    }

    // The guessing client, from 127.0.0.9 through HAProxy: three failures on
    // whichever receivers HAProxy picks lock it out of every receiver.
    if let Some(n) = receiver_down {
        fleet.start_receiver(n);
    }
    for _ in 0..3 {
        let mut client = connect_from(Ipv4Addr::new(127, 0, 0, 9), front);
        assert_eq!(client.greeting.code, 220, "{:?}", client.greeting);
        client.cmd("EHLO guesser.example", 250);
        client.send(format!("AUTH PLAIN {}\r\n", plain("joe", "wrong")).as_bytes());
        // 535; the failure that locks the client out is answered 450 (closed).
        let reply = client.reply();
        assert!(matches!(reply.code, 535 | 450), "{reply:?}");
    }
    for n in 1..=3u16 {
        let port = fleet.port(10024 + n);
        let mut client = Client::open(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
        client.send(b"PROXY TCP4 127.0.0.9 127.0.0.1 40000 25\r\n");
        client.read_greeting(421);
    }
    // Another client of the same fleet is still served.
    let mut client = Client::open(SocketAddr::from((Ipv4Addr::LOCALHOST, fleet.port(10025))));
    client.send(b"PROXY TCP4 127.0.0.10 127.0.0.1 40000 25\r\n");
    client.read_greeting(220);
    client.quit();
}
