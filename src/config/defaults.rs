//! The default of every configuration key (what docs/config.md lists), and
//! the settings they make.

use std::path::PathBuf;

use std::sync::Arc;
use std::time::Duration;

use super::{Config, FailureKind, LineEndingPolicy, Settings, local_hostname};
use crate::lockout::Policy;
use crate::protocol::Limits;
use crate::protocol::machine::ehlo_keywords;

impl Default for Config {
    fn default() -> Self {
        let limits = Limits::default();
        Self {
            server_name: None,
            listening_ports: vec!["127.0.0.1:2525".to_owned()],
            maildir: PathBuf::from("mail"),
            sender_character_check: true,
            recipient_character_check: true,
            max_message_size: limits.max_message_size,
            max_header_size: limits.max_header_size,
            max_recipients: limits.max_recipients,
            max_errors: limits.max_errors,
            max_command_line: limits.max_command_line,
            max_text_line: limits.max_text_line,
            command_timeout: limits.command_timeout.as_secs_f64(),
            data_timeout: limits.data_timeout.as_secs_f64(),
            bare_line_ending: LineEndingPolicy::Reject,
            quiet: false,
            no_deliver: false,
            spool_dir: None,
            spool_max_bytes: 1 << 30,
            spool_commit_delay: crate::spool::SpoolOptions::new("")
                .commit_delay
                .as_secs_f64(),
            deliver: Vec::new(),
            json_file: None,
            listeners: Vec::new(),
            certificate: None,
            private_key: None,
            keep_generated_certificate: false,
            tls_handshake_timeout: 30.0,
            max_connections: 10_000,
            max_connections_per_ip: 50,
            per_ip_limit_exceptions: vec!["127.0.0.0/8".to_owned(), "::1/128".to_owned()],
            ipv6_prefix_length: 64,
            shutdown_grace: 30.0,
            workers: 0,
            proxy_trusted_networks: Vec::new(),
            user_name: None,
            group_name: None,
            working_directory: None,
            pid_file: None,
            metrics_listen: None,
            hooks: Vec::new(),
            sender_callout: false,
            recipient_callout: false,
            callout_target: None,
            callout_port: 25,
            callout_max_hosts: 2,
            callout_random: false,
            callout_defer_on_tempfail: false,
            callout_connect_timeout: 30.0,
            callout_command_timeout: 30.0,
            callout_positive_ttl: 7.0 * 86_400.0,
            callout_negative_ttl: 3.0 * 3600.0,
            callout_tempfail_ttl: 600.0,
            callout_rate_limit: 10,
            callout_cache: None,
            milters: Vec::new(),
            daemon: false,
            log_file: None,
            log_format: crate::logging::LogFormat::Seed,
            max_failed_msgs_per_period: 3,
            lockout_period: 600.0,
            lockout_store: None,
            dns_servers: Vec::new(),
            dns_timeout: 5.0,
            dnsbl_zones: Vec::new(),
            ehlo_validation_check: false,
            sender_mx_check: None,
            recipient_mx_check: None,
            auth: None,
            allow_plaintext_auth: false,
            passwd_file: None,
            password_db: None,
            password_query: None,
            password_db_timeout: 5.0,
            auth_failure_delay: 1.0,
            lockout_counts: vec![
                FailureKind::Auth,
                FailureKind::Mail,
                FailureKind::Rcpt,
                FailureKind::Data,
                FailureKind::Abuse,
            ],
        }
    }
}

impl Settings {
    /// Settings from the default configuration (for tests and embedding).
    pub fn from_defaults() -> Self {
        match Config::default().settings() {
            Ok(settings) => settings,
            Err(_) => {
                let limits = Limits::default();
                let config = Config::default();
                Self {
                    server_name: limits.server_name.clone(),
                    local_hostname: local_hostname(),
                    sender_character_check: true,
                    recipient_character_check: true,
                    ehlo_keywords: ehlo_keywords(&limits),
                    limits: Arc::new(limits),
                    tls_handshake_timeout: Duration::from_secs_f64(config.tls_handshake_timeout),
                    max_connections: config.max_connections,
                    max_connections_per_ip: config.max_connections_per_ip,
                    shutdown_grace: Duration::from_secs_f64(config.shutdown_grace),
                    proxy_trusted_networks: Vec::new(),
                    per_ip_limit_exceptions: Vec::new(),
                    ipv6_prefix_length: config.ipv6_prefix_length,
                    lockout_policy: Policy::default(),
                    lockout_counts: config.lockout_counts,
                    auth: false,
                    allow_plaintext_auth: false,
                    ehlo_validation_check: false,
                    sender_mx_check: true,
                    recipient_mx_check: true,
                    auth_failure_delay: Duration::from_secs(1),
                }
            }
        }
    }
}
