//! The invocation events the trigger stage reads: a schedule tick syncs every partition of the
//! configured topics (or the subset the event names, for a static fan-out over several
//! schedules); a Kafka event source mapping batch (`aws:kafka` for MSK, `SelfManagedKafka`)
//! carries records the function uses directly and whose gaps it fetches. Parsing only: the
//! function's `app` turns a [`Trigger`] into per-partition work.

use std::collections::BTreeMap;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use thiserror::Error;

/// A topic-partition of the configured cluster.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    /// `topic`'s partition `partition`.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// An event that is neither a schedule tick nor a Kafka batch the function can read.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("event: {reason}")]
pub struct EventError {
    /// What is wrong, naming the field or record.
    pub reason: String,
}

/// One record of an event source mapping batch, decoded from the event's base64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// Header names and values in delivery order (a name may repeat).
    pub headers: Vec<(String, Vec<u8>)>,
}

/// What an invocation was asked to do.
#[derive(Debug, Clone)]
pub enum Trigger {
    /// Sync the named partitions (every partition of `topics` when `partitions` is empty).
    Schedule {
        time: DateTime<Utc>,
        topics: Vec<String>,
        partitions: Vec<i32>,
    },
    /// The loader schedule (`{"action": "load"}`): no partition is synced; the tables whose
    /// staged batches are due are loaded (`docs/architecture.md`, "Staging and loading").
    Load { time: DateTime<Utc> },
    /// An event source mapping batch: records per partition, in offset order.
    Kafka {
        source: String,
        time: DateTime<Utc>,
        records: BTreeMap<TopicPartition, Vec<EventRecord>>,
    },
}

impl Trigger {
    /// `schedule`, `aws:kafka` or `SelfManagedKafka`, for logs.
    pub fn kind(&self) -> &str {
        match self {
            Trigger::Schedule { .. } => "schedule",
            Trigger::Load { .. } => "load",
            Trigger::Kafka { source, .. } => source,
        }
    }

    /// The trigger time, for static (DataWorks-style) partition templates.
    pub fn time(&self) -> DateTime<Utc> {
        match self {
            Trigger::Schedule { time, .. }
            | Trigger::Load { time }
            | Trigger::Kafka { time, .. } => *time,
        }
    }
}

#[derive(Deserialize)]
struct EsmRecord {
    topic: String,
    partition: i32,
    offset: i64,
    #[serde(default)]
    timestamp: i64,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    headers: Vec<BTreeMap<String, Vec<u8>>>,
}

fn bad(reason: impl Into<String>) -> EventError {
    EventError {
        reason: reason.into(),
    }
}

