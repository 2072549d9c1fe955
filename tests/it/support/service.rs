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

/// A loopback TCP port for a server a test starts, free now, never handed out
/// before in this process, and below the kernel's range of ephemeral ports
/// (`/proc/sys/net/ipv4/ip_local_port_range`): a port taken with
/// `bind(…:0)` and released is in that range, where any outgoing connection
/// (a cluster node dialling its routes, another test) can take it before the
/// server binds it. Panics after 1,000 tries.
pub(crate) fn service_port() -> u16 {
    use std::collections::HashSet;
    use std::net::{Ipv4Addr, TcpListener};
    use std::sync::Mutex;
    use std::time::{SystemTime, UNIX_EPOCH};

    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let ephemeral_start: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let low = ephemeral_start.saturating_sub(12_000).max(1024);
    let span = u64::from(ephemeral_start.saturating_sub(low).max(1));
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let given = given.get_or_insert_with(HashSet::new);
    // A cheap, per-process start point so parallel test binaries spread out.
    let mut state = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |t| t.as_nanos() as u64)
        ^ u64::from(std::process::id()) << 32;
    for _ in 0..1000 {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let port = low + u16::try_from((state >> 33) % span).unwrap_or(0);
        if given.contains(&port) {
            continue;
        }
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
    panic!("no free loopback port below {ephemeral_start}");
}
