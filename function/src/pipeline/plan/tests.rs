//! Table-driven tests of the plan stage: trigger → work, offset specs, batch and byte cuts.

use std::collections::BTreeMap;

use super::*;
use k2mc_formats::event::EventRecord;

fn config() -> Config {
    let mut c = Config::parse(k2mc_formats::config::MINIMAL_EXAMPLE, []).expect("config");
    c.kafka.topics = vec!["a".into(), "b".into()];
    c.kafka.start_from = StartFrom::Latest;
    c
}

fn schedule(topics: &[&str], partitions: &[i32]) -> Trigger {
    Trigger::Schedule {
        time: chrono::Utc::now(),
        topics: topics.iter().map(|t| (*t).to_owned()).collect(),
        partitions: partitions.to_vec(),
    }
}

fn event(groups: &[(&str, i32, &[i64])]) -> Trigger {
    let records = groups
        .iter()
        .map(|(topic, partition, offsets)| {
            (
                TopicPartition::new(*topic, *partition),
                offsets
                    .iter()
                    .map(|&offset| EventRecord {
                        offset,
                        timestamp_ms: 0,
                        key: None,
                        value: Some(b"v".to_vec()),
                        headers: vec![("h".into(), b"1".to_vec()), ("h".into(), b"2".to_vec())],
                    })
                    .collect(),
            )
        })
        .collect();
    Trigger::Kafka {
        source: "aws:kafka".into(),
        time: chrono::Utc::now(),
        records,
    }
}

fn listed() -> BTreeMap<String, Vec<i32>> {
    BTreeMap::from([("a".into(), vec![0, 1, 2]), ("b".into(), vec![0])])
}

/// The work as (topic-partition, start, target) triples, for tables.
fn shape(plan: &Plan) -> Vec<(String, OffsetSpec, Target)> {
    plan.work
        .iter()
        .map(|w| (w.tp.to_string(), w.start, w.target))
        .collect()
}

