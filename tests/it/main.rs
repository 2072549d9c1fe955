//! Integration tests of `net-receiver`: real servers (in-process, or the real
//! binary) on 127.0.0.1 with real clients (lettre, Python's smtplib, swaks and raw
//! sockets speaking exact bytes), checking reply codes and the Maildir contents.
//!
//! One folder per area, each `mod.rs` listing its files; the helpers they share
//! (servers, clients, the binary as a child process, TLS, DNS, Redis) are in
//! `support/`.

mod support;

mod abuse;
mod auth;
mod callout;
mod dns;
mod handoff;
mod hooks;
mod lockout;
mod milter;
mod process;
mod smtp;
mod tls;
