//! Log scopes: whose commit log a batch belongs to. The main log of a Kafka cluster, a named
//! backfill's own log beside it, or the log of one replayed dead-letter object. A scope is the
//! first path segment under `log/`, `intents/`, `staged/` and `dead-letters/` in the staging
//! bucket and the `cluster` field of a batch's identity, spelled `<cluster>`,
//! `<cluster>~backfill-<name>` or `<cluster>~replay-<object>` (`docs/architecture.md`, "The
//! commit log").

use std::fmt;

const BACKFILL: &str = "~backfill-";
const REPLAY: &str = "~replay-";

/// Which log of a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScopeKind {
    /// The cluster's own log: schedule ticks and event batches.
    Main,
    /// A backfill's log: a bounded range loaded once, resumable by its name.
    Backfill { name: String },
    /// A replay of one dead-letter object (its key's hash), so it loads at most once.
    Replay { object: String },
}

/// A commit log's scope: a cluster and which of its logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LogScope {
    cluster: String,
    kind: ScopeKind,
}

impl LogScope {
    /// The main log of `cluster`.
    pub fn main(cluster: impl Into<String>) -> Self {
        LogScope {
            cluster: cluster.into(),
            kind: ScopeKind::Main,
        }
    }

    /// The log of the backfill `name` of `cluster`; `/` and `:` in the name become `_` so the
    /// scope stays one path segment.
    pub fn backfill(cluster: impl Into<String>, name: &str) -> Self {
        LogScope {
            cluster: cluster.into(),
            kind: ScopeKind::Backfill {
                name: name.replace(['/', ':'], "_"),
            },
        }
    }

    /// The log of the replay of dead-letter object `object` (an id, not a key) of `cluster`.
    pub fn replay(cluster: impl Into<String>, object: impl Into<String>) -> Self {
        LogScope {
            cluster: cluster.into(),
            kind: ScopeKind::Replay {
                object: object.into(),
            },
        }
    }

    /// Reads a scope as [`fmt::Display`] writes it. Every string is some scope: one without a
    /// backfill or replay suffix is a main log.
    pub fn parse(text: &str) -> Self {
        let at = |marker: &'static str| text.find(marker).map(|i| (i, marker));
        let first = match (at(BACKFILL), at(REPLAY)) {
            (Some(b), Some(r)) => Some(if b.0 < r.0 { b } else { r }),
            (b, r) => b.or(r),
        };
        match first {
            None => LogScope::main(text),
            Some((i, marker)) => {
                let rest = text[i + marker.len()..].to_owned();
                LogScope {
                    cluster: text[..i].to_owned(),
                    kind: if marker == BACKFILL {
                        ScopeKind::Backfill { name: rest }
                    } else {
                        ScopeKind::Replay { object: rest }
                    },
                }
            }
        }
    }

    /// The Kafka cluster id the scope belongs to.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// Which log of the cluster.
    pub fn kind(&self) -> &ScopeKind {
        &self.kind
    }
}

impl fmt::Display for LogScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ScopeKind::Main => f.write_str(&self.cluster),
            ScopeKind::Backfill { name } => write!(f, "{}{BACKFILL}{name}", self.cluster),
            ScopeKind::Replay { object } => write!(f, "{}{REPLAY}{object}", self.cluster),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(text: &str, cluster: &str, kind: ScopeKind) {
        let scope = LogScope::parse(text);
        assert_eq!(scope.cluster(), cluster, "{text}");
        assert_eq!(scope.kind(), &kind, "{text}");
        assert_eq!(scope.to_string(), text, "round trip");
    }

    #[test]
    fn scopes_parse_and_print_the_same() {
        check("prod", "prod", ScopeKind::Main);
        check("", "", ScopeKind::Main);
        check(
            "prod~backfill-2024_may",
            "prod",
            ScopeKind::Backfill {
                name: "2024_may".into(),
            },
        );
        check(
            "prod~replay-0a1b2c3d4e5f6071",
            "prod",
            ScopeKind::Replay {
                object: "0a1b2c3d4e5f6071".into(),
            },
        );
        // A replay inside a replay keeps the rest as the object: still the cluster's replay.
        check(
            "prod~replay-aa~replay-bb",
            "prod",
            ScopeKind::Replay {
                object: "aa~replay-bb".into(),
            },
        );
        check(
            "prod~backfill-x~replay-y",
            "prod",
            ScopeKind::Backfill {
                name: "x~replay-y".into(),
            },
        );
        check("pro~d", "pro~d", ScopeKind::Main);
    }

    #[test]
    fn backfill_names_stay_one_path_segment() {
        let scope = LogScope::backfill("c", "time:2024-05-01T00:00:00Z/x");
        assert_eq!(scope.to_string(), "c~backfill-time_2024-05-01T00_00_00Z_x");
    }

    #[test]
    fn every_log_of_a_cluster_names_that_cluster() {
        // The dead-letter listing takes a cluster's main log, backfills and replays.
        let of = |text: &str| LogScope::parse(text).cluster() == "prod";
        assert!(of("prod"));
        assert!(of("prod~replay-ab"));
        assert!(of("prod~replay-ab~replay-cd"));
        assert!(of("prod~backfill-x"));
        assert!(!of("prod2"));
        assert!(!of("pro"));
        assert!(!of("prod2~replay-ab"));
    }
}
