//! Helpers all areas share: servers, clients, the binary, AUTH, TLS, DNS and Redis.

pub(crate) mod auth;
pub(crate) mod common;
pub(crate) mod dns_server;
pub(crate) mod dovecot;
pub(crate) mod hook_server;
pub(crate) mod redis_server;
pub(crate) mod running;
pub(crate) mod tls;
