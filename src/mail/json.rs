//! The mail structure as JSON on the hot paths (a hook's request, a webhook's
//! body, a NATS message, a JSON line): written by sonic-rs, whose SIMD string
//! escaping is about 2.5× faster than serde_json's byte loop on a message's
//! lines and writes the same bytes (a test below holds the two together), into
//! one buffer sized up front from the message, so a message's text is neither
//! escaped slowly nor copied while the buffer grows. The message's base64 in
//! such bodies ([`append_base64`]) is base64-simd's (AVX2 when the CPU has it:
//! about 5× the base64 crate's speed, the same characters).

use serde::Serialize;

use super::Mail;

/// Appends the JSON of `value` to `out`.
pub(crate) fn write<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<(), String> {
    sonic_rs::to_writer(out, value).map_err(|e| e.to_string())
}

/// About how long `mail`'s JSON is: its message's lines once, a little for
/// their escapes, and room for the rest of the structure.
pub(crate) fn size_hint(mail: &Mail) -> usize {
    let text = mail.data.as_ref().map_or(0, |d| d.text.as_bytes().len());
    text + text / 8 + 2048
}

/// Appends the standard base64 (padded) of `parts` taken as one sequence of
/// octets, encoded in place: no part is copied to join them.
pub(crate) fn append_base64(out: &mut Vec<u8>, parts: &[&[u8]]) {
    let total: usize = parts.iter().map(|part| part.len()).sum();
    out.reserve(total.div_ceil(3) * 4);
    // Octets of a group of three that spans two parts.
    let mut carry = [0u8; 3];
    let mut held = 0;
    for (index, part) in parts.iter().enumerate() {
        let mut part = *part;
        if held > 0 {
            let take = (3 - held).min(part.len());
            carry[held..held + take].copy_from_slice(&part[..take]);
            held += take;
            part = &part[take..];
            if held < 3 {
                continue;
            }
            encode_base64(out, &carry);
        }
        let last = index + 1 == parts.len();
        let whole = if last {
            part.len()
        } else {
            part.len() - part.len() % 3
        };
        encode_base64(out, &part[..whole]);
        let rest = &part[whole..];
        carry[..rest.len()].copy_from_slice(rest);
        held = rest.len();
    }
    if held > 0 {
        encode_base64(out, &carry[..held]);
    }
}

fn encode_base64(out: &mut Vec<u8>, octets: &[u8]) {
    let at = out.len();
    out.resize(at + base64_simd::STANDARD.encoded_length(octets.len()), 0);
    // The encoded slice it returns is `out[at..]` itself.
    let _encoded =
        base64_simd::STANDARD.encode(octets, base64_simd::Out::from_slice(&mut out[at..]));
}

impl Mail {
    /// Writes the structure's JSON to `out` as it goes (a buffer of one
    /// value at a time, so a big message is never held a second time).
    pub fn write_json(&self, out: impl std::io::Write) -> std::io::Result<()> {
        sonic_rs::to_writer(sonic_rs::writer::BufferedWriter::new(out), self)
            .map_err(std::io::Error::other)
    }

    /// The structure as JSON bytes (what [`Mail::to_json`] returns as a string).
    pub fn to_json_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(size_hint(self));
        match write(&mut out, self) {
            Ok(()) => out,
            Err(_) => b"{}".to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::Text;
    use base64::Engine as _;
    use proptest::prelude::*;

    proptest! {
        /// Any octets cut into any parts: the base64 crate's encoding of the
        /// whole, after what the buffer held.
        #[test]
        fn base64_of_parts_is_that_of_the_whole(
            octets in proptest::collection::vec(any::<u8>(), 0..200),
            cuts in proptest::collection::vec(0usize..200, 0..4),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(octets.len())).collect();
            cuts.sort_unstable();
            let mut parts = Vec::new();
            let mut from = 0;
            for cut in cuts {
                parts.push(&octets[from..cut]);
                from = cut;
            }
            parts.push(&octets[from..]);
            let mut out = b"{\"raw\":\"".to_vec();
            append_base64(&mut out, &parts);
            let expected = base64::engine::general_purpose::STANDARD.encode(&octets);
            prop_assert_eq!(&out[8..], expected.as_bytes());
        }

        /// Short and long strings, with and without what JSON escapes, as
        /// values and as keys (the headers map): serde_json's bytes.
        #[test]
        fn strings_are_written_as_serde_json_writes_them(
            strings in proptest::collection::vec(
                proptest::string::string_regex("[\\x00-\\x7f\\u{80}-\\u{7ff}\\u{2028}\\u{fffd}]{0,40}")
                    .unwrap_or_else(|_| unreachable!()),
                3,
            ),
        ) {
            let mut headers = indexmap::IndexMap::new();
            headers.insert(
                strings[2].clone(),
                crate::mail::HeaderValue::One(strings[0].clone()),
            );
            let mail = Mail {
                id: strings[0].clone(),
                local_hostname: strings[1].clone(),
                data: Some(crate::mail::Data { headers, ..Default::default() }),
                ..Default::default()
            };
            written_as_serde_json_writes(&mail)?;
        }
    }

