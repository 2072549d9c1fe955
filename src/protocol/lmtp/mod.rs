//! The client side of LMTP (RFC 2033), sans-IO: one [`LmtpClient`] drives one
//! transaction — greeting, LHLO, MAIL, RCPT per recipient, DATA, the message,
//! then one reply per accepted recipient — from the server's bytes to the
//! commands to send, and ends with a [`RecipientResult`] per recipient.
//!
//! Nothing here touches a socket or a clock: the caller (the LMTP delivery
//! target, `crate::delivery::lmtp`) reads and writes, keeps the deadlines and
//! sends the message itself through [`DotStuffer`] when the client
//! [`wants_body`](LmtpClient::wants_body).
//!
//! Rules kept here:
//! - commands are pipelined when the server offers PIPELINING (RFC 2033 §4.2
//!   requires it of LMTP servers), one at a time otherwise;
//! - `BODY=8BITMIME` is sent when the message has 8-bit octets and the server
//!   offers 8BITMIME; a message that needs SMTPUTF8 is refused for a server that
//!   does not offer it (RFC 6531 §3.4: it must not be downgraded);
//! - a path with a control character (a hook could have put one in the mail
//!   structure) is never written: that recipient is refused before sending;
//! - DATA goes out only when a recipient was accepted; a 354 with none is a
//!   protocol error;
//! - any malformed or unexpected reply, or the connection ending early, leaves
//!   every recipient without a final reply [`RecipientResult::Unknown`]: the
//!   message may or may not have been delivered, so it is retried (at least
//!   once, never less).
//!
//! A connection can carry more than one transaction: a client made
//! [`keep_open`](LmtpClient::keep_open) sends no QUIT after a transaction that
//! ended cleanly (every command answered, nothing malformed), says so with
//! [`reusable`](LmtpClient::reusable), and the next transaction on that
//! connection is an [`LmtpClient::resume`]: `RSET` (whatever the last one left
//! open), then MAIL as the kept LHLO reply allows.

mod dot;
mod reply;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;

pub use dot::DotStuffer;
pub use reply::{MAX_REPLY_LINE, MAX_REPLY_LINES, ReplyError, ReplyReader, ServerReply};

/// What one transaction sends: the envelope and what the message needs.
#[derive(Debug, Clone, Default)]
pub struct Envelope {
    /// Our name for LHLO.
    pub lhlo_name: String,
    /// The reverse path without brackets (`""` for the null path).
    pub sender: String,
    /// The recipients, without brackets.
    pub recipients: Vec<String>,
    /// The message has octets over 127.
    pub eight_bit: bool,
    /// The envelope or headers need SMTPUTF8.
    pub smtputf8: bool,
}

/// What became of the message for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientResult {
    /// The server took it (its reply after the final dot).
    Delivered(ServerReply),
    /// The server refused it (4xx: try again; 5xx: for good), at RCPT, at
    /// DATA, after the final dot, or before the transaction began.
    Refused(ServerReply),
    /// No answer that says (connection lost, malformed reply, a path that
    /// cannot be sent): transient.
    Unknown(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    Greeting,
    Lhlo,
    Rset,
    Mail,
    Rcpt(usize),
    Data,
    Final(usize),
}

/// One LMTP transaction as a client (see the module doc).
#[derive(Debug)]
pub struct LmtpClient {
    envelope: Envelope,
    reader: ReplyReader,
    awaiting: VecDeque<Awaiting>,
    out: Vec<u8>,
    pipelining: bool,
    mail_parameters: &'static str,
    /// The transaction cannot go on (MAIL or DATA refused): later replies are
    /// read and ignored.
    failed: Option<ServerReply>,
    accepted: Vec<usize>,
    results: Vec<Option<RecipientResult>>,
    wants_body: bool,
    done: bool,
    /// No QUIT after a clean transaction: the caller keeps the connection.
    keep_open: bool,
    /// The connection is in no known state (a malformed or unexpected reply,
    /// a reply cut off, the server refusing to talk): it must be closed.
    broken: bool,
    /// The server's LHLO reply (its extensions), for the next transaction.
    lhlo: Option<ServerReply>,
    /// The server answered a command of the transaction itself (MAIL or
    /// later), not only the greeting, LHLO or RSET.
    began: bool,
}

