//! The built-in rule (which results refuse, with which replies) and the
//! checks `Callouts::new` makes of its settings.

use super::*;

fn found(result: CalloutResult) -> Callout {
    Callout {
        result,
        code: Some(550),
        text: "5.1.1 no such user".into(),
        host: Some("mx.example[192.0.2.1]:25".into()),
        cached: false,
    }
}

fn wire(reply: &Reply) -> String {
    let mut out = Vec::new();
    reply.write_to(&mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn a_fail_refuses_with_the_role_s_code() {
    let sender = built_in_rule(&found(CalloutResult::Fail), Role::Sender, false).unwrap();
    assert_eq!(
        wire(&sender),
        "550 5.1.7 Sender address rejected: undeliverable address: host \
         mx.example[192.0.2.1]:25 said: 5.1.1 no such user\r\n"
    );
    let recipient = built_in_rule(&found(CalloutResult::Fail), Role::Recipient, false).unwrap();
    assert!(wire(&recipient).starts_with("550 5.1.1 Recipient address rejected"));
}

#[test]
fn a_tempfail_defers_only_when_configured_and_the_rest_never_refuse() {
    let temp = found(CalloutResult::Tempfail);
    assert_eq!(built_in_rule(&temp, Role::Sender, false), None);
    let deferred = built_in_rule(&temp, Role::Sender, true).unwrap();
    assert!(wire(&deferred).starts_with("450 4.1.7 "), "{deferred:?}");
    let deferred = built_in_rule(&temp, Role::Recipient, true).unwrap();
    assert!(wire(&deferred).starts_with("450 4.1.1 "), "{deferred:?}");
    for result in [
        CalloutResult::Pass,
        CalloutResult::AcceptAll,
        CalloutResult::Error,
    ] {
        for role in [Role::Sender, Role::Recipient] {
            assert_eq!(
                built_in_rule(&found(result), role, true),
                None,
                "{result:?}"
            );
        }
    }
}

#[test]
fn a_remote_text_cannot_break_our_reply() {
    let mut nasty = found(CalloutResult::Fail);
    nasty.text = format!("evil\r\n250 ok {}", "x".repeat(1000));
    let reply = built_in_rule(&nasty, Role::Sender, false).unwrap();
    let text = wire(&reply);
    assert!(text.len() < 450, "{}", text.len());
    assert!(text.starts_with("550"), "{text}");
    assert!(text.lines().all(|l| l.starts_with("550")), "{text}");
}

#[test]
fn without_dns_only_recipients_at_a_target_can_be_verified() {
    let sender = CalloutSettings {
        sender: true,
        ..CalloutSettings::default()
    };
    let error = Callouts::new(sender, None, "mx.test").unwrap_err();
    assert_eq!(error.key(), "sender_callout");
    assert!(error.to_string().contains("needs dns_servers"), "{error}");
    let recipient = CalloutSettings {
        recipient: true,
        ..CalloutSettings::default()
    };
    let error = Callouts::new(recipient.clone(), None, "mx.test").unwrap_err();
    assert!(error.to_string().contains("or callout_target"), "{error}");
    let targeted = CalloutSettings {
        target: Some("127.0.0.1:10025".parse().unwrap()),
        ..recipient
    };
    let layer = Callouts::new(targeted, None, "mx.test").unwrap();
    assert_eq!(
        layer.describe(),
        "recipients at 127.0.0.1:10025; cache in memory"
    );
}
