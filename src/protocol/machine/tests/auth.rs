//! AUTH PLAIN / LOGIN exchanges of the state machine (RFC 4954, RFC 4616).

use super::*;

fn options(plaintext: bool) -> ConnectionOptions {
    ConnectionOptions {
        auth: true,
        allow_plaintext_auth: plaintext,
        require_auth: true,
        ..ConnectionOptions::default()
    }
}

/// Drives `input` whole and split at every byte, answering like the defaults
/// (password "secret" is right); returns the output text.
fn run(options: ConnectionOptions, input: &[u8]) -> String {
    let drive = |chunks: &[&[u8]]| {
        let limits = Arc::new(limits());
        let keywords = ehlo_keywords(&limits);
        let mut machine = Machine::with_options(limits, keywords, options, Instant::now());
        machine.answer(Reply::plain(220, "mx.test ESMTP"));
        let mut buffer = Vec::new();
        let mut sink = Vec::new();
        for chunk in chunks {
            buffer.extend_from_slice(chunk);
            loop {
                let progress = machine.handle_input(&buffer, Instant::now());
                buffer.drain(..progress.consumed);
                let Some(event) = progress.event else { break };
                let reply = respond(event, &mut sink);
                machine.answer(reply);
            }
        }
        let mut out = Vec::new();
        machine.poll_transmit(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    };
    let whole = drive(&[input]);
    for split in 1..input.len() {
        let (a, b) = input.split_at(split);
        assert_eq!(drive(&[a, b]), whole, "split at {split}");
    }
    whole
}

const PLAIN_OK: &[u8] = b"AUTH PLAIN AGpvZQBzZWNyZXQ=\r\n"; // \0joe\0secret
const PLAIN_BAD: &[u8] = b"AUTH PLAIN AGpvZQB3cm9uZw==\r\n"; // \0joe\0wrong

fn last_line(out: &str) -> &str {
    out.trim_end().rsplit("\r\n").next().unwrap_or_default()
}

#[test]
fn auth_is_offered_only_inside_tls_unless_allowed() {
    let out = run(options(false), b"EHLO c\r\nAUTH PLAIN AGpvZQBzZWNyZXQ=\r\n");
    assert!(!out.contains("AUTH PLAIN LOGIN"), "{out}");
    assert_eq!(
        last_line(&out),
        "538 5.7.11 Encryption required for requested authentication mechanism"
    );
    let out = run(options(true), b"EHLO c\r\n");
    assert!(
        out.contains("250-AUTH PLAIN LOGIN\r\n") || out.contains("250 AUTH PLAIN LOGIN\r\n"),
        "{out}"
    );
    let mut tls = options(false);
    tls.tls_active = true;
    assert!(run(tls, b"EHLO c\r\n").contains("AUTH PLAIN LOGIN"));
    let out = run(
        ConnectionOptions::default(),
        b"EHLO c\r\nAUTH PLAIN AGpvZQBzZWNyZXQ=\r\n",
    );
    assert_eq!(last_line(&out), "502 5.5.1 AUTH not available");
}

#[test]
fn plain_and_login_exchanges() {
    let cases: &[(&[u8], &[&str])] = &[
        (PLAIN_OK, &["235 2.7.0 Authentication successful"]),
        (PLAIN_BAD, &["535 5.7.8 Authentication credentials invalid"]),
        (
            b"AUTH plain\r\nAGpvZQBzZWNyZXQ=\r\n",
            &["334 ", "235 2.7.0 Authentication successful"],
        ),
        (
            b"AUTH PLAIN am9lAGpvZQBzZWNyZXQ=\r\n",
            &["235 2.7.0 Authentication successful"],
        ), // authzid = user
        (
            b"AUTH LOGIN\r\nam9l\r\nc2VjcmV0\r\n",
            &[
                "334 VXNlcm5hbWU6",
                "334 UGFzc3dvcmQ6",
                "235 2.7.0 Authentication successful",
            ],
        ),
        (
            b"AUTH LOGIN am9l\r\nc2VjcmV0\r\n",
            &["334 UGFzc3dvcmQ6", "235 2.7.0 Authentication successful"],
        ),
        (
            b"AUTH PLAIN\r\n*\r\n",
            &["334 ", "501 5.5.2 Authentication cancelled"],
        ),
        (
            b"AUTH LOGIN\r\n*\r\n",
            &["334 VXNlcm5hbWU6", "501 5.5.2 Authentication cancelled"],
        ),
        (b"AUTH PLAIN !!!\r\n", &["501 5.5.2 Invalid base64 data"]),
        (
            b"AUTH PLAIN am9lc2VjcmV0\r\n",
            &["501 5.5.2 Invalid PLAIN response"],
        ),
        (
            b"AUTH CRAM-MD5\r\n",
            &["504 5.5.4 Unrecognized authentication type"],
        ),
        (b"AUTH\r\n", &["501 5.5.4 AUTH needs an argument"]),
    ];
    assert_exchanges_after_ehlo(cases);
}

#[test]
fn auth_sequence_rules() {
    let out = run(options(true), b"AUTH PLAIN AGpvZQBzZWNyZXQ=\r\n");
    assert_eq!(last_line(&out), "503 5.5.1 Send EHLO first");
    let out = run(
        options(true),
        &[b"EHLO c\r\n".as_slice(), PLAIN_OK, PLAIN_OK].concat(),
    );
    assert_eq!(last_line(&out), "503 5.5.1 Already authenticated");
    let mut no_submission = options(true);
    no_submission.require_auth = false;
    let out = run(
        no_submission,
        &[b"EHLO c\r\nMAIL FROM:<a@b.c>\r\n".as_slice(), PLAIN_OK].concat(),
    );
    assert_eq!(
        last_line(&out),
        "503 5.5.1 AUTH not allowed during a mail transaction"
    );
    // Submission: MAIL only after AUTH; the AUTH= parameter of MAIL is accepted.
    let out = run(options(true), b"EHLO c\r\nMAIL FROM:<a@b.c>\r\n");
    assert_eq!(last_line(&out), "530 5.7.0 Authentication required");
    let out = run(
        options(true),
        &[
            b"EHLO c\r\n".as_slice(),
            PLAIN_OK,
            b"MAIL FROM:<a@b.c> AUTH=<>\r\n",
        ]
        .concat(),
    );
    assert_eq!(last_line(&out), "250 2.1.0 Sender OK");
    // A new EHLO after STARTTLS forgets the authentication (checked in starttls tests);
    // a failed AUTH may be retried.
    let out = run(
        options(true),
        &[b"EHLO c\r\n".as_slice(), PLAIN_BAD, PLAIN_OK].concat(),
    );
    assert_eq!(last_line(&out), "235 2.7.0 Authentication successful");
}

#[test]
fn an_over_long_response_is_refused_and_the_session_goes_on() {
    let mut input = b"EHLO c\r\nAUTH PLAIN\r\n".to_vec();
    input.extend(std::iter::repeat_n(b'A', MAX_AUTH_LINE + 10));
    input.extend_from_slice(b"\r\nNOOP\r\n");
    let limits = Arc::new(limits());
    let keywords = ehlo_keywords(&limits);
    let mut machine = Machine::with_options(limits, keywords, options(true), Instant::now());
    machine.answer(Reply::plain(220, "hi"));
    let mut rest = &input[..];
    let mut sink = Vec::new();
    loop {
        let p = machine.handle_input(rest, Instant::now());
        rest = &rest[p.consumed..];
        let Some(event) = p.event else { break };
        let reply = respond(event, &mut sink);
        machine.answer(reply);
    }
    let mut out = Vec::new();
    machine.poll_transmit(&mut out);
    let out = String::from_utf8_lossy(&out);
    assert!(
        out.ends_with("334 \r\n500 5.5.6 Line too long\r\n250 2.0.0 OK\r\n"),
        "{out}"
    );
}

#[test]
fn credentials_never_show_the_password() {
    let c = Credentials {
        mechanism: Mechanism::Plain,
        authorization: None,
        username: "joe".into(),
        password: Secret::new("hunter2".into()),
    };
    assert!(!format!("{c:?}").contains("hunter2"));
    assert_eq!(c.password.expose(), "hunter2");
}

#[test]
fn identities_with_nul_cr_or_lf_are_refused_before_any_hook() {
    // Each carries the right password: without the check they authenticate.
    let refused = "501 5.5.2 Invalid user name: NUL, CR and LF are not allowed";
    let cases: &[(&[u8], &[&str])] = &[
        // The fuzzer's find: LOGIN user name "\0jo" (then the password line
        // is no longer part of the exchange, so it is an unknown command).
        (
            b"AUTH LOGIN AGpv\r\nc2VjcmV0\r\n",
            &[refused, "500 5.5.2 Command not recognized"],
        ),
        (
            b"AUTH LOGIN\r\nam8AZQ==\r\n", // "jo\0e"
            &["334 VXNlcm5hbWU6", refused],
        ),
        (b"AUTH LOGIN am9lDQ==\r\n", &[refused]), // "joe\r"
        (b"AUTH LOGIN am8KZQ==\r\n", &[refused]), // "jo\ne"
        // PLAIN: user "jo\r\nroot", authzid "ad\nmin".
        (b"AUTH PLAIN AGpvDQpyb290AHNlY3JldA==\r\n", &[refused]),
        (b"AUTH PLAIN YWQKbWluAGpvZQBzZWNyZXQ=\r\n", &[refused]),
        (
            b"AUTH PLAIN\r\nAGpvDQpyb290AHNlY3JldA==\r\n",
            &["334 ", refused],
        ),
    ];
    assert_exchanges_after_ehlo(cases);
}

#[test]
fn base64_responses_are_decoded_strictly() {
    let invalid = "501 5.5.2 Invalid base64 data";
    let cases: &[&[u8]] = &[
        b"AGpvZQBzZWNyZXQ\r\n",    // padding missing
        b"AGpvZQBzZWNyZXQ==\r\n",  // padding too long
        b"AGpvZQBzZWNyZXR=\r\n",   // non-zero trailing bits (non-canonical)
        b"AGpvZQBz ZWNyZXQ=\r\n",  // embedded space
        b"AGpvZQBz\tZWNyZXQ=\r\n", // embedded tab
        b"AGpvZQBz\rZWNyZXQ=\r\n", // embedded CR
        b"AGpvZQBzZWNyZXQ=\x00\r\n",
        b"AGpvZQBz_WNyZXQ=\r\n", // URL-safe alphabet
    ];
    for response in cases {
        let input = [b"EHLO c\r\nAUTH PLAIN\r\n".as_slice(), response].concat();
        let out = run(options(true), &input);
        assert_eq!(
            last_line(&out),
            invalid,
            "{}",
            String::from_utf8_lossy(response)
        );
    }
    // The canonical form of the same response is accepted.
    let out = run(
        options(true),
        b"EHLO c\r\nAUTH PLAIN\r\nAGpvZQBzZWNyZXQ=\r\n",
    );
    assert_eq!(last_line(&out), "235 2.7.0 Authentication successful");
}

/// Each `(exchange, expected)`: after EHLO, the exchange's replies other than
/// 250 are exactly `expected`.
fn assert_exchanges_after_ehlo(cases: &[(&[u8], &[&str])]) {
    for (exchange, expected) in cases {
        let input = [b"EHLO c\r\n".as_slice(), exchange].concat();
        let out = run(options(true), &input);
        let tail: Vec<&str> = out
            .trim_end()
            .split("\r\n")
            .filter(|l| !l.starts_with("250"))
            .skip(1)
            .collect();
        assert_eq!(tail, *expected, "{}", String::from_utf8_lossy(exchange));
    }
}
