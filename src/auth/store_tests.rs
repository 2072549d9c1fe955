use super::super::password::verify_password;
use super::*;

const ARGON2ID: &str =
    "$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHR2YWx1ZQ$rIEDSL/QNXSI83dy0Da7/8jOSRQIKy7MQqaEG61Ch3k";
const ARGON2ID_PASSWORD: &str = "correct horse battery staple";

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

fn passwd(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("passwd");
    write(&path, text);
    (dir, path)
}

#[test]
fn passwd_file_lookup() {
    let text = format!(
        "# users of the test\n\
         \n\
         alice:{{PLAIN}}wonderland\n\
         \x20 # an indented comment\n\
         bob:{ARGON2ID}:1000:1000::/home/bob:/bin/sh\n\
         Carol:{{SHA512-CRYPT}}$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1::\r\n\
         dave@example.org:{{CLEAR}}pass\n\
         \t\n"
    );
    let (_dir, path) = passwd(&text);
    let file = PasswdFile::open(&path).unwrap();
    assert_eq!(file.path(), path);
    assert_eq!(file.len(), 4);
    assert!(!file.is_empty());
    assert_eq!(file.lookup("alice").as_deref(), Some("{PLAIN}wonderland"));
    assert_eq!(file.lookup("bob").as_deref(), Some(ARGON2ID));
    assert_eq!(
        file.lookup("dave@example.org").as_deref(),
        Some("{CLEAR}pass")
    );
    let carol = file.lookup("Carol").unwrap();
    assert!(carol.ends_with("35inz1"), "CRLF and empty fields dropped");
    // The secrets work with the password module.
    assert!(verify_password(
        &file.lookup("alice").unwrap(),
        "wonderland"
    ));
    assert!(verify_password(
        &file.lookup("bob").unwrap(),
        ARGON2ID_PASSWORD
    ));
    assert!(verify_password(&carol, "Hello world!"));
    // Missing users, and names are case-sensitive.
    assert_eq!(file.lookup("mallory"), None);
    assert_eq!(file.lookup("carol"), None);
    assert_eq!(file.lookup("ALICE"), None);
    assert_eq!(file.lookup(""), None);
    assert_eq!(file.lookup("# users of the test"), None);
}

#[test]
fn passwd_debug_shows_no_secret() {
    let (_dir, path) = passwd("alice:{PLAIN}wonderland\n");
    let file = PasswdFile::open(&path).unwrap();
    let shown = format!("{file:?}");
    assert!(shown.contains("users: 1"), "{shown}");
    assert!(!shown.contains("wonderland"), "{shown}");
}

#[test]
fn passwd_unknown_format_is_loaded_but_never_matches() {
    let (_dir, path) = passwd("alice:wonderland\n");
    let file = PasswdFile::open(&path).unwrap();
    let secret = file.lookup("alice").unwrap();
    assert!(!verify_password(&secret, "wonderland"));
}

#[test]
fn passwd_bad_lines_name_path_and_line() {
    let cases: &[(&str, usize, &str)] = &[
        ("alice:{PLAIN}a\n# c\n{PLAIN}topsecret\n", 3, "no ':'"),
        ("alice:{PLAIN}a\n:{PLAIN}topsecret\n", 2, "empty user"),
        ("alice:\n", 1, "empty secret"),
        ("alice::1000\n", 1, "empty secret"),
        (
            "alice:{PLAIN}a\nbob:{PLAIN}b\nalice:{PLAIN}topsecret\n",
            3,
            "first at line 1",
        ),
    ];
    for &(text, line, reason) in cases {
        let (_dir, path) = passwd(text);
        let err = PasswdFile::open(&path).unwrap_err();
        assert!(
            matches!(&err, StoreError::BadLine { line: l, .. } if *l == line),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("{}:{line}: ", path.display())),
            "{message}"
        );
        assert!(message.contains(reason), "{message}");
        assert!(!message.contains("topsecret"), "{message}");
    }
}

#[test]
fn passwd_invalid_utf8_is_a_bad_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("passwd");
    std::fs::write(&path, b"alice:{PLAIN}a\nbob:{PLAIN}\xff\xfe\n").unwrap();
    let err = PasswdFile::open(&path).unwrap_err();
    assert!(
        matches!(err, StoreError::BadLine { line: 2, .. }),
        "{err:?}"
    );
}

