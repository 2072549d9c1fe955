//! BDAT chunks (RFC 3030): reading the declared octets into the message, or
//! throwing them away when the chunk is refused.
//!
//! The octets a BDAT line declares are always chunk data, never commands, or a
//! client could hide a `RCPT`/`DATA`/message in them that a front end forwarding
//! by the declared size passes along as data. A chunk refused for its sequence
//! (`503`) or by the hook is read and thrown away, then refused; one that makes
//! the message grow over `max_message_size` is read and thrown away, and its end
//! is the message's end: [`Event::Message`] with the refusal (`552 5.3.4`), as
//! for an oversized DATA, so the session counts and records it the same way.
//! That skip is bounded: a chunk size over `max_message_size` (up to 2^64−1), one
//! that 64 bits cannot hold (RFC 3030 allows any number of digits) and a BDAT
//! line that cannot be parsed get their refusal (`552 5.3.4` or `501 5.5.4`), then
//! `421 4.7.0` and the session closes: such a chunk can be neither taken nor
//! skipped in bounded time. Postfix does the same (it skips refused chunks, and
//! answers a BDAT size it cannot parse or represent with 521 and disconnects).

use std::time::Instant;

use super::{DataOutcome, Event, Machine, MessageEnd, Mode, Pending, Refusal};
use crate::protocol::Reply;

/// What one call of [`Machine::chunk_input`] did.
pub(super) struct ChunkStep {
    /// Octets of the input used.
    pub(super) consumed: usize,
    /// The chunk is complete (the machine is back in command mode).
    pub(super) finished: bool,
    /// The last chunk completed a message: the caller's decision.
    pub(super) event: Option<Event>,
}

impl Machine {
    /// Takes up to the rest of the current chunk from `input`.
    pub(super) fn chunk_input(&mut self, input: &[u8], now: Instant) -> ChunkStep {
        let Mode::Chunk {
            remaining,
            size,
            last,
            keep,
        } = &mut self.mode
        else {
            return ChunkStep {
                consumed: 0,
                finished: true,
                event: None,
            };
        };
        let take = usize::try_from(*remaining).map_or(input.len(), |r| r.min(input.len()));
        if take > 0 {
            self.deadline_base = now;
        }
        let chunk = input.get(..take).unwrap_or_default();
        let room = self
            .limits
            .max_message_size
            .saturating_sub(self.message.len() as u64);
        if *keep && (take as u64) <= room {
            self.message.extend_from_slice(chunk);
        } else if *keep {
            // Over the limit: the rest is skipped, and the chunk's end is the
            // message's end, refused like an oversized DATA (same event).
            *keep = false;
            self.chunk_overflow = Some(self.message.len() as u64 + take as u64);
            self.message = Vec::new();
        }
        *remaining -= take as u64;
        let mut step = ChunkStep {
            consumed: take,
            finished: *remaining == 0,
            event: None,
        };
        if !step.finished {
            return step;
        }
        let (size, last, keep) = (*size, *last, *keep);
        self.mode = Mode::Command;
        if let Some(received) = self.chunk_overflow.take() {
            self.pending = Some(Pending::Message);
            let refusal = Refusal::new(DataOutcome::TooLarge, received, &self.limits);
            let facts = self.facts;
            step.event = refusal.map(|r| Event::Message {
                end: MessageEnd::Refused(r),
                facts,
            });
        } else if let Some(reply) = self.deferred.take() {
            self.refuse(reply);
        } else if keep && last {
            step.event = Some(self.message_end(DataOutcome::Ok));
        } else if keep {
            let text = format!("{size} octets received");
            self.send(Reply::new(250, (2, 0, 0), text));
        }
        step
    }

    /// After a BDAT whose chunk can be neither taken nor skipped (a size we cannot
    /// parse, or one over `max_message_size`): the octets that follow are the
    /// client's chunk, not commands, so the session ends after the refusal.
    pub(super) fn close_unframed(&mut self) {
        self.reset_transaction();
        let text = format!(
            "{} Cannot skip the BDAT chunk, closing connection",
            self.limits.server_name
        );
        self.out_reply(&Reply::new(421, (4, 7, 0), text), &[]);
    }
}
