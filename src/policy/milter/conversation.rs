//! Which milter commands go at which SMTP stage, and what the answers mean.
//!
//! At a configured stage the connection is brought up to date first: CONNECT,
//! HELO, MAIL and the accepted recipients not sent yet (a stage left out of
//! `stages` sends nothing; its command goes at the next configured one, and a
//! refusal of such a late command refuses the stage being asked). A new MAIL
//! after an unfinished message sends ABORT first. At `data` the message goes
//! as DATA, each header field byte-exact, EOH, the body in chunks of at most
//! 65535 bytes, and end of message, whose modifications become
//! [`Changes`](crate::policy::Changes).
//!
//! Answers: continue goes on; accept stops calls to this milter for the
//! connection (at CONNECT, HELO) or the message; reject, tempfail and a reply
//! code refuse the stage; discard drops the message (the connection's at
//! CONNECT/HELO); quarantine (end of message) delivers into quarantine.

use std::borrow::Cow;
use std::net::SocketAddr;

use super::connection::{Connection, DriverError};
use super::macros::{MacroSource, borrowed};
use super::{DefaultAction, Milter, StateMap, edits};
use crate::mail::{Mail, MailFrom, MilterVerdict, RcptTo};
use crate::policy::changes::field_end;
use crate::policy::{Action, Changes, Stage, Verdict};
use crate::protocol::milter::{MacroStage, Negotiated, Response};
use crate::protocol::{Enhanced, Reply};
use crate::receiver::Context;

/// Every milter's state in one session (`cx.extensions`), by layer.
#[derive(Debug, Default)]
pub(super) struct MilterStates(pub(super) StateMap);

/// One milter's state in one session.
#[derive(Debug, Default)]
pub(super) struct MilterState {
    connection: Option<Connection>,
    /// Why it failed: its default action for the rest of the session.
    failed: Option<String>,
    /// It accepted the connection: not called again.
    done_connection: bool,
    sent_connect: bool,
    sent_helo: bool,
    /// The transaction (mail id) whose MAIL was sent and whose message is
    /// not finished.
    transaction: Option<String>,
    /// It accepted this transaction (mail id): not called again for it.
    done_transaction: Option<String>,
    /// Recipients sent for the open transaction.
    rcpts_sent: Vec<String>,
}

impl MilterState {
    /// The milter failed in this session (its default action applies).
    pub(super) fn has_failed(&self) -> bool {
        self.failed.is_some()
    }
}

