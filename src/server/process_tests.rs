//! Tests of `process`.
use super::*;

fn in_use(result: Result<PidFile, ProcessError>) -> u32 {
    match result {
        Err(ProcessError::PidFileInUse { pid, .. }) => pid as u32,
        other => panic!("{other:?}"),
    }
}

#[test]
fn pid_file_life() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.pid");
    let ours = format!("{}\n", std::process::id());
    let pid_file = PidFile::create(&path).unwrap();
    assert!(pid_file.path().is_absolute());
    assert_eq!(fs::read_to_string(&path).unwrap(), ours);
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temp file left"
    );
    assert_eq!(in_use(PidFile::create(&path)), std::process::id());
    drop(pid_file);
    assert!(!path.exists());
    // Released, then taken again; a file that now holds another pid stays.
    let pid_file = PidFile::create(&path).unwrap();
    fs::write(&path, "1\n").unwrap();
    drop(pid_file);
    assert_eq!(fs::read_to_string(&path).unwrap(), "1\n");
}

#[test]
fn pid_file_stale_and_live() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.pid");
    let mut done = Command::new("true").spawn().unwrap();
    let dead = done.id();
    done.wait().unwrap();
    let ours = format!("{}\n", std::process::id());
    // Our own pid, not held by us: a leftover (a container restarted as pid 1).
    let stale = [
        format!("{dead}\n"),
        "junk".into(),
        "0\n".into(),
        "-1\n".into(),
        "".into(),
    ];
    for stale in stale.into_iter().chain([ours.clone()]) {
        fs::write(&path, &stale).unwrap();
        let pid_file = PidFile::create(&path).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), ours, "{stale:?}");
        drop(pid_file);
    }
    let mut live = Command::new("sleep").arg("5").spawn().unwrap();
    fs::write(&path, format!("{}\n", live.id())).unwrap();
    let result = PidFile::create(&path);
    live.kill().unwrap();
    live.wait().unwrap();
    assert_eq!(in_use(result), live.id());
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        format!("{}\n", live.id())
    );
}

fn ids(user: Option<&str>, group: Option<&str>) -> (u32, u32, Option<String>) {
    let id = resolve_identity(user, group).unwrap().unwrap();
    (id.uid.as_raw(), id.gid.as_raw(), id.user)
}

#[test]
fn resolves_users_and_groups() {
    let root = (0, 0, Some("root".to_owned()));
    assert_eq!(ids(Some("root"), None), root);
    assert_eq!(ids(Some("0"), None), root);
    let entry = User::from_name("nobody").unwrap().unwrap();
    let (uid, gid) = (entry.uid.as_raw(), entry.gid.as_raw());
    assert_eq!(ids(Some("nobody"), None), (uid, gid, Some("nobody".into())));
    assert_eq!(
        ids(Some("nobody"), Some("0")),
        (uid, 0, Some("nobody".into()))
    );
    assert_eq!(ids(None, Some("root")), (getuid().as_raw(), 0, None));
    assert_eq!(ids(Some("4242424"), Some("4242")), (4242424, 4242, None));
    for user in ["4242424", "no-such-user-x", ""] {
        let result = resolve_identity(Some(user), None);
        assert!(
            matches!(result, Err(ProcessError::UnknownUser(_))),
            "{user}"
        );
    }
    let result = resolve_identity(None, Some("no-such-group-x"));
    assert!(matches!(result, Err(ProcessError::UnknownGroup(_))));
    assert_eq!(resolve_identity(None, None).unwrap(), None);
}

#[test]
fn warns_only_for_root_on_low_ports_without_identity() {
    let root = geteuid().is_root();
    assert_eq!(should_warn_running_as_root(None, &[2525, 25]), root);
    assert!(!should_warn_running_as_root(None, &[2525]));
    let nobody = resolve_identity(Some("nobody"), None).unwrap();
    assert!(!should_warn_running_as_root(nobody.as_ref(), &[25]));
}

/// Does its work only as the child of `drop_privileges_to_nobody`.
#[test]
fn drop_child() {
    if std::env::var_os("NET_RECEIVER_TEST_DROP_CHILD").is_none() {
        return;
    }
    drop_privileges(&resolve_identity(Some("nobody"), None).unwrap().unwrap()).unwrap();
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let keys = ["Uid:", "Gid:", "Groups:"];
    for line in status
        .lines()
        .filter(|l| keys.iter().any(|k| l.starts_with(k)))
    {
        println!("DROP-CHILD {line}");
    }
    let root = resolve_identity(Some("root"), None).unwrap().unwrap();
    let back = matches!(drop_privileges(&root), Err(ProcessError::NotRoot(_)));
    println!("DROP-CHILD Back: {}", u8::from(back));
}

