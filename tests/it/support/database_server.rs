//! Real database servers for the `password_db` tests: a private PostgreSQL
//! (`initdb` + `postgres`) or MariaDB (`mariadb-install-db` + `mariadbd`) made
//! fresh in a temporary directory, listening on a free loopback port (its socket in
//! that directory), run as the `postgres` / `mysql` user when the tests run as
//! root, restartable on the same port and data, and stopped on drop; PostgreSQL
//! optionally with TLS. Statements are run as the database's administrator through
//! `sqlx`.

use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, User};
use sqlx::mysql::MySqlConnection;
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection as _};

/// How long a server may take to start or to stop.
const SERVER_LIMIT: Duration = Duration::from_secs(60);

/// The password of PostgreSQL's administrator `postgres` (MariaDB's `root` has none
/// and is reachable from 127.0.0.1 only).
const ADMIN_PASSWORD: &str = "admin-Pw-1";

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    Postgres,
    MariaDb,
}

/// A database server child process on a free loopback port, stopped on drop.
pub(crate) struct DatabaseServer {
    flavor: Flavor,
    port: u16,
    child: Option<Child>,
    /// The system user the server runs as (when the tests run as root).
    owner: Option<User>,
    dir: tempfile::TempDir,
    /// PostgreSQL offers TLS with `server.crt` / `server.key` of its directory.
    tls: bool,
}

impl DatabaseServer {
    /// A fresh server of `flavor`: its data directory made, started, answering.
    pub(crate) fn start(flavor: Flavor) -> Self {
        Self::start_with_tls(flavor, None)
    }

    /// [`start`](Self::start), and with `tls` (certificate and key, PEM) a
    /// PostgreSQL server also offers TLS (`ssl = on`).
    pub(crate) fn start_with_tls(flavor: Flavor, tls: Option<(&str, &str)>) -> Self {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let owner = nix::unistd::geteuid().is_root().then(|| {
            let name = match flavor {
                Flavor::Postgres => "postgres",
                Flavor::MariaDb => "mysql",
            };
            User::from_name(name)
                .unwrap()
                .unwrap_or_else(|| panic!("no user {name}: install {}", package(flavor)))
        });
        let dir = tempfile::tempdir().unwrap();
        if let Some(owner) = &owner {
            nix::unistd::chown(dir.path(), Some(owner.uid), Some(owner.gid)).unwrap();
        }
        let mut server = Self {
            flavor,
            port,
            child: None,
            owner,
            dir,
            tls: false,
        };
        server.initialize();
        if let Some((certificate, key)) = tls {
            assert_eq!(
                flavor,
                Flavor::Postgres,
                "TLS is set up for PostgreSQL only"
            );
            for (name, pem) in [("server.crt", certificate), ("server.key", key)] {
                let path = server.path(name);
                std::fs::write(&path, pem).unwrap();
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
                if let Some(owner) = &server.owner {
                    nix::unistd::chown(&path, Some(owner.uid), Some(owner.gid)).unwrap();
                }
            }
            server.tls = true;
        }
        server.restart();
        server
    }

