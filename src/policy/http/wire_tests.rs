//! The hook answer's rules, one table row per rule, and the request's shape.

use super::*;
use crate::policy::Decision;
use base64::Engine as _;

fn read(stage: Stage, status: u16, body: &str) -> Result<Verdict, String> {
    verdict_from_response(stage, status, body.as_bytes(), "h", 3)
}

fn decision(verdict: Verdict) -> Decision {
    match verdict {
        Verdict::Decide(d) => *d,
        other => panic!("not a decision: {other:?}"),
    }
}

#[test]
fn actions_become_verdicts() {
    use Stage::*;
    let refuse =
        |code, e: (u8, u16, u16), text: &'static str| Action::Refuse(Reply::new(code, e, text));
    let cases: Vec<(Stage, &str, Action)> = vec![
        (
            RcptTo,
            r#"{"action":"accept","reply":{"code":251,"text":"will forward"}}"#,
            Action::Accept(Some(Reply::new(251, (2, 0, 0), "will forward"))),
        ),
        (
            MailFrom,
            r#"{"action":"reject","reply":{"code":553}}"#,
            refuse(553, (5, 7, 1), "Refused by policy"),
        ),
        (RcptTo, r#"{"action":"accept"}"#, Action::Accept(None)),
        (
            Connect,
            r#"{"action":"accept","reply":{"code":220,"text":"hi"}}"#,
            Action::Accept(Some(Reply::new(220, (2, 0, 0), "hi"))),
        ),
        (
            MailFrom,
            r#"{"action":"reject"}"#,
            refuse(550, (5, 7, 1), "Refused by policy"),
        ),
        (
            Connect,
            r#"{"action":"reject"}"#,
            refuse(554, (5, 7, 1), "Connection refused by policy"),
        ),
        (
            RcptTo,
            r#"{"action":"reject","reply":{"code":550,"enhanced":"5.1.1","text":"no such user"}}"#,
            refuse(550, (5, 1, 1), "no such user"),
        ),
        (
            RcptTo,
            r#"{"action":"tempfail"}"#,
            refuse(451, (4, 7, 1), "Try again later"),
        ),
        (
            Connect,
            r#"{"action":"tempfail"}"#,
            refuse(421, (4, 7, 0), "Try again later"),
        ),
        (
            Data,
            r#"{"action":"tempfail","reply":{"code":452,"text":"later"}}"#,
            refuse(452, (4, 7, 1), "later"),
        ),
        (
            Ehlo,
            r#"{"action":"disconnect"}"#,
            Action::Refuse(Reply::new(421, (4, 7, 0), "Closing connection by policy").and_close()),
        ),
        (
            Data,
            r#"{"action":"disconnect","reply":{"code":554,"text":"bye"}}"#,
            Action::Refuse(Reply::new(554, (5, 7, 1), "bye").and_close()),
        ),
        (Auth, r#"{"action":"discard"}"#, Action::Discard),
        (
            Data,
            r#"{"action":"quarantine","reason":"looks odd"}"#,
            Action::Quarantine("looks odd".into()),
        ),
        (
            Data,
            r#"{"action":"quarantine"}"#,
            Action::Quarantine("hook h".into()),
        ),
        (
            RcptTo,
            r#"{"action":"continue","extensions":{"grey":"pass"}}"#,
            Action::Continue,
        ),
    ];
    for (stage, body, expected) in cases {
        let got = decision(read(stage, 200, body).unwrap_or_else(|e| panic!("{body}: {e}")));
        assert_eq!(got.action, expected, "{body}");
    }
    assert_eq!(read(Data, 204, ""), Ok(Verdict::Continue));
    assert_eq!(
        read(Data, 200, r#"{"action":"continue","x":1}"#),
        Ok(Verdict::Continue)
    );
}

#[test]
fn bad_answers_are_errors() {
    use Stage::*;
    for (stage, status, body) in [
        (Data, 500, r#"{"action":"continue"}"#),
        (Data, 201, r#"{"action":"continue"}"#),
        (Data, 200, ""),
        (Data, 200, "not json"),
        (Data, 200, "[]"),
        (Data, 200, r#"{"reply":{"code":550}}"#),
        (Data, 200, r#"{"action":"maybe"}"#),
        (Data, 200, r#"{"action":"reject","reply":{"code":250}}"#),
        (Data, 200, r#"{"action":"reject","reply":{"code":450}}"#),
        (Data, 200, r#"{"action":"tempfail","reply":{"code":550}}"#),
        (Data, 200, r#"{"action":"accept","reply":{"code":550}}"#),
        (Connect, 200, r#"{"action":"accept","reply":{"code":250}}"#),
        (Auth, 200, r#"{"action":"accept","reply":{"code":250}}"#),
        (Ehlo, 200, r#"{"action":"accept","reply":{"code":251}}"#),
        (Data, 200, r#"{"action":"disconnect","reply":{"code":250}}"#),
        (Data, 200, r#"{"action":"discard","reply":{"code":999}}"#),
        (
            Data,
            200,
            r#"{"action":"reject","reply":{"code":550,"enhanced":"4.7.1"}}"#,
        ),
        (
            Data,
            200,
            r#"{"action":"reject","reply":{"code":550,"enhanced":"5.7"}}"#,
        ),
        (
            Data,
            200,
            r#"{"action":"reject","reply":{"code":550,"enhanced":"5.7.1.2"}}"#,
        ),
        (
            Data,
            200,
            r#"{"action":"reject","reply":{"code":550,"enhanced":"5.7.1000"}}"#,
        ),
        (
            Data,
            200,
            r#"{"action":"reject","reply":{"code":550,"colour":"red"}}"#,
        ),
        (
            RcptTo,
            200,
            r#"{"action":"continue","add_headers":[{"name":"X","value":"1"}]}"#,
        ),
        (
            MailFrom,
            200,
            r#"{"action":"continue","set_recipients":["a@b"]}"#,
        ),
        (
            Connect,
            200,
            r#"{"action":"continue","remove_headers":["X"]}"#,
        ),
        (
            Data,
            200,
            r#"{"action":"continue","add_headers":[{"name":"X:Y","value":"1"}]}"#,
        ),
        (
            Data,
            200,
            r#"{"action":"continue","add_headers":[{"name":"X","value":"1\r\nBcc: a"}]}"#,
        ),
        (
            Data,
            200,
            r#"{"action":"continue","add_headers":[{"name":"X"}]}"#,
        ),
        (
            Data,
            200,
            r#"{"action":"continue","remove_headers":["A B"]}"#,
        ),
        (Data, 200, r#"{"action":"continue","set_recipients":[]}"#),
        (
            Data,
            200,
            r#"{"action":"continue","set_recipients":["a@b","c@d","e@f","g@h"]}"#,
        ),
        (
            Data,
            200,
            r#"{"action":"continue","set_recipients":["not an address"]}"#,
        ),
        (
            Data,
            200,
            r#"{"action":"continue","set_recipients":["<a@b>"]}"#,
        ),
        (Data, 200, r#"{"action":"continue","extensions":[1]}"#),
    ] {
        assert!(read(stage, status, body).is_err(), "{status} {body}");
    }
    let long = format!(
        r#"{{"action":"reject","reply":{{"code":550,"text":"{}"}}}}"#,
        "x".repeat(3000)
    );
    assert!(read(Stage::Data, 200, &long).is_err());
}

#[test]
fn edits_are_read_at_data() {
    let body = r#"{"action":"accept","add_headers":[{"name":"X-Hook","value":"yes"}],
        "remove_headers":["X-Spam"],"set_recipients":["a@example.com","postmaster"],
        "extensions":{"score":1.5}}"#;
    let d = decision(read(Stage::Data, 200, body).unwrap());
    assert_eq!(d.action, Action::Accept(None));
    assert_eq!(
        d.changes.add_headers,
        [HeaderField {
            name: "X-Hook".into(),
            value: "yes".into()
        }]
    );
    assert_eq!(d.changes.remove_headers, ["X-Spam"]);
    assert_eq!(
        d.changes.set_recipients.as_deref(),
        Some(&["a@example.com".to_owned(), "postmaster".to_owned()][..])
    );
    assert_eq!(d.changes.extensions["score"], serde_json::json!(1.5));
}

#[test]
fn request_carries_the_mail_and_the_bytes() {
    let mail = Mail {
        id: "ID".into(),
        ..Mail::default()
    };
    let raw = b"Subject: \xff\r\n\r\nbody\x00\r\n";
    let body = request_body(Stage::Data, &mail, Command::None, Some(raw), 1 << 20).unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["stage"], "data");
    assert_eq!(
        v["mail"],
        serde_json::from_str::<Value>(&mail.to_json()).unwrap()
    );
    assert_eq!(v["command"], Value::Null);
    let sent = base64::engine::general_purpose::STANDARD
        .decode(v["message"]["raw_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(sent, raw);
    assert_eq!(
        (
            v["message"]["size"].as_u64(),
            v["message"]["truncated"].as_bool()
        ),
        (Some(raw.len() as u64), Some(false))
    );

    let cut = request_body(Stage::Data, &mail, Command::None, Some(raw), 4).unwrap();
    let v: Value = serde_json::from_slice(&cut).unwrap();
    assert_eq!(v["message"]["raw_base64"], "U3Viag==");
    assert_eq!(v["message"]["truncated"], true);

    let auth = Command::Auth {
        mechanism: "PLAIN",
        username: "bob",
    };
    let v: Value =
        serde_json::from_slice(&request_body(Stage::Auth, &mail, auth, None, 9).unwrap()).unwrap();
    assert_eq!(
        v["command"],
        serde_json::json!({"mechanism": "PLAIN", "username": "bob"})
    );
    assert!(v.get("message").is_none());
}

/// `docs/hook.schema.json` says what the code does: the stages, the request's
/// keys, the actions.
#[test]
fn the_json_schema_matches_the_code() {
    let schema: Value =
        serde_json::from_str(include_str!("../../../docs/hook.schema.json")).unwrap();
    let defs = &schema["$defs"];
    let stages: Vec<&str> = defs["stage"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(stages, Stage::ALL.map(Stage::as_str));

    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    let body = request_body(Stage::Data, &Mail::default(), Command::None, Some(b"x"), 9).unwrap();
    let request: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(keys(&request), keys(&defs["request"]["properties"]));
    assert_eq!(
        keys(&request["message"]),
        keys(&defs["request"]["properties"]["message"]["properties"])
    );
    for key in defs["request"]["properties"]["mail"]["required"]
        .as_array()
        .unwrap()
    {
        assert!(
            request["mail"].get(key.as_str().unwrap()).is_some(),
            "{key}"
        );
    }

    for action in defs["answer"]["properties"]["action"]["enum"]
        .as_array()
        .unwrap()
    {
        let answer = serde_json::json!({ "action": action });
        assert!(
            read(Stage::RcptTo, 200, &answer.to_string()).is_ok(),
            "{action}"
        );
    }
    let answer_keys = keys(&defs["answer"]["properties"]);
    for key in [
        "action",
        "reply",
        "reason",
        "add_headers",
        "remove_headers",
        "set_recipients",
        "extensions",
    ] {
        assert!(answer_keys.contains(&key.to_owned()), "{key}");
    }
}
