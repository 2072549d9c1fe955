//! Integration tests of `net-receiver`: real servers (in-process, or the real
//! binary) on 127.0.0.1 with real clients (lettre, Python's smtplib, swaks and raw
//! sockets speaking exact bytes), checking reply codes and the Maildir contents.

mod common;

mod binary;
mod disconnect;
mod hooks;
mod limits;
mod pipelining;
mod send;
mod smuggling;
mod timeouts;
