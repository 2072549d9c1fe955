//! The client side of the Sendmail/Postfix milter protocol (version 6), sans-IO:
//! [`MilterClient`] turns what the MTA knows (the connection, HELO, the
//! envelope, the header fields, the body) into milter command frames, and the
//! milter's bytes into [`Event`]s: the negotiation result, one [`Response`] per
//! command that wants one, and the end-of-message [`Modification`]s.
//!
//! Nothing here touches a socket or a clock: the driver
//! (`crate::policy::milter`) connects, writes what [`MilterClient::poll_transmit`]
//! gives, feeds what it reads to [`MilterClient::handle_input`], and keeps the
//! timeouts.
//!
//! The wire format (protocol facts from libmilter's documentation and Postfix's
//! `MILTER_README`): every frame is a 4-byte big-endian length, then a command
//! byte, then `length - 1` bytes of data; strings are NUL-terminated.
//!
//! - `frame.rs`: frame encoding and the incremental frame reader (bounded).
//! - `reply.rs`: the milter's frames parsed into responses and modifications.
//! - `client.rs`: negotiation, which commands are sent and which answered.
//!
//! Rules kept here:
//! - a frame longer than [`MAX_FRAME`] or malformed in any way is a
//!   [`MilterError`], and errors are sticky: the connection is to be dropped;
//! - a milter asking for actions or protocol steps we did not offer is an error;
//! - body chunks are at most [`MAX_BODY_CHUNK`] (65535) bytes;
//! - header values are sent as the message has them: folded lines joined with a
//!   bare LF (the protocol's convention), and with `SMFIP_HDR_LEADSPC` the
//!   spaces after the colon kept byte for byte.

mod client;
mod frame;
mod reply;

#[cfg(test)]
mod captured_tests;
#[cfg(test)]
mod tests;

pub use client::{Event, MacroStage, MilterClient, Negotiated, Offer};
pub use frame::{Frame, FrameReader, MAX_BODY_CHUNK, MAX_FRAME, write_frame};
pub use reply::{MilterError, Modification, Response};

/// The protocol version we speak.
pub const VERSION: u32 = 6;

/// Command bytes the MTA sends (`SMFIC_*`).
pub mod command {
    /// Abort the current message.
    pub const ABORT: u8 = b'A';
    /// A body chunk.
    pub const BODY: u8 = b'B';
    /// Connection information.
    pub const CONNECT: u8 = b'C';
    /// Macros for the next command.
    pub const MACRO: u8 = b'D';
    /// End of the body.
    pub const BODYEOB: u8 = b'E';
    /// HELO/EHLO name.
    pub const HELO: u8 = b'H';
    /// Quit, but keep the connection for a new session.
    pub const QUIT_NC: u8 = b'K';
    /// One header field.
    pub const HEADER: u8 = b'L';
    /// MAIL FROM.
    pub const MAIL: u8 = b'M';
    /// End of the header.
    pub const EOH: u8 = b'N';
    /// Option negotiation.
    pub const OPTNEG: u8 = b'O';
    /// Quit.
    pub const QUIT: u8 = b'Q';
    /// RCPT TO.
    pub const RCPT: u8 = b'R';
    /// DATA.
    pub const DATA: u8 = b'T';
    /// An unknown SMTP command.
    pub const UNKNOWN: u8 = b'U';
}

/// Reply bytes the milter sends (`SMFIR_*`).
pub mod reply_code {
    /// Add a recipient.
    pub const ADDRCPT: u8 = b'+';
    /// Remove a recipient.
    pub const DELRCPT: u8 = b'-';
    /// Add a recipient with ESMTP arguments.
    pub const ADDRCPT_PAR: u8 = b'2';
    /// The milter is shutting down (treated as a tempfail).
    pub const SHUTDOWN: u8 = b'4';
    /// Accept: no more calls for this connection or message.
    pub const ACCEPT: u8 = b'a';
    /// Replace the body (a chunk; several are concatenated).
    pub const REPLBODY: u8 = b'b';
    /// Continue.
    pub const CONTINUE: u8 = b'c';
    /// Discard the message silently.
    pub const DISCARD: u8 = b'd';
    /// Change the envelope sender.
    pub const CHGFROM: u8 = b'e';
    /// Cause a connection failure (treated as a tempfail).
    pub const CONN_FAIL: u8 = b'f';
    /// Append a header field.
    pub const ADDHEADER: u8 = b'h';
    /// Insert a header field at an index.
    pub const INSHEADER: u8 = b'i';
    /// Set the macros wanted per stage (negotiation only).
    pub const SETSYMLIST: u8 = b'l';
    /// Change or delete a header field.
    pub const CHGHEADER: u8 = b'm';
    /// Still working: wait longer.
    pub const PROGRESS: u8 = b'p';
    /// Quarantine the message.
    pub const QUARANTINE: u8 = b'q';
    /// Reject.
    pub const REJECT: u8 = b'r';
    /// Skip the rest of the body.
    pub const SKIP: u8 = b's';
    /// Temporary failure.
    pub const TEMPFAIL: u8 = b't';
    /// Reject or tempfail with this SMTP reply.
    pub const REPLYCODE: u8 = b'y';
}