#[test]
fn passwd_missing_file_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope");
    let err = PasswdFile::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
    // A directory is no passwd file either.
    let err = PasswdFile::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Read { .. }), "{err:?}");
}

#[test]
fn passwd_empty_file_has_no_users() {
    let (_dir, path) = passwd("# nobody yet\n");
    let file = PasswdFile::open(&path).unwrap();
    assert!(file.is_empty());
    assert_eq!(file.lookup("alice"), None);
}

#[test]
fn passwd_reload_picks_up_changes() {
    let (_dir, path) = passwd("alice:{PLAIN}one\nbob:{PLAIN}two\n");
    let file = PasswdFile::open(&path).unwrap();
    write(
        &path,
        "alice:{PLAIN}changed\ncarol:{PLAIN}three\nerin:{PLAIN}x\n",
    );
    assert_eq!(file.reload().unwrap(), 3);
    assert_eq!(file.lookup("alice").as_deref(), Some("{PLAIN}changed"));
    assert_eq!(file.lookup("bob"), None, "removed users are gone");
    assert_eq!(file.lookup("carol").as_deref(), Some("{PLAIN}three"));
}

#[test]
fn passwd_reload_error_keeps_old_contents() {
    let (_dir, path) = passwd("alice:{PLAIN}one\n");
    let file = PasswdFile::open(&path).unwrap();
    write(&path, "alice:{PLAIN}two\nbroken line\n");
    let err = file.reload().unwrap_err();
    assert!(
        matches!(err, StoreError::BadLine { line: 2, .. }),
        "{err:?}"
    );
    assert_eq!(file.lookup("alice").as_deref(), Some("{PLAIN}one"));
    std::fs::remove_file(&path).unwrap();
    let err = file.reload().unwrap_err();
    assert!(matches!(err, StoreError::Read { .. }), "{err:?}");
    assert_eq!(file.lookup("alice").as_deref(), Some("{PLAIN}one"));
    write(&path, "alice:{PLAIN}three\n");
    assert_eq!(file.reload().unwrap(), 1);
    assert_eq!(file.lookup("alice").as_deref(), Some("{PLAIN}three"));
}

/// A database with the documented table and a few users.
fn database() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.db");
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE users (username TEXT PRIMARY KEY, password TEXT NOT NULL);
         CREATE TABLE accounts (login TEXT, domain TEXT, secret TEXT, active INTEGER);
         INSERT INTO users VALUES ('alice', '{PLAIN}wonderland');
         INSERT INTO accounts VALUES ('alice', 'example.org', '{PLAIN}other', 1);
         INSERT INTO accounts VALUES ('bob', 'example.org', NULL, 1);
         INSERT INTO accounts VALUES ('carol', 'example.org', X'DEADBEEF', 1);
         INSERT INTO accounts VALUES ('dave', 'example.org', '{PLAIN}off', 0);",
    )
    .unwrap();
    conn.execute("INSERT INTO users VALUES ('bob', ?1)", [ARGON2ID])
        .unwrap();
    (dir, path)
}

#[tokio::test]
async fn sqlite_lookup_found_and_not_found() {
    let (_dir, path) = database();
    let store = SqliteStore::open(&path, None).unwrap();
    assert_eq!(store.query(), DEFAULT_QUERY);
    assert_eq!(store.path(), path);
    assert_eq!(
        store.lookup("alice").await.unwrap().as_deref(),
        Some("{PLAIN}wonderland")
    );
    let bob = store.lookup("bob").await.unwrap().unwrap();
    assert!(verify_password(&bob, ARGON2ID_PASSWORD));
    assert_eq!(store.lookup("mallory").await.unwrap(), None);
    assert_eq!(store.lookup("Alice").await.unwrap(), None);
    assert_eq!(store.lookup("' OR 1=1 --").await.unwrap(), None);
    assert!(!format!("{store:?}").contains("wonderland"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_lookups_share_one_connection() {
    let (_dir, path) = database();
    let store = Arc::new(SqliteStore::open(&path, None).unwrap());
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let user = if i % 2 == 0 { "alice" } else { "nobody" };
                store.lookup(user).await.unwrap().is_some() == (i % 2 == 0)
            })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap());
    }
}

