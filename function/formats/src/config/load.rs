//! `[load]`: when staged batches are loaded into MaxCompute (`docs/architecture.md`, "Staging
//! and loading"). A table's load is due when its oldest staged batch is `interval` old, or its
//! staged batches reach `min_bytes` or `min_records`; every invocation loads the tables whose
//! load is due, and `k2mc load` loads now. Sizes are bytes or text such as `"256MiB"`; the
//! interval is text such as `"60s"` or `"5m"`.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// When and how staged batches are loaded.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadConfig {
    /// The freshness bound: load when the oldest staged batch of a table is this old. `"0s"`
    /// (the default) loads in every invocation what it staged.
    #[serde(default, deserialize_with = "duration")]
    pub interval: Duration,
    /// Load as soon as a table's staged batches hold this many (uncompressed) bytes; 0: never
    /// by size.
    #[serde(default, deserialize_with = "size")]
    pub min_bytes: u64,
    /// Load as soon as a table's staged batches hold this many rows; 0: never by count.
    #[serde(default)]
    pub min_records: u64,
    /// A load joins staged blocks into Tunnel blocks of about this many uncompressed bytes
    /// (MaxCompute recommends files of 64 MB or more).
    #[serde(default = "default_block_bytes", deserialize_with = "size")]
    pub block_bytes: u64,
    /// Blocks of one session sent at once. The Tunnel takes one block at about 10 MB/s
    /// (`docs/maxcompute-protocol.md` §5), so one block at a time caps a load there;
    /// each block in flight holds about two staged pieces in memory.
    #[serde(default = "default_parallel_blocks")]
    pub parallel_blocks: usize,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            interval: Duration::ZERO,
            min_bytes: 0,
            min_records: 0,
            block_bytes: default_block_bytes(),
            parallel_blocks: default_parallel_blocks(),
        }
    }
}

impl LoadConfig {
    /// True when a table whose oldest staged batch is `age` old and whose staged batches hold
    /// `bytes` and `records` is due for a load.
    pub fn due(&self, age: Duration, bytes: u64, records: u64) -> bool {
        age >= self.interval
            || (self.min_bytes > 0 && bytes >= self.min_bytes)
            || (self.min_records > 0 && records >= self.min_records)
    }
}

fn default_block_bytes() -> u64 {
    64 * 1024 * 1024
}

/// A number of bytes or a text such as `"256MiB"`.
#[derive(Deserialize)]
#[serde(untagged)]
enum SizeText {
    Bytes(u64),
    Text(String),
}

fn size<'de, D: Deserializer<'de>>(de: D) -> Result<u64, D::Error> {
    match SizeText::deserialize(de)? {
        SizeText::Bytes(n) => Ok(n),
        SizeText::Text(t) => t
            .trim()
            .parse::<bytesize::ByteSize>()
            .map(|b| b.as_u64())
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "'{t}' is not a size ({e}); write bytes or e.g. \"256MiB\""
                ))
            }),
    }
}

fn default_parallel_blocks() -> usize {
    2
}

fn duration<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(de)?;
    humantime::parse_duration(text.trim()).map_err(|e| {
        serde::de::Error::custom(format!(
            "'{text}' is not a duration ({e}); write e.g. \"60s\" or \"5m\""
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_read_as_people_write_them() {
        let c: LoadConfig =
            toml::from_str("interval = \"90s\"\nmin_bytes = \"256MiB\"\nblock_bytes = 1048576")
                .unwrap();
        assert_eq!(c.interval, Duration::from_secs(90));
        assert_eq!(c.min_bytes, 256 * 1024 * 1024);
        assert_eq!(c.block_bytes, 1024 * 1024);
        assert_eq!(c.parallel_blocks, 2);
        let err = toml::from_str::<LoadConfig>("min_bytes = \"lots\"").unwrap_err();
        assert!(err.to_string().contains("256MiB"), "{err}");
        let err = toml::from_str::<LoadConfig>("interval = \"soon\"").unwrap_err();
        assert!(err.to_string().contains("60s"), "{err}");
    }

    #[test]
    fn a_load_is_due_by_age_size_or_count() {
        let c = LoadConfig {
            interval: Duration::from_secs(60),
            min_bytes: 100,
            min_records: 0,
            ..LoadConfig::default()
        };
        assert!(!c.due(Duration::from_secs(59), 99, 1_000_000));
        assert!(c.due(Duration::from_secs(60), 0, 0));
        assert!(c.due(Duration::from_secs(1), 100, 0));
        assert!(LoadConfig::default().due(Duration::ZERO, 0, 0));
    }
}
