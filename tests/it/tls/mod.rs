//! TLS: STARTTLS and implicit TLS, real TLS clients, certificate reload, TLS logs.

mod clients;
mod logs;
mod permissions;
mod reload;
mod starttls;