    /// Which server this is.
    pub(crate) fn flavor(&self) -> Flavor {
        self.flavor
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A command in the server's directory, output to `log`; run as the server's
    /// user if `as_owner` (else the program drops to it itself).
    fn command(&self, program: &Path, log: &str, as_owner: bool) -> Command {
        let mut command = Command::new(program);
        let log = File::create(self.path(log)).unwrap();
        command
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if let Some(owner) = self.owner.as_ref().filter(|_| as_owner) {
            command.uid(owner.uid.as_raw()).gid(owner.gid.as_raw());
        }
        command
    }

    /// Makes the data directory.
    fn initialize(&self) {
        let mut command = match self.flavor {
            Flavor::Postgres => {
                let password = self.path("admin-password");
                std::fs::write(&password, ADMIN_PASSWORD).unwrap();
                if let Some(owner) = &self.owner {
                    nix::unistd::chown(&password, Some(owner.uid), Some(owner.gid)).unwrap();
                }
                let mut command = self.command(&postgres_program("initdb"), "initdb.log", true);
                command
                    .arg("-D")
                    .arg(self.path("data"))
                    .args(["-U", "postgres", "--pwfile"])
                    .arg(&password)
                    .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
                    .args(["-E", "UTF8", "--locale=C", "--no-sync"]);
                command
            }
            Flavor::MariaDb => {
                let mut command =
                    self.command(&mariadb_program("mariadb-install-db"), "install.log", false);
                command
                    .arg("--no-defaults")
                    .arg(format!("--datadir={}", self.path("data").display()))
                    .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
                    .arg("--skip-name-resolve");
                if self.owner.is_some() {
                    // mariadb-install-db drops to that user itself.
                    command.arg("--user=mysql");
                }
                command
            }
        };
        let status = command
            .status()
            .unwrap_or_else(|error| panic!("cannot run the {:?} set-up: {error}", self.flavor));
        assert!(
            status.success(),
            "{:?} set-up failed: {status}\n{}",
            self.flavor,
            self.logs()
        );
    }

    /// Starts the server (again) on its port and data and waits until it answers.
    pub(crate) fn restart(&mut self) {
        self.stop();
        let mut command = match self.flavor {
            Flavor::Postgres => {
                let mut command = self.command(&postgres_program("postgres"), "server.log", true);
                command
                    .arg("-D")
                    .arg(self.path("data"))
                    .args(["-p", &self.port.to_string(), "-k"])
                    .arg(self.dir.path())
                    .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]);
                if self.tls {
                    command.args(["-c", "ssl=on", "-c"]);
                    command.arg(format!(
                        "ssl_cert_file={}",
                        self.path("server.crt").display()
                    ));
                    command.arg("-c");
                    command.arg(format!(
                        "ssl_key_file={}",
                        self.path("server.key").display()
                    ));
                }
                command
            }
            Flavor::MariaDb => {
                let mut command = self.command(&mariadb_program("mariadbd"), "server.log", false);
                command
                    .arg("--no-defaults")
                    .arg(format!("--datadir={}", self.path("data").display()))
                    .arg(format!("--port={}", self.port))
                    .arg("--bind-address=127.0.0.1")
                    .arg(format!("--socket={}", self.path("mysqld.sock").display()))
                    .arg(format!("--pid-file={}", self.path("mysqld.pid").display()))
                    .args(["--skip-name-resolve", "--skip-log-bin"])
                    .arg("--innodb-buffer-pool-size=16M");
                if self.owner.is_some() {
                    // mariadbd drops to that user itself.
                    command.arg("--user=mysql");
                }
                command
            }
        };
        let child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {:?}: {error}", self.flavor));
        self.child = Some(child);
        let deadline = Instant::now() + SERVER_LIMIT;
        while let Err(error) = self.try_admin(&["SELECT 1"]) {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "{:?} did not start on {} ({exited:?}): {error}\n{}",
                self.flavor,
                self.port,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server (a fast shutdown; killed if it takes too long).
    pub(crate) fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let signal = match self.flavor {
            Flavor::Postgres => Signal::SIGINT,
            Flavor::MariaDb => Signal::SIGTERM,
        };
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap());
        let _ = kill(pid, signal);
        let deadline = Instant::now() + SERVER_LIMIT;
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The URL of `database` for `user` / `password` over TCP.
    pub(crate) fn url(&self, user: &str, password: &str, database: &str) -> String {
        let scheme = match self.flavor {
            Flavor::Postgres => "postgres",
            Flavor::MariaDb => "mysql",
        };
        format!(
            "{scheme}://{user}:{password}@127.0.0.1:{}/{database}",
            self.port
        )
    }

    fn admin_url(&self) -> String {
        match self.flavor {
            Flavor::Postgres => self.url("postgres", ADMIN_PASSWORD, "postgres"),
            Flavor::MariaDb => format!("mysql://root@127.0.0.1:{}/", self.port),
        }
    }

    /// Runs `statements` one by one as the administrator.
    pub(crate) fn admin(&self, statements: &[&str]) {
        if let Err(error) = self.try_admin(statements) {
            panic!("{:?}: {error}\n{}", self.flavor, self.logs());
        }
    }

