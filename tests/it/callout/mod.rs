//! SMTP callouts (issue 17): the real binary verifying senders and recipients
//! against real SMTP servers on loopback — small Rust exchangers that know some
//! users, accept all, tempfail or never answer, a second net-receiver binary,
//! and a private Postfix — found through the loopback test DNS zone. Cache
//! hits are seen as connections that were not made.

mod exchangers;
mod postfix;
mod shared_cache;
mod support;
