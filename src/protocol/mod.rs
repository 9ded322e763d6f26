//! The Kafka wire protocol as gregor speaks it: framing, request headers, the table of API
//! versions the broker advertises, the RecordBatch v2 view, and a small client for
//! broker-to-broker requests. A leaf module: it depends on nothing else in the crate. Error
//! codes are kafka-protocol's `ResponseError`; only `api` produces them.
//!
//! Message bodies are the `kafka-protocol` crate's (pinned to 0.15, the last release generated from
//! ZooKeeper-era schemas). Record data stays as raw `Bytes` everywhere.

pub mod batch;
pub mod batch_builder;
pub mod client;
pub mod compression;
pub mod control;
pub mod file_region;
pub mod frame;
pub mod frame_reader;
pub mod versions;

pub use frame::{decode_header, encode_response, RequestFrame};
