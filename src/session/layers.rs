//! How the session applies what the policy layers decide (see [`crate::policy`]):
//! a refusal ends the stage, an accept skips the later layers, a discard or a
//! quarantine marks the transaction (or, at `connect`, `ehlo` and `auth`, the
//! whole connection), extensions are recorded, and at the message stage the
//! header edits and the new recipient list are made. One place for every kind of
//! layer, so an HTTP hook and a milter that ask for the same thing get the same.

use serde_json::{Map, Value};

use super::{Session, address_record};
use crate::mail::{Data, RcptTo, split_message};
use crate::policy::{
    Action, Changes, LayerExtensions, Stage, Verdict, apply_header_edits, edit_headers,
    replace_body,
};
use crate::protocol::address::{PathKind, parse_path_argument};
use crate::protocol::{PathRequest, Reply};
use crate::receiver::Receiver;

/// What the layers of one stage decided, for the session to act on.
#[derive(Debug, Default)]
pub(super) struct StageOutcome {
    /// A layer refused: this is the reply, the `Receiver` hook is not called.
    pub(super) refusal: Option<Reply>,
    /// A layer accepted with a reply of its own, sent in place of the
    /// `Receiver` hook's positive reply.
    pub(super) accept_reply: Option<Reply>,
}

impl StageOutcome {
    /// The reply to send after the `Receiver` hook answered `reply`.
    pub(super) fn answer(self, reply: Reply) -> Reply {
        match self.accept_reply {
            Some(mine) if reply.is_positive() => mine,
            _ => reply,
        }
    }
}

/// What connection-wide decisions (at `connect`, `ehlo`, `auth`) left for every
/// transaction of the connection.
#[derive(Debug, Default)]
pub(super) struct ConnectionPolicy {
    discard: bool,
    quarantine: Option<String>,
    extensions: Map<String, Value>,
}

impl<R: Receiver> Session<R> {
    /// Applies one layer's verdict at `stage`; false when no later layer of
    /// the stage may run.
    pub(super) fn apply_verdict(
        &mut self,
        stage: Stage,
        layer: &str,
        verdict: Verdict,
        outcome: &mut StageOutcome,
    ) -> bool {
        let decision = match verdict {
            Verdict::Continue => return true,
            Verdict::Refuse(reply) => {
                outcome.refusal = Some(reply);
                return false;
            }
            Verdict::Decide(decision) => *decision,
        };
        let mut changes = decision.changes;
        self.record_extensions(stage, std::mem::take(&mut changes.extensions));
        let delivers = matches!(
            decision.action,
            Action::Continue | Action::Accept(_) | Action::Quarantine(_)
        );
        if changes.edits_message() {
            if stage == Stage::Data && delivers {
                self.edit_message(changes);
            } else if stage != Stage::Data {
                tracing::warn!(
                    layer,
                    stage = stage.as_str(),
                    "header and recipient changes apply to the message only; ignored"
                );
            }
        }
        match decision.action {
            Action::Continue => true,
            Action::Accept(reply) => {
                outcome.accept_reply = reply;
                false
            }
            Action::Refuse(reply) => {
                outcome.refusal = Some(reply);
                false
            }
            Action::Discard => {
                tracing::info!(layer, stage = stage.as_str(), id = %self.mail.id, "discarded by policy");
                self.mail.discarded = true;
                if stage.is_connection_stage() {
                    self.connection_policy.discard = true;
                }
                false
            }
            Action::Quarantine(reason) => {
                tracing::info!(layer, stage = stage.as_str(), id = %self.mail.id, "quarantined by policy");
                if stage.is_connection_stage() {
                    self.connection_policy.quarantine = Some(reason.clone());
                }
                self.mail.quarantine = Some(reason);
                true
            }
        }
    }

