//! What a milter sends back, parsed from one frame: a [`Response`] that ends
//! the wait for a command, a [`Modification`] (end of message only), or a
//! progress note; and the errors ([`MilterError`]).

use super::reply_code as r;

/// A milter's answer to one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Go on (`SMFIR_CONTINUE`).
    Continue,
    /// Accept: no more calls to this milter for the connection (at CONNECT or
    /// HELO) or the message (later) (`SMFIR_ACCEPT`).
    Accept,
    /// Reject the command or message (`SMFIR_REJECT`).
    Reject,
    /// Take the message and drop it (`SMFIR_DISCARD`).
    Discard,
    /// Temporary failure (`SMFIR_TEMPFAIL`; `SMFIR_SHUTDOWN` and
    /// `SMFIR_CONN_FAIL` too).
    Tempfail,
    /// Reject or tempfail with this SMTP reply (`SMFIR_REPLYCODE`): `code` is
    /// 4xx or 5xx, `text` what follows it on the first line (enhanced code
    /// included), further lines after `\n`.
    ReplyCode {
        /// The reply code, 400..=599.
        code: u16,
        /// The text, lines joined with `\n`, each line's code prefix removed.
        text: String,
    },
    /// Skip the rest of the body; send end of body next (`SMFIR_SKIP`).
    Skip,
}

/// An end-of-message change a milter asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Modification {
    /// Append a header field (`SMFIR_ADDHEADER`).
    AddHeader {
        /// The field name.
        name: String,
        /// The value; folded lines are joined with a bare `\n`.
        value: String,
    },
    /// Insert a header field before the `index`-th field, 0 = at the top
    /// (`SMFIR_INSHEADER`).
    InsertHeader {
        /// Position among all fields.
        index: u32,
        /// The field name.
        name: String,
        /// The value, as for [`Modification::AddHeader`].
        value: String,
    },
    /// Change the `index`-th (from 1) field of this name; an empty value
    /// deletes it (`SMFIR_CHGHEADER`).
    ChangeHeader {
        /// Which occurrence of the name, from 1.
        index: u32,
        /// The field name.
        name: String,
        /// The new value (empty: delete).
        value: String,
    },
    /// Add a recipient (`SMFIR_ADDRCPT`, `SMFIR_ADDRCPT_PAR`).
    AddRecipient {
        /// The address, usually in angle brackets.
        address: String,
        /// ESMTP arguments, if any.
        args: Option<String>,
    },
    /// Remove a recipient (`SMFIR_DELRCPT`).
    DeleteRecipient {
        /// The address, usually in angle brackets.
        address: String,
    },
    /// Replace the body with these bytes (`SMFIR_REPLBODY`; successive chunks
    /// are joined by the client).
    ReplaceBody(Vec<u8>),
    /// Change the envelope sender (`SMFIR_CHGFROM`).
    ChangeSender {
        /// The address, usually in angle brackets.
        address: String,
        /// ESMTP arguments, if any.
        args: Option<String>,
    },
    /// Quarantine the message with this reason (`SMFIR_QUARANTINE`).
    Quarantine(String),
}

/// Why a milter conversation cannot go on. Sticky: the connection is dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MilterError {
    /// A frame announced more than [`MAX_FRAME`](super::MAX_FRAME) bytes.
    #[error("a frame of {0} bytes is too large")]
    FrameTooLarge(usize),
    /// A frame's data does not fit its command.
    #[error("malformed reply: {0}")]
    Malformed(&'static str),
    /// A reply that makes no sense now (the command byte, and what we waited for).
    #[error("unexpected reply {got:?} while waiting for {waiting}", got = char::from(*.0), waiting = .1)]
    Unexpected(u8, &'static str),
    /// The milter speaks a protocol version older than 2.
    #[error("milter protocol version {0} is not supported")]
    Version(u32),
    /// A modification that was not negotiated.
    #[error("the milter used action {0:#x} without negotiating it")]
    ActionNotNegotiated(u32),
    /// A command was given before the negotiation or while an answer was
    /// awaited (a driver's mistake).
    #[error("a command was sent out of turn")]
    NotReady,
    /// The connection ended while a reply was awaited.
    #[error("the milter closed the connection")]
    Closed,
}

/// One parsed frame from the milter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Parsed {
    Response(Response),
    Modification(Modification),
    Progress,
}

