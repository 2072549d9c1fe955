//! Every action a hook can answer, at every stage: what the client gets, what
//! is stored (inbox, quarantine or nothing), and that the hook is asked once
//! per stage reached — never twice for one event.

use net_receiver::policy::Stage;
use serde_json::json;

use super::{converse, hook_at, start};
use crate::support::common::{files_in, messages};
use crate::support::hook_server::{Answer, HookServer};

/// The success code of each stage, as an `accept` reply must carry it.
fn success_code(stage: Stage) -> u16 {
    match stage {
        Stage::Connect => 220,
        Stage::Auth => 235,
        _ => 250,
    }
}

/// Runs one conversation with a hook at every stage that answers `answer` at
/// `stage` and 204 elsewhere; returns the transcript, the stages the hook was
/// asked at, the inbox and the quarantine.
fn run(stage: Stage, answer: Answer) -> (super::Transcript, Vec<String>, usize, usize) {
    let hook = HookServer::start(move |request| {
        if request["stage"] == stage.as_str() {
            answer.clone()
        } else {
            Answer::Reply(204, Vec::new())
        }
    });
    let (server, _recorder) = start(&[hook_at(&hook.url(), &Stage::ALL)]);
    let transcript = converse(server.port, "rcpt@example.com");
    let inbox = messages(server.dir()).len();
    let folder = server.dir().join(".Quarantine/new");
    let quarantine = if folder.exists() {
        files_in(&folder).len()
    } else {
        0
    };
    (transcript, hook.stages(), inbox, quarantine)
}

fn names(stages: &[Stage]) -> Vec<String> {
    stages.iter().map(|s| s.as_str().to_owned()).collect()
}

#[test]
fn continue_accept_discard_and_quarantine_at_every_stage() {
    for stage in Stage::ALL {
        let (t, asked, inbox, quarantine) = run(stage, Answer::action("continue"));
        assert!(t.all_positive(), "continue at {stage:?}: {t:?}");
        assert_eq!(asked, names(&Stage::ALL), "once per stage");
        assert_eq!((inbox, quarantine), (1, 0), "continue at {stage:?}");

        let code = success_code(stage);
        let accept = json!({"action": "accept", "reply": {"code": code, "text": "hook says yes"}});
        let (t, asked, inbox, quarantine) = run(stage, Answer::json(&accept));
        assert!(t.all_positive(), "accept at {stage:?}: {t:?}");
        let reply = t.at(stage).expect("reached");
        assert!(
            reply.lines[0].ends_with("hook says yes"),
            "accept at {stage:?}: {reply:?}"
        );
        assert_eq!(asked, names(&Stage::ALL));
        assert_eq!((inbox, quarantine), (1, 0), "accept at {stage:?}");

        let (t, asked, inbox, quarantine) = run(stage, Answer::action("discard"));
        assert!(t.all_positive(), "discard at {stage:?}: {t:?}");
        assert_eq!(asked, names(&Stage::ALL));
        assert_eq!(
            (inbox, quarantine),
            (0, 0),
            "discard at {stage:?}: nothing stored"
        );

        let quarantined = json!({"action": "quarantine", "reason": "odd"});
        let (t, _, inbox, quarantine) = run(stage, Answer::json(&quarantined));
        assert!(t.all_positive(), "quarantine at {stage:?}: {t:?}");
        assert_eq!((inbox, quarantine), (0, 1), "quarantine at {stage:?}");
    }
}

#[test]
fn reject_tempfail_and_disconnect_at_every_stage() {
    for (i, stage) in Stage::ALL.into_iter().enumerate() {
        let reached = names(&Stage::ALL[..=i]);
        let code = if stage == Stage::Connect { 554 } else { 550 };
        let reject = json!({"action": "reject",
            "reply": {"code": code, "enhanced": "5.7.1", "text": "not you"}});
        let (t, asked, inbox, _) = run(stage, Answer::json(&reject));
        let (last_stage, reply) = t.last();
        assert_eq!(last_stage, stage, "{t:?}");
        assert_eq!(reply.code, code, "{t:?}");
        assert!(reply.text().ends_with("not you"), "{reply:?}");
        assert_eq!(asked, reached, "the hook is not asked past a refusal");
        assert_eq!(inbox, 0);

        let (t, asked, inbox, _) = run(stage, Answer::action("tempfail"));
        let (last_stage, reply) = t.last();
        assert_eq!(last_stage, stage, "{t:?}");
        if stage == Stage::Connect {
            assert_eq!(reply.code, 421, "{t:?}");
            assert!(t.closed);
        } else {
            assert_eq!((reply.code, reply.text()), (451, "4.7.1 Try again later"));
            assert!(!t.closed);
        }
        assert_eq!((asked, inbox), (reached.clone(), 0));

        let (t, asked, inbox, _) = run(stage, Answer::action("disconnect"));
        let (last_stage, reply) = t.last();
        assert_eq!((last_stage, reply.code), (stage, 421), "{t:?}");
        assert!(t.closed, "disconnect at {stage:?} closes");
        assert_eq!((asked, inbox), (reached, 0));
    }
}
