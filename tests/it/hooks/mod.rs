//! HTTP stage hooks against real HTTP servers on loopback: a hyper server in
//! the test (`support/hook_server.rs`) answering every action at every stage,
//! failing in every way (timeout, refused connection, 500, malformed and huge
//! answers), holding 100 of 200 concurrent sessions; header edits checked with
//! a DKIM signature; and the Python example hook run as a process against the
//! binary.

mod actions;
mod concurrency;
mod edits;
mod examples;
mod failures;
mod https;
mod requests;

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use net_receiver::auth::Password;
use net_receiver::policy::{HookConfig, HttpHook, LayerExtensions, Stage};
use net_receiver::{Config, Context, DeliveryError, Mail, Receiver};
use serde_json::{Map, Value};

use crate::support::common::{Client, Recorder, Reply, TestServer, config};

/// The user the test receiver knows, and its password.
pub(super) const USER: (&str, &str) = ("joe", "joe-Secret-42");

/// Records each delivered mail (see [`Recorder`]) and the [`LayerExtensions`]
/// its `received` hook saw, and knows [`USER`].
#[derive(Clone, Default)]
pub(super) struct HookedReceiver {
    recorder: Recorder,
    layer_extensions: Arc<Mutex<Vec<Map<String, Value>>>>,
}

impl HookedReceiver {
    /// Asserts exactly one mail was delivered and returns it.
    pub(super) fn only(&self) -> Mail {
        self.recorder.only()
    }

    /// What `cx.extensions` held for each delivered mail.
    pub(super) fn layer_extensions(&self) -> Vec<Map<String, Value>> {
        self.layer_extensions.lock().expect("extensions").clone()
    }
}

impl Receiver for HookedReceiver {
    async fn password(
        &self,
        _cx: &mut Context<'_>,
        username: &str,
    ) -> Result<Option<Password>, net_receiver::auth::AuthUnavailable> {
        Ok((username == USER.0).then(|| Password::Plain(USER.1.to_owned())))
    }

    async fn received(&self, cx: &mut Context<'_>) -> Result<(), DeliveryError> {
        let seen = cx.extensions.get::<LayerExtensions>().map(|e| e.0.clone());
        self.layer_extensions
            .lock()
            .expect("extensions")
            .push(seen.unwrap_or_default());
        self.recorder.received(cx).await
    }
}

/// A hook at `url` called at `stages`, the other keys at their defaults.
pub(super) fn hook_at(url: &str, stages: &[Stage]) -> HookConfig {
    HookConfig {
        stages: stages.to_vec(),
        ..HookConfig::with_url(url)
    }
}

/// The test configuration with AUTH offered in the clear.
pub(super) fn server_config() -> Config {
    Config {
        auth: Some(true),
        allow_plaintext_auth: true,
        auth_failure_delay: 0.05,
        ..config()
    }
}

/// An in-process server with these hooks (in order) and a recording receiver.
pub(super) fn start(hooks: &[HookConfig]) -> (TestServer, HookedReceiver) {
    start_with(server_config(), hooks)
}

/// [`start`] with another configuration.
pub(super) fn start_with(config: Config, hooks: &[HookConfig]) -> (TestServer, HookedReceiver) {
    let receiver = HookedReceiver::default();
    let recorder = receiver.clone();
    let spec = "127.0.0.1:0"
        .parse::<std::net::SocketAddr>()
        .expect("addr")
        .into();
    let layers: Vec<HttpHook> = hooks
        .iter()
        .map(|h| HttpHook::new(h).expect("hook config"))
        .collect();
    let server = TestServer::start_custom(config, receiver, &[spec], |mut server| {
        for layer in layers {
            server = server.with_policy(Arc::new(layer));
        }
        server
    });
    (server, recorder)
}

/// The message every conversation sends.
pub(super) const MESSAGE: &str = "From: <sender@example.com>\r\nTo: <rcpt@example.com>\r\n\
    Subject: hooks\r\n\r\nHello hook.\r\n";

/// What one conversation got: the reply at each stage it reached, in order,
/// and whether the server closed the connection after the last.
#[derive(Debug)]
pub(super) struct Transcript {
    pub(super) replies: Vec<(Stage, Reply)>,
    pub(super) closed: bool,
}

impl Transcript {
    /// The reply at `stage`, if the conversation got that far.
    pub(super) fn at(&self, stage: Stage) -> Option<&Reply> {
        self.replies
            .iter()
            .find(|(s, _)| *s == stage)
            .map(|(_, r)| r)
    }

    /// The last reply.
    pub(super) fn last(&self) -> (Stage, &Reply) {
        let (stage, reply) = self.replies.last().expect("a reply");
        (*stage, reply)
    }

    /// Every stage answered positively.
    pub(super) fn all_positive(&self) -> bool {
        self.replies.len() == Stage::ALL.len()
            && self
                .replies
                .iter()
                .all(|(_, r)| (200..300).contains(&r.code))
    }
}

/// One session through every stage — greeting, EHLO, AUTH PLAIN, MAIL, RCPT,
/// DATA and the message — stopping at the first refusal; QUIT after a
/// complete one.
pub(super) fn converse(port: u16, recipient: &str) -> Transcript {
    let mut client = Client::connect_any(port);
    let mut replies = vec![(Stage::Connect, client.greeting.clone())];
    let plain =
        base64::engine::general_purpose::STANDARD.encode(format!("\0{}\0{}", USER.0, USER.1));
    let steps = [
        (Stage::Ehlo, "EHLO client.test".to_owned()),
        (Stage::Auth, format!("AUTH PLAIN {plain}")),
        (Stage::MailFrom, "MAIL FROM:<sender@example.com>".to_owned()),
        (Stage::RcptTo, format!("RCPT TO:<{recipient}>")),
        (Stage::Data, "DATA".to_owned()),
    ];
    let refused = |r: &Reply| r.code >= 400;
    if !refused(&replies[0].1) {
        for (stage, line) in steps {
            client.send(format!("{line}\r\n").as_bytes());
            let mut reply = client.reply();
            if stage == Stage::Data && reply.code == 354 {
                client.send(format!("{MESSAGE}.\r\n").as_bytes());
                reply = client.reply();
            }
            let stop = refused(&reply);
            replies.push((stage, reply));
            if stop {
                break;
            }
        }
    }
    let last = replies.last().map_or(0, |(_, r)| r.code);
    let closed = last == 421;
    if closed {
        client.expect_closed();
    } else {
        client.quit();
    }
    Transcript { replies, closed }
}
