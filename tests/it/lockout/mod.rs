//! Keeping clients out: lockout (memory, Redis), connection limits, IPv6, PROXY.

mod connection_limits;
mod failures;
mod ipv6_clients;
mod policy;
mod proxy;
mod redis;
