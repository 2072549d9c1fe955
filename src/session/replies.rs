//! The replies the session makes itself rather than a hook: a prohibited
//! client, a hook that panicked, and `received`'s error turned into the one
//! reply to the final dot — the place where delivery errors become SMTP codes.

use std::fmt::Write as _;

use crate::delivery::DeliveryError;
use crate::mail::Mail;
use crate::protocol::Reply;

/// How many refused recipients a 554 names; the rest are counted.
const NAMED_AT_MOST: usize = 3;
/// How much of one address a 554 shows (three such keep the line well under
/// RFC 5321's 512 octets).
const ADDRESS_SHOWN: usize = 100;

pub(super) fn prohibited(ip: &str) -> Reply {
    Reply::new(
        450,
        (4, 7, 1),
        format!("Sender IP {ip} is temporarily prohibited from sending"),
    )
    .and_close()
}

pub(super) fn internal_error() -> Reply {
    tracing::error!("a hook panicked; closing the connection");
    Reply::new(
        421,
        (4, 3, 0),
        "Local error in processing, closing connection",
    )
}

/// `received`'s error as the reply to the final dot: 554 for a permanent
/// refusal, 452 4.3.1 when the store is full (RFC 3463 "mail system full"),
/// 451 4.3.0 for any other failure. Never positive: the client keeps the mail.
/// `mail` carries each recipient's outcome (`rcptto[].delivered`), which a 554
/// names (see [`refusal_text`]).
pub(super) fn delivery_error_reply(error: &DeliveryError, mail: &Mail) -> Reply {
    match error {
        DeliveryError::Permanent(_) => Reply::new(554, (5, 3, 0), refusal_text(mail)),
        error if error.is_insufficient_storage() => Reply::new(
            452,
            (4, 3, 1),
            "Insufficient system storage, try again later",
        ),
        _ => Reply::new(451, (4, 3, 0), "Local error in processing, try again later"),
    }
}

/// The text of a 554 after DATA, for the sender's bounce: which recipients the
/// message was refused for (those the mail structure does not say were
/// stored; at most [`NAMED_AT_MOST`] named), and how many others did get it —
/// SMTP has one reply for all, and sending again gives those a second copy.
/// The reason stays in the log and in `rcptto[].delivery_error`: a target's
/// error may name an internal host or URL.
fn refusal_text(mail: &Mail) -> String {
    let (stored, refused): (Vec<_>, Vec<_>) = mail
        .rcptto
        .iter()
        .filter(|r| r.accepted)
        .partition(|r| r.delivered == Some(true));
    let mut text = String::from("Not delivered");
    for (i, rcpt) in refused.iter().take(NAMED_AT_MOST).enumerate() {
        text.push_str(if i == 0 { " to <" } else { ", <" });
        push_shown(&mut text, &rcpt.url);
        text.push('>');
    }
    if refused.len() > NAMED_AT_MOST {
        let _ = write!(text, " and {} more", refused.len() - NAMED_AT_MOST);
    }
    text.push_str(": refused for good by the destination");
    match stored.len() {
        0 => {}
        1 => text.push_str(
            "; delivered to 1 other recipient, who gets a second copy if it is sent again",
        ),
        n => {
            let _ = write!(
                text,
                "; delivered to {n} other recipients, who get a second copy if it is sent again"
            );
        }
    }
    text
}

/// For the log of a failed delivery: the recipients whose own failure is not
/// `error` (the one the reply was made of), each as `<address>: why`, `; `
/// between them — so every refused recipient's reason is in the log line, not
/// only the first. `None` when there is no other.
pub(super) fn other_failures(mail: &Mail, error: &DeliveryError) -> Option<String> {
    let shown = error.to_string();
    let mut others = String::new();
    for rcpt in mail.rcptto.iter().filter(|r| r.accepted) {
        let Some(why) = rcpt.delivery_error.as_deref() else {
            continue;
        };
        if rcpt.delivered == Some(false) && why != shown {
            if !others.is_empty() {
                others.push_str("; ");
            }
            let _ = write!(others, "<{}>: {why}", rcpt.url);
        }
    }
    (!others.is_empty()).then_some(others)
}

/// Appends at most [`ADDRESS_SHOWN`] characters of `address`, control
/// characters (a line break would split the reply) as `?`.
fn push_shown(text: &mut String, address: &str) {
    let mut chars = address.chars();
    for c in chars.by_ref().take(ADDRESS_SHOWN) {
        text.push(if c.is_control() { '?' } else { c });
    }
    if chars.next().is_some() {
        text.push_str("...");
    }
}
