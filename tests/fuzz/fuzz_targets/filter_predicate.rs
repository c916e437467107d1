//! The filter predicate parser (`predicate::parse`), which reads a user's `predicate` setting
//! (`average_speed <= 90 && name in ('a', 'b')`). Input: the predicate text. It parses or names
//! the position of its error; a parsed predicate evaluates on rows of nulls, numbers, strings and
//! booleans without panicking.
#![no_main]

use filter::predicate::{self, Val};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let columns = ["a", "b", "speed", "name"].map(str::to_owned);
    let Ok(expr) = predicate::parse(text, &columns) else {
        return;
    };
    let rows = [
        vec![Val::Null, Val::Null, Val::Null, Val::Null],
        vec![
            Val::Num(1.0),
            Val::Bool(true),
            Val::Num(f64::NAN),
            Val::Str("x".into()),
        ],
        vec![
            Val::Str(String::new()),
            Val::Num(-0.0),
            Val::Num(f64::INFINITY),
            Val::Bool(false),
        ],
    ];
    for row in &rows {
        let _ = expr.eval(row);
    }
});
