//! The selective read's tests: against parsing the whole value and following each path, and
//! the fast scan against serde_json alone, answer for answer and error for error.

use super::*;
use crate::path::{get, parse};

/// `read` agrees with parsing the whole value and following each path.
fn agrees(paths: &[&str], text: &str) {
    let steps: Vec<Vec<Step>> = paths.iter().map(|p| parse(p).unwrap()).collect();
    let refs: Vec<&[Step]> = steps.iter().map(Vec::as_slice).collect();
    let selection = Selection::new(&refs);
    same_as_serde(&selection, text);
    let whole = serde_json::from_str::<Json>(text);
    match (selection.read(text), whole) {
        (Ok(got), Ok(value)) => {
            let want: Vec<Option<Json>> = steps.iter().map(|s| get(&value, s).cloned()).collect();
            assert_eq!(got, want, "paths {paths:?} in {text}");
            assert_eq!(
                selection.get(&value),
                want,
                "get: paths {paths:?} in {text}"
            );
        }
        (Err(_), Err(_)) => {}
        (got, want) => panic!("paths {paths:?} in {text}: read {got:?}, whole {want:?}"),
    }
}

/// The fast scan answers what serde_json alone answers: the same values, and an error
/// exactly where serde_json gives one.
fn same_as_serde(selection: &Selection, text: &str) {
    match (
        selection.read_picked(text),
        selection.read_picked_serde(text),
    ) {
        (Ok(fast), Ok(serde)) => assert_eq!(fast, serde, "{text}"),
        (Err(fast), Err(serde)) => assert_eq!(fast.to_string(), serde.to_string(), "{text}"),
        (fast, serde) => panic!("{text}: scan {fast:?}, serde_json {serde:?}"),
    }
}

