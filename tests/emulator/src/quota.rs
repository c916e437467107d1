//! The batch Tunnel's per-table quotas, as MaxCompute documents them ("Overview of the data
//! transmission service", limits of the regular tunnel; `docs/maxcompute-protocol.md`, "Quotas"):
//! upload sessions created and blocks written per table per 5 minutes, commits per table per
//! 15 seconds, sessions committing at once per table. Each is a flag whose default is the
//! documented value; `--quota-time-scale` compresses every window (60 turns five minutes into
//! five seconds) so a test can run half an hour of quota time in half a minute.
//!
//! Windows slide (a request counts for exactly one window length after it was accepted). An
//! over-quota request is answered `429` with the Tunnel error code `FlowExceeded`, the code
//! MaxCompute's Tunnel error list gives for an exceeded flow quota; the SDKs retry 429 with
//! exponential backoff. Which code each quota uses is not documented; this one is our choice.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde::Serialize;

use crate::error::ApiError;

/// The limits in force (flags at start).
#[derive(Debug, Clone, clap::Args)]
pub struct QuotaArgs {
    /// Upload sessions a table may create per 5 minutes (MaxCompute: 500).
    #[arg(long, default_value_t = 500)]
    pub quota_sessions: usize,
    /// Blocks a table may be written per 5 minutes (MaxCompute: 500).
    #[arg(long, default_value_t = 500)]
    pub quota_blocks: usize,
    /// Commits a table may take per 15 seconds (MaxCompute: 75).
    #[arg(long, default_value_t = 75)]
    pub quota_commits: usize,
    /// Sessions of a table committing at once (MaxCompute: 32).
    #[arg(long, default_value_t = 32)]
    pub quota_committing: usize,
    /// Divides every quota window: 60 makes five minutes five seconds.
    #[arg(long, default_value_t = 1.0)]
    pub quota_time_scale: f64,
    /// How long a commit takes, in milliseconds (it holds a committing slot meanwhile).
    #[arg(long, default_value_t = 0)]
    pub commit_ms: u64,
}

/// One table's accepted requests inside the current windows.
#[derive(Debug, Default)]
struct TableUse {
    sessions: VecDeque<Instant>,
    blocks: VecDeque<Instant>,
    commits: VecDeque<Instant>,
    committing: usize,
}

/// What the quotas did, for `GET /_emulator/quotas`.
#[derive(Debug, Default, Clone, Serialize)]
pub struct QuotaCounts {
    /// Accepted, per table (`project.table`).
    pub sessions: HashMap<String, u64>,
    pub blocks: HashMap<String, u64>,
    pub commits: HashMap<String, u64>,
    /// Refused with 429, per quota name.
    pub refused: HashMap<String, u64>,
    /// The most sessions of one table seen committing at once.
    pub max_committing: usize,
    /// Per table, every committed session's block sizes (uncompressed bytes, by block id): what
    /// a scale test checks block sizes against.
    pub committed_blocks: HashMap<String, Vec<Vec<u64>>>,
}

/// The quotas' state behind one lock.
#[derive(Debug)]
pub struct Quotas {
    args: QuotaArgs,
    tables: HashMap<String, TableUse>,
    counts: QuotaCounts,
}

/// Which windowed quota a request draws on.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Session,
    Block,
    Commit,
}

impl Quotas {
    pub fn new(args: QuotaArgs) -> Self {
        Quotas {
            args,
            tables: HashMap::new(),
            counts: QuotaCounts::default(),
        }
    }

    /// The limits as set.
    pub fn args(&self) -> &QuotaArgs {
        &self.args
    }

    /// What the quotas accepted and refused so far.
    pub fn counts(&self) -> QuotaCounts {
        self.counts.clone()
    }

    fn window(&self, documented: Duration) -> Duration {
        documented.div_f64(self.args.quota_time_scale.max(1e-6))
    }

