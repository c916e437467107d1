//! Reliability under injected faults: the staging bucket failing, slow, dropping connections or
//! corrupting bodies in transit (the S3 front's faults), the MaxCompute emulator's knobs, a broker killed and restarted, and
//! racing invocations while records keep arriving. Every scenario ends with each produced record
//! in MaxCompute exactly once (pyodps reads it) and the commit log chained to the high watermark;
//! each prints a `fault report` line: what fired, the invocations needed, the time to recover.

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use harness::s3front::{S3Faults, start_with_faults};
use harness::stack::{free_port, k2mc_env, shared_stack, start_tansu_durable};
use harness::{Emulator, shared_emulator, workspace_bin};
use serde_json::json;

use crate::case::Case;

const PARTITION: &str = "ds={event_time:%Y%m%d}";

/// Runs `k2mc run` until `status` shows every partition caught up, at most `max` times; returns
/// the invocations it took, the time, and the first error line of each failed one.
fn run_until_caught_up(
    case: &Case<'_>,
    env: &[(&str, &str)],
    max: usize,
) -> (usize, Duration, Vec<String>) {
    let start = Instant::now();
    let mut errors = Vec::new();
    for invocation in 1..=max {
        let (ok, _, err) = case.k2mc(&["run"], env);
        if !ok {
            errors.push(
                err.lines()
                    .rev()
                    .find(|l| l.contains("error") || l.contains("ERROR"))
                    .unwrap_or("(no error line)")
                    .chars()
                    .take(200)
                    .collect(),
            );
        }
        if ok && caught_up(case, env) {
            return (invocation, start.elapsed(), errors);
        }
    }
    panic!(
        "not caught up after {max} invocations; errors: {errors:#?}; status: {:?}; last run: {:?}",
        case.status(env),
        case.k2mc(&["run"], env)
    )
}

/// Whether `k2mc status --json` shows lag 0 on every partition of the case's topic.
fn caught_up(case: &Case<'_>, env: &[(&str, &str)]) -> bool {
    case.status(env)
        .is_some_and(|rows| !rows.is_empty() && rows.iter().all(|p| p["lag"] == 0))
}

fn report(fault: &str, fired: u64, invocations: usize, took: Duration, rows: usize) {
    eprintln!(
        "fault report | {fault} | fired {fired} | invocations {invocations} | recovered in {:.1} s | rows {rows} | lost 0 | duplicated 0",
        took.as_secs_f64()
    );
}

#[test]
fn staging_errors_slowness_and_dropped_connections_lose_and_duplicate_nothing() {
    let stack = shared_stack().unwrap();
    let front = start_with_faults(stack.s3.port).unwrap();
    let endpoint = format!("http://127.0.0.1:{}", front.port);
    let env = [("K2MC__STAGING__ENDPOINT", endpoint.as_str())];
    let case = Case::new("s3faults", 1, "[limits]\nbatch_records = 25\n");
    let scenarios = [
        (
            "S3 503 SlowDown on 6 requests",
            S3Faults {
                fail: 6,
                fail_status: 503,
                ..S3Faults::default()
            },
        ),
        (
            "S3 500 InternalError on 6 requests",
            S3Faults {
                fail: 6,
                fail_status: 500,
                ..S3Faults::default()
            },
        ),
        (
            "S3 answering 300 ms late",
            S3Faults {
                latency: Duration::from_millis(300),
                ..S3Faults::default()
            },
        ),
        (
            "S3 PUT connection dropped before the write, 3 times",
            S3Faults {
                drop_puts: 3,
                ..S3Faults::default()
            },
        ),
        (
            "S3 PUT connection dropped after the write, 3 times",
            S3Faults {
                drop_puts: 3,
                drop_after_write: true,
                ..S3Faults::default()
            },
        ),
        (
            // The bodies go unsigned to this loopback bucket (`staging.payload_signing` = auto):
            // the CRC-32 the SDK sends with each body is what makes the bucket refuse these.
            "S3 PUT body corrupted in transit, 3 times",
            S3Faults {
                corrupt_puts: 3,
                ..S3Faults::default()
            },
        ),
    ];
    let mut produced = 0;
    for (name, faults) in scenarios {
        case.produce(0, produced..produced + 100, 1);
        produced += 100;
        let before = front.fired();
        front.set(faults);
        let (invocations, took, errors) = run_until_caught_up(&case, &env, 8);
        front.set(S3Faults::default());
        let after = front.fired();
        let fired = (after.failed - before.failed)
            + (after.dropped - before.dropped)
            + (after.corrupted - before.corrupted);
        assert!(
            fired > 0 || name.contains("late"),
            "{name}: no fault fired (errors: {errors:?})"
        );
        if name.contains("corrupted") {
            // The bucket refused the bodies (the invocation that wrote them failed and the next
            // one wrote them again), rather than storing them for a later load to trip over.
            assert!(
                !errors.is_empty(),
                "{name}: every invocation succeeded, so the bucket stored corrupted bodies"
            );
            eprintln!("{name}: refused as {errors:?}");
        }
        case.assert_exactly_once(produced as usize);
        case.assert_log_chains(0);
        report(name, fired, invocations, took, produced as usize);
    }
}

