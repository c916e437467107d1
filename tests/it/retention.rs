//! What a broker's own operations do to a running sync, on a broker that keeps its state in
//! sqlite (tansu): retention deleting records before they were synced (`docs/reliability.md`,
//! "Offsets lost to retention": the sync stops and names the way out, `k2mc skip-lost` records
//! the skip with its count) and a partition added after syncing began under `start_from =
//! "latest"` ("Partitions added later").

use std::ops::Range;
use std::time::{Duration, Instant};

use harness::stack::{
    add_partition_stopped, create_topic_with_retention, free_port, start_tansu_durable,
    start_tansu_retaining,
};
use rskafka::client::ClientBuilder;
use rskafka::client::partition::{OffsetAt, UnknownTopicHandling};
use rskafka::record::Record;

use crate::case::{Case, rt, vehicle};

/// Vehicles `ids` (day 1) written at `at` (the broker's retention goes by this timestamp).
fn written_at(ids: Range<u32>, at: chrono::DateTime<chrono::Utc>) -> Vec<Record> {
    ids.map(|i| {
        let (key, value) = vehicle(i, 1);
        Record {
            key: Some(key),
            value: Some(value),
            headers: Default::default(),
            timestamp: at,
        }
    })
    .collect()
}

/// The oldest offset the broker at `bootstrap` still has in partition 0 of `topic`.
fn earliest(bootstrap: &str, topic: &str) -> i64 {
    rt().block_on(async {
        let client = ClientBuilder::new(vec![bootstrap.to_owned()])
            .build()
            .await
            .unwrap();
        let pc = client
            .partition_client(topic, 0, UnknownTopicHandling::Retry)
            .await
            .unwrap();
        pc.get_offset(OffsetAt::Earliest).await.unwrap()
    })
}

#[test]
fn offsets_retention_deleted_stop_the_sync_until_skipped_on_purpose() {
    // Audit item 7: `offsets-lost` had no way out but editing the bucket by hand.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let bootstrap = format!("127.0.0.1:{port}");
    // First without retention applied (tansu's maintenance runs at start, on an empty broker,
    // then every ten minutes).
    let broker = start_tansu_durable(dir.path(), port).unwrap();
    create_topic_with_retention(port, "t_retention", 86_400_000).unwrap();
    let case = Case::on(
        "retention",
        0,
        "[limits]\nbatch_records = 5\nbatches_per_invocation = 1\n",
        "ds={event_time:%Y%m%d}",
        harness::shared_emulator().unwrap(),
        &bootstrap,
    );
    // Ten records a month old, then three of today; one tick syncs the first five.
    case.produce_records(
        0,
        written_at(0..10, chrono::Utc::now() - chrono::Days::new(30)),
    );
    case.produce_records(0, written_at(10..13, chrono::Utc::now()));
    let (ok, _, stderr) = case.k2mc(&["run"], &[]);
    assert!(ok, "{stderr}");
    assert_eq!(case.landed().len(), 5);
    // The broker applies retention: the month-old records go, five of them never synced.
    drop(broker);
    let _broker = start_tansu_retaining(dir.path(), port).unwrap();
    let waited = Instant::now();
    while earliest(&bootstrap, &case.topic) < 10 {
        assert!(
            waited.elapsed() < Duration::from_secs(30),
            "tansu never applied retention"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The sync stops, says what was lost and names the way out; it does not move on by itself.
    for _ in 0..2 {
        let (ok, _, stderr) = case.k2mc(&["run"], &[]);
        assert!(
            !ok && stderr.contains("at offset 5 but the oldest record Kafka still has is 10")
                && stderr.contains("k2mc skip-lost --topic t_retention --partition 0"),
            "{stderr}"
        );
    }
    let skip = || {
        case.k2mc(
            &["skip-lost", "--topic", &case.topic, "--partition", "0"],
            &[],
        )
    };
    let (ok, out, stderr) = skip();
    assert!(
        ok && out.contains("skipped offsets [5, 10)") && out.contains("5 records"),
        "{stderr}{out}"
    );
    let (ok, _, stderr) = skip();
    assert!(!ok && stderr.contains("nothing is lost"), "{stderr}");
    let (ok, _, stderr) = case.k2mc(&["run"], &[("K2MC__LIMITS__BATCHES_PER_INVOCATION", "10")]);
    assert!(ok, "{stderr}");
    let ids: Vec<String> = case.landed().into_iter().map(|r| r.1).collect();
    assert_eq!(ids, ["V0", "V1", "V2", "V3", "V4", "V10", "V11", "V12"]);
    let status = case.status_of(0);
    assert_eq!(status["lost"], 5, "{status}");
    // The skip is an entry of the chain: gapless, reconciling (nothing read), at the watermark.
    case.assert_log_chains(0);
}

#[test]
fn a_partition_added_after_syncing_began_under_latest_loads_from_its_first_record() {
    // Audit item 7: a partition added after `start_from = "latest"` was fixed started at its
    // high watermark when first seen, skipping what was written to it before that tick.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let bootstrap = format!("127.0.0.1:{port}");
    let broker = start_tansu_durable(dir.path(), port).unwrap();
    let case = Case::on(
        "added",
        1,
        "",
        "ds={event_time:%Y%m%d}",
        harness::shared_emulator().unwrap(),
        &bootstrap,
    );
    let config = std::fs::read_to_string(&case.config).unwrap();
    let config = config.replacen("[kafka]\n", "[kafka]\nstart_from = \"latest\"\n", 1);
    std::fs::write(&case.config, config).unwrap();
    // History before the first tick is skipped, as `latest` asks; what follows loads.
    case.produce(0, 0..5, 1);
    let (ok, _, stderr) = case.k2mc(&["run"], &[]);
    assert!(ok, "{stderr}");
    case.produce(0, 5..8, 1);
    let (ok, _, stderr) = case.k2mc(&["run"], &[]);
    assert!(ok, "{stderr}");
    assert_eq!(case.landed().len(), 3);
    // The topic grows a partition; records reach it before the next tick.
    drop(broker);
    add_partition_stopped(dir.path(), &case.topic, 1).unwrap();
    let _broker = start_tansu_durable(dir.path(), port).unwrap();
    case.produce(1, 100..104, 1);
    case.produce(0, 8..10, 1);
    let (ok, _, stderr) = case.k2mc(&["run"], &[]);
    assert!(ok, "{stderr}");
    let mut ids: Vec<String> = case.landed().into_iter().map(|r| r.1).collect();
    ids.sort();
    assert_eq!(
        ids,
        ["V100", "V101", "V102", "V103", "V5", "V6", "V7", "V8", "V9"],
        "partition 1's records written before its first tick were skipped"
    );
    case.assert_log_chains(1);
}
