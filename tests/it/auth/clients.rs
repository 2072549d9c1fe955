//! AUTH with real clients inside TLS, against the real binary as a new user runs
//! it: a passwd file made with the project's own `net-receiver hash-password`
//! (argon2id) plus a `{PLAIN}` entry, `--passwd-file`, smtp (STARTTLS), smtps
//! (implicit TLS) and submission listeners with a certificate made in the test.
//! Python's smtplib (`login()` forced to PLAIN and to LOGIN, and PLAIN through the
//! 334 continuation), swaks (`--auth PLAIN/LOGIN` with `--tls` and `--tlsc`) and
//! lettre over rustls must all get 235 2.7.0; every delivered mail's JSON says
//! `authenticated: "<user>"` and its Received header `with ESMTPSA`; a wrong
//! password gets 535 5.7.8; the submission listener takes MAIL only after AUTH.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{Message, SmtpTransport, Transport as _};
use serde_json::Value;

use crate::support::auth::{BAD_CREDENTIALS, hash_with_binary, json_lines, plain, start_binary};
use crate::support::common::{
    Client, SERVER_NAME, expect_messages, python, run_bounded, split_stored, swaks_path,
};
use crate::support::running::Binary;
use crate::support::tls::{Pair, TlsClient};

const ALICE: (&str, &str) = ("alice", "alice-Pass-1:x");
const BOB: (&str, &str) = ("bob", "bob-Pass-2");

/// A running binary with the three listeners and a passwd file: `alice` hashed by
/// `net-receiver hash-password`, `bob` as `{PLAIN}`.
struct Setup {
    dir: tempfile::TempDir,
    pair: Pair,
    binary: Binary,
}

impl Setup {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let hash = hash_with_binary(ALICE.1);
        let passwd = dir.path().join("passwd");
        std::fs::write(
            &passwd,
            format!(
                "# made by net-receiver hash-password\n{}:{hash}\n{}:{{PLAIN}}{}\n",
                ALICE.0, BOB.0, BOB.1
            ),
        )
        .unwrap();
        let pair = Pair::new();
        let args: [&OsStr; 12] = [
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--tls-listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--submission-listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--cert".as_ref(),
            pair.cert.as_os_str(),
            "--key".as_ref(),
            pair.key.as_os_str(),
            "--passwd-file".as_ref(),
            passwd.as_os_str(),
        ];
        let toml = "auth_failure_delay = 0.05\nmax_failed_msgs_per_period = 10\n";
        let binary = start_binary(dir.path(), toml, "info", &args, 3);
        Self { dir, pair, binary }
    }

    fn port(&self, mode: &str) -> u16 {
        self.binary.port(mode)
    }

    fn maildir(&self) -> PathBuf {
        self.dir.path().join("Maildir")
    }

    /// Stops the binary and checks every delivered mail: one per `(subject,
    /// user)`, its JSON `authenticated` the user and `encrypted` true, every stored
    /// Received header `with ESMTPSA`.
    fn finish(mut self, expected: &[(&str, &str)]) {
        let stdout = self.binary.terminate();
        let mails = json_lines(&stdout);
        assert_eq!(mails.len(), expected.len(), "{stdout}");
        for (subject, user) in expected {
            let mail = find_by_subject(&mails, subject);
            assert_eq!(mail["authenticated"], *user, "{mail}");
            assert_eq!(mail["encrypted"], true, "{mail}");
            assert_eq!(mail["accepted"], true, "{mail}");
        }
        assert_all_esmtpsa(&self.maildir(), expected.len());
    }
}

fn find_by_subject<'a>(mails: &'a [Value], subject: &str) -> &'a Value {
    let header = format!("Subject: {subject}");
    mails
        .iter()
        .find(|m| m["data"]["headers"]["subject"] == header.as_str())
        .unwrap_or_else(|| panic!("no mail with {header:?} in {mails:?}"))
}