#[test]
fn maxcompute_faults_lose_and_duplicate_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start_with(dir.path(), &["--session-ttl-secs", "3"]).unwrap();
    let stack = shared_stack().unwrap();
    let case = Case::on(
        "mcfaults",
        1,
        "[limits]\nbatch_records = 25\n",
        PARTITION,
        &emulator,
        &stack.bootstrap(),
    );
    let knobs = [
        (
            "Tunnel commit answered 500 (not committed), 2 times",
            json!({"fail_commits": 2}),
            "fail_commits",
        ),
        (
            "ambiguous commit (committed, answered 500), 2 times",
            json!({"ambiguous_commits": 2}),
            "ambiguous_commits",
        ),
        (
            "block upload answered 503, 3 times",
            json!({"fail_blocks": 3}),
            "fail_blocks",
        ),
        (
            "429 throttling on 6 Tunnel requests",
            json!({"throttle": 6}),
            "throttle",
        ),
        ("every request 200 ms late", json!({"latency_ms": 200}), ""),
    ];
    let mut produced = 0;
    for (name, knob, counter) in knobs {
        case.produce(0, produced..produced + 100, 1);
        produced += 100;
        let before = emulator.faults().unwrap()["fired"].clone();
        emulator.set_faults(&knob).unwrap();
        let (invocations, took, errors) = run_until_caught_up(&case, &[], 8);
        emulator.set_faults(&json!({})).unwrap();
        let after = emulator.faults().unwrap()["fired"].clone();
        let fired = if counter.is_empty() {
            0
        } else {
            after[counter].as_u64().unwrap() - before[counter].as_u64().unwrap()
        };
        assert!(
            counter.is_empty() || fired > 0,
            "{name}: the knob never fired (errors: {errors:?})"
        );
        case.assert_exactly_once(produced as usize);
        case.assert_log_chains(0);
        report(name, fired, invocations, took, produced as usize);
    }

    // An upload session that expires before its commit: the run stops right after opening it,
    // the session's time to live passes, and the next run replaces it.
    case.produce(0, produced..produced + 100, 1);
    produced += 100;
    let start = Instant::now();
    let (ok, _, _) = case.k2mc(&["run"], &[("K2MC_FAULT_POINT", "after-session-open")]);
    assert!(!ok, "the armed crash point did not stop the run");
    std::thread::sleep(Duration::from_secs(4));
    let (invocations, _, _) = run_until_caught_up(&case, &[], 4);
    case.assert_exactly_once(produced as usize);
    case.assert_log_chains(0);
    report(
        "upload session expired before its commit",
        1,
        invocations + 1,
        start.elapsed(),
        produced as usize,
    );
}

#[test]
fn a_broker_killed_and_restarted_mid_run_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let mut broker = start_tansu_durable(dir.path(), port).unwrap();
    let bootstrap = format!("127.0.0.1:{port}");
    let case = Case::on(
        "broker",
        1,
        "[limits]\nbatch_records = 50\n",
        PARTITION,
        shared_emulator().unwrap(),
        &bootstrap,
    );
    case.produce(0, 0..1500, 1);
    let start = Instant::now();
    let mut restarts = 0;
    for delay_ms in [400u64, 900, 1500] {
        let mut run = Command::new(workspace_bin("k2mc").unwrap());
        run.args(["run", "--config"]).arg(&case.config);
        for (k, v) in k2mc_env() {
            run.env(k, v);
        }
        let mut child = run.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        broker.stop();
        std::thread::sleep(Duration::from_millis(500));
        broker = start_tansu_durable(dir.path(), port).unwrap();
        restarts += 1;
        let _ = child.wait();
    }
    let (invocations, _, _) = run_until_caught_up(&case, &[], 6);
    case.assert_exactly_once(1500);
    case.assert_log_chains(0);
    report(
        "broker (tansu, sqlite storage) killed and restarted during a run",
        restarts,
        invocations + restarts as usize,
        start.elapsed(),
        1500,
    );
}

#[test]
fn racing_invocations_under_sustained_production_lose_and_duplicate_nothing() {
    let case = Case::new("racepro", 2, "[limits]\nbatch_records = 20\n");
    let produced = AtomicU32::new(0);
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut next = 0u32;
            while !stop.load(Ordering::Relaxed) {
                case.produce((next / 40 % 2) as i32, next..next + 40, 1);
                next += 40;
                produced.store(next, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        for _ in 0..3 {
            let runs: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        let (ok, _, err) = case.k2mc(&["run"], &[]);
                        assert!(ok, "{err}");
                    })
                })
                .collect();
            for r in runs {
                r.join().unwrap();
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    let total = produced.load(Ordering::Relaxed) as usize;
    // Each racing run takes at most batches_per_invocation (16) batches of 20 per partition, and
    // how much the producer wrote meanwhile depends on the machine (a slow one leaves thousands
    // of records behind); the catch-up runs get a budget that covers any backlog, so what this
    // checks is the racing, not the machine's speed.
    let budget = [("K2MC__LIMITS__BATCHES_PER_INVOCATION", "100000")];
    let (invocations, _, _) = run_until_caught_up(&case, &budget, 3);
    case.assert_exactly_once(total);
    for p in 0..2 {
        case.assert_log_chains(p);
    }
    report(
        "4 invocations racing, 3 rounds, while a producer keeps writing",
        0,
        12 + invocations,
        start.elapsed(),
        total,
    );
}
