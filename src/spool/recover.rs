//! Opening a spool directory: every segment is read back, a torn tail is cut
//! off, and the messages without a done mark are handed back for delivery.
//!
//! A record that does not decode (short, bad magic, bad checksum) ends what is
//! read of its segment, and the segment is truncated there. At the end of the
//! newest segment that is a torn append from a crash: its writer never heard
//! back, so it was never acknowledged and dropping it loses nothing (logged at
//! `warn`). Anywhere else it is damage to acknowledged data (logged at `error`).
//! A segment whose every message is done is deleted.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, DirBuilder, OpenOptions};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use super::record::{self, Decoded, Kind, Place};
use super::segment_path;
use super::writer::Segment;
use crate::mail::Mail;

/// What was found on disk.
pub(crate) struct Recovered {
    /// The segments kept, with their sizes and pending counts.
    pub(crate) live: BTreeMap<u64, Segment>,
    /// The messages still to deliver, oldest first.
    pub(crate) pending: Vec<(Place, Mail)>,
    /// The number the next segment takes.
    pub(crate) next_segment: u64,
}

/// Creates `dir` (mode 0700) if needed and reads every segment in it.
pub(crate) fn recover(dir: &Path) -> io::Result<Recovered> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let numbers = segment_numbers(dir)?;
    let newest = numbers.last().copied();
    let mut messages: Vec<(Place, Mail)> = Vec::new();
    let mut done: HashSet<Place> = HashSet::new();
    let mut sizes = BTreeMap::new();
    for &number in &numbers {
        let path = segment_path(dir, number);
        let data = fs::read(&path)?;
        let mut at = 0;
        let problem = loop {
            match record::decode(&data, at) {
                Decoded::Record {
                    kind,
                    payload,
                    next,
                } => {
                    let place = Place {
                        segment: number,
                        offset: at as u64,
                    };
                    match kind {
                        Kind::Message => match record::decode_message(payload) {
                            Ok(mail) => messages.push((place, mail)),
                            Err(error) => tracing::error!(
                                "spool: {} offset {at}: unreadable message dropped: {error}",
                                path.display()
                            ),
                        },
                        Kind::Done => match record::decode_done(payload) {
                            Some(of) => {
                                done.insert(of);
                            }
                            None => tracing::error!(
                                "spool: {} offset {at}: malformed done mark",
                                path.display()
                            ),
                        },
                    }
                    at = next;
                }
                Decoded::End => break None,
                Decoded::Bad(why) => break Some(why),
            }
        };
        if let Some(why) = problem {
            truncate(&path, at as u64)?;
            if Some(number) == newest {
                tracing::warn!(
                    "spool: torn tail of {} cut at offset {at} ({why}, {} bytes): \
                     an append interrupted by a crash, never acknowledged",
                    path.display(),
                    data.len() - at
                );
            } else {
                tracing::error!(
                    "spool: {} damaged at offset {at} ({why}): {} bytes after it dropped",
                    path.display(),
                    data.len() - at
                );
            }
        }
        sizes.insert(number, at as u64);
    }
    let mut live: BTreeMap<u64, Segment> = sizes
        .into_iter()
        .map(|(number, bytes)| (number, Segment { bytes, pending: 0 }))
        .collect();
    messages.retain(|(place, _)| !done.contains(place));
    for (place, _) in &messages {
        if let Some(segment) = live.get_mut(&place.segment) {
            segment.pending += 1;
        }
    }
    Ok(Recovered {
        live,
        pending: messages,
        next_segment: newest.map_or(1, |n| n + 1),
    })
}

/// The numbers of the segment files in `dir`, ascending.
fn segment_numbers(dir: &Path) -> io::Result<Vec<u64>> {
    let mut numbers = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(hex) = name.strip_suffix(".seg")
            && hex.len() == 16
            && let Ok(number) = u64::from_str_radix(hex, 16)
        {
            numbers.push(number);
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// Cuts `path` to `len` bytes, durably.
fn truncate(path: &PathBuf, len: u64) -> io::Result<()> {
    let file = OpenOptions::new().write(true).open(path)?;
    file.set_len(len)?;
    file.sync_all()
}
