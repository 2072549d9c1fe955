//! Milter frames: `len: u32 BE` (the command byte included), the command byte,
//! `len - 1` bytes of data. [`write_frame`] appends one; [`FrameReader`] finds
//! complete frames in what was read so far, bounded by [`MAX_FRAME`].

use super::reply::MilterError;

/// The largest frame accepted from a milter (command byte and data): 1 MiB,
/// what the largest negotiated size (`SMFIP_MDS_1M`) allows, though we offer
/// only the 64 KiB default.
pub const MAX_FRAME: usize = 1 << 20;

/// The largest body chunk sent (`MILTER_CHUNK_SIZE`).
pub const MAX_BODY_CHUNK: usize = 65535;

/// Appends one frame: `command` and `parts` concatenated as its data.
pub fn write_frame(out: &mut Vec<u8>, command: u8, parts: &[&[u8]]) {
    let data: usize = parts.iter().map(|p| p.len()).sum();
    // Our frames are far below 4 GiB (body chunks are cut at 64 KiB, the
    // other parts are bounded by SMTP's own limits).
    let len = u32::try_from(data + 1).unwrap_or(u32::MAX);
    out.reserve(data + 5);
    out.extend_from_slice(&len.to_be_bytes());
    out.push(command);
    for part in parts {
        out.extend_from_slice(part);
    }
}

/// One frame found: the bytes it took, its command byte, its data.
pub type Frame<'a> = (usize, u8, &'a [u8]);

/// Finds complete frames in a buffer the caller owns.
#[derive(Debug, Default, Clone, Copy)]
pub struct FrameReader;

impl FrameReader {
    /// The first complete frame of `input`: `Ok(Some((consumed, command,
    /// data)))`, `Ok(None)` when more bytes are needed, an error for a length
    /// of 0 or over [`MAX_FRAME`] (known from the first 4 bytes, before the
    /// frame arrives).
    pub fn next_frame(input: &[u8]) -> Result<Option<Frame<'_>>, MilterError> {
        let Some(header) = input.first_chunk::<4>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*header);
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len == 0 {
            return Err(MilterError::Malformed("a frame of length 0"));
        }
        if len > MAX_FRAME {
            return Err(MilterError::FrameTooLarge(len));
        }
        let Some(frame) = input.get(4..4 + len) else {
            return Ok(None);
        };
        Ok(Some((4 + len, frame[0], &frame[1..])))
    }
}
