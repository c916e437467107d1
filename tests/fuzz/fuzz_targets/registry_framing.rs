//! The registry stage's framing readers (`framing::split`, Confluent and AWS Glue headers, and
//! `protobuf::message_indexes`, Confluent's zig-zag message-index list). Input: a record value
//! as it arrives from Kafka. Either reader accepts it or says why; neither panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registry::framing::{self, Framed};
use registry::protobuf;

fuzz_target!(|data: &[u8]| {
    match framing::split(data) {
        Ok(Framed::Confluent { payload, .. }) => {
            assert!(payload.len() + 5 == data.len());
            if let Ok((indexes, rest)) = protobuf::message_indexes(payload) {
                assert!(!indexes.is_empty() && rest.len() < payload.len());
            }
        }
        Ok(Framed::Glue {
            payload,
            version_id,
            ..
        }) => {
            assert_eq!(payload.len() + 18, data.len());
            assert_eq!(version_id.len(), 36);
        }
        Err(e) => assert!(!e.0.is_empty()),
    }
});
