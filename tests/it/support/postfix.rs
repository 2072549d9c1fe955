//! A real, private Postfix for the tests (Debian `postfix`; as bench/postfix.sh
//! does it): its own `config_directory`, `queue_directory` and
//! `data_directory` in a temporary directory, smtpd on one loopback
//! `ADDR:PORT`, virtual mailboxes for one domain from a `texthash:` table (so
//! unknown users get 550 5.1.1 at RCPT), nothing ever delivered
//! (`virtual_transport = discard`), its log in its own file through postlogd.
//! The system's Postfix configuration, queue and port 25 are never touched.
//! Needs root (the master runs as root; the tests do here and in CI). Stopped
//! on drop.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::common::run_bounded;

/// The Postfix binary (Debian's path).
const POSTFIX: &str = "/usr/sbin/postfix";
/// How long start and stop may take.
const LIMIT: Duration = Duration::from_secs(30);

/// A running private Postfix.
pub(crate) struct Postfix {
    pub(crate) addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Postfix {
    /// Postfix on `ip:port`, the final destination of `domain`, where the
    /// local parts in `users` have mailboxes.
    pub(crate) fn start(ip: Ipv4Addr, port: u16, domain: &str, users: &[&str]) -> Self {
        assert!(
            Path::new(POSTFIX).exists(),
            "{POSTFIX} not found: install postfix (scripts/test does it)"
        );
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // The Postfix daemons (user postfix) reach their queue and data under it.
        set_mode(root, 0o755);
        for sub in ["etc", "queue", "data"] {
            std::fs::create_dir(root.join(sub)).unwrap();
        }
        let chown = run_bounded(
            Command::new("chown").arg("postfix").arg(root.join("data")),
            LIMIT,
        );
        assert!(chown.status.success(), "chown postfix: {chown:?}");
        let mailboxes: String = users
            .iter()
            .map(|user| format!("{user}@{domain} {user}/\n"))
            .collect();
        std::fs::write(root.join("etc/vmailbox"), mailboxes).unwrap();
        let root_text = root.display();
        // inet_interfaces must name an address of an interface (127.0.0.1 is
        // lo's); master.cf's explicit address is bound all the same.
        std::fs::write(
            root.join("etc/main.cf"),
            format!(
                "compatibility_level = 3.6
queue_directory = {root_text}/queue
data_directory = {root_text}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mx-pf.test.example
mydomain = test.example
myorigin = $myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
local_recipient_maps =
local_transport = error:local delivery is off
virtual_mailbox_domains = {domain}
virtual_mailbox_maps = texthash:{root_text}/etc/vmailbox
virtual_transport = discard
default_transport = discard
relay_domains =
mynetworks = 127.0.0.0/8
smtpd_peername_lookup = no
alias_maps =
alias_database =
biff = no
maillog_file_prefixes = {root_text}
maillog_file = {root_text}/maillog
"
            ),
        )
        .unwrap();
        std::fs::write(
            root.join("etc/master.cf"),
            format!(
                "{ip}:{port} inet n - n - - smtpd
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
proxymap  unix  - - n - - proxymap
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"
            ),
        )
        .unwrap();
        let postfix = Self {
            addr: SocketAddr::from((ip, port)),
            dir,
        };
        for action in ["check", "start"] {
            let (success, output) = postfix.run(action);
            assert!(success, "postfix {action}: {output}\n{}", postfix.log());
        }
        postfix.wait_listening();
        postfix
    }

    /// `postfix -c etc ACTION`, its output in a file (the master it starts
    /// keeps no pipe of ours open), bounded by [`LIMIT`].
    fn run(&self, action: &str) -> (bool, String) {
        let out_path = self.dir.path().join(format!("postfix-{action}.out"));
        let out = std::fs::File::create(&out_path).unwrap();
        let mut child = Command::new(POSTFIX)
            .arg("-c")
            .arg(self.etc())
            .arg(action)
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {POSTFIX}: {e}"));
        let deadline = Instant::now() + LIMIT;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let output = std::fs::read_to_string(&out_path).unwrap_or_default();
        (status.is_some_and(|s| s.success()), output)
    }

    fn etc(&self) -> PathBuf {
        self.dir.path().join("etc")
    }

    /// Its log so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }

    /// Connections smtpd logged so far (`connect from` lines).
    pub(crate) fn connections(&self) -> usize {
        self.log()
            .lines()
            .filter(|line| line.contains("]: connect from "))
            .count()
    }

    /// Waits (bounded) until smtpd has logged `count` connections; returns
    /// the count then (more if more came).
    pub(crate) fn wait_connections(&self, count: usize) -> usize {
        let deadline = Instant::now() + LIMIT;
        loop {
            let seen = self.connections();
            if seen >= count || Instant::now() >= deadline {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (bounded) until the listener takes connections (one probe
    /// connection, logged like any other: counted by the caller).
    fn wait_listening(&self) {
        let deadline = Instant::now() + LIMIT;
        while std::net::TcpStream::connect(self.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "postfix never listened on {}:\n{}",
                self.addr,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn master_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.dir.path().join("queue/pid/master.pid"))
            .ok()
            .and_then(|text| text.trim().parse().ok())
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let master = self.master_pid();
        let _ = self.run("stop");
        let Some(pid) = master else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(pid);
        let deadline = Instant::now() + LIMIT;
        while nix::sys::signal::kill(pid, None).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}
