//! The hook protocol on the wire (`docs/hook.schema.json` is its JSON Schema):
//! the request body a hook gets ([`request_body`]) and the answer it gives, read
//! and checked into a [`Verdict`] ([`verdict_from_response`]). Sans-IO: bytes in,
//! bytes out, so every rule is unit-tested here without a server.
//!
//! Request: `{"stage", "mail", "command", "message"}` — `mail` is the mail
//! structure exactly as the JSON lines print it, `command` the stage's own record
//! (the EHLO, MAIL FROM or RCPT TO entry the `Receiver` hook will see; `{mechanism,
//! username}` at `auth`; `null` at `connect` and `data`), `message` (data only)
//! the message as the client sent it, base64, at most `max_body` bytes of it.
//!
//! Answer: `204` = continue; `200` with a JSON object (see [`HookAnswer`]); any
//! other status, a body that is not such an object, an unknown action, a reply
//! code outside its action's class or an edit at a stage that does not allow it
//! is a hook error (the hook's `on_error` decides).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::mail::{Ehlo, Mail, MailFrom, RcptTo};
use crate::policy::{Action, Changes, HeaderField, Stage, Verdict, is_header_name};
use crate::protocol::Reply;
use crate::protocol::address::{PathKind, parse_path_argument};

/// Longest reply text a hook may give, in bytes.
const MAX_REPLY_TEXT: usize = 2048;
/// Longest header field (name, `: ` and value) a hook may add, in bytes
/// (RFC 5322's line limit without the CRLF).
const MAX_HEADER_LINE: usize = 998;

