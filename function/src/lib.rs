//! kafka-to-maxcompute: moves Kafka records into MaxCompute exactly once.
//!
//! The pipeline runs trigger → plan → fetch → transform → encode → stage → load → commit; see the
//! README's Architecture section for the invariants. This crate holds the stages and the clients
//! they use; `main.rs` is the `k2mc` binary (Lambda bootstrap and local CLI).

pub mod app;
pub mod commitlog;
pub mod config;
pub mod encode;
pub mod error;
pub mod fault;
pub mod kafka;
pub mod load;
pub mod maxcompute;
pub mod metrics;
pub mod pipeline;
pub mod plan;
pub mod route;
pub mod secrets;
pub mod staging;
pub mod transform;
pub mod trigger;
