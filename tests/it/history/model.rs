//! The history test's pieces: what it produces, the transform versions and templates a deploy
//! switches between, a `k2mc` command of a round (with kills and an operator's settlement by
//! evidence), and the oracle that checks each table against what was produced.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};

use rand::Rng;
use rand::rngs::StdRng;

use harness::stack::shared_stack;

use crate::case::{Case, landed_rows, rt};

/// What the history produced at each offset of its one partition.
#[derive(Debug, Clone)]
pub(super) enum Produced {
    /// A vehicle (id, day): a row under every version.
    Vehicle(u32, u32),
    /// A vehicle without an id (id, day): a dead letter under v1, a row (null id) under v2.
    Anonymous(u32, u32),
    /// Not JSON: a dead letter under every version.
    Poison(String),
}

impl Produced {
    pub(super) fn bytes(&self) -> (Option<Vec<u8>>, Vec<u8>) {
        match self {
            Produced::Vehicle(id, day) => {
                let (key, value) = crate::case::vehicle(*id, *day);
                (Some(key), value)
            }
            Produced::Anonymous(id, day) => (
                None,
                format!(
                    r#"{{"average_speed":1.5,"total_miles":{id},"ts":"2024-01-{day:02} 09:00:00","owner":{{"phone":"1390013{:04}"}}}}"#,
                    id % 10000
                )
                .into_bytes(),
            ),
            Produced::Poison(v) => (None, v.clone().into_bytes()),
        }
    }
}

/// An MSK event delivering `range` of partition 0 with the bytes the broker holds.
pub(super) fn delivery(topic: &str, model: &[Produced], range: Range<usize>) -> serde_json::Value {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let records: Vec<serde_json::Value> = range
        .map(|o| {
            let (key, value) = model[o].bytes();
            let mut r = serde_json::json!({"topic": topic, "partition": 0, "offset": o,
                "timestamp": 0, "timestampType": "CREATE_TIME", "value": b64.encode(value), "headers": []});
            if let Some(key) = key {
                r["key"] = b64.encode(key).into();
            }
            r
        })
        .collect();
    serde_json::json!({"eventSource": "aws:kafka", "eventSourceArn": "arn:aws:kafka:x",
        "bootstrapServers": "b:9092", "records": {format!("{topic}-0"): records}})
}