#[test]
fn a_schedule_syncs_the_listed_partitions_to_the_watermark() {
    let latest = OffsetSpec::Latest;
    let hwm = Target::HighWatermark;
    type Want = Vec<(&'static str, OffsetSpec, Target)>;
    let cases: &[(Trigger, Want)] = &[
        (
            schedule(&[], &[]),
            vec![
                ("a-0", latest, hwm),
                ("a-1", latest, hwm),
                ("a-2", latest, hwm),
                ("b-0", latest, hwm),
            ],
        ),
        (schedule(&[], &[1]), vec![("a-1", latest, hwm)]),
        (schedule(&[], &[7]), vec![]),
    ];
    for (trigger, want) in cases {
        let got = shape(&plan(trigger, &config(), &listed()));
        let want: Vec<_> = want
            .iter()
            .map(|(t, s, e)| ((*t).to_owned(), *s, *e))
            .collect();
        assert_eq!(got, want, "{trigger:?}");
    }
}

#[test]
fn a_schedule_lists_only_configured_topics() {
    let c = config();
    assert_eq!(
        topics_to_list(&schedule(&[], &[]), &c).expect("all"),
        ["a", "b"]
    );
    assert_eq!(
        topics_to_list(&schedule(&["b"], &[]), &c).expect("b"),
        ["b"]
    );
    let err = topics_to_list(&schedule(&["a", "zzz"], &[]), &c).expect_err("zzz");
    assert!(
        matches!(err, PipelineError::UnknownTopic { ref topic } if topic == "zzz"),
        "{err}"
    );
    assert!(
        topics_to_list(&event(&[("zzz", 0, &[1])]), &c)
            .expect("event")
            .is_empty()
    );
}

#[test]
fn an_event_on_a_partition_never_synced_starts_where_start_from_says() {
    // Under `earliest`, what came before the first delivered record is loaded too (a schedule
    // reaching the partition first would have); under `latest`, the first delivered record.
    let mut c = config();
    c.kafka.start_from = StartFrom::Earliest;
    let p = plan(&event(&[("a", 3, &[10, 11])]), &c, &BTreeMap::new());
    assert_eq!(
        shape(&p),
        [(
            "a-3".to_owned(),
            OffsetSpec::Earliest,
            Target::Delivered(12)
        )]
    );
}

#[test]
fn an_event_syncs_each_partition_to_its_last_delivered_offset() {
    let p = plan(
        &event(&[("a", 3, &[10, 11, 14]), ("b", 0, &[5]), ("zzz", 1, &[7, 8])]),
        &config(),
        &BTreeMap::new(),
    );
    assert_eq!(
        shape(&p),
        [
            (
                "a-3".to_owned(),
                OffsetSpec::Offset(10),
                Target::Delivered(15)
            ),
            (
                "b-0".to_owned(),
                OffsetSpec::Offset(5),
                Target::Delivered(6)
            ),
        ]
    );
    // Delivered records keep their headers as the payload had them (order and repeats).
    let headers: Vec<_> = p.work[0].delivered[0]
        .headers
        .iter()
        .map(|h| h.value.clone())
        .collect();
    assert_eq!(headers, [Some(b"1".to_vec()), Some(b"2".to_vec())]);
    assert_eq!(p.work[0].delivered.len(), 3);
    // The uncovered topic is refused alone, to be redelivered from its first record.
    assert_eq!(p.refused.len(), 1);
    assert_eq!(
        (p.refused[0].tp.to_string(), p.refused[0].next),
        ("zzz-1".to_owned(), Some(7))
    );
    assert_eq!(p.refused[0].error.kind(), "unknown-topic");
}

#[test]
fn offset_specs_parse_and_print() {
    let t = chrono::DateTime::parse_from_rfc3339("2024-05-01T00:00:00Z")
        .expect("time")
        .with_timezone(&chrono::Utc);
    for (text, want) in [
        ("earliest", OffsetSpec::Earliest),
        ("latest", OffsetSpec::Latest),
        ("offset:42", OffsetSpec::Offset(42)),
        ("time:2024-05-01T00:00:00+00:00", OffsetSpec::Time(t)),
    ] {
        assert_eq!(text.parse::<OffsetSpec>(), Ok(want), "{text}");
        assert_eq!(want.to_string(), text);
    }
    assert_eq!(
        "time:2024-05-01T02:00:00+02:00".parse::<OffsetSpec>(),
        Ok(OffsetSpec::Time(t))
    );
    for bad in [
        "",
        "first",
        "offset:",
        "offset:x",
        "time:yesterday",
        "Earliest",
    ] {
        let err = bad.parse::<OffsetSpec>().expect_err(bad);
        assert!(err.contains(bad), "{err}");
    }
}

#[test]
fn a_backfill_range_must_not_run_backwards() {
    let tp = TopicPartition::new("a", 0);
    let w = backfill(
        tp.clone(),
        (OffsetSpec::Earliest, 3),
        (OffsetSpec::Latest, 9),
    )
    .expect("ok");
    assert_eq!(
        (w.start, w.target),
        (OffsetSpec::Offset(3), Target::Offset(9))
    );
    assert!(
        backfill(
            tp.clone(),
            (OffsetSpec::Offset(4), 4),
            (OffsetSpec::Offset(4), 4)
        )
        .is_ok()
    );
    let err = backfill(tp, (OffsetSpec::Offset(9), 9), (OffsetSpec::Offset(2), 2))
        .expect_err("backwards");
    assert!(
        err.to_string().contains("give --from the earlier point"),
        "{err}"
    );
}

#[test]
fn records_deleted_before_they_synced_are_reported() {
    let tp = TopicPartition::new("a", 0);
    assert!(check_retained(&tp, 5, 5).is_ok());
    assert!(check_retained(&tp, 6, 5).is_ok());
    assert_eq!(
        check_retained(&tp, 4, 5).expect_err("lost").kind(),
        "offsets-lost"
    );
}

#[test]
fn ranges_are_cut_by_offsets() {
    for (next, end, max, want) in [
        (10, 100, 50, (10, 60)),
        (10, 30, 50, (10, 30)),
        (30, 30, 50, (30, 30)),
        (40, 30, 50, (40, 40)),
        (i64::MAX - 1, i64::MAX, u64::MAX, (i64::MAX - 1, i64::MAX)),
    ] {
        assert_eq!(batch_range(next, end, max), want, "{next} {end} {max}");
    }
}

#[test]
fn the_bytes_limit_cuts_at_the_record_that_reaches_it() {
    let rec = |key: usize, value: usize| KafkaRecord {
        offset: 0,
        timestamp_ms: 0,
        key: Some(vec![0; key]),
        value: (value > 0).then(|| vec![0; value]),
        headers: Vec::new(),
    };
    let records = [rec(1, 9), rec(0, 10), rec(5, 5)];
    for (start, limit, want, bytes) in [
        (0, 100, None, 30),
        (0, 20, Some(2), 20),
        (0, 19, Some(2), 20),
        (0, 1, Some(1), 10),
        (25, 30, Some(1), 35),
    ] {
        let mut total = start;
        assert_eq!(
            byte_cut(&records, &mut total, limit),
            want,
            "{start} {limit}"
        );
        assert_eq!(total, bytes);
    }
}
