//! Fault knobs for reliability tests, set by flags at start or at run time through the
//! unauthenticated admin endpoint `/_emulator/faults` (the emulator only listens on loopback).
//!
//! `POST /_emulator/faults` with a JSON object sets any of the knobs below; `GET` returns them with
//! how often each has fired; `POST /_emulator/uploads/{id}/expire` expires one upload session.

use serde::{Deserialize, Serialize};

/// Armed faults. Counters count down as faults fire.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Answer the next N commits with 500 and do not commit.
    pub fail_commits: u32,
    /// Commit the next N sessions but answer 500 (the ambiguous case).
    pub ambiguous_commits: u32,
    /// Answer the next N block uploads with 503 and drop the block.
    pub fail_blocks: u32,
    /// Answer the next N Tunnel requests with 429.
    pub throttle: u32,
    /// Delay every request by this many milliseconds.
    pub latency_ms: u64,
    /// Report `CLOSING` for the next N status reads of a committed session (a commit the
    /// server has not finished).
    pub closing_reads: u32,
    /// Report `CRITICAL` for the next N status reads of a session that is not committed.
    pub critical_reads: u32,
}

/// How often each fault has fired since start.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Fired {
    pub fail_commits: u64,
    pub ambiguous_commits: u64,
    pub fail_blocks: u64,
    pub throttle: u64,
    pub expired_sessions: u64,
    pub closing_reads: u64,
    pub critical_reads: u64,
}

/// Knobs and counters behind one lock.
#[derive(Debug, Default)]
pub struct FaultState {
    pub armed: Faults,
    pub fired: Fired,
}

impl FaultState {
    /// Takes one shot of a counter knob, returning whether it fired.
    pub fn take(
        &mut self,
        pick: fn(&mut Faults) -> &mut u32,
        count: fn(&mut Fired) -> &mut u64,
    ) -> bool {
        let knob = pick(&mut self.armed);
        if *knob == 0 {
            return false;
        }
        *knob -= 1;
        *count(&mut self.fired) += 1;
        true
    }
}
