//! Starting the real servers the tests use (Redis, Dovecot, nats-server) as
//! quiet child processes: one spawn that says which package to install when the
//! program is missing.

use std::process::{Child, Command, Stdio};

/// Spawns `command` with no stdin and its output discarded; panics with the
/// Debian `package` to install when the program is not on the machine.
pub(crate) fn spawn_quiet(command: &mut Command, package: &str) -> Child {
    let program = command.get_program().to_string_lossy().into_owned();
    match command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(child) => child,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            panic!("{program} not found: install {package} (scripts/test does it)")
        }
        Err(error) => panic!("cannot start {program}: {error}"),
    }
}
