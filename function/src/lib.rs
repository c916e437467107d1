//! kafka-to-maxcompute: moves Kafka records into MaxCompute exactly once.
//!
//! # Layout
//!
//! The data flow, from an invocation to a committed batch (`docs/architecture.md` has the
//! invariants and the commit protocol):
//!
//! - [`handler`]: the Lambda entry point; an event becomes a [`trigger::Trigger`], then a
//!   response or one classified error.
//! - [`app`]: the cold start (config, secrets, clients, chain, table check and schema
//!   evolution) and [`app::App::invoke`]: plan, sync each partition, report.
//! - [`pipeline`]: one partition's batches, one call per stage in [`pipeline::run_batch`]:
//!   - [`pipeline::plan`] (pure): trigger → work, offset specs, batch and byte cuts;
//!   - [`pipeline::fetch`]: checked reads over a narrow seam on rskafka, the range reader;
//!   - [`transform`]: the WebAssembly chain (host, sandbox, artifacts, schema registry);
//!   - [`pipeline::encode`] (pure) and [`pipeline::route`]: rows → Tunnel blocks per partition;
//!   - [`pipeline::stage`]: blocks and dead letters into the bucket, the batch's accounting;
//!   - [`pipeline::load`]: Tunnel sessions, resumed from the intent;
//!   - [`pipeline::commit`]: intents and the commit log, per log scope.
//! - [`report`]: what an invocation did; [`metrics`] emits it.
//!
//! Beside the flow: [`kafka`] (connection, TLS, SASL), [`staging`] (the bucket), [`maxcompute`]
//! (REST and Tunnel client), [`deadletters`] (listing and reading back), [`secrets`],
//! [`config`], [`error`] (every layer's error and its one classification), [`fault`] (crash
//! points for the exactly-once tests). The pure formats (config, events, Tunnel records, dead
//! letters, log scopes) are the `k2mc-formats` crate.

// Items of private modules are `pub(crate)`, so dead code shows (docs/architecture.md, "Code map").
#![warn(unreachable_pub)]

pub mod app;
pub mod config;
pub mod deadletters;
pub mod error;
pub mod fault;
pub mod handler;
pub mod kafka;
pub mod maxcompute;
pub mod metrics;
pub mod pipeline;
pub mod report;
pub mod secrets;
pub mod staging;
pub mod transform;
pub mod trigger;
