//! Exactly once under the operations real teams perform (`docs/reliability.md`, "Exactly once"):
//! racing attempts with different settings, dead letters of attempts that never committed,
//! replays of out-of-order dead-letter objects, backfill dead letters. Each test reproduces one
//! audit finding on the real stack and checks the outcome through pyodps.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use harness::stack::{k2mc_env, shared_stack};
use harness::workspace_bin;

use crate::case::{Case, rt};

/// Every key under `prefix` in the staging bucket (relative to the k2mc prefix).
fn list_keys(prefix: &str) -> Vec<String> {
    let stack = shared_stack().unwrap();
    rt().block_on(async {
        harness::stack::staging_client(stack, "k2mc")
            .await
            .list_all(prefix)
            .await
            .unwrap()
    })
}

/// A `k2mc` process paused at a fault point until its gate file exists (killed if dropped).
struct Paused {
    child: Option<Child>,
    gate: PathBuf,
}

impl Paused {
    /// Starts `k2mc args` with `point` armed to pause; returns once it is paused there.
    fn start(
        case: &Case<'_>,
        dir: &Path,
        name: &str,
        args: &[&str],
        point: &str,
        env: &[(&str, &str)],
    ) -> Paused {
        let gate = dir.join(name);
        let mut cmd = Command::new(workspace_bin("k2mc").unwrap());
        cmd.args(args)
            .arg("--config")
            .arg(&case.config)
            .envs(k2mc_env())
            .envs(env.iter().copied())
            .env("K2MC_FAULT_POINT", point)
            .env("K2MC_FAULT_WAIT", &gate)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut paused = Paused {
            child: Some(cmd.spawn().unwrap()),
            gate,
        };
        let reached = paused.gate.with_extension("reached");
        let start = Instant::now();
        while !reached.exists() {
            if paused.child.as_mut().unwrap().try_wait().unwrap().is_some() {
                let (_, stderr) = paused.finish();
                panic!("{name} exited before pausing at {point}:\n{stderr}");
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "{name} never reached {point}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        paused
    }

    /// Lets it go on and waits for it; returns (success, stderr).
    fn finish(&mut self) -> (bool, String) {
        std::fs::write(&self.gate, "go").unwrap();
        let out = self.child.take().unwrap().wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn a_racing_attempt_with_other_limits_never_changes_the_bytes_an_intent_names() {
    // Audit F3: L checks for an intent before W writes one, W fixes the batch with its blocks,
    // then L stages the same range with smaller blocks and adopts W's intent. Under keys shared
    // by both attempts L's bytes replaced W's and the intent loaded a fraction of its rows.
    let case = Case::new("race_bytes", 1, "");
    case.produce(0, 0..2000, 1);
    let dir = tempfile::tempdir().unwrap();
    let small = [
        ("K2MC__LIMITS__BLOCK_BYTES", "65536"),
        ("RUST_LOG", "k2mc=info"),
    ];
    let mut loser = Paused::start(&case, dir.path(), "loser", &["run"], "after-fetch", &small);
    let mut winner = Paused::start(&case, dir.path(), "winner", &["run"], "after-intent", &[]);
    let (ok, stderr) = loser.finish();
    assert!(ok, "{stderr}");
    assert!(stderr.contains("adopting the intent"), "{stderr}");
    let (ok, stderr) = winner.finish();
    assert!(ok, "{stderr}");
    case.assert_exactly_once(2000);
    case.assert_log_chains(0);
    // The loser deleted what it staged, and the load deleted the winner's blocks once they
    // were in MaxCompute: nothing staged is left behind.
    let staged = list_keys(&format!("staged/race_bytes/{}/0/", case.topic));
    assert!(staged.is_empty(), "{staged:?}");
}

#[test]
fn dead_letters_of_attempts_that_never_committed_are_neither_listed_nor_replayed() {
    // Audit F6: a batch over the error limit writes its dead letters and commits nothing; the
    // batch that later commits the same records writes its own. Replaying both loaded twice.
    let case = Case::new("orphans", 1, "[limits]\nerror_limit = 1\n");
    case.produce(0, 0..3, 1);
    case.produce_raw(0, &["{not json", "[1,2"]);
    let (ok, _, stderr) = case.k2mc(&["run"], &[]);
    assert!(!ok && stderr.contains("over error_limit 1"), "{stderr}");
    assert!(case.dead_letter_objects().is_empty());
    case.produce(0, 3..8, 1);
    let (ok, _, stderr) = case.k2mc(&["run"], &[("K2MC__LIMITS__ERROR_LIMIT", "5")]);
    assert!(ok, "{stderr}");
    let objects = case.dead_letter_objects();
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert_eq!(objects[0].1, 2);
    assert_eq!(case.status_of(0)["dead_letters"].as_u64(), Some(2));
    // The failed attempt's object is still in the bucket, and replay refuses it by name.
    let all = list_keys("dead-letters/orphans/");
    assert_eq!(all.len(), 2, "{all:?}");
    let orphan = all.iter().find(|k| **k != objects[0].0).unwrap();
    let (ok, _, stderr) = case.k2mc(&["dead-letters", "replay", "--key", orphan], &[]);
    assert!(
        !ok && stderr.contains("belongs to no committed batch"),
        "{stderr}"
    );
    // Replaying everything replays the committed object once (its records still fail: they
    // become the replay's dead letters, within the raised limit).
    let (ok, out, stderr) = case.k2mc(
        &["dead-letters", "replay"],
        &[("K2MC__LIMITS__ERROR_LIMIT", "5")],
    );
    assert!(ok, "{stderr}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("read 2"), "{out}");
    case.assert_exactly_once(8);
}

#[test]
fn a_replay_reads_every_dead_letter_of_an_object_whatever_its_order() {
    // Audit F1: the object lists transform refusals before encoder rejects, so offset 1 (not
    // JSON: the parser refuses it) comes before offset 0 (no event time for the partition: the
    // encoder rejects it). The replay skipped offset 0 and marked it replayed.
    let case = Case::new("replay_order", 1, "[limits]\nerror_limit = 5\n");
    case.produce_raw(
        0,
        &[
            r#"{"vehicle":{"id":"V0"},"average_speed":1.5,"total_miles":30,"owner":{"phone":"13800138000"}}"#,
            "{not json",
        ],
    );
    case.produce(0, 2..4, 1);
    let (ok, _, stderr) = case.k2mc(&["run"], &[]);
    assert!(ok, "{stderr}");
    let objects = case.dead_letter_objects();
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert_eq!(objects[0].1, 2);
    let (ok, out, stderr) = case.k2mc(&["dead-letters", "replay", "--key", &objects[0].0], &[]);
    assert!(ok, "{stderr}");
    assert!(
        out.contains("read 2 loaded 0 filtered 0 still dead 2"),
        "{out}"
    );
}

#[test]
fn a_replay_cut_by_the_byte_limit_goes_on_until_every_dead_letter_is_read() {
    // Audit F10d: a replay ran one batch per partition; a byte limit ended it early and the
    // rest of the object counted as replayed.
    let case = Case::new("replay_cut", 1, "[limits]\nerror_limit = 10\n");
    let poison: Vec<String> = (0..6)
        .map(|i| format!("{{not json {i} {}", "x".repeat(400)))
        .collect();
    let poison: Vec<&str> = poison.iter().map(String::as_str).collect();
    case.produce_raw(0, &poison);
    let (ok, _, stderr) = case.k2mc(&["run"], &[]);
    assert!(ok, "{stderr}");
    let objects = case.dead_letter_objects();
    assert_eq!(objects, [(objects[0].0.clone(), 6)]);
    let (ok, out, stderr) = case.k2mc(
        &["dead-letters", "replay", "--key", &objects[0].0],
        &[("K2MC__LIMITS__BATCH_BYTES", "1000")],
    );
    assert!(ok, "{stderr}");
    let read: u64 = out
        .lines()
        .filter_map(|l| {
            l.split(" read ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert_eq!(read, 6, "{out}");
    assert!(out.lines().count() > 1, "cut into several batches: {out}");
}

#[test]
fn backfill_dead_letters_are_listed_and_replayable() {
    // Audit F10a: dead letters of a backfill's log were never listed, so never replayed.
    let case = Case::new("backfill_dead", 1, "[limits]\nerror_limit = 5\n");
    case.produce(0, 0..2, 1);
    case.produce_raw(0, &["{not json"]);
    let range = [
        "backfill", "--from", "offset:0", "--to", "offset:3", "--name", "old",
    ];
    let (ok, _, stderr) = case.k2mc(&range, &[]);
    assert!(ok, "{stderr}");
    let objects = case.dead_letter_objects();
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert!(
        objects[0].0.contains("backfill_dead~backfill-old/"),
        "{objects:?}"
    );
    let (ok, out, stderr) = case.k2mc(&["dead-letters", "replay", "--key", &objects[0].0], &[]);
    assert!(ok && out.contains("read 1"), "{stderr}{out}");
}

/// The only load in flight of `case`'s table and the upload session its first destination
/// recorded, as the load record's last version says.
fn recorded_session(case: &Case<'_>, cluster: &str) -> (String, String) {
    let stack = shared_stack().unwrap();
    let prefix = format!("loads/{cluster}/{}/{}/", harness::PROJECT, case.table);
    let mut keys = list_keys(&prefix);
    keys.sort();
    let loads: std::collections::BTreeSet<&str> = keys
        .iter()
        .map(|k| k.trim_start_matches(&prefix).split('.').next().unwrap())
        .collect();
    assert_eq!(loads.len(), 1, "{keys:?}");
    rt().block_on(async {
        let staging = harness::stack::staging_client(stack, "k2mc").await;
        let obj = staging.get(keys.last().unwrap()).await.unwrap().unwrap();
        let record: serde_json::Value = serde_json::from_slice(&obj.data).unwrap();
        (
            record["id"].as_str().unwrap().to_owned(),
            record["destinations"][0]["upload_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        )
    })
}

#[test]
fn session_statuses_that_prove_nothing_never_open_a_second_session() {
    // Audit F2 and F5: every status but CLOSED and NORMAL opened a new session, so a commit
    // under way (CLOSING) or a committed session past its lifetime (EXPIRED) loaded twice.
    let dir = tempfile::tempdir().unwrap();
    let emulator = harness::Emulator::start_with(dir.path(), &[]).unwrap();
    let stack = shared_stack().unwrap();
    let case = Case::on(
        "settle",
        1,
        "",
        "ds={event_time:%Y%m%d}",
        &emulator,
        &stack.bootstrap(),
    );
    let crash = |point: &str| {
        let (ok, _, stderr) = case.k2mc(&["run"], &[("K2MC_FAULT_POINT", point)]);
        assert!(!ok && stderr.contains(point), "{stderr}");
    };
    let settle = |load: &str, finding: &str| {
        let args = [
            "settle",
            "--load",
            load,
            "--table",
            &case.table,
            "--as",
            finding,
        ];
        let (ok, out, stderr) = case.k2mc(&args, &[]);
        assert!(ok && out.contains("settled 1 session"), "{stderr}{out}");
    };

    // Committed, then past its lifetime: EXPIRED tells nothing, and a commit was requested.
    case.produce(0, 0..10, 1);
    crash("after-maxcompute-commit");
    let (load, session) = recorded_session(&case, "settle");
    emulator.expire_upload(&session).unwrap();
    let (ok, _, stderr) = case.k2mc(&["run"], &[]);
    assert!(
        !ok && stderr.contains(&format!(
            "k2mc settle --load {load} --table {} --destination ds=20240101 --as committed",
            case.table
        )) && stderr.contains(&format!("settle {}-0 [0, 10)", case.topic)),
        "{stderr}"
    );
    assert_eq!(case.landed().len(), 10, "nothing loaded twice");
    settle(&load, "committed");
    let (ok, _, stderr) = case.k2mc(&["run"], &[]);
    assert!(ok, "{stderr}");
    case.assert_exactly_once(10);

    // Asked to commit, never committed, then expired: settled by hand as not committed.
    case.produce(0, 10..20, 1);
    crash("before-maxcompute-commit");
    let (load, session) = recorded_session(&case, "settle");
    emulator.expire_upload(&session).unwrap();
    let (ok, _, stderr) = case.k2mc(&["run"], &[]);
    assert!(!ok && stderr.contains("is unknown"), "{stderr}");
    settle(&load, "not-committed");
    let (ok, _, stderr) = case.k2mc(&["run"], &[]);
    assert!(ok, "{stderr}");
    case.assert_exactly_once(20);

    // A commit still under way (CLOSING): the run waits or stops; it never opens a second one.
    case.produce(0, 20..30, 1);
    crash("after-maxcompute-commit");
    emulator
        .set_faults(&serde_json::json!({"closing_reads": 1000}))
        .unwrap();
    let (ok, _, stderr) = case.k2mc(&["run"], &[]);
    assert!(!ok && stderr.contains("still committing"), "{stderr}");
    emulator.set_faults(&serde_json::json!({})).unwrap();
    let (ok, _, stderr) = case.k2mc(&["run"], &[]);
    assert!(ok, "{stderr}");
    case.assert_exactly_once(30);

    // A commit answered with an error while the server finishes it: settled in the same run.
    case.produce(0, 30..40, 1);
    let fired = |knob: &str| emulator.faults().unwrap()["fired"][knob].as_u64().unwrap();
    let before = fired("closing_reads");
    emulator
        .set_faults(&serde_json::json!({"ambiguous_commits": 1, "closing_reads": 2}))
        .unwrap();
    let (ok, _, stderr) = case.k2mc(&["run"], &[]);
    assert!(ok, "{stderr}");
    assert_eq!(fired("closing_reads") - before, 2);
    case.assert_exactly_once(40);

    // CRITICAL before any commit was asked for: the session holds no rows; a new one loads.
    case.produce(0, 40..50, 1);
    crash("after-session-open");
    emulator
        .set_faults(&serde_json::json!({"critical_reads": 1}))
        .unwrap();
    let (ok, _, stderr) = case.k2mc(&["run"], &[]);
    assert!(ok, "{stderr}");
    assert_eq!(fired("critical_reads"), 1);
    case.assert_exactly_once(50);

    // Two sessions in doubt with different fates: the first committed, the second asked to
    // commit and stopped before it, then both past their lifetime. One finding cannot settle
    // both; each is settled by its own partition's rows.
    case.produce(0, 50..55, 1);
    case.produce(0, 55..60, 2);
    let (ok, _, stderr) = case.k2mc(
        &["run"],
        &[("K2MC_FAULT_POINT", "before-maxcompute-commit:2")],
    );
    assert!(
        !ok && stderr.contains("before-maxcompute-commit"),
        "{stderr}"
    );
    emulator.expire_all_uploads().unwrap();
    let (load, _) = recorded_session(&case, "settle");
    let doubt = |destination: &str| {
        let (ok, _, stderr) = case.k2mc(&["run"], &[]);
        assert!(
            !ok && stderr.contains(&format!(
                "--load {load} --table {} --destination {destination} --as committed",
                case.table
            )),
            "{stderr}"
        );
    };
    doubt("ds=20240101");
    let settle_at = |destination: Option<&str>, finding: &str| {
        let mut args = vec![
            "settle",
            "--load",
            &load,
            "--table",
            &case.table,
            "--as",
            finding,
        ];
        if let Some(d) = destination {
            args.extend(["--destination", d]);
        }
        case.k2mc(&args, &[])
    };
    let (ok, _, stderr) = settle_at(None, "committed");
    assert!(!ok && stderr.contains("2 sessions in doubt"), "{stderr}");
    let (ok, out, stderr) = settle_at(Some("ds=20240101"), "committed");
    assert!(ok && out.contains("settled 1 session"), "{stderr}");
    doubt("ds=20240102");
    assert_eq!(
        case.landed().len(),
        55,
        "the first destination's rows, once"
    );
    let (ok, out, stderr) = settle_at(Some("ds=20240102"), "not-committed");
    assert!(ok && out.contains("settled 1 session"), "{stderr}");
    let (ok, _, stderr) = case.k2mc(&["run"], &[]);
    assert!(ok, "{stderr}");
    case.assert_exactly_once(60);
    case.assert_log_chains(0);
    // Intents, pointers and load records are deleted once their batch's load is done.
    for prefix in ["intents/settle/", "pending/settle/", "loads/settle/"] {
        assert!(list_keys(prefix).is_empty(), "{prefix}");
    }
}

#[test]
fn a_recreated_topic_under_the_same_cluster_name_stops_loudly() {
    // Audit F8: the log was at offset 30 and the new topic's offsets 0..10 were dropped as
    // redeliveries; a schedule later loaded from offset 30, skipping what came before.
    let dir = tempfile::tempdir().unwrap();
    let port = harness::stack::free_port().unwrap();
    let bootstrap = format!("127.0.0.1:{port}");
    for d in ["a", "b"] {
        std::fs::create_dir_all(dir.path().join(d)).unwrap();
    }
    let broker = harness::stack::start_tansu_durable(&dir.path().join("a"), port).unwrap();
    let case = Case::on(
        "recreated",
        1,
        "",
        "ds={event_time:%Y%m%d}",
        harness::shared_emulator().unwrap(),
        &bootstrap,
    );
    case.produce(0, 0..30, 1);
    let (ok, _, stderr) = case.k2mc(&["run"], &[]);
    assert!(ok, "{stderr}");
    drop(broker);
    // Another broker on the same address: the topic exists again, with other records.
    let _broker = harness::stack::start_tansu_durable(&dir.path().join("b"), port).unwrap();
    case.create_topic(1);
    case.produce(0, 100..110, 1);
    let event = dir.path().join("event.json");
    std::fs::write(
        &event,
        crate::pipeline::msk_event(&case, 0, 0..10).to_string(),
    )
    .unwrap();
    let (_, out, stderr) = case.k2mc(&["invoke", "--event", event.to_str().unwrap()], &[]);
    assert!(
        (out.clone() + &stderr).contains("deleted and recreated"),
        "the event's records were taken for redeliveries:\n{out}\n{stderr}"
    );
    let (ok, _, stderr) = case.k2mc(&["run"], &[]);
    assert!(
        !ok && stderr.contains("the partition ends at offset 10"),
        "{stderr}"
    );
    // Past the log's offset: the record the log committed last is another one now.
    case.produce(0, 110..135, 1);
    let (ok, _, stderr) = case.k2mc(&["run"], &[]);
    assert!(
        !ok && stderr.contains("the record at offset 29 is not the one the log committed"),
        "{stderr}"
    );
    assert_eq!(case.landed().len(), 30, "nothing of the new topic loaded");
}

#[test]
fn a_record_whose_rows_are_partly_refused_loads_none_of_them_until_replayed() {
    // Audit F7: a 1:N stage made two rows of record 3 and a later stage refused one; the other
    // row loaded and the record was dead-lettered, so its replay loaded that row again.
    let hostile = harness::transform_wasm("hostile").unwrap();
    let stage = |name: &str, mode: &str, value: &str| {
        format!(
            "[[transforms]]\nname = \"{name}\"\nwasm = {:?}\nsettings = {{ mode = \"{mode}\", value = \"{value}\" }}\n",
            hostile.display().to_string()
        )
    };
    let trap = stage("trap", "trap-on", "V3!");
    let extra = format!(
        "[limits]\nerror_limit = 5\n\n{}\n{trap}",
        stage("split", "split", "V3")
    );
    let case = Case::new("split_rows", 1, &extra);
    case.produce(0, 0..6, 1);
    let (ok, _, stderr) = case.k2mc(&["run"], &[]);
    assert!(ok, "{stderr}");
    let ids = |case: &Case<'_>| -> Vec<String> {
        let mut ids: Vec<String> = case.landed().into_iter().map(|r| r.1).collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&case), ["V0", "V1", "V2", "V4", "V5"]);
    let objects = case.dead_letter_objects();
    assert_eq!(objects.len(), 1, "{objects:?}");
    // The trap fixed (the stage removed): the replay loads both rows of record 3, once.
    let text = std::fs::read_to_string(&case.config).unwrap();
    std::fs::write(&case.config, text.replace(&trap, "")).unwrap();
    let (ok, out, stderr) = case.k2mc(&["dead-letters", "replay", "--key", &objects[0].0], &[]);
    assert!(ok && out.contains("read 1 loaded 1"), "{stderr}{out}");
    assert_eq!(ids(&case), ["V0", "V1", "V2", "V3", "V3!", "V4", "V5"]);
}

#[test]
fn log_objects_deleted_under_the_log_are_corruption_not_a_restart() {
    // Audit F10h: a missing entry or origin read as the end of the chain, so a lifecycle rule
    // on log/ would re-run committed batches (or everything from start_from).
    let case = Case::new("log_gone", 1, "[limits]\nbatch_records = 5\n");
    case.produce(0, 0..10, 1);
    let (ok, _, stderr) = case.k2mc(&["run"], &[]);
    assert!(ok, "{stderr}");
    let dir = format!("log/log_gone/{}/0", case.topic);
    let stack = shared_stack().unwrap();
    let staging = rt().block_on(harness::stack::staging_client(stack, "k2mc"));
    let origin = format!("{dir}/origin.json");
    let saved = rt().block_on(staging.get(&origin)).unwrap().unwrap();
    rt().block_on(staging.delete(&origin)).unwrap();
    let (ok, _, stderr) = case.k2mc(&["run"], &[]);
    assert!(!ok && stderr.contains("no origin"), "{stderr}");
    rt().block_on(staging.put(&origin, saved.data)).unwrap();
    rt().block_on(staging.delete(&format!("{dir}/{:020}.json", 5)))
        .unwrap();
    let (ok, _, stderr) = case.k2mc(&["run"], &[]);
    assert!(
        !ok && stderr.contains("the head hint names this entry but it is missing"),
        "{stderr}"
    );
    case.assert_exactly_once(10);
}

#[test]
fn a_staged_piece_gone_mid_load_is_named_and_the_load_finishes_once_it_is_back() {
    // A joined block is read from the bucket while it is sent (docs/architecture.md, "Joining
    // staged pieces into large blocks"): a piece that is gone stops the PUT part way, is named
    // (not retried as a network error), and the session it had commits nothing until the load
    // can send every piece.
    let case = Case::new("piece_gone", 1, "[limits]\nbatch_records = 5\n");
    case.produce(0, 0..20, 1);
    let (ok, _, stderr) = case.k2mc(&["run"], &[("K2MC_FAULT_POINT", "after-session-open")]);
    assert!(!ok && stderr.contains("after-session-open"), "{stderr}");
    recorded_session(&case, "piece_gone");
    let stack = shared_stack().unwrap();
    let staging = rt().block_on(harness::stack::staging_client(stack, "k2mc"));
    let record_key = {
        let prefix = format!("loads/piece_gone/{}/{}/", harness::PROJECT, case.table);
        let mut keys = list_keys(&prefix);
        keys.sort();
        keys.pop().unwrap()
    };
    let record: serde_json::Value = serde_json::from_slice(
        &rt()
            .block_on(staging.get(&record_key))
            .unwrap()
            .unwrap()
            .data,
    )
    .unwrap();
    let pieces: Vec<String> = record["destinations"][0]["blocks"][0]["pieces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["key"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        pieces.len() >= 3,
        "one joined block of the four batches: {record}"
    );
    let gone = &pieces[pieces.len() / 2];
    let saved = rt().block_on(staging.get(gone)).unwrap().unwrap();
    rt().block_on(staging.delete(gone)).unwrap();
    let (ok, _, stderr) = case.k2mc(&["run"], &[]);
    assert!(
        !ok && stderr.contains("a staged block of a load in flight is missing")
            && stderr.contains(gone.as_str()),
        "{stderr}"
    );
    assert!(
        !stderr.contains("retrying"),
        "a missing piece is not a network error: {stderr}"
    );
    case.assert_exactly_once(0);
    rt().block_on(staging.put(gone, saved.data)).unwrap();
    let (ok, _, stderr) = case.k2mc(&["run"], &[]);
    assert!(ok, "{stderr}");
    case.assert_exactly_once(20);
}

#[test]
fn an_event_batch_not_finished_in_one_invocation_is_reported_failed_from_where_it_stopped() {
    // Audit F10e: an event partition stopped by the batch cap (or time, or a racing
    // invocation) was reported as success, so the mapping moved on and the rest waited for a
    // trigger that may never come.
    let case = Case::new(
        "unfinished",
        1,
        "[limits]\nbatch_records = 10\nbatches_per_invocation = 1\n",
    );
    case.produce(0, 0..30, 1);
    let dir = tempfile::tempdir().unwrap();
    let event = dir.path().join("event.json");
    std::fs::write(
        &event,
        crate::pipeline::msk_event(&case, 0, 0..30).to_string(),
    )
    .unwrap();
    let mut failed_at = Vec::new();
    for _ in 0..3 {
        let (_, out, stderr) = case.k2mc(&["invoke", "--event", event.to_str().unwrap()], &[]);
        let doc: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|_| panic!("{stderr}"));
        failed_at.push(doc["batchItemFailures"][0]["itemIdentifier"]["offset"].clone());
    }
    assert_eq!(
        failed_at,
        [
            serde_json::json!(10),
            serde_json::json!(20),
            serde_json::Value::Null
        ]
    );
    case.assert_exactly_once(30);
}
