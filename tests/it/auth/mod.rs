//! AUTH: real clients, every reply code, the binary's credential stores and logs, and timing.

mod clients;
mod replies;
mod stores;
mod timing;
