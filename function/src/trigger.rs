//! The trigger stage: what started this invocation. The events themselves are parsed by
//! `k2mc_formats::event` (pure, fuzzed); this module hands their records to the transform chain
//! in its own record type. `app` turns a [`Trigger`] into per-partition work.

pub use k2mc_formats::event::{
    EventError, EventRecord, TopicPartition, Trigger, batch_item_failures, parse_event,
};

use crate::error::PipelineError;
use crate::transform::bindings::{Header, KafkaRecord};

impl From<EventRecord> for KafkaRecord {
    fn from(r: EventRecord) -> Self {
        KafkaRecord {
            offset: r.offset,
            timestamp_ms: r.timestamp_ms,
            key: r.key,
            value: r.value,
            headers: r
                .headers
                .into_iter()
                .map(|(key, value)| Header {
                    key,
                    value: Some(value),
                })
                .collect(),
        }
    }
}

impl From<EventError> for PipelineError {
    fn from(e: EventError) -> Self {
        PipelineError::Event { reason: e.reason }
    }
}
