//! Integration tests of `net-receiver`: real servers (in-process, or the real
//! binary) on 127.0.0.1 with real clients (lettre, Python's smtplib, swaks and raw
//! sockets speaking exact bytes), checking reply codes and the Maildir contents.

mod abuse;
mod auth_support;
mod common;
mod running;
mod tls_support;

mod auth_clients;
mod auth_replies;
mod auth_stores;
mod auth_timing;
mod bdat_sizes;
mod binary;
mod connection_limits;
mod crash;
mod daemon_paths;
mod delivery_outcomes;
mod disconnect;
mod disk_full;
mod dns;
mod dns_end_to_end;
mod dns_server;
mod hooks;
mod ipv6_clients;
mod library;
mod limits;
mod lockout;
mod lockout_policy;
mod lockout_redis;
mod log_injection;
mod message_end;
mod pipelining;
mod policy_layers;
mod proxy;
mod recipient_overshoot;
mod refusal_log;
mod send;
mod server_process;
mod shutdown;
mod smuggling;
mod starttls;
mod timeouts;
mod tls_clients;
mod tls_logs;
mod tls_reload;
mod trace_injection;
