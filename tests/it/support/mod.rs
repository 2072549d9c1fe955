//! Helpers all areas share: servers, clients, the binary, AUTH, TLS, DNS, Redis,
//! PostgreSQL and MariaDB.

pub(crate) mod auth;
pub(crate) mod common;
pub(crate) mod database_server;
pub(crate) mod dns_server;
pub(crate) mod dovecot;
pub(crate) mod exchanger;
pub(crate) mod hook_server;
pub(crate) mod nats_server;
pub(crate) mod postfix;
pub(crate) mod redis_server;
pub(crate) mod running;
pub(crate) mod service;
pub(crate) mod test_ca;
pub(crate) mod tls;
pub(crate) mod webhook_server;
