//! The randomized, replayable history test (`docs/reliability.md`, "Exactly once under real
//! operations"): many rounds of what teams do to a running sync, each followed by the repair an
//! operator would make and an oracle read through pyodps and the bucket. The seed is printed and
//! `K2MC_TEST_SEED` replays it; `K2MC_HISTORY_ROUNDS` sets the length (6 in `.ci/run`).

mod model;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use harness::stack::shared_stack;

use crate::case::{Case, create_vehicle_table, landed_rows, rt};
use model::{
    Family, Produced, Run, TEMPLATES, check_batches_agree, check_family, dead_letter_offsets,
    delivery, write_versions,
};

/// A randomized, replayable history of what teams do to a running sync. Each round produces
/// vehicles (10 % poison, 10 % without an id) and then one of: a schedule tick; an event batch
/// of a random stretch (redelivered, overlapping, gapped); a tick racing a tick or an event
/// batch under the other transform version, limits and compression (a rolling deploy); a backfill into a
/// table of its own; a dead-letter replay, alone or racing one under the other version; batches
/// staged and then two loads racing. Each round loads at once or defers loads by an hour (what
/// is deferred waits across invocations and loads with `k2mc load` in the repair). Single
/// invocations are killed at a random step boundary 40 % of the time; the version, template and
/// limits change between rounds; one emulator knob per round (failed blocks, failed or
/// ambiguous commits, CLOSING reads); sometimes every upload session expires before the repair
/// (a day-long outage), and batches whose commit that leaves unknown are settled by evidence,
/// as the error tells an operator to. After the repair (runs until caught up) the oracle:
/// every offset is a row of its table exactly once or in exactly one live dead-letter object,
/// the main log chains without gaps, and each of its batches loaded rows of one version.
#[test]
fn a_random_history_of_operations_loses_and_duplicates_nothing() {
    let seed: u64 = std::env::var("K2MC_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let rounds: u32 = std::env::var("K2MC_HISTORY_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    eprintln!("history: K2MC_TEST_SEED={seed} K2MC_HISTORY_ROUNDS={rounds}");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let emulator = harness::Emulator::start_with(dir.path(), &[]).unwrap();
    let stack = shared_stack().unwrap();
    let case = Case::on(
        "history",
        1,
        "[limits]\nerror_limit = \"100%\"\nbatches_per_invocation = 100\n",
        TEMPLATES[0],
        &emulator,
        &stack.bootstrap(),
    );
    let versions = write_versions(&case, dir.path());
    let mut families = vec![Family {
        table: case.table.clone(),
        range: 0..0,
        backfill: None,
    }];
    // Every committed dead-letter object seen, with its family; the objects replayed.
    let mut family_of: HashMap<String, usize> = HashMap::new();
    let mut replayed: BTreeSet<String> = BTreeSet::new();
    let mut model: Vec<Produced> = Vec::new();
    let started = Instant::now();
    let mut settlements = 0;
    for round in 0..rounds {
        let n = rng.random_range(0..30);
        let mut records = Vec::new();
        for _ in 0..n {
            let id = model.len() as u32;
            let produced = match rng.random_range(0..10) {
                0 => Produced::Poison(format!("{{not json {id}")),
                1 => Produced::Anonymous(id, rng.random_range(1..4)),
                _ => Produced::Vehicle(id, rng.random_range(1..4)),
            };
            let (key, value) = produced.bytes();
            records.push(rskafka::record::Record {
                key,
                value: Some(value),
                headers: Default::default(),
                timestamp: chrono::Utc::now(),
            });
            model.push(produced);
        }
        if !records.is_empty() {
            case.produce_records(0, records);
        }
        families[0].range = 0..model.len() as i64;
        // This round's deploy: transform version, partition template and limits.
        let version = rng.random_range(0..2);
        let template = TEMPLATES[rng.random_range(0..2)];
        // Loads: at once (every invocation loads what it staged) or deferred by an hour (staged
        // batches wait for `k2mc load` or a later round's eager invocation); joined into blocks
        // of up to 8 MiB or 64 MiB.
        let deferred = rng.random_bool(0.4);
        // Staged blocks in LZ4 or deflate: a load joins batches of both (a config change).
        let compression = ["lz4", "deflate"][rng.random_range(0..2)];
        let env =
            |codec: &str, block: &str, batch: &str, bytes: &str, template: &str, interval: &str| {
                vec![
                    ("K2MC__LIMITS__COMPRESSION".to_owned(), codec.to_owned()),
                    ("K2MC__LIMITS__BLOCK_BYTES".to_owned(), block.to_owned()),
                    ("K2MC__LIMITS__BATCH_RECORDS".to_owned(), batch.to_owned()),
                    ("K2MC__LIMITS__BATCH_BYTES".to_owned(), bytes.to_owned()),
                    (
                        "K2MC__MAXCOMPUTE__PARTITION".to_owned(),
                        template.to_owned(),
                    ),
                    ("K2MC__LOAD__INTERVAL".to_owned(), interval.to_owned()),
                    (
                        "K2MC__LOAD__BLOCK_BYTES".to_owned(),
                        ["8388608", "67108864"][usize::from(interval == "1h")].to_owned(),
                    ),
                ]
            };
        let mine = Run {
            case: &case,
            config: &versions[version],
            env: env(
                compression,
                ["8388608", "65536"][rng.random_range(0..2)],
                ["5", "13", "500"][rng.random_range(0..3)],
                ["67108864", "1500"][rng.random_range(0..2)],
                template,
                if deferred { "1h" } else { "0s" },
            ),
        };
        // The other side of a rolling deploy.
        let other = Run {
            case: &case,
            config: &versions[1 - version],
            env: env(
                if compression == "lz4" {
                    "deflate"
                } else {
                    "lz4"
                },
                "65536",
                "9",
                "67108864",
                TEMPLATES[1 - TEMPLATES.iter().position(|t| *t == template).unwrap()],
                if deferred { "0s" } else { "1h" },
            ),
        };
        let knob = [
            serde_json::json!({}),
            serde_json::json!({"ambiguous_commits": 1}),
            serde_json::json!({"fail_blocks": 2}),
            serde_json::json!({"closing_reads": 2}),
            serde_json::json!({"fail_commits": 1}),
        ][rng.random_range(0..5)]
        .clone();
        emulator.set_faults(&knob).unwrap();
        // A day-long outage before the repair (every upload session expires): the kill lands
        // around a commit in most such rounds, where only evidence can settle the batch.
        let outage = rng.random_bool(0.15);
        let (share, points): (f64, &[&str]) = if outage {
            (
                0.9,
                &["before-maxcompute-commit", "after-maxcompute-commit"],
            )
        } else {
            (0.4, k2mc::fault::POINTS)
        };
        let event_file = dir.path().join(format!("event-{round}.json"));
        let event = |rng: &mut StdRng| {
            let hwm = model.len();
            let a = rng.random_range(0..=hwm);
            let b = rng.random_range(a..=hwm);
            std::fs::write(&event_file, delivery(&case.topic, &model, a..b).to_string()).unwrap();
            format!("event {a}..{b}")
        };
        let event_args = ["invoke", "--event", event_file.to_str().unwrap()];
        // A live dead-letter object to replay, and the table its family loads into.
        let live: Vec<String> = family_of
            .keys()
            .filter(|k| !replayed.contains(*k))
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut action = rng.random_range(0..8);
        if (5..7).contains(&action) && live.is_empty() {
            action = 0;
        }
        let mut unfinished: Option<(Run<'_>, Vec<String>)> = None;
        let mut replaying: Option<String> = None;
        let what = match action {
            0 => {
                let (run, c) = mine.crashing(&mut rng, share, points);
                run.k2mc(&["run"]);
                format!("tick {c:?}")
            }
            1 => {
                let what = event(&mut rng);
                let (run, c) = mine.crashing(&mut rng, share, points);
                run.k2mc(&event_args);
                format!("{what} {c:?}")
            }
            2 | 3 => {
                let what = if action == 2 {
                    "tick".to_owned()
                } else {
                    event(&mut rng)
                };
                std::thread::scope(|s| {
                    s.spawn(|| mine.k2mc(&["run"]));
                    s.spawn(|| {
                        if action == 2 {
                            other.k2mc(&["run"])
                        } else {
                            other.k2mc(&event_args)
                        }
                    });
                });
                format!("race: tick and {what} (other version)")
            }
            4 => {
                let hwm = model.len();
                let a = rng.random_range(0..=hwm);
                let b = rng.random_range(a..=hwm);
                let name = format!("bf{round}");
                let table = format!("{}_{name}", case.table);
                rt().block_on(create_vehicle_table(&emulator, &table));
                let mut bf = mine.crashing(&mut rng, share, points);
                let args: Vec<String> = [
                    "backfill",
                    "--from",
                    &format!("offset:{a}"),
                    "--to",
                    &format!("offset:{b}"),
                    "--name",
                    &name,
                ]
                .map(str::to_owned)
                .to_vec();
                let table_env = ("K2MC__MAXCOMPUTE__TABLE".to_owned(), table.clone());
                bf.0.env.push(table_env.clone());
                let argv: Vec<&str> = args.iter().map(String::as_str).collect();
                bf.0.k2mc(&argv);
                let mut repair = Run {
                    case: &case,
                    config: mine.config,
                    env: mine.env.clone(),
                };
                repair.env.push(table_env);
                unfinished = Some((repair, args));
                families.push(Family {
                    table,
                    range: a as i64..b as i64,
                    backfill: Some(name.clone()),
                });
                format!("backfill {name} {a}..{b} {:?}", bf.1)
            }
            7 => {
                // Stage without loading, then two loads race; one may be killed at a step.
                let mut stage = Run {
                    case: &case,
                    config: mine.config,
                    env: mine.env.clone(),
                };
                stage
                    .env
                    .push(("K2MC__LOAD__INTERVAL".to_owned(), "1h".to_owned()));
                stage.k2mc(&["run"]);
                let (one, c) = mine.crashing(&mut rng, share, points);
                std::thread::scope(|s| {
                    s.spawn(|| one.k2mc(&["load"]));
                    s.spawn(|| other.k2mc(&["load"]));
                });
                format!("staged, then two loads racing {c:?}")
            }
            _ => {
                let key = live[rng.random_range(0..live.len())].clone();
                let family = &families[family_of[&key]];
                let table_env = ("K2MC__MAXCOMPUTE__TABLE".to_owned(), family.table.clone());
                let args: Vec<String> = ["dead-letters", "replay", "--key", &key]
                    .map(str::to_owned)
                    .to_vec();
                let argv: Vec<&str> = args.iter().map(String::as_str).collect();
                let (mut one, c) =
                    mine.crashing(&mut rng, if action == 5 { share } else { 0.0 }, points);
                one.env.push(table_env.clone());
                if action == 5 {
                    one.k2mc(&argv);
                } else {
                    let mut two = Run {
                        case: &case,
                        config: other.config,
                        env: other.env.clone(),
                    };
                    two.env.push(table_env.clone());
                    std::thread::scope(|s| {
                        s.spawn(|| one.k2mc(&argv));
                        s.spawn(|| two.k2mc(&argv));
                    });
                }
                let mut repair = Run {
                    case: &case,
                    config: mine.config,
                    env: mine.env.clone(),
                };
                repair.env.push(table_env);
                unfinished = Some((repair, args));
                replaying = Some(key.clone());
                format!(
                    "replay {key} of {} {}",
                    family.table,
                    if action == 5 {
                        format!("{c:?}")
                    } else {
                        "racing the other version".to_owned()
                    }
                )
            }
        };
        emulator.set_faults(&serde_json::json!({})).unwrap();
        if outage {
            emulator.expire_all_uploads().unwrap();
        }
        eprintln!(
            "history round {round}: {n} records, v{} {template} {compression}, {knob}, {what}{}",
            version + 1,
            if outage { ", then an outage" } else { "" }
        );
        // Repair: the interrupted command again, then ticks until caught up.
        if let Some((run, args)) = &unfinished {
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            settlements += run.until_ok(&argv, &emulator).len();
        }
        let mut caught_up = false;
        for _ in 0..6 {
            settlements += mine.until_ok(&["run"], &emulator).len();
            if case
                .status(&[])
                .is_some_and(|rows| rows.iter().all(|p| p["lag"] == 0))
            {
                caught_up = true;
                break;
            }
        }
        assert!(caught_up, "round {round} (seed {seed}): not caught up");
        // Whatever a deferred round left staged is loaded by hand, as an operator checking the
        // table would; then nothing waits and no load is in flight.
        settlements += mine.until_ok(&["load"], &emulator).len();
        let (_, out, _) = case.k2mc(&["status", "--json"], &[]);
        let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
        for t in doc["tables"].as_array().unwrap() {
            assert!(
                t["staged_batches"] == 0 && t["loads_in_flight"] == 0,
                "round {round} (seed {seed}): left after a load: {t}"
            );
        }
        if let Some(key) = replaying {
            replayed.insert(key);
        }
        // The oracle. New committed dead-letter objects join the family they came from.
        let listed: Vec<String> = case
            .dead_letter_objects()
            .into_iter()
            .map(|o| o.0)
            .collect();
        for key in &listed {
            if family_of.contains_key(key) {
                continue;
            }
            let family = if key.contains("~replay-") {
                let from = unfinished
                    .as_ref()
                    .filter(|_| (5..7).contains(&action))
                    .and_then(|(_, args)| args.get(3))
                    .unwrap_or_else(|| panic!("round {round} (seed {seed}): {key} from no replay"));
                family_of[from]
            } else {
                // A backfill's own family, else the main one (family 0).
                families
                    .iter()
                    .position(|f| {
                        f.backfill
                            .as_ref()
                            .is_some_and(|b| key.contains(&format!("~backfill-{b}/")))
                    })
                    .unwrap_or(0)
            };
            family_of.insert(key.clone(), family);
        }
        let offsets = dead_letter_offsets(&listed);
        // Families to check: the main one always, and those this round touched.
        let mut touched: BTreeSet<usize> = BTreeSet::from([0]);
        if action == 4 {
            touched.insert(families.len() - 1);
        }
        if (5..7).contains(&action) {
            let key = &unfinished.as_ref().unwrap().1[3];
            touched.insert(family_of[key]);
        }
        for f in touched {
            let family = &families[f];
            let mut live: BTreeMap<i64, u32> = BTreeMap::new();
            for (key, offs) in &offsets {
                if family_of[key] == f && !replayed.contains(key) {
                    for o in offs {
                        *live.entry(*o).or_insert(0) += 1;
                    }
                }
            }
            let rows = landed_rows(&emulator, &family.table);
            let checked = check_family(family, &rows, &live, &model).and_then(|()| {
                if f == 0 {
                    check_batches_agree(&case.assert_log_chains(0), &rows)
                } else {
                    Ok(())
                }
            });
            if let Err(e) = checked {
                panic!("round {round} after {what} (seed {seed}): {e}");
            }
        }
    }
    eprintln!(
        "history: {rounds} rounds, {} records, {} backfills, {} replays, {settlements} settlements, {:.0?} (seed {seed})",
        model.len(),
        families.len() - 1,
        replayed.len(),
        started.elapsed()
    );
}
