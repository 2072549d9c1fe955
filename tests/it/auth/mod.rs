//! AUTH: real clients, every reply code, the binary's credential stores (PostgreSQL
//! and MariaDB included) and logs, and timing.

mod clients;
mod db_servers;
mod replies;
mod stores;
mod timing;
