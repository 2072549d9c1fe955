//! DNS on a loopback server: lookups, sender authentication, the binary end to end.

mod auth;
mod end_to_end;
mod fixtures;
mod lookups;
