//! Scale within MaxCompute's Tunnel quotas (`docs/architecture.md`, "Staging and loading";
//! README, "Loading within MaxCompute's quotas"): 256 partitions delivered as Kafka event source
//! mapping payloads at a high cadence to four warm function processes at once, the loader
//! schedule ticking beside them, on an emulator that enforces the documented per-table quotas on
//! a clock 30× faster (half an hour of quota time is a minute). Every record lands once (pyodps
//! reads them), the emulator refuses nothing, every block of a session but its last is at least
//! `[load] block_bytes`, and every load began within the freshness bound (the interval, a tick of
//! the schedule, the load in flight before it and queueing);
//! the report line says what loading each batch on its own would have asked of the quotas.
//!
//! The records are in Kafka before the first payload (a backlog the mapping works through in
//! small batches): tansu takes seconds to write a round to 256 partitions, which would otherwise
//! set the cadence. The test has a bucket of its own: s3s-fs lists by walking the whole bucket.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use harness::Emulator;
use harness::stack::{RuntimeApi, shared_stack};
use rskafka::client::ClientBuilder;
use rskafka::client::partition::{Compression, UnknownTopicHandling};

use crate::case::{Case, LambdaProcess, esm_record, rt, vehicle_records};

const PARTITIONS: i32 = 256;
/// Records per partition, and per partition in one payload (the mapping's batch).
const RECORDS: i64 = 32;
const PER_PAYLOAD: i64 = 8;
/// Warm execution environments (the mapping's concurrency), and partitions per payload.
const FUNCTIONS: usize = 4;
const PER_EVENT: usize = 8;
/// The quota clock's speed-up: five minutes are ten seconds.
const TIME_SCALE: f64 = 30.0;
/// `[load] interval`, and the loader schedule's period (rate(1 minute) at 30×).
const INTERVAL: Duration = Duration::from_secs(4);
const TICK: Duration = Duration::from_secs(2);
/// `[load] block_bytes` (the smallest `[limits] block_bytes` allows: the records are small).
const BLOCK_BYTES: u64 = 65_536;

/// Vehicle ids are unique across partitions: the partition in the millions, then the offset.
fn id(partition: i32, offset: i64) -> u32 {
    partition as u32 * 1_000_000 + offset as u32
}