/// The stage's own record, as the hook request's `command`.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum Command<'a> {
    /// `connect`, `data`: `null`.
    None,
    /// The EHLO/HELO record.
    Ehlo(&'a Ehlo),
    /// The AUTH login (never the password).
    Auth {
        /// `PLAIN` or `LOGIN`.
        mechanism: &'a str,
        /// The verified user name.
        username: &'a str,
    },
    /// The MAIL FROM record.
    MailFrom(&'a MailFrom),
    /// The RCPT TO record.
    RcptTo(&'a RcptTo),
}

/// The JSON body of a hook request; `raw` (data only) is cut to `max_body` bytes.
///
/// Written by hand around serde's output for `mail` and `command`: the base64
/// of the message needs no escaping, so it goes into the body as it is encoded
/// (serde would scan every byte of it for characters to escape).
pub(crate) fn request_body(
    stage: Stage,
    mail: &Mail,
    command: Command<'_>,
    raw: Option<&[u8]>,
    max_body: usize,
) -> serde_json::Result<Vec<u8>> {
    // The message twice (its lines in `mail.data.text`, then base64) and the
    // structure's few KiB: sized once, not grown by copying.
    let sent = raw.map(|raw| raw.get(..max_body).unwrap_or(raw));
    let base64_len = sent.map_or(0, |s| s.len().div_ceil(3) * 4);
    let text_len = mail.data.as_ref().map_or(0, |d| d.text.as_bytes().len());
    let mut body = Vec::with_capacity(4096 + base64_len + text_len + text_len / 8);
    body.extend_from_slice(b"{\"stage\":\"");
    body.extend_from_slice(stage.as_str().as_bytes());
    body.extend_from_slice(b"\",\"mail\":");
    crate::mail::json::write(&mut body, mail).map_err(json_error)?;
    body.extend_from_slice(b",\"command\":");
    crate::mail::json::write(&mut body, &command).map_err(json_error)?;
    if let (Some(raw), Some(sent)) = (raw, sent) {
        body.extend_from_slice(b",\"message\":{\"raw_base64\":\"");
        crate::mail::json::append_base64(&mut body, &[sent]);
        let tail = format!(
            "\",\"size\":{},\"truncated\":{}}}",
            raw.len(),
            sent.len() < raw.len()
        );
        body.extend_from_slice(tail.as_bytes());
    }
    body.push(b'}');
    Ok(body)
}

fn json_error(error: String) -> serde_json::Error {
    <serde_json::Error as serde::ser::Error>::custom(error)
}

/// What a hook may answer with `200` (unknown keys are ignored, so a hook
/// written for a later version still works).
#[derive(Debug, Deserialize)]
pub(crate) struct HookAnswer {
    action: HookAction,
    reply: Option<ReplySpec>,
    reason: Option<String>,
    add_headers: Option<Vec<HeaderSpec>>,
    remove_headers: Option<Vec<String>>,
    set_recipients: Option<Vec<String>>,
    extensions: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum HookAction {
    Continue,
    Accept,
    Reject,
    Tempfail,
    Discard,
    Disconnect,
    Quarantine,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplySpec {
    code: u16,
    enhanced: Option<String>,
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderSpec {
    name: String,
    value: String,
}

/// Reads a hook's answer (`status` and body) at `stage` into a verdict; the
/// error says what is wrong with it. `max_recipients` bounds `set_recipients`.
pub(crate) fn verdict_from_response(
    stage: Stage,
    status: u16,
    body: &[u8],
    hook: &str,
    max_recipients: usize,
) -> Result<Verdict, String> {
    match status {
        204 => return Ok(Verdict::Continue),
        200 => {}
        other => return Err(format!("HTTP status {other} (expected 200 or 204)")),
    }
    let answer: HookAnswer =
        serde_json::from_slice(body).map_err(|e| format!("the answer is not valid: {e}"))?;
    let edits = answer.add_headers.is_some()
        || answer.remove_headers.is_some()
        || answer.set_recipients.is_some();
    if edits && stage != Stage::Data {
        return Err(format!(
            "add_headers, remove_headers and set_recipients are allowed at data only, not at {}",
            stage.as_str()
        ));
    }
    let changes = Changes {
        add_headers: header_fields(answer.add_headers.unwrap_or_default())?,
        remove_headers: header_names(answer.remove_headers.unwrap_or_default())?,
        set_recipients: answer
            .set_recipients
            .map(|r| recipients(r, max_recipients))
            .transpose()?,
        extensions: answer.extensions.unwrap_or_default(),
        ..Changes::default()
    };
    let reply = answer
        .reply
        .map(|r| reply(r, answer.action, stage))
        .transpose()?;
    let action = match answer.action {
        HookAction::Continue => Action::Continue,
        HookAction::Accept => Action::Accept(reply),
        HookAction::Reject => Action::Refuse(reply.unwrap_or_else(|| default_reject(stage))),
        HookAction::Tempfail => Action::Refuse(reply.unwrap_or_else(|| default_tempfail(stage))),
        HookAction::Disconnect => Action::Refuse(
            reply
                .unwrap_or_else(|| Reply::new(421, (4, 7, 0), "Closing connection by policy"))
                .and_close(),
        ),
        HookAction::Discard => Action::Discard,
        HookAction::Quarantine => Action::Quarantine(
            answer
                .reason
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| format!("hook {hook}")),
        ),
    };
    if action == Action::Continue && changes == Changes::default() {
        return Ok(Verdict::Continue);
    }
    Ok(Verdict::decide(action, changes))
}

fn default_reject(stage: Stage) -> Reply {
    match stage {
        Stage::Connect => Reply::new(554, (5, 7, 1), "Connection refused by policy"),
        _ => Reply::new(550, (5, 7, 1), "Refused by policy"),
    }
}

fn default_tempfail(stage: Stage) -> Reply {
    match stage {
        Stage::Connect => Reply::new(421, (4, 7, 0), "Try again later"),
        _ => Reply::new(451, (4, 7, 1), "Try again later"),
    }
}

/// The reply a hook gave, checked against its action's class: `accept` takes
/// a 2xx code, and at connect, ehlo and auth the one code clients expect there
/// (220, 250, 235); `reject` 5xx, `tempfail` 4xx, `disconnect` 4xx or 5xx; the
/// other actions ignore a reply, but it must still be well formed. Without a
/// text, the action's default text.
fn reply(spec: ReplySpec, action: HookAction, stage: Stage) -> Result<Reply, String> {
    let code = spec.code;
    let class_ok = match action {
        HookAction::Accept => match stage {
            Stage::Connect => code == 220,
            Stage::Ehlo => code == 250,
            Stage::Auth => code == 235,
            Stage::MailFrom | Stage::RcptTo | Stage::Data => (200..=299).contains(&code),
        },
        HookAction::Reject => (500..=599).contains(&code),
        HookAction::Tempfail => (400..=499).contains(&code),
        HookAction::Disconnect => (400..=599).contains(&code),
        HookAction::Continue | HookAction::Discard | HookAction::Quarantine => {
            (200..=599).contains(&code)
        }
    };
    if !class_ok {
        return Err(format!(
            "reply code {code} does not fit action {action:?} at {}",
            stage.as_str()
        ));
    }
    let text = spec.text.unwrap_or_else(|| {
        match action {
            HookAction::Reject => "Refused by policy",
            HookAction::Tempfail => "Try again later",
            HookAction::Disconnect => "Closing connection by policy",
            _ => "OK",
        }
        .to_owned()
    });
    if text.len() > MAX_REPLY_TEXT {
        return Err(format!("reply text over {MAX_REPLY_TEXT} bytes"));
    }
    let class = u8::try_from(code / 100).unwrap_or(0);
    let enhanced = match spec.enhanced {
        Some(e) => parse_enhanced(&e, class)?,
        None if action == HookAction::Accept => (2, 0, 0),
        None => (class, 7, 1),
    };
    Ok(Reply::new(code, enhanced, text))
}

/// `class.subject.detail` (RFC 3463), the class matching the reply code's.
fn parse_enhanced(text: &str, class: u8) -> Result<(u8, u16, u16), String> {
    let bad = || format!("enhanced code {text:?} is not {class}.X.Y (RFC 3463)");
    let mut parts = text.split('.');
    let mut number = |max: u16| {
        parts
            .next()
            .filter(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|p| p.parse::<u16>().ok())
            .filter(|n| *n <= max)
            .ok_or_else(bad)
    };
    let first = number(5)?;
    let (subject, detail) = (number(999)?, number(999)?);
    if parts.next().is_some() || first != u16::from(class) {
        return Err(bad());
    }
    Ok((class, subject, detail))
}

fn header_fields(specs: Vec<HeaderSpec>) -> Result<Vec<HeaderField>, String> {
    specs
        .into_iter()
        .map(|HeaderSpec { name, value }| {
            if !is_header_name(&name) {
                return Err(format!("add_headers: {name:?} is not a header field name"));
            }
            if value.contains(['\r', '\n', '\0']) || name.len() + 2 + value.len() > MAX_HEADER_LINE
            {
                return Err(format!(
                    "add_headers: the value of {name} must be one line (no CR, LF or NUL) \
                     of at most {MAX_HEADER_LINE} bytes with its name"
                ));
            }
            Ok(HeaderField { name, value })
        })
        .collect()
}

fn header_names(names: Vec<String>) -> Result<Vec<String>, String> {
    match names.iter().find(|n| !is_header_name(n)) {
        Some(bad) => Err(format!(
            "remove_headers: {bad:?} is not a header field name"
        )),
        None => Ok(names),
    }
}

fn recipients(addresses: Vec<String>, max: usize) -> Result<Vec<String>, String> {
    if addresses.is_empty() || addresses.len() > max {
        return Err(format!("set_recipients must hold 1 to {max} addresses"));
    }
    for address in &addresses {
        let argument = format!("<{address}>");
        if address.contains(['<', '>'])
            || parse_path_argument(&argument, PathKind::Forward).is_err()
        {
            return Err(format!(
                "set_recipients: {address:?} is not an address (local@domain)"
            ));
        }
    }
    Ok(addresses)
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