/// Parses a frame other than the negotiation reply.
pub(crate) fn parse_reply(command: u8, data: &[u8]) -> Result<Parsed, MilterError> {
    let mut data = data;
    let parsed = match command {
        r::CONTINUE => Parsed::Response(Response::Continue),
        r::ACCEPT => Parsed::Response(Response::Accept),
        r::REJECT => Parsed::Response(Response::Reject),
        r::DISCARD => Parsed::Response(Response::Discard),
        r::TEMPFAIL | r::SHUTDOWN | r::CONN_FAIL => Parsed::Response(Response::Tempfail),
        r::SKIP => Parsed::Response(Response::Skip),
        r::PROGRESS => Parsed::Progress,
        r::REPLYCODE => Parsed::Response(reply_code(&string(&mut data)?)?),
        r::ADDHEADER => {
            let name = string(&mut data)?;
            let value = string(&mut data)?;
            Parsed::Modification(Modification::AddHeader { name, value })
        }
        r::INSHEADER | r::CHGHEADER => {
            let index = u32_be(&mut data)?;
            let name = string(&mut data)?;
            let value = string(&mut data)?;
            Parsed::Modification(if command == r::INSHEADER {
                Modification::InsertHeader { index, name, value }
            } else {
                Modification::ChangeHeader { index, name, value }
            })
        }
        r::ADDRCPT => Parsed::Modification(Modification::AddRecipient {
            address: string(&mut data)?,
            args: None,
        }),
        r::ADDRCPT_PAR => {
            let address = string(&mut data)?;
            let args = optional_string(&mut data)?;
            Parsed::Modification(Modification::AddRecipient { address, args })
        }
        r::DELRCPT => Parsed::Modification(Modification::DeleteRecipient {
            address: string(&mut data)?,
        }),
        r::CHGFROM => {
            let address = string(&mut data)?;
            let args = optional_string(&mut data)?;
            Parsed::Modification(Modification::ChangeSender { address, args })
        }
        r::QUARANTINE => Parsed::Modification(Modification::Quarantine(string(&mut data)?)),
        r::REPLBODY => {
            return Ok(Parsed::Modification(Modification::ReplaceBody(
                data.to_vec(),
            )));
        }
        other => return Err(MilterError::Unexpected(other, "a reply")),
    };
    Ok(parsed)
}

/// A NUL-terminated string at the front of `data` (lossy UTF-8), consumed.
fn string(data: &mut &[u8]) -> Result<String, MilterError> {
    let end = memchr::memchr(0, data).ok_or(MilterError::Malformed("a string without NUL"))?;
    let text = String::from_utf8_lossy(&data[..end]).into_owned();
    *data = &data[end + 1..];
    Ok(text)
}

/// An optional trailing string: none when the data ends (or is an empty string).
fn optional_string(data: &mut &[u8]) -> Result<Option<String>, MilterError> {
    if data.is_empty() {
        return Ok(None);
    }
    let text = string(data)?;
    Ok((!text.is_empty()).then_some(text))
}

/// A big-endian u32 at the front of `data`, consumed.
pub(crate) fn u32_be(data: &mut &[u8]) -> Result<u32, MilterError> {
    let (head, rest) = data
        .split_first_chunk::<4>()
        .ok_or(MilterError::Malformed("a frame too short for its numbers"))?;
    *data = rest;
    Ok(u32::from_be_bytes(*head))
}

/// `SMFIR_REPLYCODE`'s text: `NNN[ -]text`, possibly several lines (CRLF or
/// LF), each starting with the same code; 4xx or 5xx only.
fn reply_code(text: &str) -> Result<Response, MilterError> {
    let bad = MilterError::Malformed("a reply code that is not 4xx or 5xx text");
    let digits = text.get(..3).ok_or(bad.clone())?;
    let code: u16 = digits
        .parse()
        .ok()
        .filter(|c| (400..600).contains(c) && digits.bytes().all(|b| b.is_ascii_digit()))
        .ok_or(bad.clone())?;
    let mut lines = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let rest = line.strip_prefix(digits).ok_or(bad.clone())?;
        let rest = match rest.as_bytes().first() {
            None => "",
            Some(b' ' | b'-') => &rest[1..],
            Some(_) => return Err(bad),
        };
        lines.push(rest);
    }
    Ok(Response::ReplyCode {
        code,
        text: lines.join("\n"),
    })
}
