//! The benchmark's data: JSON events of a fixed size shaped like the published DataWorks figures
//! (1 KB and 10 KB), with fields to extract, a phone number to mask and an identity number to
//! hash; the table they land in; the `kafka-columns` + `mask` chain that does it; and producing
//! them to one partition of the local tansu broker.

use std::collections::BTreeMap;

use rskafka::client::ClientBuilder;
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::record::Record;
use serde_json::json;

/// One data set: its name, its record size and how many records it has.
#[derive(Debug, Clone)]
pub struct DataSet {
    pub name: String,
    pub record_bytes: usize,
    pub records: u64,
}

impl DataSet {
    pub fn topic(&self) -> String {
        format!("bench-{}", self.name)
    }
}

/// The table's columns (both pipelines fill them the same way).
pub const DDL_COLUMNS: &str = "(event_id bigint, event_time datetime, user_id string, phone string, id_number string, city string, amount double, note string, kafka_offset bigint) PARTITIONED BY (ds string)";

/// The partition every event lands in (all events are on one day).
pub const PARTITION: &str = "ds=20261101";

const COLUMNS: &str = r#"[{"name": "event_id", "type": "bigint", "nullable": false},
 {"name": "event_time", "type": "datetime"}, {"name": "user_id", "type": "string", "source": "user.id"},
 {"name": "phone", "type": "string", "source": "user.phone"},
 {"name": "id_number", "type": "string", "source": "user.id_number"},
 {"name": "city", "type": "string", "source": "user.city"}, {"name": "amount", "type": "double"},
 {"name": "note", "type": "string"}, {"name": "kafka_offset", "type": "bigint", "source": "__offset__"}]"#;

/// The `[[transforms]]` of k2mc's config: extract the columns, keep 3 + 4 digits of the phone,
/// replace the identity number by its SHA-256 (what the Python peer does with `hashlib`).
pub fn transforms_toml(kafka_columns: &str, mask: &str) -> String {
    format!(
        "[[transforms]]\nname = \"kafka-columns\"\nwasm = {kafka_columns:?}\nsettings = {{ columns = '''{}''' }}\n\n\
         [[transforms]]\nname = \"mask\"\nwasm = {mask:?}\nsettings = {{ \"column.phone\" = \"phone\", \"column.id_number\" = \"sha256\" }}\n",
        COLUMNS.replace('\n', "")
    )
}

const CITIES: [&str; 6] = [
    "Hangzhou", "Shanghai", "Beijing", "Shenzhen", "Chengdu", "Wuhan",
];

/// Event `i` of a data set, exactly `size` bytes of JSON: the fields, then a note of
/// pseudo-random words (so blocks do not compress to nothing) filling it up.
pub fn event(i: u64, size: usize) -> Vec<u8> {
    let mut value = json!({
        "event_id": i,
        "event_time": format!("2026-11-01 {:02}:{:02}:{:02}", (i / 3600) % 24, (i / 60) % 60, i % 60),
        "user": {
            "id": format!("u{:08}", i % 10_000_000),
            "phone": format!("138{:08}", (i * 7919) % 100_000_000),
            "id_number": format!("33010619900307{:04}", i % 10_000),
            "city": CITIES[(i % CITIES.len() as u64) as usize],
        },
        "amount": (i % 100_000) as f64 / 100.0 + 0.5,
        "note": "",
    });
    let base = value.to_string().len();
    let mut note = String::with_capacity(size.saturating_sub(base));
    let mut state = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while note.len() < size.saturating_sub(base) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let c = b"etaoin shrdlu cmfwyp vbgkqjxz"[(state % 29) as usize];
        note.push(c as char);
    }
    value["note"] = json!(note);
    value.to_string().into_bytes()
}

/// Creates the data set's topic (one partition) and produces its events, about 1 MB per request.
pub async fn produce(bootstrap: &str, set: &DataSet) -> anyhow::Result<()> {
    let client = ClientBuilder::new(vec![bootstrap.to_owned()])
        .build()
        .await?;
    client
        .controller_client()?
        .create_topic(&set.topic(), 1, 1, 5_000)
        .await?;
    let partition = client
        .partition_client(set.topic(), 0, UnknownTopicHandling::Retry)
        .await?;
    let per_request = (1_000_000 / set.record_bytes).max(1) as u64;
    let mut next = 0;
    while next < set.records {
        let end = (next + per_request).min(set.records);
        let records = (next..end)
            .map(|i| Record {
                key: Some(format!("u{i}").into_bytes()),
                value: Some(event(i, set.record_bytes)),
                headers: BTreeMap::new(),
                timestamp: chrono::Utc::now(),
            })
            .collect();
        partition
            .produce(records, Compression::NoCompression)
            .await?;
        next = end;
        if next % (per_request * 100) == 0 || next == set.records {
            eprintln!("bench: produced {next}/{} to {}", set.records, set.topic());
        }
    }
    Ok(())
}

/// Reads offsets `0..count` of the topic's partition with rskafka alone, with the fetch size and
/// wait k2mc uses; returns (records, value bytes). This is the raw read limit.
pub async fn read_range(bootstrap: &str, topic: &str, count: i64) -> anyhow::Result<(u64, u64)> {
    let client = ClientBuilder::new(vec![bootstrap.to_owned()])
        .build()
        .await?;
    let partition = client
        .partition_client(topic, 0, UnknownTopicHandling::Error)
        .await?;
    let (mut offset, mut records, mut bytes) = (0i64, 0u64, 0u64);
    while offset < count {
        let (batch, _) = partition
            .fetch_records(offset, 1..4 * 1024 * 1024, 10)
            .await?;
        anyhow::ensure!(
            !batch.is_empty(),
            "the broker answered nothing at offset {offset}"
        );
        for r in batch {
            if r.offset < offset || r.offset >= count {
                continue;
            }
            records += 1;
            bytes += r.record.value.as_ref().map_or(0, Vec::len) as u64;
            offset = r.offset + 1;
        }
    }
    Ok((records, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_have_the_exact_size() {
        for size in [1024, 10_240] {
            for i in [0, 1, 999_999] {
                assert_eq!(event(i, size).len(), size);
            }
        }
    }
}
