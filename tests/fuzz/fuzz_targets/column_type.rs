//! The MaxCompute column type parser (`ColumnType::parse`), which reads the types of a table's
//! schema as MaxCompute (or the emulator) reports them. Input: the type text. A type parses or
//! fails with its position; a parsed type prints as text that parses back to the same type.
#![no_main]

use k2mc_formats::tunnel::ColumnType;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(ty) = ColumnType::parse(text) {
        let printed = ty.to_string();
        let again = ColumnType::parse(&printed).unwrap_or_else(|e| {
            panic!("{text:?} printed as {printed:?}, which does not parse: {e}")
        });
        assert_eq!(ty, again, "{text:?} printed as {printed:?}");
    }
});
