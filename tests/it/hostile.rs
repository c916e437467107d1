//! Hostile and bad records end to end: each one either lands as a row or becomes a dead letter
//! holding its original bytes, the stage and a code and message saying why; the batch commits
//! and the log reconciles (read = loaded + filtered + dead-lettered). The table in
//! docs/reliability.md lists these outcomes; this test is its proof for record inputs.

use std::collections::BTreeMap;

use base64::Engine as _;
use harness::stack::shared_stack;
use rskafka::record::Record;

use crate::case::Case;

fn record(key: Option<&[u8]>, value: Option<Vec<u8>>) -> Record {
    Record {
        key: key.map(<[u8]>::to_vec),
        value,
        headers: BTreeMap::new(),
        timestamp: chrono::Utc::now(),
    }
}

/// Every dead letter of the case's topic: offset → (stage, code, message, original value).
/// A dead letter as written: (stage, code, message, the original value).
type Letter = (String, String, String, Option<Vec<u8>>);

/// A hostile record: (what, key, value, expected: `None` a row, `Some((stage, code))` a dead letter).
type Hostile<'a> = (
    &'a str,
    Option<&'a [u8]>,
    Option<Vec<u8>>,
    Option<(&'a str, &'a str)>,
);

fn dead_letters(case: &Case<'_>) -> BTreeMap<i64, Letter> {
    let stack = shared_stack().unwrap();
    let cluster = case.topic.trim_start_matches("t_");
    let dir = stack
        .dir
        .join("s3")
        .join(&stack.bucket)
        .join("k2mc/dead-letters")
        .join(cluster)
        .join(&case.topic);
    let mut out = BTreeMap::new();
    let mut stack_dirs = vec![dir];
    while let Some(d) = stack_dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack_dirs.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for line in text.lines().filter(|l| l.starts_with('{')) {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                let value = v["value"]
                    .as_str()
                    .map(|b| base64::engine::general_purpose::STANDARD.decode(b).unwrap());
                out.insert(
                    v["offset"].as_i64().unwrap(),
                    (
                        v["stage"].as_str().unwrap().to_owned(),
                        v["code"].as_str().unwrap().to_owned(),
                        v["message"].as_str().unwrap().to_owned(),
                        value,
                    ),
                );
            }
        }
    }
    out
}

#[test]
fn each_hostile_record_lands_or_is_dead_lettered_with_its_bytes_and_reason() {
    let case = Case::new("hostile", 1, "[limits]\nerror_limit = \"100%\"\n");
    case.produce(0, 0..4, 1); // offsets 0..4: good rows
    let huge_array = format!(
        r#"{{"vehicle":{{"id":"HA"}},"ts":"2024-01-01 09:00:00","samples":[{}]}}"#,
        vec!["0"; 200_000].join(",")
    );
    let over_field = format!(
        r#"{{"vehicle":{{"id":"OF"}},"ts":"2024-01-01 09:00:00","owner":{{"phone":"{}"}}}}"#,
        "1".repeat(8 * 1024 * 1024 + 1)
    );
    let hostile: Vec<Hostile<'_>> = vec![
        (
            "malformed JSON",
            Some(b"k"),
            Some(b"{not json".to_vec()),
            Some(("kafka-columns", "bad-json")),
        ),
        (
            "invalid UTF-8",
            Some(b"k"),
            Some(
                [
                    &br#"{"vehicle":{"id":""#[..],
                    &[0xff, 0xfe],
                    br#""},"ts":"2024-01-01 09:00:00"}"#,
                ]
                .concat(),
            ),
            Some(("kafka-columns", "bad-json")),
        ),
        (
            "a wrong type for a column",
            Some(b"k"),
            Some(
                br#"{"vehicle":{"id":"WT"},"total_miles":"many","ts":"2024-01-01 09:00:00"}"#
                    .to_vec(),
            ),
            Some(("kafka-columns", "type-mismatch")),
        ),
        (
            "a missing NOT NULL field",
            Some(b"k"),
            Some(br#"{"average_speed":1.5}"#.to_vec()),
            Some(("kafka-columns", "null-value")),
        ),
        (
            "a tombstone (no value)",
            Some(b"k"),
            None,
            Some(("kafka-columns", "null-value")),
        ),
        (
            "a null key",
            None,
            Some(br#"{"vehicle":{"id":"NK"},"ts":"2024-01-01 09:00:00"}"#.to_vec()),
            None,
        ),
        (
            "a huge array (200,000 items)",
            Some(b"k"),
            Some(huge_array.into_bytes()),
            None,
        ),
        (
            "a value over the 8 MiB field limit",
            Some(b"k"),
            Some(over_field.into_bytes()),
            Some(("encode", "value-too-large")),
        ),
    ];
    let mut expected = Vec::new();
    for (i, (what, key, value, outcome)) in hostile.into_iter().enumerate() {
        case.produce_records(0, vec![record(key, value.clone())]);
        expected.push((4 + i as i64, what, value, outcome));
    }
    case.produce(0, 100..104, 1); // good rows after the hostile ones

    let (ok, out, stderr) = case.k2mc(&["run"], &[]);
    assert!(ok, "the run failed on hostile input:\n{stderr}\n{out}");
    let rows = case.landed();
    let letters = dead_letters(&case);
    for (offset, what, value, outcome) in &expected {
        match outcome {
            None => assert!(
                rows.iter().any(|r| r.2 == *offset),
                "{what} (offset {offset}) did not land: {letters:?}"
            ),
            Some((stage, code)) => {
                let Some((s, c, message, kept)) = letters.get(offset) else {
                    panic!("{what} (offset {offset}) is neither a row nor a dead letter")
                };
                assert_eq!(
                    (s.as_str(), c.as_str()),
                    (*stage, *code),
                    "{what}: {message}"
                );
                assert!(!message.is_empty(), "{what}: no message");
                assert_eq!(
                    kept, value,
                    "{what}: the dead letter does not keep the record's bytes"
                );
                eprintln!(
                    "hostile | {what} | dead letter | {stage} {code}: {}",
                    message.chars().take(120).collect::<String>()
                );
                assert!(
                    rows.iter().all(|r| r.2 != *offset),
                    "{what} both landed and was dead-lettered"
                );
            }
        }
    }
    let dead = expected.iter().filter(|e| e.3.is_some()).count();
    assert_eq!(letters.len(), dead, "{letters:?}");
    assert_eq!(rows.len(), 8 + expected.len() - dead, "{rows:?}");
    case.assert_log_chains(0);
}
