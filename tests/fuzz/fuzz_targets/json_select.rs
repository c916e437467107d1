//! kafka-columns' selective JSON read (`select::Selection`), which parses only what a stage's
//! column paths name. Input: up to six paths separated by `|`, a newline, then the JSON text.
//! The values read agree with parsing the whole text and following each path; text is refused
//! exactly when the whole parse refuses it, except the leniencies `select` documents for fields
//! no path reads (a number beyond f64, a lone surrogate escape, nesting beyond serde_json's
//! limit); and the fast scan answers exactly what serde_json alone answers.
#![no_main]

use kafka_columns::path::{self, Step};
use kafka_columns::select::Selection;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let Some((paths, text)) = input.split_once('\n') else {
        return;
    };
    let steps: Vec<Vec<Step>> = paths
        .split('|')
        .take(6)
        .filter_map(|p| path::parse(p).ok())
        .collect();
    let refs: Vec<&[Step]> = steps.iter().map(Vec::as_slice).collect();
    let selection = Selection::new(&refs);
    // The fast scan answers exactly what serde_json alone answers (values and errors alike).
    match (
        selection.read_picked(text),
        selection.read_picked_serde(text),
    ) {
        (Ok(fast), Ok(serde)) => assert_eq!(fast, serde, "the scan differs from serde_json"),
        (Err(fast), Err(serde)) => assert_eq!(fast.to_string(), serde.to_string()),
        (fast, serde) => panic!("the scan answered {fast:?}, serde_json {serde:?}"),
    }
    match (selection.read(text), serde_json::from_str::<Value>(text)) {
        (Ok(got), Ok(value)) => {
            let want: Vec<Option<Value>> = steps
                .iter()
                .map(|s| path::get(&value, s).cloned())
                .collect();
            assert_eq!(got, want, "read differs from the whole parse");
            assert_eq!(selection.get(&value), want, "get differs from path::get");
        }
        (Err(_), Err(_)) => {}
        (Ok(_), Err(e)) => {
            let e = e.to_string();
            assert!(
                e.contains("number out of range")
                    || e.contains("surrogate")
                    || e.contains("hex escape")
                    || e.contains("recursion limit"),
                "read accepted what the whole parse refused: {e}"
            );
        }
        (Err(e), Ok(_)) => panic!("read refused what the whole parse accepted: {e}"),
    }
});
