//! The sans-IO SMTP core: bytes in, events and reply bytes out.
//!
//! Nothing in here touches a socket, a task or the clock: time comes in as an
//! argument. [`Machine`] is the session state machine; [`command`] parses command
//! lines, [`address`] the MAIL/RCPT paths, [`data`] decodes DATA, and [`reply`] holds
//! the reply type every other part of the crate speaks.

pub mod address;
pub mod command;
pub mod data;
pub mod lmtp;
pub mod machine;
pub mod milter;
pub mod proxy;
pub mod reply;

pub use address::{Mailbox, Path};
pub use data::{BareLineEnding, DataOutcome};
pub use machine::{
    Body, ConnectionOptions, Credentials, Event, Facts, Greeting, Limits, Machine, Mechanism,
    MessageEnd, PathRequest, Progress, Refusal, Secret,
};
pub use reply::{Enhanced, Reply};
