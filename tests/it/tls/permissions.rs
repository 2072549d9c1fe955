//! SIGHUP after the privilege drop: a root-only private key can no longer be
//! read by the user the receiver became. The loaded certificate stays in use,
//! the log names the file and the fix, and new TLS connections still work.

use std::os::unix::fs::PermissionsExt as _;

use crate::process::server_process::require_root;
use crate::support::running::{Binary, listening_command};
use crate::support::tls::Pair;

#[test]
fn a_root_only_key_is_kept_and_named_after_the_drop() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    Pair::new().write_to(&cert, &key);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let maildir = dir.path().join("Maildir");
    let mut binary = Binary::spawn(
        listening_command(&maildir)
            .args(["--quiet", "--user", "nobody", "--cert"])
            .arg(&cert)
            .arg("--key")
            .arg(&key),
        1,
    );
    binary.signal(nix::sys::signal::Signal::SIGHUP);
    let lines = binary.wait_for_lines("keeping the loaded TLS certificate", 1);
    assert!(
        lines[0].contains(&key.display().to_string()) && lines[0].contains("0640"),
        "{}",
        lines[0]
    );
    // STARTTLS still works with the certificate loaded at start.
    let mut client = crate::support::common::Client::ehlo(binary.port("smtp"));
    client.cmd("STARTTLS", 220);
    drop(client);
    binary.terminate();
}