/// Reads a Lambda event. `now` is the invocation's start, used when the event has no time.
pub fn parse_event(event: &Json, now: DateTime<Utc>) -> Result<Trigger, EventError> {
    let time = event
        .get("time")
        .and_then(Json::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map_or(now, |t| t.with_timezone(&Utc));
    match event.get("eventSource").and_then(Json::as_str) {
        Some(source @ ("aws:kafka" | "SelfManagedKafka")) => parse_esm(source, event, time),
        Some(other) => Err(bad(format!(
            "eventSource {other:?} is not a Kafka event source (aws:kafka or SelfManagedKafka)"
        ))),
        None => {
            match event.get("action") {
                None | Some(Json::Null) => {}
                Some(Json::String(a)) if a == "load" => return Ok(Trigger::Load { time }),
                Some(other) => {
                    return Err(bad(format!(
                        "action {other} is not one k2mc knows (\"load\", or no action for a schedule tick)"
                    )));
                }
            }
            let strings = |key: &str| -> Result<Vec<String>, EventError> {
                match event.get(key) {
                    None | Some(Json::Null) => Ok(Vec::new()),
                    Some(v) => serde_json::from_value(v.clone())
                        .map_err(|_| bad(format!("{key} must be a list of topic names"))),
                }
            };
            let topics = strings("topics")?;
            let partitions = match event.get("partitions") {
                None | Some(Json::Null) => Vec::new(),
                Some(v) => serde_json::from_value(v.clone())
                    .map_err(|_| bad("partitions must be a list of partition numbers"))?,
            };
            Ok(Trigger::Schedule {
                time,
                topics,
                partitions,
            })
        }
    }
}

fn parse_esm(source: &str, event: &Json, time: DateTime<Utc>) -> Result<Trigger, EventError> {
    let groups = event
        .get("records")
        .and_then(Json::as_object)
        .ok_or_else(|| bad(format!("{source} event has no \"records\" object")))?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut records: BTreeMap<TopicPartition, Vec<EventRecord>> = BTreeMap::new();
    for (group, list) in groups {
        let list: Vec<EsmRecord> = serde_json::from_value(list.clone())
            .map_err(|e| bad(format!("records[{group:?}]: {e}")))?;
        for r in list {
            let decode =
                |field: &str, text: Option<String>| -> Result<Option<Vec<u8>>, EventError> {
                    text.map(|t| {
                        b64.decode(t.as_bytes()).map_err(|_| {
                            bad(format!(
                                "record {}-{}@{}: {field} is not base64",
                                r.topic, r.partition, r.offset
                            ))
                        })
                    })
                    .transpose()
                };
            let key = decode("key", r.key.clone())?;
            let value = decode("value", r.value.clone())?;
            let headers = r
                .headers
                .iter()
                .flat_map(|h| h.iter())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            records
                .entry(TopicPartition {
                    topic: r.topic.clone(),
                    partition: r.partition,
                })
                .or_default()
                .push(EventRecord {
                    offset: r.offset,
                    timestamp_ms: r.timestamp,
                    key,
                    value,
                    headers,
                });
        }
    }
    for list in records.values_mut() {
        list.sort_by_key(|r| r.offset);
        list.dedup_by_key(|r| r.offset);
    }
    Ok(Trigger::Kafka {
        source: source.to_owned(),
        time,
        records,
    })
}

/// The Kafka partial-batch response: for each failed partition, the first offset Lambda must
/// deliver again. An empty list means the whole batch succeeded.
pub fn batch_item_failures(failed: &[(TopicPartition, i64)]) -> Json {
    let items: Vec<Json> = failed
        .iter()
        .map(|(tp, offset)| {
            serde_json::json!({"itemIdentifier": {"partition": tp.to_string(), "offset": offset}})
        })
        .collect();
    serde_json::json!({ "batchItemFailures": items })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msk_payload_groups_decodes_and_orders() {
        let event = serde_json::json!({
            "eventSource": "aws:kafka",
            "records": {"t-1": [
                {"topic": "t", "partition": 1, "offset": 6, "timestamp": 5, "value": "YQ==", "headers": []},
                {"topic": "t", "partition": 1, "offset": 5, "timestamp": 4, "key": "aw==", "value": null,
                 "headers": [{"h": [104, 105]}]}
            ]}
        });
        let Trigger::Kafka { records, .. } = parse_event(&event, Utc::now()).unwrap() else {
            panic!("not kafka")
        };
        let list = &records[&TopicPartition {
            topic: "t".into(),
            partition: 1,
        }];
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].offset, 5);
        assert_eq!(list[0].key.as_deref(), Some(&b"k"[..]));
        assert_eq!(list[0].value, None);
        assert_eq!(list[0].headers[0], ("h".to_owned(), b"hi".to_vec()));
        assert_eq!(list[1].value.as_deref(), Some(&b"a"[..]));
    }

    #[test]
    fn bad_base64_names_the_record() {
        let event = serde_json::json!({"eventSource": "SelfManagedKafka", "records": {"t-0": [
            {"topic": "t", "partition": 0, "offset": 9, "value": "***"}]}});
        let err = parse_event(&event, Utc::now()).unwrap_err().to_string();
        assert!(err.contains("t-0@9") && err.contains("value"), "{err}");
    }

    #[test]
    fn schedule_with_subset() {
        let event =
            serde_json::json!({"time": "2024-05-01T10:00:00Z", "topics": ["a"], "partitions": [2]});
        let Trigger::Schedule {
            time,
            topics,
            partitions,
        } = parse_event(&event, Utc::now()).unwrap()
        else {
            panic!("not a schedule")
        };
        assert_eq!(time.to_rfc3339(), "2024-05-01T10:00:00+00:00");
        assert_eq!((topics, partitions), (vec!["a".to_owned()], vec![2]));
    }

    #[test]
    fn the_loader_schedule_loads_and_unknown_actions_are_refused() {
        let event = serde_json::json!({"source": "k2mc.schedule", "action": "load"});
        assert!(matches!(
            parse_event(&event, Utc::now()).unwrap(),
            Trigger::Load { .. }
        ));
        let err = parse_event(&serde_json::json!({"action": "sync"}), Utc::now())
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"sync\"") && err.contains("load"), "{err}");
    }
}