#[tokio::test]
async fn sqlite_sees_changes_without_reopening() {
    let (_dir, path) = database();
    let store = SqliteStore::open(&path, None).unwrap();
    assert_eq!(store.lookup("erin").await.unwrap(), None);
    let writer = Connection::open(&path).unwrap();
    writer
        .execute("INSERT INTO users VALUES ('erin', '{PLAIN}new')", [])
        .unwrap();
    assert_eq!(
        store.lookup("erin").await.unwrap().as_deref(),
        Some("{PLAIN}new")
    );
}

#[tokio::test]
async fn sqlite_custom_query() {
    let (_dir, path) = database();
    let query = "SELECT secret FROM accounts WHERE login || '@' || domain = ?1 AND active";
    let store = SqliteStore::open(&path, Some(query.to_owned())).unwrap();
    assert_eq!(store.query(), query);
    assert_eq!(
        store.lookup("alice@example.org").await.unwrap().as_deref(),
        Some("{PLAIN}other")
    );
    assert_eq!(store.lookup("alice").await.unwrap(), None);
    assert_eq!(
        store.lookup("dave@example.org").await.unwrap(),
        None,
        "inactive"
    );
    assert_eq!(
        store.lookup("bob@example.org").await.unwrap(),
        None,
        "NULL secret"
    );
    let err = store.lookup("carol@example.org").await.unwrap_err();
    assert!(matches!(err, StoreError::Lookup { .. }), "{err:?}");
    assert!(
        !err.to_string().to_lowercase().contains("deadbeef"),
        "{err}"
    );
}

#[test]
fn sqlite_bad_query_is_an_error_at_open() {
    let (_dir, path) = database();
    for query in [
        "SELECT pasword FROM users WHERE username = ?1",
        "SELECT password FROM userz WHERE username = ?1",
        "SELEKT password",
        "",
    ] {
        let err = SqliteStore::open(&path, Some(query.to_owned())).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::BadQuery { .. } | StoreError::QueryShape { .. }
            ),
            "{query}: {err:?}"
        );
        let message = err.to_string();
        assert!(message.contains(&*path.to_string_lossy()), "{message}");
        assert!(message.contains(&format!("{query:?}")), "{message}");
    }
    for query in [
        "SELECT password FROM users",
        "SELECT password FROM users WHERE username = ?1 AND password = ?2",
        "DELETE FROM users WHERE username = ?1",
    ] {
        let err = SqliteStore::open(&path, Some(query.to_owned())).unwrap_err();
        assert!(
            matches!(err, StoreError::QueryShape { .. }),
            "{query}: {err:?}"
        );
    }
}

#[tokio::test]
async fn sqlite_is_read_only() {
    let (_dir, path) = database();
    let query = "UPDATE users SET password = '{PLAIN}pwned' WHERE username = ?1 RETURNING password";
    let store = SqliteStore::open(&path, Some(query.to_owned())).unwrap();
    let err = store.lookup("alice").await.unwrap_err();
    assert!(matches!(err, StoreError::Lookup { .. }), "{err:?}");
    let plain = SqliteStore::open(&path, None).unwrap();
    assert_eq!(
        plain.lookup("alice").await.unwrap().as_deref(),
        Some("{PLAIN}wonderland")
    );
}

#[test]
fn sqlite_missing_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.db");
    let err = SqliteStore::open(&path, None).unwrap_err();
    assert!(matches!(err, StoreError::DbOpen { .. }), "{err:?}");
    assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
    assert!(!path.exists(), "a read-only open creates nothing");
}

#[test]
fn sqlite_not_a_database_is_an_error() {
    let (_dir, path) = passwd("alice:{PLAIN}wonderland\n".repeat(100).as_str());
    let err = SqliteStore::open(&path, None).unwrap_err();
    assert!(
        matches!(err, StoreError::BadQuery { .. } | StoreError::DbOpen { .. }),
        "{err:?}"
    );
}
