//! The SMTP session over a socket: mail, pipelining, BDAT, limits, smuggling, hooks.

mod bdat_sizes;
mod delivery_outcomes;
mod disconnect;
mod hooks;
mod kept_transactions;
mod library;
mod limits;
mod message_end;
mod pipelining;
mod policy_layers;
mod recipient_overshoot;
mod send;
mod smuggling;
mod spool;
mod timeouts;
mod trace_injection;
