//! What a transform instance may touch: nothing beyond the WIT world. WASI is linked (guests
//! built with standard libraries import it) but grants nothing: no preopened directories, no
//! environment, no arguments, no sockets; stdout and stderr go to the logs, bounded
//! ([`super::output`]). Clocks read a frozen
//! instant and randomness is a fixed sequence unless the stage's configuration grants them.
//! Memory is capped per instance; the epoch deadline is set per call by the chain.

use std::time::Duration;

use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{
    HostMonotonicClock, HostWallClock, ResourceTable, WasiCtx, WasiCtxBuilder, WasiCtxView,
    WasiView,
};

use super::bindings::{self, Level, RegistryError, RegistryErrorKind, Schema, SchemaId};
use super::output::GuestOutput;
use super::registry::Registry;

pub use k2mc_formats::config::{DEFAULT_CALL_DEADLINE, DEFAULT_MEMORY_LIMIT};
/// Log lines kept per call; a chatty guest cannot flood the function's logs.
const MAX_LOG_LINES_PER_CALL: u32 = 100;

/// Ambient capabilities a stage's configuration may grant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Grants {
    /// Real wall and monotonic clocks instead of a frozen instant.
    pub clocks: bool,
    /// OS randomness instead of a fixed sequence.
    pub random: bool,
    /// Schemas from the configured registry (WIT `registry`).
    pub registry: bool,
}

/// Per-instance limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub memory: usize,
    pub call_deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: DEFAULT_MEMORY_LIMIT,
            call_deadline: DEFAULT_CALL_DEADLINE,
        }
    }
}

/// The store data of one instance.
pub(crate) struct StageState {
    stage: String,
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    log_lines: u32,
    /// Set only when the stage is granted `registry`.
    registry: Option<Registry>,
}

impl std::fmt::Debug for StageState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageState")
            .field("stage", &self.stage)
            .finish_non_exhaustive()
    }
}

impl StageState {
    /// A locked-down state for `stage`.
    pub(crate) fn new(
        stage: &str,
        grants: Grants,
        limits: Limits,
        registry: Option<Registry>,
    ) -> Self {
        let mut wasi = WasiCtxBuilder::new();
        wasi.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .stdout(GuestOutput::new(stage, "stdout"))
            .stderr(GuestOutput::new(stage, "stderr"));
        if !grants.clocks {
            wasi.wall_clock(FrozenClock).monotonic_clock(FrozenClock);
        }
        if !grants.random {
            wasi.secure_random(wasmtime_wasi::Deterministic::new(vec![0x5a; 32]))
                .insecure_random(wasmtime_wasi::Deterministic::new(vec![0xa5; 32]))
                .insecure_random_seed(0);
        }
        StageState {
            stage: stage.to_owned(),
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory)
                .trap_on_grow_failure(true)
                .build(),
            log_lines: 0,
            registry: registry.filter(|_| grants.registry),
        }
    }

    /// The memory limiter the store installs.
    pub(crate) fn limiter(&mut self) -> &mut dyn ResourceLimiter {
        &mut self.limits
    }

    /// Resets the per-call log budget.
    pub(crate) fn start_call(&mut self) {
        self.log_lines = 0;
    }
}

impl WasiView for StageState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl bindings::parser::kafka2mc::transform::host::Host for StageState {
    fn log(&mut self, level: Level, message: String) {
        self.log_lines += 1;
        if self.log_lines > MAX_LOG_LINES_PER_CALL {
            return;
        }
        let message: String = message.chars().take(1024).collect();
        let stage = self.stage.as_str();
        match level {
            Level::Debug => tracing::debug!(stage, "{message}"),
            Level::Info => tracing::info!(stage, "{message}"),
            Level::Warn => tracing::warn!(stage, "{message}"),
            Level::Error => tracing::error!(stage, "{message}"),
        }
    }
}

impl bindings::parser::kafka2mc::transform::types::Host for StageState {}

impl bindings::registry_parser::kafka2mc::transform::registry::Host for StageState {
    fn schema_by_id(&mut self, id: SchemaId) -> Result<Schema, RegistryError> {
        self.registry()?.by_id(&id)
    }

    fn schema_by_subject(
        &mut self,
        subject: String,
        version: Option<i32>,
    ) -> Result<Schema, RegistryError> {
        self.registry()?.by_subject(&subject, version)
    }
}

impl StageState {
    fn registry(&self) -> Result<&Registry, RegistryError> {
        self.registry.as_ref().ok_or_else(|| RegistryError {
            kind: RegistryErrorKind::NotGranted,
            message: format!(
                "stage '{}' is not granted the schema registry; set registry = true on its [[transforms]] entry and add a [registry] section",
                self.stage
            ),
        })
    }
}

/// A clock stopped at the epoch: deterministic transforms see the same time on every run.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}
