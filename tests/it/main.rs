//! The one integration test binary. Each module drives real processes on loopback: the
//! MaxCompute emulator (shared by most tests, started once) and pyodps as the referee.

// Tests state their expectations with unwrap; request paths elsewhere may not.
#![allow(clippy::unwrap_used)]

mod case;
mod deploy;
mod emulator;
mod exactly_once;
mod faults;
mod history;
mod hostile;
mod kafka_tls;
mod maxcompute;
mod msk_iam;
mod packed;
mod pipeline;
mod quotas;
mod registry;
mod retention;
mod rows;
mod scale;
mod secrets;
mod stack;
mod transforms;
mod transforms_cli;