fn assert_all_esmtpsa(maildir: &Path, n: usize) {
    for file in expect_messages(maildir, n) {
        let stored = split_stored(&file);
        assert!(
            stored
                .received
                .contains(&format!("by {SERVER_NAME} (net-receiver) with ESMTPSA id ")),
            "{}",
            stored.received
        );
    }
}

/// smtplib sessions; argv: smtp, smtps and submission ports, the CA file, then
/// `case kind mechanism user password` groups. kind: `starttls`, `smtps` or
/// `submission`; mechanism: `PLAIN`, `LOGIN` (login() with only that one
/// advertised) or `PLAIN-334` (no initial response). Prints one JSON list.
const PY_AUTH: &str = r#"
import json, smtplib, ssl, sys
from email.message import EmailMessage
smtp, smtps, sub, cafile = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
ctx = ssl.create_default_context(cafile=cafile)
args = sys.argv[5:]
out = []
for i in range(0, len(args), 5):
    case, kind, mech, user, password = args[i:i + 5]
    r = {"case": case}
    if kind == "smtps":
        s = smtplib.SMTP_SSL("127.0.0.1", smtps, local_hostname="py.test", timeout=10, context=ctx)
        s.ehlo()
    else:
        s = smtplib.SMTP("127.0.0.1", sub if kind == "submission" else smtp, local_hostname="py.test", timeout=10)
        s.ehlo()
        r["auth_before_tls"] = s.has_extn("auth")
        s.starttls(context=ctx)
        s.ehlo()
    r["offered"] = s.esmtp_features.get("auth", "").strip()
    if kind == "submission":
        r["mail_before_auth"] = s.mail("a@example.com")[0]
    try:
        if mech == "PLAIN-334":
            s.user, s.password = user, password
            code, text = s.auth("PLAIN", s.auth_plain, initial_response_ok=False)
        else:
            s.esmtp_features["auth"] = mech
            code, text = s.login(user, password)
    except smtplib.SMTPAuthenticationError as e:
        code, text = e.smtp_code, e.smtp_error
    r["code"], r["text"] = code, text.decode()
    if code == 235:
        m = EmailMessage()
        m["From"], m["To"], m["Subject"] = "a@example.com", "b@example.com", case
        m.set_content("sent by smtplib after AUTH\n")
        r["refused"] = s.send_message(m)
    s.quit()
    out.append(r)
print(json.dumps(out))
"#;

#[test]
fn smtplib_login_plain_and_login_in_starttls_smtps_and_submission() {
    let setup = Setup::start();
    let (smtp, smtps, sub) = (
        setup.port("smtp").to_string(),
        setup.port("smtps").to_string(),
        setup.port("submission").to_string(),
    );
    let cases: [[&str; 5]; 7] = [
        ["py-starttls-plain", "starttls", "PLAIN", ALICE.0, ALICE.1],
        ["py-starttls-login", "starttls", "LOGIN", BOB.0, BOB.1],
        ["py-smtps-plain", "smtps", "PLAIN", BOB.0, BOB.1],
        ["py-smtps-login", "smtps", "LOGIN", ALICE.0, ALICE.1],
        [
            "py-starttls-plain-334",
            "starttls",
            "PLAIN-334",
            ALICE.0,
            ALICE.1,
        ],
        ["py-submission-login", "submission", "LOGIN", BOB.0, BOB.1],
        ["py-wrong", "starttls", "PLAIN", ALICE.0, "alice-Pass-1"],
    ];
    let cafile = setup.pair.cert.to_str().unwrap().to_owned();
    let mut args = vec![smtp.as_str(), smtps.as_str(), sub.as_str(), cafile.as_str()];
    args.extend(cases.iter().flatten().copied());
    let out: Value = serde_json::from_str(python(PY_AUTH, &args).trim()).unwrap();
    let results = out.as_array().unwrap();
    assert_eq!(results.len(), cases.len(), "{out}");
    for (case, result) in cases.iter().zip(results) {
        assert_eq!(result["case"], case[0]);
        // AUTH is offered inside TLS only.
        assert_eq!(result["offered"], "PLAIN LOGIN", "{result}");
        if case[1] != "smtps" {
            assert_eq!(result["auth_before_tls"], false, "{result}");
        }
        if case[0] == "py-wrong" {
            assert_eq!(result["code"], 535, "{result}");
            assert_eq!(result["text"], BAD_CREDENTIALS, "{result}");
            continue;
        }
        assert_eq!(result["code"], 235, "{result}");
        assert_eq!(
            result["text"], "2.7.0 Authentication successful",
            "{result}"
        );
        assert_eq!(result["refused"], serde_json::json!({}), "{result}");
        if case[1] == "submission" {
            assert_eq!(result["mail_before_auth"], 530, "{result}");
        }
    }
    let expected: Vec<(&str, &str)> = cases[..6].iter().map(|c| (c[0], c[3])).collect();
    setup.finish(&expected);
}

