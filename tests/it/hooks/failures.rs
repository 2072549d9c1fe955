//! A hook that fails — no answer in time, nothing listening, a 500, an answer
//! that is not JSON, one far over the size bound, one that breaks a rule —
//! gets the hook's `on_error`: `tempfail` (451 4.3.0, at connect 421 4.3.0) or
//! `accept` (the mail goes on). Connections to a working hook are kept alive.

use net_receiver::policy::{HookConfig, MAX_ANSWER, OnError, Stage};

use super::{MESSAGE, converse, hook_at, start};
use crate::support::common::{Client, messages};
use crate::support::hook_server::{Answer, HookServer};

/// The ways a hook can fail, each with a server that fails that way (`None`:
/// nothing listens).
fn failing_hooks() -> Vec<(&'static str, Option<HookServer>)> {
    let huge = format!(
        r#"{{"action":"continue","extensions":{{"x":"{}"}}}}"#,
        "y".repeat(MAX_ANSWER)
    );
    vec![
        ("no answer", Some(HookServer::start(|_| Answer::Never))),
        ("connection refused", None),
        (
            "status 500",
            Some(HookServer::start(|_| Answer::Reply(500, b"oops".to_vec()))),
        ),
        (
            "not JSON",
            Some(HookServer::start(|_| {
                Answer::Reply(200, b"{\"action\": cont".to_vec())
            })),
        ),
        (
            "unknown action",
            Some(HookServer::start(|_| Answer::action("maybe"))),
        ),
        (
            "huge answer",
            Some(HookServer::start(move |_| {
                Answer::Reply(200, huge.clone().into_bytes())
            })),
        ),
        (
            "reply outside its class",
            Some(HookServer::start(|_| {
                Answer::json(&serde_json::json!({"action": "reject", "reply": {"code": 250}}))
            })),
        ),
    ]
}

/// A URL where nothing listens (a port bound and released).
fn dead_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}/hook")
}

fn failing_config(server: Option<&HookServer>, stage: Stage, on_error: OnError) -> HookConfig {
    let url = server.map_or_else(dead_url, HookServer::url);
    HookConfig {
        timeout: 0.5,
        on_error,
        ..hook_at(&url, &[stage])
    }
}

#[test]
fn a_failing_hook_tempfails_by_default() {
    for (what, hook) in failing_hooks() {
        let (server, _) = start(&[failing_config(
            hook.as_ref(),
            Stage::Data,
            OnError::Tempfail,
        )]);
        let t = converse(server.port, "rcpt@example.com");
        let (stage, reply) = t.last();
        assert_eq!(stage, Stage::Data, "{what}: {t:?}");
        assert_eq!(
            (reply.code, reply.text()),
            (451, "4.3.0 Policy service unavailable, try again later"),
            "{what}"
        );
        assert!(messages(server.dir()).is_empty(), "{what}");
        if let Some(hook) = &hook {
            assert_eq!(hook.stages(), ["data"], "{what}: asked once, never again");
        }
    }
}

#[test]
fn a_failing_hook_at_connect_closes_with_421() {
    for (what, hook) in failing_hooks() {
        let (server, _) = start(&[failing_config(
            hook.as_ref(),
            Stage::Connect,
            OnError::Tempfail,
        )]);
        let mut client = Client::connect_any(server.port);
        assert_eq!(
            (client.greeting.code, client.greeting.text()),
            (421, "4.3.0 Policy service unavailable, try again later"),
            "{what}"
        );
        client.expect_closed();
    }
}

#[test]
fn on_error_accept_lets_the_mail_through() {
    for (what, hook) in failing_hooks() {
        let hooks = [
            failing_config(hook.as_ref(), Stage::Connect, OnError::Accept),
            failing_config(hook.as_ref(), Stage::Data, OnError::Accept),
        ];
        let (server, _) = start(&hooks);
        let t = converse(server.port, "rcpt@example.com");
        assert!(t.all_positive(), "{what}: {t:?}");
        assert_eq!(messages(server.dir()).len(), 1, "{what}");
    }
}

#[test]
fn connections_to_the_hook_are_kept_alive() {
    let hook = HookServer::start(|_| Answer::action("continue"));
    let (server, _) = start(&[hook_at(&hook.url(), &[Stage::RcptTo, Stage::Data])]);
    let mut client = Client::ehlo(server.port);
    for _ in 0..20 {
        client.start_data("sender@example.com", "rcpt@example.com");
        client.send(format!("{MESSAGE}.\r\n").as_bytes());
        client.expect(250);
    }
    client.quit();
    assert_eq!(hook.requests().len(), 40);
    assert_eq!(messages(server.dir()).len(), 20);
    assert!(
        hook.connections() <= 2,
        "40 calls, one after the other, took {} connections",
        hook.connections()
    );
}
