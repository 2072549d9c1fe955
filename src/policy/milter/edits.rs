//! A milter's end-of-message [`Modification`]s turned into the [`Changes`] the
//! session applies for every kind of layer, and into the mail structure's
//! record ([`MilterVerdict`]). Header values come with bare LFs between folded
//! lines (the protocol's convention) and get CRLF; a value that does not start
//! with a space or tab gets one after the colon (as Postfix does, whether or
//! not `SMFIP_HDR_LEADSPC` was negotiated: pymilter and others send values
//! without it either way). An edit that
//! would break the message (a bad name, an unfolded line break) is left out
//! and logged.

use crate::mail::{Mail, MilterVerdict};
use crate::policy::{Changes, HeaderEdit, is_header_name, is_header_value};
use crate::protocol::milter::Modification;

/// The value as written after the colon.
fn header_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    if !value.starts_with([' ', '\t']) {
        out.push(' ');
    }
    let mut previous = '\0';
    for c in value.chars() {
        if c == '\n' && previous != '\r' {
            out.push('\r');
        }
        out.push(c);
        previous = c;
    }
    out
}

/// The address without angle brackets.
fn bare(address: &str) -> String {
    let address = address.trim();
    address
        .strip_prefix('<')
        .and_then(|a| a.strip_suffix('>'))
        .unwrap_or(address)
        .to_owned()
}

/// Changes for `modifications`, recorded in `record`; `quarantine` set when
/// the milter asked for it.
pub(crate) fn changes(
    name: &str,
    mail: &Mail,
    modifications: Vec<Modification>,
    record: &mut MilterVerdict,
) -> Changes {
    let mut changes = Changes::default();
    let mut recipients: Vec<String> = mail
        .rcptto
        .iter()
        .filter(|r| r.accepted)
        .map(|r| r.url.clone())
        .collect();
    let mut recipients_changed = false;
    for modification in modifications {
        match modification {
            Modification::AddHeader { name: field, value }
            | Modification::InsertHeader {
                name: field, value, ..
            }
            | Modification::ChangeHeader {
                name: field, value, ..
            } if !is_header_name(&field) || !is_header_value(&header_value(&value)) => {
                tracing::warn!(milter = name, field = %crate::logging::Escaped(&field), "a header edit that would break the message; left out");
            }
            Modification::AddHeader { name: field, value } => {
                let value = header_value(&value);
                record.headers.push([field.clone(), value.clone()]);
                changes
                    .header_edits
                    .push(HeaderEdit::Append { name: field, value });
            }
            Modification::InsertHeader {
                index,
                name: field,
                value,
            } => {
                let value = header_value(&value);
                record.headers.push([field.clone(), value.clone()]);
                changes.header_edits.push(HeaderEdit::Insert {
                    index: usize::try_from(index).unwrap_or(usize::MAX),
                    name: field,
                    value,
                });
            }
            Modification::ChangeHeader {
                index,
                name: field,
                value,
            } => {
                let value = (!value.is_empty()).then(|| header_value(&value));
                match &value {
                    Some(v) => record.headers.push([field.clone(), v.clone()]),
                    None => record.removed_headers.push(field.clone()),
                }
                changes.header_edits.push(HeaderEdit::Change {
                    index: usize::try_from(index).unwrap_or(usize::MAX).max(1),
                    name: field,
                    value,
                });
            }
            Modification::AddRecipient { address, .. } => {
                let address = bare(&address);
                if !recipients.iter().any(|r| r.eq_ignore_ascii_case(&address)) {
                    record.added_recipients.push(address.clone());
                    recipients.push(address);
                    recipients_changed = true;
                }
            }
            Modification::DeleteRecipient { address } => {
                let address = bare(&address);
                let before = recipients.len();
                recipients.retain(|r| !r.eq_ignore_ascii_case(&address));
                if recipients.len() != before {
                    record.removed_recipients.push(address);
                    recipients_changed = true;
                }
            }
            Modification::ReplaceBody(body) => {
                record.body_replaced = true;
                changes.replace_body = Some(body);
            }
            Modification::ChangeSender { address, .. } => {
                let address = bare(&address);
                record.sender = Some(address.clone());
                changes.set_sender = Some(address);
            }
            Modification::Quarantine(reason) => record.quarantine = Some(reason),
        }
    }
    if recipients_changed {
        changes.set_recipients = Some(recipients);
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_get_crlf_and_their_space() {
        assert_eq!(header_value("v=1;\n\tb=x"), " v=1;\r\n\tb=x");
        assert_eq!(header_value(" yes"), " yes");
        assert_eq!(header_value("\tyes"), "\tyes");
        assert_eq!(header_value("a\r\n b"), " a\r\n b");
        assert_eq!(bare(" <a@b> "), "a@b");
        assert_eq!(bare("a@b"), "a@b");
        assert_eq!(bare("<>"), "");
    }
}