/// Runs swaks with `args`; returns (success, everything it printed).
fn swaks(args: &[&str]) -> (bool, String) {
    let output = run_bounded(
        Command::new(swaks_path())
            .args(["--from", "a@example.com", "--to", "b@example.com"])
            .args(["--helo", "swaks.test", "--timeout", "10"])
            .args(args),
        Duration::from_secs(20),
    );
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

#[test]
fn swaks_auth_plain_and_login_with_tls_and_tlsc() {
    let setup = Setup::start();
    let smtp = format!("127.0.0.1:{}", setup.port("smtp"));
    let smtps = format!("127.0.0.1:{}", setup.port("smtps"));
    let sub = format!("127.0.0.1:{}", setup.port("submission"));
    let cases = [
        ("swaks-tls-plain", &smtp, "--tls", "PLAIN", ALICE),
        ("swaks-tls-login", &smtp, "--tls", "LOGIN", BOB),
        ("swaks-tlsc-plain", &smtps, "--tlsc", "PLAIN", BOB),
        ("swaks-tlsc-login", &smtps, "--tlsc", "LOGIN", ALICE),
        ("swaks-submission-plain", &sub, "--tls", "PLAIN", ALICE),
    ];
    for (subject, server, tls, mechanism, (user, password)) in &cases {
        let (ok, text) = swaks(&[
            "--server",
            server,
            tls,
            "--auth",
            mechanism,
            "--auth-user",
            user,
            "--auth-password",
            password,
            "--header",
            &format!("Subject: {subject}"),
            "--body",
            "sent by swaks after AUTH",
        ]);
        assert!(ok, "swaks {subject} failed:\n{text}");
        assert!(
            text.contains("<~  235 2.7.0 Authentication successful"),
            "{text}"
        );
        assert!(text.contains("<~  250 2.0.0 OK id="), "{text}");
    }
    // A wrong password: swaks reports the 535 and fails.
    let (ok, text) = swaks(&[
        "--server",
        &smtp,
        "--tls",
        "--auth",
        "LOGIN",
        "--auth-user",
        BOB.0,
        "--auth-password",
        "bob-Pass-3",
    ]);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!("<~* 535 {BAD_CREDENTIALS}")),
        "{text}"
    );
    let expected: Vec<(&str, &str)> = cases.iter().map(|c| (c.0, c.4.0)).collect();
    setup.finish(&expected);
}

fn trusting(pem: &str) -> TlsParameters {
    TlsParameters::builder(SERVER_NAME.to_owned())
        .certificate_store(CertificateStore::None)
        .add_root_certificate(Certificate::from_pem(pem.as_bytes()).unwrap())
        .build_rustls()
        .unwrap()
}

fn lettre(
    port: u16,
    tls: Tls,
    mechanism: Mechanism,
    (user, password): (&str, &str),
) -> SmtpTransport {
    SmtpTransport::builder_dangerous("127.0.0.1")
        .port(port)
        .tls(tls)
        .credentials(Credentials::new(user.to_owned(), password.to_owned()))
        .authentication(vec![mechanism])
        .timeout(Some(Duration::from_secs(10)))
        .build()
}

fn email(subject: &str) -> Message {
    Message::builder()
        .from("Alice <alice@example.com>".parse().unwrap())
        .to("Bob <bob@example.com>".parse().unwrap())
        .subject(subject)
        .body("sent by lettre after AUTH\r\n".to_owned())
        .unwrap()
}

