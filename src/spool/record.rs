//! The spool's record codec: framing (magic, kind, length, CRC-32) and the two
//! payloads (a message, a done mark). Pure functions over byte slices; the files
//! are [`super::writer`]'s and [`super::recover`]'s business.
//!
//! ```text
//! record  = magic "NRS1" | kind u8 | len u32 LE | crc32 u32 LE | payload (len bytes)
//!           crc32 (IEEE, crc32fast) covers kind, len and payload
//! kind 1  = message: json_len u32 LE | mail JSON (json_len bytes) | raw message
//! kind 2  = done:    segment u64 LE | offset u64 LE   (the message record's place)
//! ```
//!
//! The mail JSON is the [`Mail`] structure with the message-derived `data.headers`
//! and `data.text` left empty (they are rebuilt from the raw bytes on reading, so
//! the body is not stored twice); `data.raw` follows the JSON as it was received.

use bytes::Bytes;

use crate::mail::{Mail, split_message};

/// The first four bytes of every record.
pub(crate) const MAGIC: [u8; 4] = *b"NRS1";
/// Bytes before the payload: magic, kind, length, CRC.
pub(crate) const HEADER: usize = 13;
/// The largest payload accepted when reading (a length beyond it is a torn or
/// corrupt header, not a record).
pub(crate) const MAX_PAYLOAD: usize = 1 << 31;

/// What a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A spooled message and its envelope.
    Message = 1,
    /// The message at a place has been handed to its target for good.
    Done = 2,
}

/// Where a message record starts: segment number and byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Place {
    /// The segment's number (its file name is this number in 16 hex digits).
    pub segment: u64,
    /// The record's byte offset in the segment.
    pub offset: u64,
}

/// Appends one framed record to `out`.
pub(crate) fn encode(kind: Kind, payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len())
        .unwrap_or(u32::MAX)
        .to_le_bytes();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&[kind as u8]);
    crc.update(&len);
    crc.update(payload);
    out.reserve(HEADER + payload.len());
    out.extend_from_slice(&MAGIC);
    out.push(kind as u8);
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(payload);
}

/// One step of reading a segment.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded<'a> {
    /// A whole, intact record; the next one starts at `next`.
    Record {
        /// Its kind.
        kind: Kind,
        /// Its payload.
        payload: &'a [u8],
        /// Offset of the byte after it.
        next: usize,
    },
    /// The end of the data, exactly on a record boundary.
    End,
    /// What follows is not a whole, intact record: a torn tail or corruption.
    Bad(&'static str),
}

/// Reads the record at `at` in `buf`.
pub(crate) fn decode(buf: &[u8], at: usize) -> Decoded<'_> {
    let Some(rest) = buf.get(at..) else {
        return Decoded::Bad("offset beyond the end");
    };
    if rest.is_empty() {
        return Decoded::End;
    }
    let Some(header) = rest.get(..HEADER) else {
        return Decoded::Bad("short header");
    };
    if header[..4] != MAGIC {
        return Decoded::Bad("bad magic");
    }
    let kind = match header[4] {
        1 => Kind::Message,
        2 => Kind::Done,
        _ => return Decoded::Bad("unknown record kind"),
    };
    let len_bytes = [header[5], header[6], header[7], header[8]];
    let len = u32::from_le_bytes(len_bytes) as usize;
    let stored_crc = u32::from_le_bytes([header[9], header[10], header[11], header[12]]);
    if len > MAX_PAYLOAD {
        return Decoded::Bad("length out of range");
    }
    let Some(payload) = rest.get(HEADER..HEADER + len) else {
        return Decoded::Bad("short payload");
    };
    let mut crc = crc32fast::Hasher::new();
    crc.update(&[header[4]]);
    crc.update(&len_bytes);
    crc.update(payload);
    if crc.finalize() != stored_crc {
        return Decoded::Bad("checksum mismatch");
    }
    Decoded::Record {
        kind,
        payload,
        next: at + HEADER + len,
    }
}

