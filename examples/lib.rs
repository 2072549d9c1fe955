//! The example programs of `net-receiver` (run them from the repository root):
//!
//! - `cargo run --example sample`: the Ruby gem's sample program, in Rust
//!   (`sample.rs`);
//! - `cargo run --release --example config_file -- FILE`: the shortest library
//!   program, serving what `net-receiver --config FILE` serves (`config_file.rs`).