#[test]
fn drop_privileges_to_nobody() {
    if !geteuid().is_root() {
        eprintln!("drop_privileges_to_nobody: skipped, not running as root");
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "server::process::tests::drop_child",
            "--exact",
            "--nocapture",
        ])
        .env("NET_RECEIVER_TEST_DROP_CHILD", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}\n{err}");
    let field = |key: &str| -> Vec<u32> {
        let mut marked = text.lines().filter_map(|l| l.split_once("DROP-CHILD "));
        let line = marked.find_map(|(_, l)| l.strip_prefix(key)?.strip_prefix(':'));
        let line = line.unwrap_or_else(|| panic!("no {key} in {text}"));
        line.split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect()
    };
    let entry = User::from_name("nobody").unwrap().unwrap();
    assert_eq!(field("Uid"), [entry.uid.as_raw(); 4]);
    assert_eq!(field("Gid"), [entry.gid.as_raw(); 4]);
    let want = nix::unistd::getgrouplist(c"nobody", entry.gid).unwrap();
    assert_eq!(field("Groups"), raw_set(&want));
    assert!(!field("Groups").contains(&0));
    assert_eq!(
        field("Back"),
        [1],
        "a dropped process cannot become root again"
    );
}

#[test]
fn status_lines_round_trip() {
    assert!(!is_daemon_child());
    assert_eq!(parse_status(""), Status::Pending);
    assert_eq!(parse_status("ready 12"), Status::Pending, "incomplete line");
    assert_eq!(
        parse_status(&status_line(&Status::Ready(12))),
        Status::Ready(12)
    );
    let failed = status_line(&Status::Failed("in use\nsecond".into()));
    assert_eq!(
        parse_status(&failed),
        Status::Failed("in use second".into())
    );
    assert!(matches!(parse_status("what\n"), Status::Failed(m) if m.contains("what")));
    assert!(matches!(parse_status("ready x\n"), Status::Failed(_)));
    // Not a daemon child: nothing to set up, nothing to report to.
    become_daemon_child().unwrap();
    notify_ready();
}

/// Daemon children, run by `daemonize_*` below; no-ops in a normal run.
#[test]
fn daemon_child_ready() {
    if is_daemon_child() {
        become_daemon_child().unwrap();
        let parent = nix::unistd::getsid(Some(nix::unistd::getppid())).unwrap();
        assert_ne!(nix::unistd::getsid(None).unwrap(), parent, "a new session");
        notify_ready();
        notify_failed("ignored: only the first report counts");
    }
}

#[test]
fn daemon_child_fails() {
    if is_daemon_child() {
        become_daemon_child().unwrap();
        notify_failed("boom\nagain");
    }
}

#[test]
fn daemon_child_silent() {
    if is_daemon_child() {
        become_daemon_child().unwrap();
    }
}

fn daemonize_test(name: &str) -> Result<DaemonParent, String> {
    let args = [format!("server::process::tests::{name}"), "--exact".into()];
    daemonize(&args.map(OsString::from), None).map_err(|e| e.to_string())
}

#[test]
fn daemonize_reports_ready_failure_and_early_exit() {
    let mut parent = daemonize_test("daemon_child_ready").unwrap();
    assert!(parent.pid() > 0);
    assert!(
        parent.child.wait().unwrap().success(),
        "the child's checks passed"
    );
    let failed = daemonize_test("daemon_child_fails").unwrap_err();
    assert_eq!(failed, "the daemon failed to start: boom again");
    let silent = daemonize_test("daemon_child_silent").unwrap_err();
    assert!(silent.contains("exited before it was ready"), "{silent}");
}

#[test]
fn wait_ready_times_out_and_kills() {
    let dir = tempfile::tempdir().unwrap();
    let status = dir.path().join("status");
    fs::write(&status, "").unwrap();
    let mut child = Command::new("sleep").arg("10").spawn().unwrap();
    let started = Instant::now();
    let result = wait_ready(&mut child, &status, Duration::from_millis(200));
    assert!(matches!(&result, Err(ProcessError::DaemonFailed(m)) if m.contains("not ready")));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(child.try_wait().unwrap().is_some(), "killed and reaped");
}