#[test]
fn the_fast_scan_agrees_with_serde_json_where_strings_numbers_and_nesting_are_hard() {
    let long = "word ".repeat(40);
    let nested = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
    let nested_object = |n: usize| format!("{}1{}", r#"{"a":"#.repeat(n), "}".repeat(n));
    let texts = [
        // A string's end past several 16-byte chunks, with a control character or an
        // escape in each place a chunk can put it.
        format!(r#"{{"a": "{long}", "b": 1}}"#),
        format!("{{\"a\": \"{long}\u{1}{long}\"}}"),
        format!("{{\"a\": \"{long}\t\"}}"),
        format!("{{\"skip\": \"{long}\n{long}\", \"a\": 1}}"),
        format!(r#"{{"a": "{long}\"{long}\\", "b": "\u00e9\/\b"}}"#),
        format!(r#"{{"skip": "{long}\u12", "a": 1}}"#),
        format!(r#"{{"skip": "{long}\uzzzz", "a": 1}}"#),
        format!(r#"{{"a": "{long}\ud800"}}"#),
        format!(r#"{{"a": "{long}\ud83d\ude00"}}"#),
        format!(r#"{{"a": "{long}"#),
        // Keys with escapes and control characters.
        r#"{"\u0061": 1, "b": 2}"#.to_owned(),
        "{\"a\u{1f}\": 1, \"b\": 2}".to_owned(),
        r#"{"skip": {"k\"ey": 1}, "a": 2}"#.to_owned(),
        // Numbers: every kind at a path's end and skipped, and the grammar's edges.
        r#"{"a": -0, "b": 0.5e-3, "c": 18446744073709551616, "d": -9223372036854775809}"#
            .to_owned(),
        r#"{"a": 1E+2, "b": -1.0, "c": 12345678901234567890, "skip": 1e300}"#.to_owned(),
        r#"{"a": [1e999], "b": {"x": 1e999}}"#.to_owned(),
        r#"{"a": 01}"#.to_owned(),
        r#"{"a": -}"#.to_owned(),
        r#"{"a": 1.}"#.to_owned(),
        r#"{"a": 1e}"#.to_owned(),
        r#"{"a": .5}"#.to_owned(),
        r#"{"a": 1.5.5}"#.to_owned(),
        r#"{"a": +1}"#.to_owned(),
        // Literals, whitespace, separators.
        "\r\n\t {\"a\" \n:\t[ true , false,null ] , \"b\":{ } , \"c\" : [ ] }\n ".to_owned(),
        r#"{"a": nul}"#.to_owned(),
        r#"{"a": 1 "b": 2}"#.to_owned(),
        r#"{"a" 1}"#.to_owned(),
        r#"{"a": [1 2]}"#.to_owned(),
        r#"{"a": 1}}"#.to_owned(),
        "{\"a\": 1}\u{a0}".to_owned(),
        // Nesting around the scan's depth limit and serde_json's.
        format!(r#"{{"a": {}}}"#, nested(98)),
        format!(r#"{{"a": {}}}"#, nested(99)),
        format!(r#"{{"skip": {}, "a": 1}}"#, nested(100)),
        format!(r#"{{"a": {}}}"#, nested(126)),
        format!(r#"{{"a": {}}}"#, nested(127)),
        format!(r#"{{"a": {}}}"#, nested_object(99)),
        nested_object(127),
    ];
    let plain = Selection::new(&[&[Step::Key("a".into())]]);
    for text in [0, 4, 8, 13, 14, 23].map(|i| &texts[i]) {
        assert!(
            scan::read(&plain.root, plain.paths, text).is_some(),
            "the scan reads {text} itself"
        );
    }
    for text in &texts {
        for paths in [
            &["a", "b", "c", "d"][..],
            &["a[0]", "a[1]", "b.x", "c[0]"],
            &["a.a.a", "a", "skip"],
        ] {
            agrees(paths, text);
        }
    }
    // Deeper than serde_json's limit of 128: refused where a path goes that deep, read
    // where the deep part is a field no path reads (serde_json skips it without recursion),
    // by the scan as by serde_json.
    let deep = format!(r#"{{"skip": {}, "a": 1}}"#, nested_object(130));
    for paths in [&["a"][..], &["skip.a.a"]] {
        let steps: Vec<Vec<Step>> = paths.iter().map(|p| parse(p).unwrap()).collect();
        let refs: Vec<&[Step]> = steps.iter().map(Vec::as_slice).collect();
        same_as_serde(&Selection::new(&refs), &deep);
    }
}

/// The scan finds a string's end sixteen bytes at a time from the string's start, and the
/// text's last bytes one at a time: a stop (the closing quote, an escape, a control character)
/// at every place of a step and of the tail, beside the bytes that are not stops (0x20, DEL,
/// UTF-8 above 0x7f, which a signed compare would take for control characters).
#[test]
fn the_fast_scan_finds_a_string_end_at_every_place_of_a_vector_step() {
    let stops = ["\"", "\\n", "\\u00e9", "\\\"", "\u{1}", "\u{1f}", "\t"];
    let others = [" ", "\u{7f}", "é", "中", "😀", "~"];
    let paths: &[&[Step]] = &[&[Step::Key("a".into())], &[Step::Key("b".into())]];
    let selection = Selection::new(paths);
    let root = Selection::new(&[&[Step::Index(0)]]);
    for before in 0..40 {
        let lead = "x".repeat(before);
        for piece in stops.iter().chain(&others) {
            let value_forms = [
                format!(r#"{{"a": "{lead}{piece}yz", "b": 1}}"#),
                format!(r#"{{"b": 1, "a": "{lead}{piece}"}}"#),
                format!(r#"{{"skip": "{lead}{piece}", "a": 2}}"#),
            ];
            for text in &value_forms {
                same_as_serde(&selection, text);
                // Text it may read it reads itself, not by handing it to serde_json: a
                // stop found a byte off would hand it over and still agree.
                if serde_json::from_str::<Json>(text).is_ok() {
                    assert!(
                        scan::read(&selection.root, selection.paths, text).is_some(),
                        "the scan reads {text} itself"
                    );
                }
            }
            // A key with an escape is left to serde_json by design.
            same_as_serde(&selection, &format!(r#"{{"{lead}{piece}": 1, "a": 2}}"#));
            // The string is the whole text: its end is in the tail unless it is long.
            same_as_serde(&root, &format!(r#""{lead}{piece}""#));
            same_as_serde(&root, &format!(r#"["{lead}{piece}"]"#));
        }
    }
}

/// Keys of up to sixteen bytes are matched by one vector compare of the text from the key's
/// start (what follows the key in the text must not count), longer ones and keys in the
/// text's last sixteen bytes byte for byte: keys around sixteen bytes, sharing a prefix,
/// differing only in their last byte or only in length, multi-byte, empty, and last in the
/// text.
#[test]
fn keys_are_matched_whole_around_sixteen_bytes_and_at_the_text_end() {
    let p16 = "abcdefghijklmnop";
    let paths = ["", "a", &p16[..15], p16, &format!("{p16}q"), "é中", "k.x"];
    let quoted = paths.map(|p| format!("[{}]", serde_json::to_string(p).unwrap()));
    let quoted: Vec<&str> = quoted.iter().map(String::as_str).collect();
    let near = [
        "",
        "a",
        "ab",
        "b",
        &p16[..14],
        &p16[..15],
        &format!("{}X", &p16[..15]),
        p16,
        &format!("{}X", &p16[..16]),
        &format!("{p16}q"),
        &format!("{p16}qr"),
        "é中",
        "é",
        "é中x",
    ];
    for (i, key) in near.iter().enumerate() {
        for text in [
            format!(r#"{{"{key}": {i}, "pad": "................"}}"#),
            format!(r#"{{"pad": 0, "{key}": "v{i}"}}"#),
            format!(r#"{{"k": {{"{key}": {i}, "x": 1}}, "{key}":[{i}]}}"#),
            format!(r#"{{"{key}":{i}}}"#),
        ] {
            agrees(&quoted, &text);
            let selection = Selection::new(
                &quoted
                    .iter()
                    .map(|p| parse(p).unwrap())
                    .collect::<Vec<_>>()
                    .iter()
                    .map(Vec::as_slice)
                    .collect::<Vec<_>>(),
            );
            assert!(
                scan::read(&selection.root, selection.paths, &text).is_some(),
                "the scan reads {text} itself"
            );
        }
    }
}

#[test]
fn reads_what_the_whole_value_would_give() {
    let text = r#"{"a": {"a1": "hello", "n": [1, {"x": 2}]}, "b": "world", "c": ["x", "y"],
        "d": [{"AA": "this"}, {"AA": "that"}], "a.b": "dots", "note": "long text \u00e9\n",
        "esc\"aped": 7}"#;
    for paths in [
        &[
            "a.a1",
            "b",
            "c[1]",
            "d[0].AA",
            "a.b",
            "a\\.b",
            "[\"a.b\"]",
            "c[5]",
        ][..],
        &["a", "a.a1", "a.n[1].x"],
        &["a.n[1].x", "a"],
        &["a.n[1]", "a.n[1].x", "a.n[0]", "a.n[0].y"],
        &[
            "[\"esc\\\"aped\"]",
            "note",
            "b.x",
            "c.x",
            "d[1].AA",
            "d[2].AA",
        ],
        &["b", "b"],
    ] {
        agrees(paths, text);
    }
}

#[test]
fn a_string_at_a_path_s_end_is_borrowed_unless_it_has_escapes() {
    let key = |k: &str| vec![Step::Key(k.into())];
    let steps = [key("a"), key("b"), key("c"), key("d"), key("e")];
    let refs: Vec<&[Step]> = steps.iter().map(Vec::as_slice).collect();
    let text = r#"{"a": "plain", "b": "esc\"aped \u00e9", "c": 1.5, "d": null, "e": {"x": ["y"]}}"#;
    let picked = Selection::new(&refs).read_picked(text).unwrap();
    assert!(matches!(
        &picked[0],
        Some(Picked::Text(Cow::Borrowed("plain")))
    ));
    assert!(
        matches!(&picked[1], Some(Picked::Text(Cow::Owned(s))) if s == "esc\"aped é"),
        "{:?}",
        picked[1]
    );
    assert_eq!(picked[2], Some(Picked::Value(1.5.into())));
    assert_eq!(picked[3], Some(Picked::Value(Json::Null)));
    assert_eq!(
        picked[4],
        Some(Picked::Value(serde_json::json!({"x": ["y"]})))
    );
}

#[test]
fn the_last_of_duplicate_keys_wins_as_in_a_parsed_value() {
    agrees(
        &["a.x", "a.y", "b"],
        r#"{"a": {"x": 1}, "b": 1, "a": {"y": 2}, "b": 2}"#,
    );
    agrees(&["a", "a.x"], r#"{"a": {"x": 1}, "a": [3]}"#);
}

#[test]
fn scalars_and_arrays_where_objects_were_wanted_find_nothing() {
    for text in [
        "7",
        "\"s\"",
        "null",
        "true",
        "[1, 2]",
        "[{\"a\": 1}]",
        "{\"a\": 3.5}",
    ] {
        agrees(&["a", "a.b", "[0]", "[0].a", "[1]"], text);
    }
}

#[test]
fn a_field_no_column_reads_is_checked_for_syntax_only() {
    let selection = Selection::new(&[&[Step::Key("a".into())]]);
    for skipped in ["1e999", "\"\\ud800\""] {
        let text = format!("{{\"skip\": {skipped}, \"a\": 1}}");
        assert!(serde_json::from_str::<Json>(&text).is_err(), "{text}");
        assert_eq!(
            selection.read(&text).unwrap(),
            vec![Some(1.into())],
            "{text}"
        );
        let read = format!("{{\"a\": {skipped}}}");
        assert!(selection.read(&read).is_err(), "{read}");
    }
}

#[test]
fn bad_json_anywhere_is_an_error() {
    for text in [
        "",
        "{",
        "{\"a\": 1,}",
        "{\"skip\": [1, 2,], \"a\": 1}",
        "{\"skip\": tru, \"a\": 1}",
        "{\"a\": 1} x",
        "{\"skip\": \"\\q\"}",
        "{\"skip\": 01}",
    ] {
        agrees(&["a"], text);
        assert!(
            Selection::new(&[&[Step::Key("a".into())]])
                .read(text)
                .is_err(),
            "{text}"
        );
    }
}