#[test]
fn lettre_credentials_over_rustls() {
    let setup = Setup::start();
    let params = trusting(&setup.pair.cert_pem);
    let (smtp, smtps, sub) = (
        setup.port("smtp"),
        setup.port("smtps"),
        setup.port("submission"),
    );
    let cases = [
        (
            "lettre-required-plain",
            smtp,
            Tls::Required(params.clone()),
            Mechanism::Plain,
            ALICE,
        ),
        (
            "lettre-required-login",
            smtp,
            Tls::Required(params.clone()),
            Mechanism::Login,
            BOB,
        ),
        (
            "lettre-wrapper-plain",
            smtps,
            Tls::Wrapper(params.clone()),
            Mechanism::Plain,
            BOB,
        ),
        (
            "lettre-submission-login",
            sub,
            Tls::Required(params.clone()),
            Mechanism::Login,
            ALICE,
        ),
    ];
    let expected: Vec<(&str, &str)> = cases.iter().map(|c| (c.0, c.4.0)).collect();
    for (subject, port, tls, mechanism, user) in cases {
        let response = lettre(port, tls, mechanism, user)
            .send(&email(subject))
            .unwrap_or_else(|e| panic!("{subject}: {e}"));
        assert_eq!(u16::from(response.code()), 250, "{response:?}");
    }
    // The credentials are checked: a wrong password is a permanent 535.
    let error = lettre(
        smtp,
        Tls::Required(params),
        Mechanism::Plain,
        (ALICE.0, BOB.1),
    )
    .send(&email("lettre-wrong"))
    .unwrap_err();
    assert!(error.is_permanent(), "{error}");
    assert_eq!(error.status().map(u16::from), Some(535), "{error}");
    setup.finish(&expected);
}

#[test]
fn submission_takes_mail_only_after_auth() {
    let setup = Setup::start();
    let mut client = Client::connect(setup.port("submission"));
    let ehlo = client.cmd("EHLO client.test", 250);
    assert!(
        !ehlo.lines.iter().any(|l| l.starts_with("AUTH")),
        "{ehlo:?}"
    );
    client.send(b"MAIL FROM:<a@example.com>\r\n");
    client.expect_enhanced(530, "5.7.0");
    // Not in the clear, even on submission.
    client.send(format!("AUTH PLAIN {}\r\n", plain(BOB.0, BOB.1)).as_bytes());
    client.expect_enhanced(538, "5.7.11");
    client.send(b"STARTTLS\r\n");
    client.expect(220);
    let mut tls = TlsClient::after_starttls(client, setup.pair.client_config());
    let ehlo = tls.cmd("EHLO client.test", 250);
    assert!(
        ehlo.lines.contains(&"AUTH PLAIN LOGIN".to_owned()),
        "{ehlo:?}"
    );
    tls.send(b"MAIL FROM:<a@example.com>\r\n");
    tls.expect_enhanced(530, "5.7.0");
    // A failed AUTH does not open the door either.
    tls.send(format!("AUTH PLAIN {}\r\n", plain(BOB.0, ALICE.1)).as_bytes());
    let reply = tls.expect(535);
    assert_eq!(reply.text(), BAD_CREDENTIALS);
    tls.send(b"MAIL FROM:<a@example.com>\r\n");
    tls.expect_enhanced(530, "5.7.0");
    tls.send(format!("AUTH PLAIN {}\r\n", plain(BOB.0, BOB.1)).as_bytes());
    tls.expect_enhanced(235, "2.7.0");
    tls.cmd("MAIL FROM:<a@example.com>", 250);
    tls.cmd("RCPT TO:<b@example.com>", 250);
    tls.cmd("DATA", 354);
    tls.send(b"Subject: raw-submission\r\n\r\nafter AUTH\r\n.\r\n");
    tls.expect_enhanced(250, "2.0.0");
    tls.quit();
    setup.finish(&[("raw-submission", BOB.0)]);
}
