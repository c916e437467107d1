//! Dead letters: the records that did not become rows, with why, as JSON lines in the staging
//! bucket (`docs/architecture.md`, "Dead letters"). One object per staging attempt of a batch
//! that had any, under `dead-letters/<scope>/<topic>/<partition>/<start>-<end>-<attempt>.jsonl`;
//! the pipeline writes them, the listing counts the ones a committed batch names and the replay
//! reads them back into records. The line's layout and the key's live only here, so the writer
//! and the reader cannot drift apart.

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

use crate::event::TopicPartition;
use crate::scope::LogScope;

/// What every dead-letter key starts with.
pub const PREFIX: &str = "dead-letters/";

/// The key of the dead letters of one staging attempt of batch `[start, end)` of `tp` in
/// `scope`. Each attempt writes its own object, so an attempt that loses the race to fix the
/// batch never overwrites the one the committed batch names.
pub fn object_key(
    scope: &LogScope,
    tp: &TopicPartition,
    start: i64,
    end: i64,
    attempt: &str,
) -> String {
    format!(
        "{}{start:020}-{end:020}-{attempt}.jsonl",
        partition_prefix(scope, tp)
    )
}

/// What a dead-letter key names: its scope, partition and the batch's planned range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyParts {
    pub scope: LogScope,
    pub tp: TopicPartition,
    pub start: i64,
    pub end: i64,
}

/// Reads a key [`object_key`] wrote (or one of the attempt-less keys of earlier releases).
pub fn parse_key(key: &str) -> Option<KeyParts> {
    let rest = key.strip_prefix(PREFIX)?;
    let mut parts = rest.split('/');
    let (scope, topic, partition, file) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let mut range = file.strip_suffix(".jsonl")?.split('-');
    let start = range.next()?.parse().ok()?;
    let end = range.next()?.parse().ok()?;
    Some(KeyParts {
        scope: LogScope::parse(scope),
        tp: TopicPartition::new(topic, partition.parse().ok()?),
        start,
        end,
    })
}

/// The prefix of every dead-letter object of `tp` in `scope`.
pub fn partition_prefix(scope: &LogScope, tp: &TopicPartition) -> String {
    format!("{PREFIX}{scope}/{}/{}/", tp.topic, tp.partition)
}

/// The scope a dead-letter key belongs to, if it is one.
pub fn scope_of_key(key: &str) -> Option<LogScope> {
    key.strip_prefix(PREFIX)
        .and_then(|rest| rest.split('/').next())
        .map(LogScope::parse)
}

/// A record header as the dead letter keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadHeader {
    pub key: String,
    #[serde(with = "base64_bytes")]
    pub value: Option<Vec<u8>>,
}

/// A transform module that ran on the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleRef {
    pub name: String,
    pub sha256: String,
}

/// One dead letter: the record as read from Kafka (key, value and header values in base64),
/// the stage that refused it, its error code and message, and the modules that ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    #[serde(default)]
    pub topic: String,
    #[serde(default)]
    pub partition: i32,
    pub offset: i64,
    #[serde(default)]
    pub timestamp: i64,
    #[serde(default, with = "base64_bytes")]
    pub key: Option<Vec<u8>>,
    #[serde(default, with = "base64_bytes")]
    pub value: Option<Vec<u8>>,
    #[serde(default)]
    pub headers: Vec<DeadHeader>,
    /// The stage's declared name, or `encode` for a row the table refused.
    #[serde(default)]
    pub stage: String,
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub modules: Vec<ModuleRef>,
}

/// A dead-letter object that does not read back.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("line {line}: {reason}")]
pub struct DeadLetterError {
    /// The 1-based line.
    pub line: usize,
    pub reason: String,
}

impl DeadLetter {
    /// The partition the record came from.
    pub fn tp(&self) -> TopicPartition {
        TopicPartition::new(self.topic.clone(), self.partition)
    }

    /// Appends this dead letter as one JSON line.
    pub fn write_line(&self, out: &mut Vec<u8>) {
        // Serializing plain strings, numbers and byte vectors cannot fail.
        if serde_json::to_writer(&mut *out, self).is_ok() {
            out.push(b'\n');
        }
    }
}

