//! The real binary as a process: privileges, daemon, signals, crashes, disk, logs, systemd.

mod binary;
mod check_config;
mod crash;
mod daemon_paths;
mod disk_full;
mod generated_docs;
mod json_logs;
mod log_injection;
mod metrics;
mod refusal_log;
pub(crate) mod server_process;
mod shutdown;
mod spool_power;
mod systemd;