impl LmtpClient {
    /// A transaction waiting for the server's greeting.
    pub fn new(envelope: Envelope) -> Self {
        let mut results: Vec<Option<RecipientResult>> = vec![None; envelope.recipients.len()];
        for (result, path) in results.iter_mut().zip(&envelope.recipients) {
            if !sendable(path) {
                *result = Some(RecipientResult::Unknown(
                    "the recipient has a control character and cannot be sent".to_owned(),
                ));
            }
        }
        let mut client = Self {
            reader: ReplyReader::default(),
            awaiting: VecDeque::from([Awaiting::Greeting]),
            out: Vec::new(),
            pipelining: false,
            mail_parameters: "",
            failed: None,
            accepted: Vec::new(),
            results,
            wants_body: false,
            done: false,
            keep_open: false,
            broken: false,
            lhlo: None,
            began: false,
            envelope,
        };
        if !sendable(&client.envelope.sender) || !sendable(&client.envelope.lhlo_name) {
            client.fail_all("the sender or our name has a control character");
        } else if client.results.iter().all(Option::is_some) {
            client.done = true;
        }
        client
    }

    /// Sends no QUIT after a transaction that ends cleanly, so the connection
    /// can carry the next one ([`LmtpClient::reusable`]).
    #[must_use]
    pub fn keep_open(mut self) -> Self {
        self.keep_open = true;
        self
    }

    /// A transaction on a connection an earlier one left open (it was
    /// [`reusable`](LmtpClient::reusable)): `RSET`, then MAIL as `lhlo` (that
    /// connection's LHLO reply) allows — pipelined with it when the server
    /// offers PIPELINING. Keeps the connection open in turn.
    pub fn resume(envelope: Envelope, lhlo: ServerReply) -> Self {
        let mut client = Self::new(envelope).keep_open();
        client.awaiting.clear();
        if client.done {
            // Nothing can be sent (a control character): the connection stays as it was.
            client.out.clear();
            client.broken = false;
            client.lhlo = Some(lhlo);
            return client;
        }
        client.out.extend_from_slice(b"RSET\r\n");
        client.awaiting.push_back(Awaiting::Rset);
        client.pipelining = lhlo.has_keyword("PIPELINING");
        if client.pipelining {
            client.after_lhlo(&lhlo);
        }
        client.lhlo = Some(lhlo);
        client
    }

    /// True when the transaction is done and the connection can carry the
    /// next one ([`LmtpClient::resume`] with [`LmtpClient::lhlo_reply`]): the
    /// client was made [`keep_open`](LmtpClient::keep_open), every command
    /// got its reply and none was malformed or unexpected.
    pub fn reusable(&self) -> bool {
        self.done && self.keep_open && !self.broken && self.lhlo.is_some()
    }

    /// The server's reply to LHLO on this connection, once known.
    pub fn lhlo_reply(&self) -> Option<&ServerReply> {
        self.lhlo.as_ref()
    }

    /// Whether the server answered MAIL or a later command of this
    /// transaction. If not, nothing of it was taken: on a kept connection that
    /// failed (closed while idle, or RSET refused), the caller may run it
    /// again over a new connection.
    pub fn began(&self) -> bool {
        self.began
    }