/// The two transform versions a deploy switches between: v1 refuses a record without a vehicle
/// id and masks phones by pattern; v2 takes it (a null id) and hashes phones. Rows say which
/// version loaded them, so the oracle can check that one batch's rows come from one version.
pub(super) fn write_versions(case: &Case<'_>, dir: &Path) -> [PathBuf; 2] {
    let v1 = std::fs::read_to_string(&case.config).unwrap();
    let (nullable, mask) = (r#""nullable": false"#, r#""column.owner_phone" = "phone""#);
    assert!(v1.contains(nullable) && v1.contains(mask), "{v1}");
    let v2 = v1
        .replace(nullable, r#""nullable": true"#)
        .replace(mask, r#""column.owner_phone" = "sha256""#);
    let paths = [dir.join("v1.toml"), dir.join("v2.toml")];
    std::fs::write(&paths[0], v1).unwrap();
    std::fs::write(&paths[1], v2).unwrap();
    paths
}

/// The two destination partition templates a deploy switches between.
pub(super) const TEMPLATES: [&str; 2] = ["ds={event_time:%Y%m%d}", "ds=d{event_time:%Y%m%d}"];

/// A table the history loads into and the offsets it must hold: the main sync's table (all
/// offsets produced) or one backfill's.
pub(super) struct Family {
    pub(super) table: String,
    pub(super) range: Range<i64>,
    pub(super) backfill: Option<String>,
}

/// One `k2mc` command of the history: its config version and environment.
pub(super) struct Run<'a> {
    pub(super) case: &'a Case<'a>,
    pub(super) config: &'a Path,
    pub(super) env: Vec<(String, String)>,
}

impl Run<'_> {
    pub(super) fn k2mc(&self, args: &[&str]) -> (bool, String, String) {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.case.k2mc_with(self.config, args, &env)
    }

    /// The same command killed at one of `points` (a random one, at its first or second pass)
    /// in `share` of the runs.
    pub(super) fn crashing(
        &self,
        rng: &mut StdRng,
        share: f64,
        points: &[&str],
    ) -> (Run<'_>, Option<String>) {
        let mut env = self.env.clone();
        let crash = rng.random_bool(share).then(|| {
            format!(
                "{}:{}",
                points[rng.random_range(0..points.len())],
                rng.random_range(1..3)
            )
        });
        if let Some(c) = &crash {
            env.push((k2mc::fault::ENV.to_owned(), c.clone()));
        }
        let run = Run {
            case: self.case,
            config: self.config,
            env,
        };
        (run, crash)
    }

    /// Runs `args` until it succeeds, settling by evidence (as the error asks an operator to)
    /// any batch whose commit an expired session left unknown. Returns the settlements made.
    pub(super) fn until_ok(&self, args: &[&str], emulator: &harness::Emulator) -> Vec<String> {
        let mut settled = Vec::new();
        let mut last = String::new();
        for _ in 0..10 {
            let (ok, _, stderr) = self.k2mc(args);
            if ok {
                return settled;
            }
            if let Some(cmd) = settle_by_evidence(&stderr, emulator) {
                let argv: Vec<&str> = cmd.split_whitespace().collect();
                let (ok, _, err) = self.k2mc(&argv);
                assert!(ok, "{cmd}: {err}");
                settled.push(cmd);
            }
            last = stderr;
        }
        panic!("{args:?} never succeeded: {last}")
    }
}

/// The settle command a `commit-unknown` error asks for, decided as an operator would: by
/// whether the rows of the session are in the table: any row of the destination partition at
/// an offset of a batch the error names (for a replay, the rows only replays load: records
/// without a vehicle id). A session commits all its rows or none, and a table's loads wait for
/// the one in doubt, so no later load's rows can be taken for its. `None` when `stderr` is
/// another error.
pub(super) fn settle_by_evidence(stderr: &str, emulator: &harness::Emulator) -> Option<String> {
    let between = |text: &str, a: &str, b: &str| -> Option<String> {
        let rest = &text[text.find(a)? + a.len()..];
        Some(rest[..rest.find(b)?].to_owned())
    };
    let command = between(stderr, "`k2mc settle ", "`")?;
    let table = between(stderr, " of table ", ": upload session")
        .or_else(|| between(stderr, "of table ", " (partition '"))?;
    let destination = between(stderr, " (partition '", "')")?;
    // A load's error lists its batches as `scope topic-p [start, end)`; a batch's error names
    // its one range as `offsets start..end of topic-p` and its scope in the command.
    let mut ranges: Vec<(bool, i64, i64)> = Vec::new();
    if let Some(list) = between(stderr, "It holds the rows of ", ". Check") {
        for item in list.split("), ") {
            let scope = item.split_whitespace().next()?;
            let range = between(&format!("{item})"), "[", ")")?;
            let (a, b) = range.split_once(", ")?;
            ranges.push((scope.contains("~replay-"), a.parse().ok()?, b.parse().ok()?));
        }
    } else {
        let range = between(stderr, " of the table for offsets ", " of ")?;
        let (a, b) = range.split_once("..")?;
        ranges.push((
            command.contains("~replay-"),
            a.parse().ok()?,
            b.parse().ok()?,
        ));
    }
    let norm = |s: &str| s.replace(['\'', '"', ' '], "");
    let rows = landed_rows(emulator, &table);
    let landed = ranges.iter().any(|&(replay, start, end)| {
        rows.iter().any(|r| {
            norm(&r.0) == norm(&destination)
                && (start..end).contains(&r.2)
                && (!replay || r.1.is_empty())
        })
    });
    let command = command.strip_suffix(" --as committed")?;
    let verdict = if landed { "committed" } else { "not-committed" };
    Some(format!("settle {command} --as {verdict}"))
}

/// Every committed dead-letter object's offsets.
pub(super) fn dead_letter_offsets(keys: &[String]) -> HashMap<String, Vec<i64>> {
    let stack = shared_stack().unwrap();
    let staging = rt().block_on(harness::stack::staging_client(stack, "k2mc"));
    keys.iter()
        .map(|key| {
            let groups = rt()
                .block_on(k2mc::deadletters::read(&staging, key))
                .unwrap();
            let offsets = groups.values().flatten().map(|r| r.offset).collect();
            (key.clone(), offsets)
        })
        .collect()
}

/// The oracle for one family: every offset of its range is a row of its table exactly once or
/// in exactly one live (committed, not replayed) dead-letter object of the family, as its
/// record allows; no row outside the range.
pub(super) fn check_family(
    family: &Family,
    rows: &[(String, String, i64, String)],
    live: &BTreeMap<i64, u32>,
    model: &[Produced],
) -> Result<(), String> {
    let mut landed: BTreeMap<i64, u32> = BTreeMap::new();
    for r in rows {
        *landed.entry(r.2).or_insert(0) += 1;
        if !family.range.contains(&r.2) {
            return Err(format!("{}: a row at offset {} outside", family.table, r.2));
        }
    }
    for o in family.range.clone() {
        let (r, d) = (
            landed.get(&o).copied().unwrap_or(0),
            live.get(&o).copied().unwrap_or(0),
        );
        let ok = match model[o as usize] {
            Produced::Vehicle(..) => (r, d) == (1, 0),
            Produced::Poison(_) => (r, d) == (0, 1),
            Produced::Anonymous(..) => r + d == 1,
        };
        if !ok {
            return Err(format!(
                "{}: offset {o} ({:?}) has {r} rows and {d} live dead letters",
                family.table, model[o as usize]
            ));
        }
    }
    Ok(())
}

/// Rows a batch loaded carry its version (phone mask) and template (partition name); within
/// one entry of the main log they must all agree (the bytes an intent names are the bytes that
/// load, whoever loads them).
pub(super) fn check_batches_agree(
    entries: &[(i64, i64)],
    rows: &[(String, String, i64, String)],
) -> Result<(), String> {
    for (start, end) in entries {
        let kinds: BTreeSet<(bool, bool)> = rows
            .iter()
            .filter(|r| !r.1.is_empty() && (*start..*end).contains(&r.2))
            .map(|r| {
                (
                    r.3.contains('*'),
                    r.0.replace(['\'', '"'], "").contains("=d"),
                )
            })
            .collect();
        if kinds.len() > 1 {
            return Err(format!(
                "batch [{start}, {end}) loaded rows of different versions or templates: {kinds:?}"
            ));
        }
    }
    Ok(())
}
