//! Harnesses for gregor's `cargo fuzz` targets (`fuzz_targets/`), kept in a library so that the
//! target files stay one call each and the seed generator shares their encoders.
//!
//! - [`request`]: `request_path`, request frames through `gregor::api::handle` on a live
//!   in-process broker ([`broker`]) with a real ZooKeeper ([`zookeeper`]), Produce CRCs
//!   repaired first ([`fixup`]).
//! - [`batch`]: `batch_validator`, record batches through the produce path's framing check and
//!   `Log::append_as_leader` (Kafka's `LogValidator`) on a real log.
//! - [`seeds`]: the generated seed corpora (`scripts/fuzz.sh` writes them).

pub mod batch;
pub mod broker;
pub mod fixup;
pub mod request;
pub mod seeds;
pub mod zookeeper;