/// The whole message record for `mail` in two parts, so the raw message is
/// never copied: the head (record header, JSON length and the JSON) and the
/// body (the raw message, shared). Written one after the other they are
/// exactly `encode(Kind::Message, message_payload(mail))`.
///
/// The message-derived `data.headers` and `data.text` are taken out of `mail`
/// while its JSON is written, and put back: the structure is not copied to
/// leave them out, and the JSON goes straight into the head.
pub(crate) fn encode_message(mail: &mut Mail) -> Result<(Vec<u8>, Bytes), String> {
    let (headers, text, raw) = match mail.data.as_mut() {
        Some(data) => (
            std::mem::take(&mut data.headers),
            std::mem::take(&mut data.text),
            data.raw.clone(),
        ),
        None => Default::default(),
    };
    // Room for the record header and the JSON length, filled in below.
    let mut head = Vec::with_capacity(HEADER + 4 + 2048);
    head.resize(HEADER + 4, 0);
    let written = crate::mail::json::write(&mut head, &*mail);
    if let Some(data) = mail.data.as_mut() {
        data.headers = headers;
        data.text = text;
    }
    written?;
    let json_len = head.len() - HEADER - 4;
    let json_len_bytes = u32::try_from(json_len).unwrap_or(u32::MAX).to_le_bytes();
    let payload_len = 4 + json_len + raw.len();
    let len = u32::try_from(payload_len).unwrap_or(u32::MAX).to_le_bytes();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&[Kind::Message as u8]);
    crc.update(&len);
    crc.update(&json_len_bytes);
    crc.update(&head[HEADER + 4..]);
    crc.update(&raw);
    head[..4].copy_from_slice(&MAGIC);
    head[4] = Kind::Message as u8;
    head[5..9].copy_from_slice(&len);
    head[9..13].copy_from_slice(&crc.finalize().to_le_bytes());
    head[13..17].copy_from_slice(&json_len_bytes);
    Ok((head, raw))
}

/// The payload of a message record for `mail` (see the module doc): the
/// reference [`encode_message`] is checked against.
#[cfg(test)]
pub(crate) fn message_payload(mail: &Mail) -> Result<Vec<u8>, serde_json::Error> {
    let mut envelope = mail.clone();
    let raw = match envelope.data.as_mut() {
        Some(data) => {
            let raw = data.raw.clone();
            data.forget_message();
            raw
        }
        None => Bytes::new(),
    };
    let json = serde_json::to_vec(&envelope)?;
    let mut payload = Vec::with_capacity(4 + json.len() + raw.len());
    payload.extend_from_slice(&u32::try_from(json.len()).unwrap_or(u32::MAX).to_le_bytes());
    payload.extend_from_slice(&json);
    payload.extend_from_slice(&raw);
    Ok(payload)
}

/// The mail in a message record's payload, its headers and text rebuilt from
/// the raw bytes.
pub(crate) fn decode_message(payload: &[u8]) -> Result<Mail, String> {
    let len_bytes: [u8; 4] = payload
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or("message payload shorter than its JSON length")?;
    let json_len = u32::from_le_bytes(len_bytes) as usize;
    let json = payload
        .get(4..4 + json_len)
        .ok_or("message payload shorter than its JSON")?;
    let mut mail: Mail = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    let raw = Bytes::copy_from_slice(&payload[4 + json_len..]);
    if let Some(data) = mail.data.as_mut() {
        let (headers, text) = split_message(&raw);
        data.headers = headers;
        data.text = text;
        data.raw = raw;
    }
    Ok(mail)
}

/// The payload of a done record for the message at `place`.
pub(crate) fn done_payload(place: Place) -> [u8; 16] {
    let mut payload = [0; 16];
    payload[..8].copy_from_slice(&place.segment.to_le_bytes());
    payload[8..].copy_from_slice(&place.offset.to_le_bytes());
    payload
}