    fn record_extensions(&mut self, stage: Stage, extensions: Map<String, Value>) {
        if extensions.is_empty() {
            return;
        }
        if stage.is_connection_stage() {
            let kept = &mut self.connection_policy.extensions;
            kept.extend(extensions.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        self.mail.extensions.extend(extensions);
        self.extensions
            .insert(LayerExtensions(self.mail.extensions.clone()));
    }

    /// The header edits and the new recipient list, made on the message to deliver.
    fn edit_message(&mut self, changes: Changes) {
        if let Some(data) = &mut self.mail.data
            && (!changes.add_headers.is_empty()
                || !changes.remove_headers.is_empty()
                || !changes.header_edits.is_empty()
                || changes.replace_body.is_some())
        {
            let mut edited = edit_headers(&data.raw, &changes.add_headers, &changes.remove_headers);
            if !changes.header_edits.is_empty() {
                edited = apply_header_edits(&edited, &changes.header_edits);
            }
            if let Some(body) = &changes.replace_body {
                edited = replace_body(&edited, body);
            }
            let raw = bytes::Bytes::from(edited);
            let (headers, text) = split_message(&raw);
            *data = Data {
                headers,
                text,
                raw,
                ..std::mem::take(data)
            };
        }
        if let Some(recipients) = changes.set_recipients {
            self.set_recipients(&recipients);
        }
        if let Some(sender) = changes.set_sender {
            self.set_sender(&sender);
        }
    }

    /// The envelope sender becomes `address` (`""`: the null sender); the
    /// record keeps its other facts (SIZE, BODY, SPF).
    fn set_sender(&mut self, address: &str) {
        let argument = format!("<{address}>");
        let Ok(path) = parse_path_argument(&argument, PathKind::Reverse).map(|p| p.path) else {
            tracing::warn!(
                address = %crate::logging::Escaped(address),
                "a layer's new sender is no address; left as it was"
            );
            return;
        };
        let request = PathRequest {
            argument,
            name: String::new(),
            path,
            size: None,
            body: None,
            smtputf8: !address.is_ascii(),
        };
        if let Some(from) = &mut self.mail.mailfrom {
            let accepted = from.address.accepted;
            from.address = address_record(request, false);
            from.address.accepted = accepted;
        }
    }

    /// Accepted recipients become exactly `addresses` (see [`Changes`]).
    fn set_recipients(&mut self, addresses: &[String]) {
        let old = std::mem::take(&mut self.mail.rcptto);
        let (accepted, refused): (Vec<RcptTo>, Vec<RcptTo>) =
            old.into_iter().partition(|r| r.accepted);
        self.mail.rcptto = refused;
        for address in addresses {
            let known = accepted
                .iter()
                .find(|r| r.url.eq_ignore_ascii_case(address))
                .cloned();
            match known.or_else(|| new_recipient(address)) {
                Some(record) => self.mail.rcptto.push(record),
                None => tracing::warn!(
                    address = %crate::logging::Escaped(address),
                    "a layer's new recipient is no address; left out"
                ),
            }
        }
    }

    /// The transaction ended: its policy marks go back to the connection's.
    pub(super) fn reset_transaction_policy(&mut self) {
        let kept = &self.connection_policy;
        self.mail.discarded = kept.discard;
        self.mail.quarantine.clone_from(&kept.quarantine);
        if self.mail.extensions != kept.extensions {
            self.mail.extensions.clone_from(&kept.extensions);
            if kept.extensions.is_empty() {
                self.extensions.remove::<LayerExtensions>();
            } else {
                self.extensions
                    .insert(LayerExtensions(kept.extensions.clone()));
            }
        }
    }
}

/// An accepted recipient record for an address a layer added; `None` when it
/// is no RCPT TO address (a layer is to check before it asks).
fn new_recipient(address: &str) -> Option<RcptTo> {
    let argument = format!("<{address}>");
    let path = parse_path_argument(&argument, PathKind::Forward).ok()?.path;
    let request = PathRequest {
        argument,
        name: String::new(),
        path,
        size: None,
        body: None,
        smtputf8: !address.is_ascii(),
    };
    let mut record = RcptTo::from(address_record(request, false));
    record.accepted = true;
    Some(record)
}