#[test]
fn many_partitions_at_a_high_cadence_load_within_the_quotas_exactly_once_and_fresh() {
    let stack = shared_stack().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start_with(
        dir.path(),
        &[
            "--quota-time-scale",
            &TIME_SCALE.to_string(),
            "--commit-ms",
            "20",
        ],
    )
    .unwrap();
    let extra = format!(
        "[limits]\nblock_bytes = 65536\n\n[load]\ninterval = \"{}s\"\nblock_bytes = {BLOCK_BYTES}\n",
        INTERVAL.as_secs()
    );
    let case = Case::on(
        "scale",
        PARTITIONS,
        &extra,
        "ds={event_time:%Y%m%d}",
        &emulator,
        &stack.bootstrap(),
    );
    let bucket = "k2mc-scale";
    std::fs::create_dir_all(stack.dir.join("s3").join(bucket)).unwrap();
    let config = std::fs::read_to_string(&case.config).unwrap();
    let config = config.replace(&format!("\"{}\"", stack.bucket), &format!("\"{bucket}\""));
    assert!(config.contains(bucket), "{config}");
    std::fs::write(&case.config, config).unwrap();
    let produced: Vec<AtomicI64> = (0..PARTITIONS).map(|_| AtomicI64::new(0)).collect();
    let t = Instant::now();
    produce(&case, &produced);
    eprintln!("scale: produced in {:.1?}", t.elapsed());
    let api = RuntimeApi::start().unwrap();
    let _functions: Vec<LambdaProcess> = (0..FUNCTIONS)
        .map(|n| LambdaProcess::spawn(&case.config, &api, n))
        .collect();

    let delivering = AtomicBool::new(true);
    let failures = Mutex::new(Vec::<String>::new());
    let loads = Mutex::new(Vec::<serde_json::Value>::new());
    let invocations = std::sync::atomic::AtomicU64::new(0);
    let started = Instant::now();
    let visible_after = std::thread::scope(|scope| {
        let invokers: Vec<_> = (0..FUNCTIONS)
            .map(|t| {
                let (case, api, produced) = (&case, &api, &produced);
                let (failures, loads, invocations) = (&failures, &loads, &invocations);
                scope.spawn(move || {
                    let mine: Vec<i32> = (0..PARTITIONS)
                        .filter(|p| *p as usize % FUNCTIONS == t)
                        .collect();
                    let mut delivered = vec![0i64; mine.len()];
                    loop {
                        let work: Vec<(usize, i64)> = (0..mine.len())
                            .filter_map(|i| {
                                let end = produced[mine[i] as usize].load(Ordering::SeqCst);
                                (end > delivered[i])
                                    .then_some((i, end.min(delivered[i] + PER_PAYLOAD)))
                            })
                            .collect();
                        if work.is_empty() {
                            return Instant::now();
                        }
                        for chunk in work.chunks(PER_EVENT) {
                            let mut records = serde_json::Map::new();
                            for (i, end) in chunk {
                                let p = mine[*i];
                                let list: Vec<serde_json::Value> = (delivered[*i]..*end)
                                    .map(|o| esm_record(&case.topic, p, o, id(p, o)))
                                    .collect();
                                records.insert(format!("{}-{p}", case.topic), list.into());
                            }
                            let event = serde_json::json!({"eventSource": "aws:kafka",
                                "eventSourceArn": "arn:aws:kafka:x", "bootstrapServers": "b:9092",
                                "records": records});
                            invocations.fetch_add(1, Ordering::Relaxed);
                            match api.invoke(event, Duration::from_secs(120)) {
                                Ok(Ok(answer))
                                    if answer["batchItemFailures"] == serde_json::json!([]) =>
                                {
                                    loads.lock().unwrap().extend(
                                        answer["k2mc"]["loads"]
                                            .as_array()
                                            .cloned()
                                            .unwrap_or_default(),
                                    );
                                    for (i, end) in chunk {
                                        delivered[*i] = *end;
                                    }
                                }
                                other => failures.lock().unwrap().push(format!("{other:?}")),
                            }
                        }
                    }
                })
            })
            .collect();
        scope.spawn(|| {
            // The loader schedule: ticks until the deliveries end and a bound past them.
            while delivering.load(Ordering::SeqCst) {
                let tick = serde_json::json!({"source": "k2mc.schedule", "action": "load"});
                match api.invoke(tick, Duration::from_secs(120)) {
                    Ok(Ok(answer)) => loads
                        .lock()
                        .unwrap()
                        .extend(answer["loads"].as_array().cloned().unwrap_or_default()),
                    other => failures.lock().unwrap().push(format!("tick: {other:?}")),
                }
                std::thread::sleep(TICK);
            }
        });
        let mut last_delivery = started;
        for invoker in invokers {
            match invoker.join() {
                Ok(at) => last_delivery = last_delivery.max(at),
                Err(panic) => {
                    delivering.store(false, Ordering::SeqCst);
                    std::panic::resume_unwind(panic);
                }
            }
        }
        eprintln!("scale: delivered in {:.1?}", started.elapsed());
        // With only the schedule ticking, every record becomes visible within the bound.
        let total: i64 = produced.iter().map(|p| p.load(Ordering::SeqCst)).sum();
        let mc = harness::client(&emulator).unwrap();
        let count = || {
            rt().block_on(mc.run_sql(&format!("SELECT count(*) FROM {}", case.table), &[]))
                .ok()
                .and_then(|r| r.rows().ok()?.1.first()?.first()?.parse::<i64>().ok())
                .unwrap_or(-1)
        };
        let bound = INTERVAL + TICK + Duration::from_secs(10);
        while count() != total && last_delivery.elapsed() < bound * 2 {
            std::thread::sleep(Duration::from_millis(250));
        }
        let visible_after = last_delivery.elapsed();
        delivering.store(false, Ordering::SeqCst);
        assert!(
            visible_after <= bound,
            "the last records became visible {visible_after:?} after their delivery (bound {bound:?}); {} of {total} visible",
            count()
        );
        visible_after
    });
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "invocations failed: {failures:#?}");
    let total: i64 = produced.iter().map(|p| p.load(Ordering::SeqCst)).sum();

    // Exactly once, by pyodps: every vehicle id once.
    let rows = case.landed();
    let mut seen = BTreeMap::new();
    for r in &rows {
        *seen.entry(r.1.clone()).or_insert(0u32) += 1;
    }
    let expected: Vec<String> = (0..PARTITIONS)
        .flat_map(|p| {
            (0..produced[p as usize].load(Ordering::SeqCst)).map(move |o| format!("V{}", id(p, o)))
        })
        .collect();
    assert_eq!(rows.len() as i64, total, "rows landed");
    assert!(
        expected.iter().all(|v| seen.get(v) == Some(&1)),
        "some record is missing or twice"
    );

    // Within the quotas: nothing refused; blocks large except each session's last.
    let quotas = emulator.quotas().unwrap();
    assert_eq!(quotas["refused"], serde_json::json!({}), "{quotas}");
    let key = format!("k2mc_local.{}", case.table);
    let sessions = quotas["committed_blocks"][&key]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut blocks = 0usize;
    for s in &sessions {
        let sizes: Vec<u64> = s
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_u64().unwrap())
            .collect();
        blocks += sizes.len();
        assert!(
            sizes[..sizes.len() - 1].iter().all(|b| *b >= BLOCK_BYTES),
            "a block under {BLOCK_BYTES} bytes before a session's last: {sizes:?}"
        );
    }
    // Every load began within the freshness bound of its oldest batch: the interval, a tick of
    // the schedule and slack for a loaded machine; its own time is reported (on s3s-fs, which
    // lists by walking the bucket, a load's own time is far above what S3 or OSS take).
    let loads = loads.into_inner().unwrap();
    let started_within: Vec<f64> = loads
        .iter()
        .filter_map(|l| Some(l["oldest_loaded_secs"].as_f64()? - l["load_secs"].as_f64()?))
        .collect();
    let worst = started_within.iter().copied().fold(0.0, f64::max);
    let slowest = loads
        .iter()
        .filter_map(|l| l["load_secs"].as_f64())
        .fold(0.0, f64::max);
    let load_errors: Vec<&serde_json::Value> =
        loads.iter().filter(|l| !l["error"].is_null()).collect();
    assert!(load_errors.is_empty(), "loads failed: {load_errors:#?}");
    let batches = PARTITIONS as i64 * ((RECORDS + PER_PAYLOAD - 1) / PER_PAYLOAD);
    let quota_minutes = started.elapsed().as_secs_f64() * TIME_SCALE / 60.0;
    eprintln!(
        "scale report | partitions {PARTITIONS} | records {total} | payloads {} | batches staged {batches} \
         | loads {} | sessions {} | blocks {blocks} | quota time {quota_minutes:.0} min | refused 0 \
         | oldest batch waited at most {worst:.1} s for its load | slowest load {slowest:.1} s \
         | last records visible {visible_after:.1?} after delivery | a session per batch would have been \
         {batches} sessions ({:.0} per 5 quota-minutes against 500)",
        invocations.load(Ordering::Relaxed),
        started_within.len(),
        sessions.len(),
        batches as f64 * 5.0 / quota_minutes,
    );
    // A due batch waits for the next look (a tick, or a passing invocation), and a tick first
    // finishes the load in flight; a tick also queues behind the payloads the four functions are
    // busy with. So the bound is the interval, a tick, the slowest load and 10 s of queueing.
    let bound = (INTERVAL + TICK + Duration::from_secs(10)).as_secs_f64() + slowest;
    assert!(
        worst <= bound,
        "a load began {worst:.1} s after its oldest batch was staged (bound {bound:.1} s)"
    );
}

/// Writes `RECORDS` vehicle records to every partition, and each partition's end offset.
fn produce(case: &Case<'_>, produced: &[AtomicI64]) {
    let stack = shared_stack().unwrap();
    rt().block_on(async {
        let client = std::sync::Arc::new(
            ClientBuilder::new(vec![stack.bootstrap()])
                .build()
                .await
                .unwrap(),
        );
        let mut set = tokio::task::JoinSet::new();
        for p in 0..PARTITIONS {
            let (client, topic) = (std::sync::Arc::clone(&client), case.topic.clone());
            set.spawn(async move {
                let partition = client
                    .partition_client(topic, p, UnknownTopicHandling::Retry)
                    .await
                    .unwrap();
                let records = vehicle_records((0..RECORDS).map(|o| id(p, o)), 1);
                let offsets = partition
                    .produce(records, Compression::NoCompression)
                    .await
                    .unwrap();
                assert_eq!(offsets.first(), Some(&0), "partition {p}: offsets from 0");
                (p, RECORDS)
            });
        }
        while let Some(done) = set.join_next().await {
            let (p, end) = done.unwrap();
            produced[p as usize].store(end, Ordering::SeqCst);
        }
    });
}
