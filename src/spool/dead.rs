//! Dead letters: where a spooled message goes when a target refuses one of its
//! recipients for good. The receiver sends no mail itself, so there is no
//! bounce (DSN); instead the message is kept, durably, in `dead/` under the
//! spool directory and the refusal is logged at `error`. Nothing is dropped
//! silently: the message's done mark is written only once its dead letter is
//! durable, and if the dead letter cannot be written the refused recipients
//! stay pending and are tried again like a transient failure.
//!
//! A dead letter is one file, `dead/<mail id>.<segment>-<offset>.r<i>-<j>….eml`
//! (the spool place and the refused recipients' indices in `rcptto` make the
//! name unique; a repeat after a crash rewrites the same file), holding one `X-Net-Receiver-Dead-Letter: <recipient>; <reason>`
//! header per refused recipient, then exactly what the Maildir would have
//! stored (`Return-Path:`, the trace header, the message as received) — an
//! operator can read it, fix the cause and send it again. It is written to a
//! hidden temporary name, fsynced, renamed and the directory fsynced.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::Place;
use crate::mail::Mail;
use crate::mail::trace::{return_path_header, sanitize_header_text};

/// The header that names a refused recipient and why.
pub(crate) const DEAD_LETTER_HEADER: &str = "X-Net-Receiver-Dead-Letter";

/// A recipient refused for good, and the target's reason.
#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    /// Its index in [`Mail::rcptto`].
    pub(crate) index: usize,
    pub(crate) recipient: String,
    pub(crate) reason: String,
}

/// Writes the dead letter of `mail` (spooled at `place`) for `refused` into
/// `dir` durably; returns its path.
pub(crate) fn write(
    dir: &Path,
    place: Place,
    mail: &Mail,
    refused: &[Refusal],
) -> io::Result<PathBuf> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let indices: Vec<String> = refused.iter().map(|r| r.index.to_string()).collect();
    let name = format!(
        "{}.{:x}-{:x}.r{}.eml",
        file_safe(&mail.id),
        place.segment,
        place.offset,
        indices.join("-")
    );
    let path = dir.join(&name);
    let temporary = dir.join(format!(".{name}.tmp"));
    let written =
        write_file(&temporary, mail, refused).and_then(|()| std::fs::rename(&temporary, &path));
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(error);
    }
    File::open(dir)?.sync_all()?;
    Ok(path)
}

fn write_file(path: &Path, mail: &Mail, refused: &[Refusal]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    let mut head = String::new();
    for refusal in refused {
        head.push_str(&format!(
            "{DEAD_LETTER_HEADER}: {}; {}\r\n",
            sanitize_header_text(&refusal.recipient),
            sanitize_header_text(&refusal.reason)
        ));
    }
    head.push_str(&return_path_header(&mail.reverse_path()));
    file.write_all(head.as_bytes())?;
    if let Some(data) = &mail.data {
        file.write_all(data.received.as_bytes())?;
        file.write_all(&data.raw)?;
    }
    file.sync_all()
}

/// `id` with anything but ASCII letters, digits, `-` and `_` as `_` (ids are
/// ours, but a file name takes no chances).
fn file_safe(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