    /// Takes one request of `kind` for `table` at `now`, or refuses it as MaxCompute would.
    pub fn take(&mut self, table: &str, kind: Kind, now: Instant) -> Result<(), ApiError> {
        let (limit, documented, name) = match kind {
            Kind::Session => (
                self.args.quota_sessions,
                Duration::from_secs(300),
                "upload sessions per 5 minutes",
            ),
            Kind::Block => (
                self.args.quota_blocks,
                Duration::from_secs(300),
                "blocks per 5 minutes",
            ),
            Kind::Commit => (
                self.args.quota_commits,
                Duration::from_secs(15),
                "commits per 15 seconds",
            ),
        };
        let window = self.window(documented);
        let used = self.tables.entry(table.to_owned()).or_default();
        let log = match kind {
            Kind::Session => &mut used.sessions,
            Kind::Block => &mut used.blocks,
            Kind::Commit => &mut used.commits,
        };
        while log
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= window)
        {
            log.pop_front();
        }
        if log.len() >= limit {
            *self.counts.refused.entry(name.to_owned()).or_default() += 1;
            return Err(flow_exceeded(table, &format!("{limit} {name}")));
        }
        log.push_back(now);
        let accepted = match kind {
            Kind::Session => &mut self.counts.sessions,
            Kind::Block => &mut self.counts.blocks,
            Kind::Commit => &mut self.counts.commits,
        };
        *accepted.entry(table.to_owned()).or_default() += 1;
        Ok(())
    }

    /// Takes a committing slot of `table`; give it back with [`Quotas::end_commit`].
    pub fn begin_commit(&mut self, table: &str) -> Result<(), ApiError> {
        let limit = self.args.quota_committing;
        let used = self.tables.entry(table.to_owned()).or_default();
        if used.committing >= limit {
            *self
                .counts
                .refused
                .entry("sessions committing at once".to_owned())
                .or_default() += 1;
            return Err(flow_exceeded(
                table,
                &format!("{limit} sessions committing at once"),
            ));
        }
        used.committing += 1;
        self.counts.max_committing = self.counts.max_committing.max(used.committing);
        Ok(())
    }

    /// Notes a committed session of `table` and the sizes of its blocks.
    pub fn committed(&mut self, table: &str, block_sizes: Vec<u64>) {
        self.counts
            .committed_blocks
            .entry(table.to_owned())
            .or_default()
            .push(block_sizes);
    }

    /// Gives back a committing slot.
    pub fn end_commit(&mut self, table: &str) {
        if let Some(used) = self.tables.get_mut(table) {
            used.committing = used.committing.saturating_sub(1);
        }
    }
}

fn flow_exceeded(table: &str, quota: &str) -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "FlowExceeded",
        format!("Your flow quota is exceeded: table {table} is over its quota of {quota}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quotas(sessions: usize, commits: usize, scale: f64) -> Quotas {
        Quotas::new(QuotaArgs {
            quota_sessions: sessions,
            quota_blocks: 500,
            quota_commits: commits,
            quota_committing: 1,
            quota_time_scale: scale,
            commit_ms: 0,
        })
    }

    #[test]
    fn a_window_refuses_past_its_limit_and_frees_as_it_slides() {
        let mut q = quotas(2, 75, 300.0); // five minutes become one second
        let t0 = Instant::now();
        assert!(q.take("p.t", Kind::Session, t0).is_ok());
        assert!(q.take("p.t", Kind::Session, t0).is_ok());
        let err = q.take("p.t", Kind::Session, t0).unwrap_err();
        assert_eq!(err.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(err.code, "FlowExceeded");
        // Another table has its own quota.
        assert!(q.take("p.u", Kind::Session, t0).is_ok());
        assert!(
            q.take("p.t", Kind::Session, t0 + Duration::from_millis(999))
                .is_err()
        );
        assert!(
            q.take("p.t", Kind::Session, t0 + Duration::from_millis(1000))
                .is_ok()
        );
        assert_eq!(q.counts().refused["upload sessions per 5 minutes"], 2);
        assert_eq!(q.counts().sessions["p.t"], 3);
    }

    #[test]
    fn committing_slots_are_given_back() {
        let mut q = quotas(500, 75, 1.0);
        q.begin_commit("p.t").unwrap();
        assert!(q.begin_commit("p.t").is_err());
        q.end_commit("p.t");
        assert!(q.begin_commit("p.t").is_ok());
        assert_eq!(q.counts().max_committing, 1);
    }
}
