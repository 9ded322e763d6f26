//! Small leaf helpers shared by every layer; they use no other gregor module.
//!
//! - [`clock`]: wall-clock milliseconds, the unit of Kafka timestamps.
//! - [`sync`]: poison-ignoring lock guards.
//! - [`fd_limit`]: the process's open-file limit (raised at start, named in errors).
//! - [`periodic`]: a job run at a fixed interval until shutdown.

pub mod clock;
pub mod fd_limit;
pub mod periodic;
pub mod sync;
