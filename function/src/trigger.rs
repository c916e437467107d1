//! The trigger stage: what started this invocation. The events themselves are parsed by
//! `k2mc_formats::event` (pure, fuzzed); this module hands their records to the transform chain
//! in its own record type. [`crate::pipeline::plan`] turns a [`Trigger`] into per-partition work.

pub use k2mc_formats::event::{
    EventError, EventRecord, TopicPartition, Trigger, batch_item_failures, parse_event,
};

use crate::transform::bindings::KafkaRecord;
use crate::transform::headers_from_pairs;

/// The one conversion of a record an event delivered. Headers keep the payload's order and
/// repeated names.
impl From<EventRecord> for KafkaRecord {
    fn from(r: EventRecord) -> Self {
        KafkaRecord {
            offset: r.offset,
            timestamp_ms: r.timestamp_ms,
            key: r.key,
            value: r.value,
            headers: headers_from_pairs(r.headers),
        }
    }
}