    proptest! {
        /// A message's lines with every kind of line ending (CRLF, a bare LF,
        /// a CR alone, at the end or not) and what JSON escapes among plain
        /// text: sonic-rs writes serde_json's bytes.
        #[test]
        fn a_message_s_lines_are_written_as_serde_json_writes_them(
            body in proptest::collection::vec(
                prop_oneof![
                    8 => proptest::string::string_regex("[a-zA-Z0-9 .,:;=/<>-]{0,70}")
                        .unwrap_or_else(|_| unreachable!()),
                    2 => Just("\r\n".to_owned()),
                    1 => Just("\n".to_owned()),
                    1 => Just("\r".to_owned()),
                    1 => proptest::string::string_regex("[\"\\\\\t\x00-\x1f\u{e9}\u{2028}\u{1f600}]")
                        .unwrap_or_else(|_| unreachable!()),
                ],
                0..40,
            ).prop_map(|parts| parts.concat()),
        ) {
            let mail = Mail {
                data: Some(crate::mail::Data {
                    text: Text::from_body(body.clone().into_bytes().into()),
                    ..Default::default()
                }),
                ..Default::default()
            };
            written_as_serde_json_writes(&mail)?;
        }
    }

    /// `mail`'s JSON, whole ([`Mail::to_json_bytes`]) and streamed
    /// ([`Mail::write_json`]), is serde_json's.
    fn written_as_serde_json_writes(mail: &Mail) -> Result<(), TestCaseError> {
        let expected = serde_json::to_string(mail).unwrap_or_default();
        let written = mail.to_json_bytes();
        prop_assert_eq!(String::from_utf8_lossy(&written), expected.as_str());
        let mut streamed = Vec::new();
        prop_assert!(mail.write_json(&mut streamed).is_ok());
        prop_assert_eq!(String::from_utf8_lossy(&streamed), expected.as_str());
        Ok(())
    }

    /// Every character class a JSON string escapes or keeps, in a message's
    /// lines and in the other fields: sonic-rs writes serde_json's bytes.
    #[test]
    fn the_same_bytes_as_serde_json() {
        let mut all = String::new();
        (0u32..0x300)
            .filter_map(char::from_u32)
            .for_each(|c| all.push(c));
        all.push_str("\u{2028}\u{2029}\u{feff}\u{1f600}\u{10ffff}\\\"/");
        let mut body = Vec::new();
        for line in [all.as_str(), "", "plain", "\u{0}\t\r"] {
            body.extend_from_slice(line.as_bytes());
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"invalid \xff\xfe utf-8\r\n");
        let mail = Mail {
            id: all.clone(),
            data: Some(crate::mail::Data {
                text: Text::from_body(body.into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let ours = mail.to_json_bytes();
        let expected = serde_json::to_string(&mail).unwrap();
        assert_eq!(String::from_utf8_lossy(&ours), expected);
        let mut streamed = Vec::new();
        mail.write_json(&mut streamed).unwrap();
        assert_eq!(String::from_utf8_lossy(&streamed), expected);
        assert!(ours.capacity() >= size_hint(&mail));
    }
}
