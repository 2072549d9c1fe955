//! A real `redis-server` for the tests (the Redis lockout store, the library
//! example): a child process on a free loopback port, with its own data
//! directory, restartable, killed on drop.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::service::spawn_quiet;

/// A `redis-server` child process on a free loopback port, killed on drop.
pub(crate) struct RedisServer {
    port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl RedisServer {
    pub(crate) fn start() -> Self {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = Self {
            port,
            child: None,
            dir: tempfile::tempdir().unwrap(),
        };
        server.restart();
        server
    }

    /// Starts the server (again) on its port and waits until it answers PING.
    pub(crate) fn restart(&mut self) {
        self.stop();
        let child = spawn_quiet(
            Command::new("redis-server")
                .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(self.dir.path()),
            "redis-server",
        );
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.query("PING").as_deref() != Some("PONG") {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// One inline command; the reply's value (`+`/`:` lines, a bulk string), or
    /// `None` when Redis is not there or the bulk string is nil.
    pub(crate) fn query(&self, command: &str) -> Option<String> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        stream.write_all(format!("{command}\r\n").as_bytes()).ok()?;
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        match line.as_bytes().first()? {
            b'+' | b':' => Some(line[1..].to_owned()),
            b'$' if line == "$-1" => None,
            b'$' => {
                let mut value = vec![0; line[1..].parse::<usize>().ok()? + 2];
                reader.read_exact(&mut value).ok()?;
                value.truncate(value.len() - 2);
                String::from_utf8(value).ok()
            }
            _ => panic!("redis error for {command:?}: {line}"),
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
