//! The finished transactions a session keeps for the `closed` hook
//! (`cx.transactions`), and the recycled structures they are kept in.
//!
//! Each kept transaction is a whole mail structure: the connection's facts as
//! they were, and the transaction's own MAIL, RCPTs and `data` (without the
//! message). Copying the facts costs a string per field, so each worker thread
//! keeps up to [`SHELLS_KEPT`] structures of ended sessions (without their
//! transaction and anything else that may be large) and copies into their
//! strings instead: once a thread has served a few connections, keeping a
//! transaction allocates nothing for the facts. A session that keeps more than
//! [`MAX_KEPT_TRANSACTIONS`] reuses its oldest one the same way.

use std::cell::RefCell;

use super::{MAX_KEPT_TRANSACTIONS, Session};
use crate::mail::{Mail, id};
use crate::receiver::Receiver;

/// Recycled structures kept per thread.
const SHELLS_KEPT: usize = 64;

thread_local! {
    static SHELLS: RefCell<Vec<Mail>> = const { RefCell::new(Vec::new()) };
}

/// A recycled structure, or a new one.
fn take_shell() -> Mail {
    SHELLS
        .try_with(|shells| shells.borrow_mut().pop())
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Keeps `mail`'s connection strings for a later [`take_shell`]; what may be
/// large goes now: the transaction, DNSBL answers, milter verdicts, extensions,
/// and the texts a hook or a target may make long (quarantine reason, delivery
/// error). What is kept is bounded by the command line's length.
fn give_back(mut mail: Mail) {
    mail.mailfrom = None;
    mail.rcptto = Vec::new();
    mail.data = None;
    mail.dnsbl = None;
    mail.milter = Vec::new();
    mail.extensions = serde_json::Map::new();
    mail.quarantine = None;
    mail.delivery_error = None;
    // During the thread's teardown the pool may be gone: the structure is dropped.
    let _ = SHELLS.try_with(|shells| {
        let mut shells = shells.borrow_mut();
        if shells.len() < SHELLS_KEPT {
            shells.push(mail);
        }
    });
}

impl<R: Receiver> Session<R> {
    /// Files the current transaction (if one was started) into `transactions`, without
    /// its message (bytes, headers, lines: see [`crate::mail::Data::forget_message`]),
    /// and starts a fresh one with a new id.
    pub(super) fn archive(&mut self) {
        if self.mail.mailfrom.is_none() && self.mail.data.is_none() && self.mail.rcptto.is_empty() {
            return;
        }
        let mut done = if self.transactions.len() >= MAX_KEPT_TRANSACTIONS {
            self.transactions.pop_front().unwrap_or_default()
        } else {
            take_shell()
        };
        done.clone_connection_from(&self.mail);
        done.mailfrom = self.mail.mailfrom.take();
        done.rcptto = std::mem::take(&mut self.mail.rcptto);
        done.data = self.mail.data.take();
        if let Some(data) = &mut done.data {
            data.forget_message();
        }
        self.transactions.push_back(done);
        self.transaction_failure_counted = false;
        self.mail.accepted = false;
        self.mail.delivered = None;
        self.mail.delivery_error = None;
        self.reset_transaction_policy();
        self.mail.id = id::new_mail_id();
    }
}

impl<R> Drop for Session<R> {
    fn drop(&mut self) {
        for mail in self.transactions.drain(..) {
            give_back(mail);
        }
    }
}