    /// Moves the commands to send into `out`.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.out);
    }

    /// True once DATA got its 354: send the message through a [`DotStuffer`]
    /// (it ends with the final dot), then call [`LmtpClient::body_sent`].
    pub fn wants_body(&self) -> bool {
        self.wants_body
    }

    /// The message and its final dot were written.
    pub fn body_sent(&mut self) {
        if !self.wants_body {
            return;
        }
        self.wants_body = false;
        self.awaiting
            .extend(self.accepted.iter().map(|&i| Awaiting::Final(i)));
    }

    /// True when every recipient has its result: send what
    /// [`LmtpClient::poll_transmit`] holds (QUIT) and close.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Feeds the server's bytes; returns how many were used (whole lines).
    /// A malformed reply ends the transaction (every open recipient Unknown).
    pub fn handle_input(&mut self, input: &[u8]) -> usize {
        let mut used = 0;
        while !self.done && !self.wants_body {
            let rest = input.get(used..).unwrap_or_default();
            match self.reader.read(rest) {
                Ok((consumed, Some(reply))) => {
                    used += consumed;
                    self.on_reply(reply);
                }
                Ok((consumed, None)) => return used + consumed,
                Err(error) => {
                    self.break_off(&format!("LMTP server sent a {error}"));
                    return input.len();
                }
            }
        }
        used
    }

    /// The connection ended or timed out: whoever has no result gets `Unknown`.
    pub fn connection_lost(&mut self, why: &str) {
        self.break_off(why);
    }

    /// One result per recipient, in the envelope's order (`Unknown` for any
    /// without one yet).
    pub fn results(&self) -> Vec<RecipientResult> {
        self.results
            .iter()
            .map(|r| {
                r.clone().unwrap_or_else(|| {
                    RecipientResult::Unknown("the transaction did not finish".to_owned())
                })
            })
            .collect()
    }

    fn on_reply(&mut self, reply: ServerReply) {
        let Some(awaiting) = self.awaiting.pop_front() else {
            self.break_off(&format!("LMTP server sent an unexpected reply: {reply}"));
            return;
        };
        self.began |= !matches!(
            awaiting,
            Awaiting::Greeting | Awaiting::Lhlo | Awaiting::Rset
        );
        match awaiting {
            Awaiting::Greeting if reply.code == 220 => {
                let lhlo = format!("LHLO {}\r\n", self.envelope.lhlo_name);
                self.out.extend_from_slice(lhlo.as_bytes());
                self.awaiting.push_back(Awaiting::Lhlo);
            }
            Awaiting::Greeting | Awaiting::Lhlo if !reply.is_positive() => {
                self.broken = true;
                self.refuse_all(reply);
            }
            Awaiting::Greeting => self.break_off(&format!("LMTP greeting was {reply}")),
            Awaiting::Lhlo => self.after_lhlo(&reply),
            Awaiting::Rset if !reply.is_positive() => {
                self.break_off(&format!("LMTP server refused RSET: {reply}"));
            }
            Awaiting::Rset => {
                if !self.pipelining
                    && let Some(lhlo) = self.lhlo.clone()
                {
                    self.after_lhlo(&lhlo);
                }
            }
            Awaiting::Mail if reply.is_positive() => {
                if !self.pipelining {
                    self.send_next_rcpt(0);
                }
            }
            Awaiting::Mail => {
                // Pipelined RCPTs and DATA still get (failing) replies.
                if !self.pipelining && !self.keep_open {
                    self.out.extend_from_slice(b"QUIT\r\n");
                }
                self.failed = Some(reply);
                self.finish_if_idle();
            }
            Awaiting::Rcpt(i) => {
                if self.failed.is_none() {
                    if reply.is_positive() {
                        self.accepted.push(i);
                    } else {
                        self.set(i, RecipientResult::Refused(reply));
                    }
                }
                if !self.pipelining {
                    self.send_next_rcpt(i + 1);
                }
                self.finish_if_idle();
            }
            Awaiting::Data => self.after_data(reply),
            Awaiting::Final(i) => {
                let result = if reply.is_positive() {
                    RecipientResult::Delivered(reply)
                } else {
                    RecipientResult::Refused(reply)
                };
                self.set(i, result);
                self.finish_if_idle();
            }
        }
    }

    fn after_lhlo(&mut self, reply: &ServerReply) {
        self.lhlo = Some(reply.clone());
        self.pipelining = reply.has_keyword("PIPELINING");
        if self.envelope.smtputf8 && !reply.has_keyword("SMTPUTF8") {
            self.refuse_all(ServerReply {
                code: 554,
                lines: vec!["5.6.7 The LMTP server does not offer SMTPUTF8".to_owned()],
            });
            return;
        }
        self.mail_parameters = match (
            self.envelope.smtputf8,
            self.envelope.eight_bit && reply.has_keyword("8BITMIME"),
        ) {
            (true, true) => " BODY=8BITMIME SMTPUTF8",
            (true, false) => " SMTPUTF8",
            (false, true) => " BODY=8BITMIME",
            (false, false) => "",
        };
        let mail = format!(
            "MAIL FROM:<{}>{}\r\n",
            self.envelope.sender, self.mail_parameters
        );
        self.out.extend_from_slice(mail.as_bytes());
        self.awaiting.push_back(Awaiting::Mail);
        if self.pipelining {
            let mut i = 0;
            while let Some(next) = self.next_sendable(i) {
                self.push_rcpt(next);
                i = next + 1;
            }
            self.out.extend_from_slice(b"DATA\r\n");
            self.awaiting.push_back(Awaiting::Data);
        }
    }

    fn after_data(&mut self, reply: ServerReply) {
        if let Some(failed) = self.failed.clone() {
            if reply.code == 354 {
                self.break_off("LMTP server said 354 to DATA after refusing MAIL");
            } else {
                self.refuse_all(failed);
            }
            return;
        }
        if reply.code == 354 && !self.accepted.is_empty() {
            self.wants_body = true;
        } else if reply.is_intermediate() || reply.is_positive() {
            self.break_off(&format!(
                "LMTP server said {reply} to DATA with no recipient accepted"
            ));
        } else {
            for i in std::mem::take(&mut self.accepted) {
                self.set(i, RecipientResult::Refused(reply.clone()));
            }
            self.finish_if_idle();
        }
    }

    fn next_sendable(&self, from: usize) -> Option<usize> {
        (from..self.results.len()).find(|&i| self.results.get(i).is_some_and(Option::is_none))
    }

    fn push_rcpt(&mut self, i: usize) {
        if let Some(path) = self.envelope.recipients.get(i) {
            let rcpt = format!("RCPT TO:<{path}>\r\n");
            self.out.extend_from_slice(rcpt.as_bytes());
            self.awaiting.push_back(Awaiting::Rcpt(i));
        }
    }

    /// Without pipelining: the next RCPT, or DATA after the last (QUIT if none
    /// was accepted).
    fn send_next_rcpt(&mut self, from: usize) {
        match self.next_sendable(from) {
            Some(i) => self.push_rcpt(i),
            None if self.accepted.is_empty() => {
                if !self.keep_open {
                    self.out.extend_from_slice(b"QUIT\r\n");
                }
            }
            None => {
                self.out.extend_from_slice(b"DATA\r\n");
                self.awaiting.push_back(Awaiting::Data);
            }
        }
    }

    fn set(&mut self, i: usize, result: RecipientResult) {
        if let Some(slot) = self.results.get_mut(i) {
            *slot = Some(result);
        }
    }

    /// Done when no reply is awaited: every recipient has its result.
    fn finish_if_idle(&mut self) {
        if !self.awaiting.is_empty() || self.wants_body {
            return;
        }
        if let Some(failed) = self.failed.take() {
            self.refuse_all(failed);
            return;
        }
        self.done = true;
        self.quit_unless_kept();
    }

    /// The server refused the whole transaction: every open recipient gets its reply.
    fn refuse_all(&mut self, reply: ServerReply) {
        for slot in self.results.iter_mut().filter(|r| r.is_none()) {
            *slot = Some(RecipientResult::Refused(reply.clone()));
        }
        self.end();
    }

    /// The connection can carry nothing more: every open recipient is
    /// `Unknown` and QUIT is queued even when kept open.
    fn break_off(&mut self, why: &str) {
        self.broken = true;
        self.fail_all(why);
    }

    fn fail_all(&mut self, why: &str) {
        for slot in self.results.iter_mut().filter(|r| r.is_none()) {
            *slot = Some(RecipientResult::Unknown(why.to_owned()));
        }
        self.end();
    }

    fn end(&mut self) {
        if !self.awaiting.is_empty() || self.wants_body {
            // Replies still due (or a body) would be read by the next
            // transaction as its own.
            self.broken = true;
        }
        self.awaiting.clear();
        self.wants_body = false;
        self.done = true;
        self.quit_unless_kept();
    }

    /// Queues QUIT, unless the connection is kept for another transaction.
    fn quit_unless_kept(&mut self) {
        if (!self.keep_open || self.broken) && !self.out.ends_with(b"QUIT\r\n") {
            self.out.extend_from_slice(b"QUIT\r\n");
        }
    }
}

/// A path or name that can go on a command line: no control characters, no
/// brackets that would end the path early.
fn sendable(text: &str) -> bool {
    !text
        .bytes()
        .any(|b| b < 0x20 || b == 0x7f || b == b'<' || b == b'>')
}