    fn try_admin(&self, statements: &[&str]) -> Result<(), sqlx::Error> {
        let mut connection = AdminConnection::open(self)?;
        let result = connection.execute(statements);
        connection.close();
        result
    }

    /// The first column of the first row of `query` (an integer), as the
    /// administrator.
    pub(crate) fn admin_count(&self, query: &str) -> i64 {
        let mut connection = AdminConnection::open(self).unwrap();
        let count = connection.count(query);
        connection.close();
        count.unwrap_or_else(|error| panic!("{query}: {error}"))
    }

    /// An administrator's connection that has run `statements` and stays open
    /// (holding what they took, a lock say) until [`AdminConnection::close`].
    pub(crate) fn hold(&self, statements: &[&str]) -> AdminConnection {
        let mut connection = AdminConnection::open(self).unwrap();
        connection.execute(statements).unwrap();
        connection
    }

    /// The server's logs so far (for failure messages).
    pub(crate) fn logs(&self) -> String {
        ["initdb.log", "install.log", "server.log"]
            .iter()
            .filter_map(|name| std::fs::read_to_string(self.path(name)).ok())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for DatabaseServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One administrator's connection, with the runtime that drives it.
pub(crate) struct AdminConnection {
    runtime: tokio::runtime::Runtime,
    connection: Connection,
}

enum Connection {
    Postgres(PgConnection),
    MariaDb(MySqlConnection),
}

impl AdminConnection {
    fn open(server: &DatabaseServer) -> Result<Self, sqlx::Error> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let url = server.admin_url();
        let connection = runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), async {
                Ok(match server.flavor {
                    Flavor::Postgres => Connection::Postgres(PgConnection::connect(&url).await?),
                    Flavor::MariaDb => Connection::MariaDb(MySqlConnection::connect(&url).await?),
                })
            })
            .await
            .unwrap_or(Err(sqlx::Error::PoolTimedOut))
        })?;
        Ok(Self {
            runtime,
            connection,
        })
    }

    fn execute(&mut self, statements: &[&str]) -> Result<(), sqlx::Error> {
        self.runtime.block_on(async {
            for statement in statements {
                let sql = sqlx::raw_sql(AssertSqlSafe(*statement));
                match &mut self.connection {
                    Connection::Postgres(c) => sql.execute(c).await.map(drop)?,
                    Connection::MariaDb(c) => sql.execute(c).await.map(drop)?,
                }
            }
            Ok(())
        })
    }

    fn count(&mut self, query: &str) -> Result<i64, sqlx::Error> {
        self.runtime.block_on(async {
            let query = AssertSqlSafe(query);
            match &mut self.connection {
                Connection::Postgres(c) => sqlx::query_scalar(query).fetch_one(c).await,
                Connection::MariaDb(c) => sqlx::query_scalar(query).fetch_one(c).await,
            }
        })
    }

    /// Closes the connection (releasing what it held).
    pub(crate) fn close(self) {
        let Self {
            runtime,
            connection,
        } = self;
        runtime.block_on(async {
            let _ = match connection {
                Connection::Postgres(c) => c.close().await,
                Connection::MariaDb(c) => c.close().await,
            };
        });
    }
}

fn package(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::Postgres => "postgresql (scripts/test does it)",
        Flavor::MariaDb => "mariadb-server (scripts/test does it)",
    }
}

/// A PostgreSQL program: from the newest `/usr/lib/postgresql/N/bin` (Debian
/// keeps them off the PATH), else the PATH.
fn postgres_program(name: &str) -> PathBuf {
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let program = entry.path().join("bin").join(name);
            program.exists().then_some((version, program))
        })
        .max();
    newest.map_or_else(|| PathBuf::from(name), |(_, program)| program)
}

/// A MariaDB program: `/usr/sbin` or `/usr/bin` (Debian), else the PATH.
fn mariadb_program(name: &str) -> PathBuf {
    ["/usr/sbin", "/usr/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|program| program.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}
