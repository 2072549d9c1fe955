//! Tests of [`RedisStore`] against a real `redis-server` that each test starts on a free
//! loopback port (and kills when done). Without the `redis-server` binary they fail:
//! install it first (`apt-get install -y redis-server`; scripts/test does it).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;

/// A `redis-server` child process, killed on drop.
pub(super) struct RedisServer {
    port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl RedisServer {
    pub(super) fn start() -> Self {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let mut server = RedisServer {
            port,
            child: None,
            dir,
        };
        server.restart();
        server
    }

    /// Starts the server (again) on its port and waits until it answers PING.
    fn restart(&mut self) {
        self.stop();
        let spawned = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                panic!("redis-server not found: install redis-server (scripts/test does it)")
            }
            Err(error) => panic!("cannot start redis-server: {error}"),
        };
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.answers_ping() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers_ping(&self) -> bool {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGSTOP (`true`) or SIGCONT (`false`) to the server.
    fn pause(&self, stop: bool) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        let signal = if stop { "-STOP" } else { "-CONT" };
        let status = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(status.success());
    }

    pub(super) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // A paused server must be resumed to die quickly and cleanly.
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
        }
        self.stop();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.local_addr().unwrap().port()
}

const TIMEOUT: Duration = Duration::from_millis(300);

fn store(server: &RedisServer) -> RedisStore {
    RedisStore::new(&server.url(), TIMEOUT).unwrap()
}

fn ip(last: u8) -> Subject {
    Subject::ip(std::net::IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)))
}

fn policy() -> Policy {
    Policy::new(3, Duration::from_secs(600))
}