/// What the stage itself brings (what is not in the mail structure yet).
pub(super) enum Current<'a> {
    /// Nothing (connect, the message).
    Nothing,
    /// The HELO/EHLO name.
    Ehlo(&'a str),
    /// The MAIL FROM being asked about.
    Mail(&'a MailFrom),
    /// The RCPT TO being asked about.
    Rcpt(&'a RcptTo),
}

fn stage_order(stage: Stage) -> u8 {
    match stage {
        Stage::Connect => 0,
        Stage::Ehlo | Stage::Auth => 1,
        Stage::MailFrom => 2,
        Stage::RcptTo => 3,
        Stage::Data => 4,
    }
}

/// `<address>` and the domain, from a recorded address (`<>` is the null path).
fn path_of(url: &str, domain: Option<&str>) -> (String, Option<String>) {
    let bare = if url == "<>" { "" } else { url };
    (bare.to_owned(), domain.map(str::to_owned))
}

/// The macros for `stage` (see [`MacroSource`]).
fn macros<'a>(
    server_name: &'a str,
    mail: &'a Mail,
    negotiated: Option<&'a Negotiated>,
    stage: MacroStage,
    sender: Option<(&'a str, Option<&'a str>)>,
    recipient: Option<(&'a str, Option<&'a str>)>,
) -> Vec<(&'a str, Cow<'a, str>)> {
    MacroSource {
        mail,
        server_name,
        sender,
        recipient,
    }
    .macros(negotiated, stage)
}

impl Milter {
    /// The stage for a milter in `state`: skipped, failed, or talked to.
    pub(super) async fn stage(
        &self,
        state: &mut MilterState,
        cx: &mut Context<'_>,
        stage: Stage,
        current: Current<'_>,
    ) -> Verdict {
        if state.failed.is_some() {
            return self.default_verdict(stage);
        }
        if state.done_connection
            || (!stage.is_connection_stage()
                && state.done_transaction.as_deref() == Some(cx.mail.id.as_str()))
        {
            return Verdict::Continue;
        }
        let mut connection = match state.connection.take() {
            Some(connection) => connection,
            None => {
                match Connection::open(&self.checked.address, self.checked.connect_timeout).await {
                    Ok(connection) => connection,
                    Err(error) => return self.failed(state, cx.mail, stage, &error),
                }
            }
        };
        match self
            .converse(state, &mut connection, cx, stage, current)
            .await
        {
            Ok(verdict) => {
                state.connection = Some(connection);
                verdict
            }
            Err(error) => self.failed(state, cx.mail, stage, &error),
        }
    }

    /// The milter failed: logged, recorded, its default action from now on.
    fn failed(
        &self,
        state: &mut MilterState,
        mail: &mut Mail,
        stage: Stage,
        error: &DriverError,
    ) -> Verdict {
        if let Some(held_back) = self.errors.note(std::time::Instant::now()) {
            tracing::warn!(
                milter = self.checked.name,
                stage = stage.as_str(),
                "milter failed: {error}; its default action applies for the rest of the session \
                 ({held_back} more failures not logged since the last report)"
            );
        }
        state.failed = Some(error.to_string());
        state.connection = None;
        let verdict = self.default_verdict(stage);
        mail.milter.push(MilterVerdict {
            name: self.checked.name.clone(),
            stage: stage.as_str().to_owned(),
            action: "failed".to_owned(),
            reply: match &verdict {
                Verdict::Refuse(reply) => Some(reply_text(reply)),
                _ => None,
            },
            error: Some(error.to_string()),
            ..MilterVerdict::default()
        });
        verdict
    }

    fn default_verdict(&self, stage: Stage) -> Verdict {
        match self.default_action {
            DefaultAction::Accept => Verdict::Continue,
            DefaultAction::Tempfail => Verdict::Refuse(tempfail_reply(stage)),
            DefaultAction::Reject => Verdict::Refuse(reject_reply(stage)),
        }
    }

    /// Brings the milter up to `stage` and asks it.
    async fn converse(
        &self,
        state: &mut MilterState,
        connection: &mut Connection,
        cx: &mut Context<'_>,
        stage: Stage,
        current: Current<'_>,
    ) -> Result<Verdict, DriverError> {
        let command_timeout = self.checked.command_timeout;
        let negotiated = connection.client.negotiated().cloned();
        let settings = cx.settings;
        let server_name = settings.server_name.as_str();
        if !state.sent_connect {
            state.sent_connect = true;
            let mail = &*cx.mail;
            let list = macros(
                server_name,
                mail,
                negotiated.as_ref(),
                MacroStage::Connect,
                None,
                None,
            );
            let hostname = mail
                .remote_hostname
                .clone()
                .unwrap_or_else(|| format!("[{}]", mail.remote_ip));
            let peer = mail
                .remote_ip
                .parse()
                .ok()
                .zip(mail.remote_port.parse().ok())
                .map(|(ip, port)| SocketAddr::new(ip, port));
            let awaits = connection
                .client
                .connect(&borrowed(&list), &hostname, peer)?;
            let answer = connection
                .exchange(awaits, "CONNECT", command_timeout)
                .await?;
            if let Some(verdict) = self.settle(state, cx.mail, stage, answer) {
                return Ok(verdict);
            }
        }
        if stage_order(stage) < 1 {
            return Ok(Verdict::Continue);
        }
        let helo = match current {
            Current::Ehlo(name) => Some(name.to_owned()),
            _ if !state.sent_helo => cx.mail.ehlo.as_ref().map(|e| e.value.clone()),
            _ => None,
        };
        if let Some(helo) = helo {
            if state.transaction.take().is_some() {
                connection.client.abort()?;
            }
            state.sent_helo = true;
            let list = macros(
                server_name,
                cx.mail,
                negotiated.as_ref(),
                MacroStage::Helo,
                None,
                None,
            );
            let awaits = connection.client.helo(&borrowed(&list), &helo)?;
            let answer = connection.exchange(awaits, "HELO", command_timeout).await?;
            if let Some(verdict) = self.settle(state, cx.mail, stage, answer) {
                return Ok(verdict);
            }
        }
        if stage_order(stage) < 2 {
            return Ok(Verdict::Continue);
        }
        if state
            .transaction
            .as_ref()
            .is_some_and(|open| *open != cx.mail.id)
        {
            connection.client.abort()?;
            state.transaction = None;
        }
        if state.transaction.is_none() {
            let from = match current {
                Current::Mail(from) => Some(from),
                _ => cx.mail.mailfrom.as_ref(),
            };
            let Some(from) = from else {
                return Ok(Verdict::Continue);
            };
            let sender = if from.url == "<>" { "" } else { &from.url };
            let domain = from.domain.as_deref();
            let path = format!("<{sender}>");
            let size = from.size.map(|s| format!("SIZE={s}"));
            let body = from.body.as_ref().map(|b| format!("BODY={b}"));
            let utf8 = from.smtputf8.then_some("SMTPUTF8");
            let args = [Some(path.as_str()), size.as_deref(), body.as_deref(), utf8];
            let args: Vec<&str> = args.into_iter().flatten().collect();
            state.transaction = Some(cx.mail.id.clone());
            state.rcpts_sent.clear();
            let list = macros(
                server_name,
                cx.mail,
                negotiated.as_ref(),
                MacroStage::Mail,
                Some((sender, domain)),
                None,
            );
            let awaits = connection.client.mail(&borrowed(&list), &args)?;
            let answer = connection.exchange(awaits, "MAIL", command_timeout).await?;
            if let Some(verdict) = self.settle(state, cx.mail, stage, answer) {
                return Ok(verdict);
            }
        }
        if stage_order(stage) < 3 {
            return Ok(Verdict::Continue);
        }
        let mut recipients: Vec<(String, Option<String>)> = cx
            .mail
            .rcptto
            .iter()
            .filter(|r| r.accepted && !state.rcpts_sent.contains(&r.url))
            .map(|r| path_of(&r.url, r.domain.as_deref()))
            .collect();
        if let Current::Rcpt(to) = current {
            recipients.push(path_of(&to.url, to.domain.as_deref()));
        }
        for (address, domain) in recipients {
            let list = macros(
                server_name,
                cx.mail,
                negotiated.as_ref(),
                MacroStage::Rcpt,
                None,
                Some((&address, domain.as_deref())),
            );
            let argument = format!("<{address}>");
            let awaits = connection.client.rcpt(&borrowed(&list), &[&argument])?;
            state.rcpts_sent.push(address.clone());
            let answer = connection.exchange(awaits, "RCPT", command_timeout).await?;
            if let Some(verdict) = self.settle(state, cx.mail, stage, answer) {
                return Ok(verdict);
            }
        }
        if stage != Stage::Data {
            return Ok(Verdict::Continue);
        }
        self.message(state, connection, cx).await
    }

    /// DATA, the header fields, EOH, the body, end of message.
    async fn message(
        &self,
        state: &mut MilterState,
        connection: &mut Connection,
        cx: &mut Context<'_>,
    ) -> Result<Verdict, DriverError> {
        let limit = self.checked.content_timeout;
        let Some(raw) = cx.mail.data.as_ref().map(|d| d.raw.clone()) else {
            return Ok(Verdict::Continue);
        };
        let settings = cx.settings;
        let server_name = settings.server_name.as_str();
        let negotiated = connection.client.negotiated().cloned();
        let negotiated = negotiated.as_ref();
        let list = macros(
            server_name,
            cx.mail,
            negotiated,
            MacroStage::Data,
            None,
            None,
        );
        let awaits = connection.client.data(&borrowed(&list))?;
        let answer = connection.exchange(awaits, "DATA", limit).await?;
        if let Some(verdict) = self.settle(state, cx.mail, Stage::Data, answer) {
            return Ok(verdict);
        }
        let mut at = 0;
        while at < raw.len() {
            let end = field_end(&raw, at);
            if end == at {
                break;
            }
            let field = &raw[at..end];
            at = end;
            let Some(colon) = memchr::memchr(b':', field) else {
                continue; // not a field: nothing a milter could name
            };
            let name = field[..colon].trim_ascii_end();
            let value = &field[colon + 1..];
            let value = value
                .strip_suffix(b"\r\n")
                .or_else(|| value.strip_suffix(b"\n"))
                .unwrap_or(value);
            let awaits = connection.client.header(name, value)?;
            let answer = connection.exchange(awaits, "HEADER", limit).await?;
            if let Some(verdict) = self.settle(state, cx.mail, Stage::Data, answer) {
                return Ok(verdict);
            }
        }
        let list = macros(
            server_name,
            cx.mail,
            negotiated,
            MacroStage::EndOfHeader,
            None,
            None,
        );
        let awaits = connection.client.end_of_header(&borrowed(&list))?;
        let answer = connection.exchange(awaits, "EOH", limit).await?;
        if let Some(verdict) = self.settle(state, cx.mail, Stage::Data, answer) {
            return Ok(verdict);
        }
        // The body: after the empty line (none: no body).
        let mut body = match raw.get(at..) {
            Some(rest) if rest.starts_with(b"\r\n") => &rest[2..],
            Some(rest) if rest.starts_with(b"\n") => &rest[1..],
            _ => &[][..],
        };
        while !body.is_empty() {
            let (taken, awaits) = connection.client.body(body)?;
            body = &body[taken..];
            match connection.exchange(awaits, "BODY", limit).await? {
                Some(Response::Skip) => break,
                answer => {
                    if let Some(verdict) = self.settle(state, cx.mail, Stage::Data, answer) {
                        return Ok(verdict);
                    }
                }
            }
        }
        let list = macros(
            server_name,
            cx.mail,
            negotiated,
            MacroStage::EndOfMessage,
            None,
            None,
        );
        let awaits = connection.client.end_of_message(&borrowed(&list))?;
        let answer = connection
            .exchange(awaits, "end of message", limit)
            .await?
            .unwrap_or(Response::Continue);
        let modifications = connection.client.take_modifications();
        state.transaction = None;
        state.rcpts_sent.clear();
        if !matches!(answer, Response::Continue | Response::Accept) {
            let verdict = self.settle(state, cx.mail, Stage::Data, Some(answer));
            return Ok(verdict.unwrap_or(Verdict::Continue));
        }
        let mut record = MilterVerdict {
            name: self.checked.name.clone(),
            stage: Stage::Data.as_str().to_owned(),
            action: if answer == Response::Accept {
                "accept"
            } else {
                "continue"
            }
            .to_owned(),
            ..MilterVerdict::default()
        };
        let changes = edits::changes(&self.checked.name, cx.mail, modifications, &mut record);
        let action = match &record.quarantine {
            Some(reason) => {
                record.action = "quarantine".to_owned();
                Action::Quarantine(reason.clone())
            }
            None => Action::Continue,
        };
        cx.mail.milter.push(record);
        if action == Action::Continue && changes == Changes::default() {
            return Ok(Verdict::Continue);
        }
        Ok(Verdict::decide(action, changes))
    }

    /// What an answer means at `stage`: `None` to go on, else the verdict
    /// (recorded in the mail structure).
    fn settle(
        &self,
        state: &mut MilterState,
        mail: &mut Mail,
        stage: Stage,
        answer: Option<Response>,
    ) -> Option<Verdict> {
        let (action, verdict) = match answer? {
            Response::Continue | Response::Skip => return None,
            Response::Accept => {
                if stage.is_connection_stage() {
                    state.done_connection = true;
                } else {
                    state.done_transaction = Some(mail.id.clone());
                }
                ("accept", Verdict::Continue)
            }
            Response::Reject => ("reject", Verdict::Refuse(reject_reply(stage))),
            Response::Tempfail => ("tempfail", Verdict::Refuse(tempfail_reply(stage))),
            Response::ReplyCode { code, text } => {
                let reply = reply_from(code, &text);
                let action = if code >= 500 { "reject" } else { "tempfail" };
                (action, Verdict::Refuse(reply))
            }
            Response::Discard => (
                "discard",
                Verdict::decide(Action::Discard, Changes::default()),
            ),
        };
        mail.milter.push(MilterVerdict {
            name: self.checked.name.clone(),
            stage: stage.as_str().to_owned(),
            action: action.to_owned(),
            reply: match &verdict {
                Verdict::Refuse(reply) => Some(reply_text(reply)),
                _ => None,
            },
            ..MilterVerdict::default()
        });
        Some(verdict)
    }
}

/// `550 5.7.1 text` as one line for the record.
fn reply_text(reply: &Reply) -> String {
    match reply.enhanced {
        Some(enhanced) => format!("{} {enhanced} {}", reply.code, reply.text),
        None => format!("{} {}", reply.code, reply.text),
    }
}

fn tempfail_reply(stage: Stage) -> Reply {
    let code = if stage == Stage::Connect { 421 } else { 451 };
    Reply::new(code, (4, 7, 1), "Service unavailable - try again later")
}

fn reject_reply(stage: Stage) -> Reply {
    match stage {
        Stage::Connect => Reply::new(554, (5, 7, 1), "Service unavailable"),
        Stage::Data => Reply::new(550, (5, 7, 1), "Message content rejected"),
        _ => Reply::new(550, (5, 7, 1), "Command rejected"),
    }
}

/// A milter's own reply: its enhanced code when the text starts with one of
/// the same class, the default one (x.7.1) otherwise; a 421 closes.
fn reply_from(code: u16, text: &str) -> Reply {
    let class = u8::try_from(code / 100).unwrap_or(5);
    let (first, after) = text.split_once(' ').unwrap_or((text, ""));
    let (enhanced, rest) = match parse_enhanced(first) {
        Some(e) if e.0 == class => (e, after),
        _ => (Enhanced(class, 7, 1), text),
    };
    let rest = if rest.trim().is_empty() {
        "Command rejected".to_owned()
    } else {
        rest.to_owned()
    };
    Reply {
        code,
        enhanced: Some(enhanced),
        text: rest.into(),
        close: code == 421,
    }
}

fn parse_enhanced(text: &str) -> Option<Enhanced> {
    let mut parts = text.split('.');
    let class = parts.next()?.parse().ok()?;
    let subject = parts.next()?.parse().ok()?;
    let detail = parts.next()?.parse().ok()?;
    parts
        .next()
        .is_none()
        .then_some(Enhanced(class, subject, detail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milter_reply_codes_become_replies() {
        for (code, text, expected) in [
            (550, "5.7.1 Spam detected", "550 5.7.1 Spam detected"),
            (554, "Spam", "554 5.7.1 Spam"),
            (451, "4.3.2 later", "451 4.3.2 later"),
            (451, "5.3.2 wrong class", "451 4.7.1 5.3.2 wrong class"),
            (550, "", "550 5.7.1 Command rejected"),
            (421, "4.7.0 bye", "421 4.7.0 bye"),
        ] {
            let reply = reply_from(code, text);
            assert_eq!(reply_text(&reply), expected);
            assert_eq!(reply.close, code == 421);
        }
    }
}
