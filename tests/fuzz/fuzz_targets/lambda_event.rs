//! The Lambda invocation event parser (`parse_event`): schedule ticks, loader ticks and Kafka event source
//! mapping batches (`aws:kafka`, `SelfManagedKafka`). Input: any bytes; those that are JSON are
//! parsed as an event. An event is a trigger or an error, and a Kafka batch's records come out
//! per partition in strictly increasing offset order.
#![no_main]

use chrono::{DateTime, Utc};
use k2mc_formats::event::{Trigger, batch_item_failures, parse_event};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(event) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let now = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).expect("a valid instant");
    match parse_event(&event, now) {
        Ok(Trigger::Kafka { records, .. }) => {
            let mut failed = Vec::new();
            for (tp, list) in &records {
                assert!(!list.is_empty(), "{tp} has an empty record list");
                assert!(
                    list.windows(2).all(|w| w[0].offset < w[1].offset),
                    "{tp} offsets are not strictly increasing"
                );
                failed.push((tp.clone(), list[0].offset));
            }
            let response = batch_item_failures(&failed);
            assert_eq!(
                response["batchItemFailures"].as_array().map(Vec::len),
                Some(failed.len())
            );
        }
        Ok(Trigger::Schedule { .. }) => {}
        // The loader schedule carries `"action": "load"`; nothing else is read from it.
        Ok(Trigger::Load { .. }) => {
            assert_eq!(
                event["action"], "load",
                "a load trigger without the load action"
            );
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