/// The modification actions (`SMFIF_*`) a milter may ask to use.
pub mod action {
    /// Add header fields.
    pub const ADDHDRS: u32 = 0x01;
    /// Replace the body.
    pub const CHGBODY: u32 = 0x02;
    /// Add recipients.
    pub const ADDRCPT: u32 = 0x04;
    /// Remove recipients.
    pub const DELRCPT: u32 = 0x08;
    /// Change or delete header fields.
    pub const CHGHDRS: u32 = 0x10;
    /// Quarantine.
    pub const QUARANTINE: u32 = 0x20;
    /// Change the envelope sender.
    pub const CHGFROM: u32 = 0x40;
    /// Add recipients with ESMTP arguments.
    pub const ADDRCPT_PAR: u32 = 0x80;
    /// Set the macro lists.
    pub const SETSYMLIST: u32 = 0x100;
    /// Everything above: what we offer.
    pub const ALL: u32 = 0x1FF;
}

/// The protocol flags (`SMFIP_*`): steps the milter does not want, replies it
/// will not send, and header details.
pub mod protocol {
    /// No CONNECT.
    pub const NOCONNECT: u32 = 0x01;
    /// No HELO.
    pub const NOHELO: u32 = 0x02;
    /// No MAIL.
    pub const NOMAIL: u32 = 0x04;
    /// No RCPT.
    pub const NORCPT: u32 = 0x08;
    /// No body chunks.
    pub const NOBODY: u32 = 0x10;
    /// No header fields.
    pub const NOHDRS: u32 = 0x20;
    /// No end of header.
    pub const NOEOH: u32 = 0x40;
    /// No reply to header fields.
    pub const NR_HDR: u32 = 0x80;
    /// No unknown commands.
    pub const NOUNKNOWN: u32 = 0x100;
    /// No DATA.
    pub const NODATA: u32 = 0x200;
    /// The milter may answer a body chunk with skip.
    pub const SKIP: u32 = 0x400;
    /// Rejected recipients are sent too.
    pub const RCPT_REJ: u32 = 0x800;
    /// No reply to CONNECT.
    pub const NR_CONN: u32 = 0x1000;
    /// No reply to HELO.
    pub const NR_HELO: u32 = 0x2000;
    /// No reply to MAIL.
    pub const NR_MAIL: u32 = 0x4000;
    /// No reply to RCPT.
    pub const NR_RCPT: u32 = 0x8000;
    /// No reply to DATA.
    pub const NR_DATA: u32 = 0x10000;
    /// No reply to unknown commands.
    pub const NR_UNKN: u32 = 0x20000;
    /// No reply to end of header.
    pub const NR_EOH: u32 = 0x40000;
    /// No reply to body chunks.
    pub const NR_BODY: u32 = 0x80000;
    /// Header values keep their leading spaces.
    pub const HDR_LEADSPC: u32 = 0x100000;
    /// What we offer: every step may be left out, every reply but the final
    /// one may be left out, skip, and leading spaces (not `RCPT_REJ`, not the
    /// larger frame sizes).
    pub const OFFERED: u32 = NOCONNECT
        | NOHELO
        | NOMAIL
        | NORCPT
        | NOBODY
        | NOHDRS
        | NOEOH
        | NR_HDR
        | NOUNKNOWN
        | NODATA
        | SKIP
        | NR_CONN
        | NR_HELO
        | NR_MAIL
        | NR_RCPT
        | NR_DATA
        | NR_UNKN
        | NR_EOH
        | NR_BODY
        | HDR_LEADSPC;
}
