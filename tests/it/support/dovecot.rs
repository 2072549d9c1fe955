//! A real Dovecot LMTP server for the tests (Debian `dovecot-lmtpd`): a private
//! instance with its own config, base dir and Maildirs in a temp directory, an
//! LMTP listener on a free loopback port and a unix socket, users from a
//! passwd-file (`alice`, `bob`, and `full` with a 1 KiB quota checked at RCPT;
//! a grace of 10 MiB lets one message take it over, then RCPT is refused),
//! mail stored as `nobody`. Killed on drop.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::service::spawn_quiet;

pub(crate) struct Dovecot {
    pub(crate) port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

impl Dovecot {
    pub(crate) fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // Dovecot stores as `nobody`, which must reach the Maildirs.
        chmod(root, 0o755);
        for sub in ["run", "state", "mail"] {
            std::fs::create_dir(root.join(sub)).unwrap();
        }
        let status = Command::new("chown")
            .args(["nobody:nogroup"])
            .arg(root.join("mail"))
            .status()
            .unwrap();
        assert!(
            status.success(),
            "chown of the Dovecot mail directory failed"
        );
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let r = root.display();
        let config = format!(
            "base_dir = {r}/run\nstate_dir = {r}/state\nlog_path = {r}/dovecot.log\n\
             protocols = lmtp\nssl = no\nlisten = 127.0.0.1\nfirst_valid_uid = 1\n\
             auth_username_format = %Ln\n\
             mail_location = maildir:{r}/mail/%u\n\
             userdb {{\n  driver = passwd-file\n  args = {r}/users\n}}\n\
             passdb {{\n  driver = passwd-file\n  args = {r}/users\n}}\n\
             service lmtp {{\n  inet_listener lmtp {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n\
             \x20 unix_listener lmtp {{\n    path = {r}/lmtp.sock\n    mode = 0666\n  }}\n}}\n\
             mail_save_crlf = yes\nmail_plugins = quota\nlmtp_rcpt_check_quota = yes\n\
             plugin {{\n  quota = maildir:User quota\n  quota_grace = 10M\n}}\n"
        );
        std::fs::write(root.join("dovecot.conf"), config).unwrap();
        let user = |name: &str, extra: &str| {
            format!("{name}:{{PLAIN}}x:65534:65534::{r}/mail/{name}::{extra}\n")
        };
        let users = [
            user("alice", ""),
            user("bob", ""),
            user("full", "userdb_quota_rule=*:storage=1K"),
        ]
        .concat();
        std::fs::write(root.join("users"), users).unwrap();
        let child = spawn_quiet(
            Command::new("dovecot")
                .args(["-F", "-c"])
                .arg(root.join("dovecot.conf")),
            "dovecot-lmtpd",
        );
        let server = Self { port, dir, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() || !server.socket().exists()
        {
            assert!(
                Instant::now() < deadline,
                "dovecot did not listen on {port}: {}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// The LMTP unix socket.
    pub(crate) fn socket(&self) -> PathBuf {
        self.dir.path().join("lmtp.sock")
    }

    /// The messages in `user`'s INBOX (`new/`), oldest first by name.
    pub(crate) fn messages(&self, user: &str) -> Vec<Vec<u8>> {
        let new = self.dir.path().join("mail").join(user).join("new");
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&new) {
            Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
            Err(_) => Vec::new(),
        };
        files.sort();
        files.iter().map(|f| std::fs::read(f).unwrap()).collect()
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    /// SIGKILLs this instance's `lmtp` worker processes (children of its
    /// master named `lmtp`), which ends every LMTP connection they hold; the
    /// master starts new ones for the next connections. Returns how many.
    pub(crate) fn kill_lmtp_workers(&self) -> usize {
        let master = self.child.id().to_string();
        let mut killed = 0;
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // pid (comm) state ppid ...
            let Some((head, tail)) = stat.rsplit_once(") ") else {
                continue;
            };
            let comm = head.split_once(" (").map(|(_, c)| c).unwrap_or_default();
            let ppid = tail.split_whitespace().nth(1).unwrap_or_default();
            if comm == "lmtp" && ppid == master {
                let pid = entry.file_name().to_string_lossy().into_owned();
                if Command::new("kill")
                    .args(["-KILL", &pid])
                    .status()
                    .is_ok_and(|s| s.success())
                {
                    killed += 1;
                }
            }
        }
        killed
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}