/// Every dead letter of an object, in order; blank lines are passed over.
pub fn parse_lines(data: &[u8]) -> Result<Vec<DeadLetter>, DeadLetterError> {
    lines(data)
        .map(|(line, text)| {
            serde_json::from_slice(text).map_err(|e| DeadLetterError {
                line,
                reason: e.to_string(),
            })
        })
        .collect()
}

/// How many dead letters an object holds (its non-blank lines), without parsing them.
pub fn count_lines(data: &[u8]) -> usize {
    lines(data).count()
}

fn lines(data: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    data.split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
        .map(|(i, l)| (i + 1, l))
}

/// `Option<Vec<u8>>` as standard base64 text or `null`.
mod base64_bytes {
    use super::*;

    pub(super) fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(bytes) => {
                s.serialize_some(&base64::engine::general_purpose::STANDARD.encode(bytes))
            }
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) => base64::engine::general_purpose::STANDARD
                .decode(text)
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> DeadLetter {
        DeadLetter {
            topic: "clicks".into(),
            partition: 3,
            offset: 41,
            timestamp: 1_714_521_600_000,
            key: None,
            value: Some(b"{\"user\": \xff}".to_vec()),
            headers: vec![
                DeadHeader {
                    key: "trace".into(),
                    value: Some(vec![0, 1, 2]),
                },
                DeadHeader {
                    key: "empty".into(),
                    value: None,
                },
            ],
            stage: "parse".into(),
            code: "invalid-input".into(),
            message: "line 1: expected value".into(),
            modules: vec![ModuleRef {
                name: "parse".into(),
                sha256: "ab".repeat(32),
            }],
        }
    }

    #[test]
    fn a_line_round_trips_with_its_bytes() {
        let mut out = Vec::new();
        sample().write_line(&mut out);
        sample().write_line(&mut out);
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 2);
        assert_eq!(parse_lines(&out), Ok(vec![sample(), sample()]));
        assert_eq!(count_lines(&out), 2);
    }

    #[test]
    fn the_line_keeps_the_documented_field_order_and_encoding() {
        let mut out = Vec::new();
        sample().write_line(&mut out);
        let text = String::from_utf8(out).expect("utf-8");
        assert!(
            text.starts_with(
                r#"{"topic":"clicks","partition":3,"offset":41,"timestamp":1714521600000,"key":null,"value":"eyJ1c2VyIjog/30=","headers":[{"key":"trace","value":"AAEC"},{"key":"empty","value":null}],"stage":"parse","code":"invalid-input""#
            ),
            "{text}"
        );
    }

    #[test]
    fn a_broken_line_is_named() {
        let data = b"{\"offset\": 1}\n\n{\"offset\": \"x\"}\n";
        let err = parse_lines(data).expect_err("line 3 is broken");
        assert_eq!(err.line, 3, "{err}");
        let err = parse_lines(b"{\"offset\": 1, \"value\": \"***\"}").expect_err("bad base64");
        assert_eq!(err.line, 1);
        assert!(
            parse_lines(b"{\"topic\": \"t\"}").is_err(),
            "an offset is required"
        );
    }

    #[test]
    fn keys_name_scope_topic_partition_and_range() {
        let scope = LogScope::replay("prod", "0011");
        let tp = TopicPartition::new("clicks", 2);
        let key = object_key(&scope, &tp, 5, 17, "00ff");
        assert_eq!(
            key,
            "dead-letters/prod~replay-0011/clicks/2/00000000000000000005-00000000000000000017-00ff.jsonl"
        );
        assert!(key.starts_with(&partition_prefix(&scope, &tp)));
        assert_eq!(scope_of_key(&key), Some(scope.clone()));
        assert_eq!(scope_of_key("log/prod/x"), None);
        let parts = KeyParts {
            scope,
            tp,
            start: 5,
            end: 17,
        };
        assert_eq!(parse_key(&key), Some(parts.clone()));
        // Keys of earlier releases had no attempt.
        assert_eq!(
            parse_key(&key.replace("-00ff.jsonl", ".jsonl")),
            Some(parts)
        );
        assert_eq!(parse_key("dead-letters/prod/clicks/x/1-2.jsonl"), None);
        assert_eq!(parse_key("dead-letters/prod/clicks/2/1-2.json"), None);
    }
}
