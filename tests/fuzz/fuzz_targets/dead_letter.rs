//! The dead-letter reader (`parse_lines`) and log-scope parsing. Input: any bytes, read as a
//! dead-letter object. Whatever parses writes back to lines that parse to the same dead letters;
//! every line is counted; any text is a log scope that prints back as itself.
#![no_main]

use k2mc_formats::dead_letter::{count_lines, parse_lines};
use k2mc_formats::scope::LogScope;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(letters) = parse_lines(data) {
        assert_eq!(letters.len(), count_lines(data));
        let mut out = Vec::new();
        for letter in &letters {
            letter.write_line(&mut out);
        }
        assert_eq!(parse_lines(&out).as_ref(), Ok(&letters));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        assert_eq!(LogScope::parse(text).to_string(), text);
    }
});