/// Retries `status` until it succeeds, for at most 5 s.
async fn wait_until_answering(store: &RedisStore, subject: &Subject) -> Status {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match store.status(subject).await {
            Ok(status) => return status,
            Err(error) => {
                assert!(Instant::now() < deadline, "store still failing: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_failures_lock_other_subjects_unaffected_clear_unlocks() {
    let server = RedisServer::start();
    let store = store(&server);
    let subject = ip(1);
    super::store_tests::the_third_failure_locks(&store, &subject).await;

    assert_eq!(store.status(&ip(2)).await.unwrap(), Status::default());
    let login = Subject::login("192.0.2.1");
    assert_eq!(store.status(&login).await.unwrap(), Status::default());

    store.clear(&subject).await.unwrap();
    assert_eq!(store.status(&subject).await.unwrap(), Status::default());
    let again = store.record_failure(&subject, &policy()).await.unwrap();
    assert_eq!(
        again,
        Status {
            failures: 1,
            locked: false
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_and_window_expire_after_a_sub_second_period() {
    let server = RedisServer::start();
    let store = store(&server);
    let short = Policy::new(3, Duration::from_millis(600));

    let locked = ip(3);
    for _ in 0..3 {
        store.record_failure(&locked, &short).await.unwrap();
    }
    assert!(store.status(&locked).await.unwrap().locked);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(store.status(&locked).await.unwrap(), Status::default());

    let counting = ip(4);
    store.record_failure(&counting, &short).await.unwrap();
    store.record_failure(&counting, &short).await.unwrap();
    assert_eq!(store.status(&counting).await.unwrap().failures, 2);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(store.status(&counting).await.unwrap().failures, 0);
    let next = store.record_failure(&counting, &short).await.unwrap();
    assert_eq!(
        next,
        Status {
            failures: 1,
            locked: false
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_redis_share_failures() {
    let server = RedisServer::start();
    let one = store(&server);
    let two = store(&server);
    let subject = Subject::login("shared");
    one.record_failure(&subject, &policy()).await.unwrap();
    two.record_failure(&subject, &policy()).await.unwrap();
    assert_eq!(one.status(&subject).await.unwrap().failures, 2);
    let third = one.record_failure(&subject, &policy()).await.unwrap();
    assert!(third.locked);
    assert!(
        two.status(&subject).await.unwrap().locked,
        "seen by the other store"
    );
    two.clear(&subject).await.unwrap();
    assert!(!one.status(&subject).await.unwrap().locked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_login_names_make_safe_distinct_keys() {
    let server = RedisServer::start();
    let store = store(&server);
    let names = [
        "",
        ":",
        "a:b",
        "a b",
        "a\nb",
        "a\r\nDEL x",
        "ünïcødé",
        "ip:192.0.2.5",
        "*",
        "a\0b",
    ];
    let victim = Subject::login("a:b");
    for _ in 0..3 {
        store.record_failure(&victim, &policy()).await.unwrap();
    }
    for name in names {
        let subject = Subject::login(name);
        let status = store.status(&subject).await.unwrap();
        if subject == victim {
            assert_eq!(
                status,
                Status {
                    failures: 3,
                    locked: true
                }
            );
        } else {
            assert_eq!(status, Status::default(), "{name:?}");
            let counted = store.record_failure(&subject, &policy()).await.unwrap();
            assert_eq!(counted.failures, 1, "{name:?}");
        }
    }
    assert!(!store.status(&ip(5)).await.unwrap().locked);
    assert_eq!(
        RedisStore::failure_key(&victim),
        "net-receiver:fail:login:613a62"
    );
    assert_eq!(
        RedisStore::lock_key(&ip(5)),
        "net-receiver:lock:ip:192.0.2.5"
    );

    // The keys carry the window and the lock period as their time to live.
    let client = ::redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for key in [
        RedisStore::failure_key(&victim),
        RedisStore::lock_key(&victim),
    ] {
        let ttl: i64 = ::redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(ttl > 0 && ttl <= 600_000, "{key}: {ttl}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_fails_open_then_recovers_on_restart() {
    let mut server = RedisServer::start();
    let store = Arc::new(store(&server));
    let lockout = Lockout::new(
        Arc::clone(&store) as Arc<dyn LockoutStore>,
        Policy::new(1, Duration::from_secs(600)),
    );
    let subject = ip(6);
    assert!(lockout.record_failure(&subject).await.locked);
    assert!(lockout.is_locked(&subject).await);
    assert_eq!(lockout.store_errors(), 0);

    server.stop();
    for _ in 0..5 {
        let started = Instant::now();
        assert!(store.status(&subject).await.is_err());
        assert!(
            started.elapsed() < TIMEOUT + Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
    }
    let started = Instant::now();
    assert!(!lockout.is_locked(&subject).await, "fails open");
    assert_eq!(lockout.record_failure(&subject).await, Status::default());
    assert!(started.elapsed() < 2 * TIMEOUT + Duration::from_millis(500));
    assert!(lockout.store_errors() >= 2);

    server.restart(); // same port, empty data
    assert_eq!(
        wait_until_answering(&store, &subject).await,
        Status::default()
    );
    assert!(lockout.record_failure(&subject).await.locked);
    assert!(lockout.is_locked(&subject).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_at_start_is_no_error_and_is_used_once_up() {
    let port = free_port();
    let store = RedisStore::new(&format!("redis://127.0.0.1:{port}/"), TIMEOUT).unwrap();
    let subject = Subject::login("early");
    let started = Instant::now();
    assert!(store.record_failure(&subject, &policy()).await.is_err());
    assert!(store.status(&subject).await.is_err());
    assert!(started.elapsed() < 2 * TIMEOUT + Duration::from_millis(500));

    let dir = tempfile::tempdir().unwrap();
    let mut server = RedisServer {
        port,
        child: None,
        dir,
    };
    server.restart();
    assert_eq!(
        wait_until_answering(&store, &subject).await,
        Status::default()
    );
    assert_eq!(
        store
            .record_failure(&subject, &policy())
            .await
            .unwrap()
            .failures,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_costs_at_most_the_timeout_per_call() {
    let server = RedisServer::start();
    let store = store(&server);
    let subject = ip(7);
    store.record_failure(&subject, &policy()).await.unwrap();

    server.pause(true);
    for _ in 0..3 {
        let started = Instant::now();
        let result = store.status(&subject).await;
        assert!(result.is_err(), "{result:?}");
        assert!(
            started.elapsed() < TIMEOUT + Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
    }
    server.pause(false);
    assert_eq!(wait_until_answering(&store, &subject).await.failures, 1);
}
