//! Hand-off to what comes after the receiver: LMTP to a real Dovecot, NATS
//! JetStream, signed webhooks, the `[[deliver]]` chain in the binary, and the
//! scale-out of `deploy/scale-out/` (HAProxy, three receivers, Redis, a
//! JetStream cluster).

mod chain;
mod lmtp;
mod nats;
mod scale_out;
mod webhook;
