//! Hand-off to what comes after the receiver: LMTP to a real Dovecot, NATS
//! JetStream, signed webhooks to a real endpoint, and the `[[deliver]]` chain
//! in the binary.

mod chain;
mod lmtp;
mod nats;
mod webhook;