/// The place a done record's payload names.
pub(crate) fn decode_done(payload: &[u8]) -> Option<Place> {
    let segment = payload.get(..8)?.try_into().ok()?;
    let offset = payload.get(8..16)?.try_into().ok()?;
    (payload.len() == 16).then(|| Place {
        segment: u64::from_le_bytes(segment),
        offset: u64::from_le_bytes(offset),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::{Address, Data, RcptTo};

    fn sample() -> Mail {
        let mut mail = Mail {
            id: "SPOOL-TEST-ID".into(),
            rcptto: vec![RcptTo::from(Address {
                url: "<a@example.com>".into(),
                accepted: true,
                ..Address::default()
            })],
            ..Mail::default()
        };
        mail.data = Some(Data::from_message(
            b"Subject: hi\r\n\r\nbody line\r\n".to_vec(),
            "Received: x\r\n".into(),
        ));
        mail
    }

    fn records(buf: &[u8]) -> (Vec<(Kind, Vec<u8>)>, Decoded<'_>) {
        let mut at = 0;
        let mut found = Vec::new();
        loop {
            match decode(buf, at) {
                Decoded::Record {
                    kind,
                    payload,
                    next,
                } => {
                    found.push((kind, payload.to_vec()));
                    at = next;
                }
                end => return (found, end),
            }
        }
    }

    #[test]
    fn message_round_trip() {
        let mail = sample();
        let payload = message_payload(&mail).unwrap();
        let mut buf = Vec::new();
        encode(Kind::Message, &payload, &mut buf);
        encode(
            Kind::Done,
            &done_payload(Place {
                segment: 7,
                offset: 99,
            }),
            &mut buf,
        );
        let (found, end) = records(&buf);
        assert_eq!(end, Decoded::End);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].0, Kind::Message);
        assert_eq!(decode_message(&found[0].1).unwrap(), mail);
        assert_eq!(found[1].0, Kind::Done);
        assert_eq!(
            decode_done(&found[1].1),
            Some(Place {
                segment: 7,
                offset: 99
            })
        );
    }

    #[test]
    fn the_split_encoding_is_the_record_byte_for_byte() {
        for mail in [sample(), Mail::default()] {
            let mut whole = Vec::new();
            encode(Kind::Message, &message_payload(&mail).unwrap(), &mut whole);
            let mut encoded = mail.clone();
            let (head, body) = encode_message(&mut encoded).unwrap();
            assert_eq!([head.as_slice(), &body[..]].concat(), whole);
            assert_eq!(encoded, mail, "the headers and text are put back");
            if let Some(data) = &mail.data {
                assert_eq!(body.as_ptr(), data.raw.as_ptr(), "the body is shared");
            }
        }
    }

    #[test]
    fn mail_without_data_round_trips() {
        let mail = Mail {
            id: "NO-DATA".into(),
            ..Mail::default()
        };
        let payload = message_payload(&mail).unwrap();
        assert_eq!(decode_message(&payload).unwrap(), mail);
    }

    #[test]
    fn torn_tail_at_every_cut_point_of_the_last_record() {
        let mut buf = Vec::new();
        encode(
            Kind::Message,
            &message_payload(&sample()).unwrap(),
            &mut buf,
        );
        let first = buf.len();
        encode(
            Kind::Message,
            &message_payload(&sample()).unwrap(),
            &mut buf,
        );
        for cut in first + 1..buf.len() {
            let (found, end) = records(&buf[..cut]);
            assert_eq!(found.len(), 1, "cut at {cut}");
            assert!(matches!(end, Decoded::Bad(_)), "cut at {cut}: {end:?}");
        }
        let (found, end) = records(&buf);
        assert_eq!((found.len(), end), (2, Decoded::End));
    }

    #[test]
    fn checksum_mismatch_at_every_byte() {
        let mut buf = Vec::new();
        encode(
            Kind::Done,
            &done_payload(Place {
                segment: 1,
                offset: 2,
            }),
            &mut buf,
        );
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x20;
            assert!(
                matches!(decode(&bad, 0), Decoded::Bad(_)),
                "flipped byte {i}"
            );
        }
        let mut bad = buf.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(decode(&bad, 0), Decoded::Bad("checksum mismatch"));
    }
}
