//! The kafka-columns JSON path parser (`path::parse`), which reads a user's column sources
//! (`a.a1`, `c[1]`, `a\.b`, `["a.b"]`). Input: the path text. A path parses or names the byte
//! of its error; a parsed path is looked up in a nested value without panicking.
#![no_main]

use kafka_columns::path;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match path::parse(text) {
        Ok(steps) => {
            let value = serde_json::json!({
                "a": {"a1": [1, {"b": null}], "a.b": "dot"},
                "c": [[0, 1], {"": true}],
                "": {"x": "empty key"}
            });
            let _ = path::get(&value, &steps);
        }
        Err(e) => assert!(e.contains("at byte"), "{e}"),
    }
});
