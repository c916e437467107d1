//! The configuration of `kafka-columns` and the per-record extraction, free of WIT types so that
//! it is unit-tested natively and reused by the native benchmark baseline.

use std::borrow::Cow;
use std::sync::LazyLock;

use base64::Engine as _;
use chrono::format::{self, Item, Parsed, StrftimeItems};
use chrono::{DateTime, NaiveDate, NaiveDateTime};
use serde_json::Value as Json;

use crate::path::{self, Step};
use crate::select::Picked;

/// A declared output type, reduced to what extraction needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Boolean,
    Int {
        min: i64,
        max: i64,
    },
    Float,
    Double,
    Decimal {
        precision: u8,
        scale: u8,
    },
    Text {
        max_chars: Option<u32>,
    },
    Binary,
    Json,
    Date,
    Datetime,
    Timestamp,
    /// ARRAY/MAP/STRUCT: JSON text, converted by the host.
    Complex(String),
}

/// Where a column's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Key,
    Value,
    Partition,
    Headers,
    Offset,
    Timestamp,
    Topic,
    Path(Vec<Step>),
    Constant(String),
}

/// How the key or value bytes are decoded (DataWorks `keyType`/`valueType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BytesType {
    ByteArray,
    Double,
    Float,
    Integer,
    Long,
    Short,
    String,
}

impl BytesType {
    pub fn parse(key: &str, text: &str) -> Result<Self, String> {
        Ok(match text.to_ascii_uppercase().as_str() {
            "BYTEARRAY" => BytesType::ByteArray,
            "DOUBLE" => BytesType::Double,
            "FLOAT" => BytesType::Float,
            "INTEGER" => BytesType::Integer,
            "LONG" => BytesType::Long,
            "SHORT" => BytesType::Short,
            "STRING" => BytesType::String,
            _ => {
                return Err(format!(
                    "{key} = '{text}': use BYTEARRAY, DOUBLE, FLOAT, INTEGER, LONG, SHORT or STRING"
                ));
            }
        })
    }

    /// Decodes Kafka serializer bytes (big-endian numbers, UTF-8 text) to JSON.
    pub fn decode(self, bytes: &[u8]) -> Result<Json, String> {
        let fixed = |n: usize| -> Result<&[u8], String> {
            if bytes.len() == n {
                Ok(bytes)
            } else {
                Err(format!(
                    "expected {n} bytes for {self:?}, found {}",
                    bytes.len()
                ))
            }
        };
        Ok(match self {
            BytesType::ByteArray => {
                Json::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            }
            BytesType::String => Json::String(
                std::str::from_utf8(bytes)
                    .map_err(|e| format!("not UTF-8: {e}"))?
                    .to_owned(),
            ),
            BytesType::Long => {
                Json::from(i64::from_be_bytes(fixed(8)?.try_into().unwrap_or_default()))
            }
            BytesType::Integer => {
                Json::from(i32::from_be_bytes(fixed(4)?.try_into().unwrap_or_default()))
            }
            BytesType::Short => {
                Json::from(i16::from_be_bytes(fixed(2)?.try_into().unwrap_or_default()))
            }
            BytesType::Double => {
                Json::from(f64::from_be_bytes(fixed(8)?.try_into().unwrap_or_default()))
            }
            BytesType::Float => Json::from(f64::from(f32::from_be_bytes(
                fixed(4)?.try_into().unwrap_or_default(),
            ))),
        })
    }
}

/// Parses the source notation of a column.
pub fn parse_source(text: &str) -> Result<Source, String> {
    Ok(match text {
        "__key__" => Source::Key,
        "__value__" => Source::Value,
        "__partition__" => Source::Partition,
        "__headers__" => Source::Headers,
        "__offset__" => Source::Offset,
        "__timestamp__" => Source::Timestamp,
        "__topic__" => Source::Topic,
        t if t.len() >= 2 && t.starts_with('\'') && t.ends_with('\'') => {
            Source::Constant(t[1..t.len() - 1].to_owned())
        }
        t => Source::Path(path::parse(t)?),
    })
}

/// A cell value before it becomes a WIT cell; text may borrow from the record it was read from.
#[derive(Debug, Clone, PartialEq)]
pub enum Out<'t> {
    Null,
    Bool(bool),
    Int(i64),
    Double(f64),
    Decimal(String),
    Text(Cow<'t, str>),
    Binary(Vec<u8>),
    Date(i32),
    Datetime(i64),
    Timestamp(i64, u32),
    Json(String),
}

/// [`coerce`] of a value the caller owns: text is moved into the cell, not copied (a long
/// free-text field is the largest part of many records).
pub fn coerce_owned(kind: &Kind, value: Json) -> Result<Out<'static>, String> {
    match (kind, value) {
        (Kind::Text { max_chars: None }, Json::String(s)) => Ok(Out::Text(Cow::Owned(s))),
        (kind, value) => coerce(kind, &value),
    }
}

/// [`coerce`] of a value read at a path: a string for a text column without a length bound
/// goes into the cell as it was read, borrowed from the record where it had no escapes.
pub fn coerce_picked<'t>(kind: &Kind, value: Picked<'t>) -> Result<Out<'t>, String> {
    match (kind, value) {
        (Kind::Text { max_chars: None }, Picked::Text(s)) => Ok(Out::Text(s)),
        (kind, value) => coerce_owned(kind, value.into_json()),
    }
}

/// Converts a JSON value to `kind`; the error says what was expected.
pub fn coerce(kind: &Kind, value: &Json) -> Result<Out<'static>, String> {
    if value.is_null() {
        return Ok(Out::Null);
    }
    let show = || {
        let s = value.to_string();
        if s.chars().count() > 64 {
            format!("{}…", s.chars().take(64).collect::<String>())
        } else {
            s
        }
    };
    let expected = |what: &str| format!("expected {what}, found {}", show());
    let text = value.as_str();
    Ok(match kind {
        Kind::Boolean => match (value, text) {
            (Json::Bool(b), _) => Out::Bool(*b),
            (_, Some("true")) => Out::Bool(true),
            (_, Some("false")) => Out::Bool(false),
            _ => return Err(expected("true or false")),
        },
        Kind::Int { min, max } => {
            let n = value
                .as_i64()
                .or_else(|| text.and_then(|t| t.trim().parse().ok()))
                .ok_or_else(|| expected("an integer"))?;
            if n < *min || n > *max {
                return Err(format!("{n} is outside {min}..={max}"));
            }
            Out::Int(n)
        }
        Kind::Float | Kind::Double => Out::Double(
            value
                .as_f64()
                .or_else(|| text.and_then(|t| t.trim().parse().ok()))
                .ok_or_else(|| expected("a number"))?,
        ),
        Kind::Decimal { precision, scale } => {
            let t = match value {
                Json::Number(n) => n.to_string(),
                Json::String(s) => s.trim().to_owned(),
                _ => return Err(expected("a decimal")),
            };
            if !plain_decimal_fits(&t, *precision, *scale) {
                return Err(format!(
                    "{} does not fit decimal({precision},{scale})",
                    show()
                ));
            }
            Out::Decimal(t)
        }
        Kind::Text { max_chars } => {
            let s = text.map_or_else(|| value.to_string(), str::to_owned);
            if let Some(max) = max_chars
                && s.chars().count() > *max as usize
            {
                return Err(format!("{} is longer than {max} characters", show()));
            }
            Out::Text(Cow::Owned(s))
        }
        Kind::Binary => match text {
            Some(t) => Out::Binary(t.as_bytes().to_vec()),
            None => return Err(expected("a string")),
        },
        Kind::Json | Kind::Complex(_) => Out::Json(value.to_string()),
        Kind::Date => {
            let t = text.ok_or_else(|| expected("a date YYYY-MM-DD"))?;
            let t = t.trim();
            let d = fixed_date(t)
                .or_else(|| layout(t, Layout::Date).and_then(|p| p.to_naive_date().ok()))
                .ok_or_else(|| expected("a date YYYY-MM-DD"))?;
            Out::Date(d.signed_duration_since(NaiveDate::default()).num_days() as i32)
        }
        Kind::Datetime | Kind::Timestamp => {
            let (secs, nanos) = match (value.as_i64(), text) {
                (Some(ms), _) => (
                    ms.div_euclid(1000),
                    (ms.rem_euclid(1000) * 1_000_000) as u32,
                ),
                (None, Some(t)) => parse_instant(t).ok_or_else(|| {
                    expected("epoch milliseconds or 'YYYY-MM-DD HH:MM:SS[.f]' or RFC 3339")
                })?,
                _ => return Err(expected("a date-time")),
            };
            if *kind == Kind::Datetime {
                Out::Datetime(secs * 1000 + i64::from(nanos / 1_000_000))
            } else {
                Out::Timestamp(secs, nanos)
            }
        }
    })
}

fn parse_instant(text: &str) -> Option<(i64, u32)> {
    let t = text.trim();
    // Nineteen bytes hold no RFC 3339 offset, so the fixed layout is the only one that can read
    // them.
    let dt = fixed_datetime(t)
        .or_else(|| DateTime::parse_from_rfc3339(t).map(|d| d.naive_utc()).ok())
        .or_else(|| naive_datetime(t, Layout::SpaceDateTime))
        .or_else(|| naive_datetime(t, Layout::TDateTime))?;
    let utc = dt.and_utc();
    Some((utc.timestamp(), utc.timestamp_subsec_nanos()))
}

/// The text layouts of DATE and DATETIME values, besides RFC 3339.
#[derive(Clone, Copy)]
enum Layout {
    Date = 0,
    SpaceDateTime = 1,
    TDateTime = 2,
}

/// The layouts' format strings read once: `parse_from_str` reads its format string again for
/// every value, a few per cent of the function's CPU in the benchmark's profile
/// (docs/bench/README.md). The strings are literals chrono accepts; the unit tests hold that.
static LAYOUTS: LazyLock<[Vec<Item<'static>>; 3]> = LazyLock::new(|| {
    ["%Y-%m-%d", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
        .map(|f| StrftimeItems::new(f).parse().unwrap_or_default())
});

/// `YYYY-MM-DD`, the layout nearly every producer writes, read without chrono's general parser
/// (its per-item dispatch was about a tenth of `kafka-columns`' time in the benchmark's profile,
/// `docs/bench/README.md`, "Talc in the shipped components"). `None` leaves every other text to
/// [`layout`], which gives the same date for this one.
fn fixed_date(text: &str) -> Option<NaiveDate> {
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    NaiveDate::from_ymd_opt(
        i32::try_from(digits(&b[..4])?).ok()?,
        digits(&b[5..7])?,
        digits(&b[8..10])?,
    )
}

/// `YYYY-MM-DD HH:MM:SS` (or with `T`), read as [`fixed_date`] reads a date. A leap second
/// (`:60`), a fraction and every other shape are left to [`layout`].
fn fixed_datetime(text: &str) -> Option<NaiveDateTime> {
    let b = text.as_bytes();
    if b.len() != 19 || !matches!(b[10], b' ' | b'T') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    fixed_date(&text[..10])?.and_hms_opt(
        digits(&b[11..13])?,
        digits(&b[14..16])?,
        digits(&b[17..19])?,
    )
}

/// The value of a run of ASCII digits.
fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
    })
}

/// `text` read in `layout`, as `parse_from_str` reads it.
fn layout(text: &str, layout: Layout) -> Option<Parsed> {
    let mut parsed = Parsed::new();
    format::parse(&mut parsed, text, LAYOUTS[layout as usize].iter()).ok()?;
    Some(parsed)
}

fn naive_datetime(text: &str, l: Layout) -> Option<NaiveDateTime> {
    layout(text, l)?.to_naive_datetime_with_offset(0).ok()
}

fn plain_decimal_fits(t: &str, precision: u8, scale: u8) -> bool {
    let digits = t.strip_prefix('-').unwrap_or(t);
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    !(int.is_empty() && frac.is_empty())
        && ok(int)
        && ok(frac)
        && frac.len() <= usize::from(scale)
        && int.trim_start_matches('0').len() <= usize::from(precision - scale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_value_read_at_a_path_coerces_as_its_json_would() {
        let kinds = [
            Kind::Text { max_chars: None },
            Kind::Text { max_chars: Some(3) },
            Kind::Int {
                min: i64::MIN,
                max: i64::MAX,
            },
            Kind::Double,
            Kind::Decimal {
                precision: 5,
                scale: 2,
            },
            Kind::Boolean,
            Kind::Binary,
            Kind::Json,
            Kind::Date,
            Kind::Datetime,
            Kind::Timestamp,
        ];
        let values = [
            Picked::Text("12".into()),
            Picked::Text(Cow::Owned("2024-01-01 00:00:01".into())),
            Picked::Text("2024-01-01".into()),
            Picked::Text("true".into()),
            Picked::Text("h\u{e9}llo \"q\"".into()),
            Picked::Text("".into()),
            Picked::Value(json!(12)),
            Picked::Value(json!(1.25)),
            Picked::Value(json!(null)),
            Picked::Value(json!(false)),
            Picked::Value(json!({"a": [1, "b"]})),
        ];
        for kind in &kinds {
            for value in &values {
                assert_eq!(
                    coerce_picked(kind, value.clone()),
                    coerce_owned(kind, value.clone().into_json()),
                    "{kind:?} {value:?}"
                );
            }
        }
    }

    #[test]
    fn layouts_read_as_parse_from_str() {
        let texts = [
            "2024-01-01",
            "2024-02-30",
            "1969-12-31",
            " 2024-01-01",
            "2024-1-1",
            "2024-01-01 00:00:01",
            "2024-01-01 00:00:01.5",
            "2024-01-01T23:59:60.123456789",
            "2024-01-01 24:00:00",
            "2024-01-01T00:00:01Z",
            "2024-01-01 00:00",
            "",
            "not a date",
        ];
        for t in texts {
            assert_eq!(
                layout(t, Layout::Date).and_then(|p| p.to_naive_date().ok()),
                NaiveDate::parse_from_str(t, "%Y-%m-%d").ok(),
                "{t:?}"
            );
            for (l, f) in [
                (Layout::SpaceDateTime, "%Y-%m-%d %H:%M:%S%.f"),
                (Layout::TDateTime, "%Y-%m-%dT%H:%M:%S%.f"),
            ] {
                assert_eq!(
                    naive_datetime(t, l),
                    NaiveDateTime::parse_from_str(t, f).ok(),
                    "{t:?} {f}"
                );
            }
        }
        assert!(naive_datetime("2024-01-01T00:00:01", Layout::TDateTime).is_some());
        assert!(fixed_datetime("2024-01-01 00:00:60").is_none());
        assert!(layout("2024-01-01", Layout::Date).is_some());
    }

    #[test]
    fn the_fixed_layouts_read_as_parse_from_str_wherever_they_read() {
        let parts: [&[&str]; 3] = [
            &["0000", "1969", "2024", "2023", "9999", "20a4", "-202"],
            &["00", "01", "02", "12", "13", "1-", "+1", "09", "10"],
            &["00", "01", "28", "29", "30", "31", "32", "0x", " 1"],
        ];
        let times = [
            "00:00:00", "23:59:59", "24:00:00", "12:60:00", "12:00:60", "12:00:61", "1:00:000",
            "12-00-00", "ab:cd:ef", "07:08:09",
        ];
        let mut read = 0;
        for y in parts[0] {
            for m in parts[1] {
                for d in parts[2] {
                    let date = format!("{y}-{m}-{d}");
                    let fixed = fixed_date(&date);
                    if fixed.is_some() {
                        read += 1;
                        assert_eq!(fixed, NaiveDate::parse_from_str(&date, "%Y-%m-%d").ok());
                    }
                    for (sep, f) in [(' ', "%Y-%m-%d %H:%M:%S%.f"), ('T', "%Y-%m-%dT%H:%M:%S%.f")] {
                        for t in times {
                            let text = format!("{date}{sep}{t}");
                            if let Some(dt) = fixed_datetime(&text) {
                                assert_eq!(Some(dt), NaiveDateTime::parse_from_str(&text, f).ok());
                                assert_eq!(
                                    Some(dt),
                                    naive_datetime(&text, Layout::SpaceDateTime)
                                        .or_else(|| naive_datetime(&text, Layout::TDateTime))
                                );
                            }
                        }
                    }
                }
            }
        }
        assert!(read > 100, "the fixed date layout read only {read} dates");
    }

    #[test]
    fn coerces_with_errors_naming_the_value() {
        assert_eq!(
            coerce(
                &Kind::Int {
                    min: -128,
                    max: 127
                },
                &json!("12")
            )
            .unwrap(),
            Out::Int(12)
        );
        assert!(
            coerce(
                &Kind::Int {
                    min: -128,
                    max: 127
                },
                &json!(300)
            )
            .unwrap_err()
            .contains("300")
        );
        assert!(
            coerce(&Kind::Int { min: 0, max: 9 }, &json!("x"))
                .unwrap_err()
                .contains("\"x\"")
        );
        assert_eq!(
            coerce(
                &Kind::Decimal {
                    precision: 5,
                    scale: 2
                },
                &json!(12.5)
            )
            .unwrap(),
            Out::Decimal("12.5".into())
        );
        assert!(
            coerce(
                &Kind::Decimal {
                    precision: 3,
                    scale: 2
                },
                &json!("12.5")
            )
            .is_err()
        );
        assert_eq!(
            coerce(&Kind::Datetime, &json!("2024-01-01 00:00:01.5")).unwrap(),
            Out::Datetime(1_704_067_201_500)
        );
        assert_eq!(
            coerce(&Kind::Timestamp, &json!(-1)).unwrap(),
            Out::Timestamp(-1, 999_000_000)
        );
        assert_eq!(
            coerce(&Kind::Date, &json!("1969-12-31")).unwrap(),
            Out::Date(-1)
        );
        assert_eq!(
            coerce(&Kind::Text { max_chars: None }, &json!({"a": 1})).unwrap(),
            Out::Text("{\"a\":1}".into())
        );
        assert!(coerce(&Kind::Text { max_chars: Some(2) }, &json!("abc")).is_err());
        for (kind, value) in [
            (Kind::Text { max_chars: None }, json!("abc")),
            (Kind::Text { max_chars: None }, json!(7)),
            (Kind::Text { max_chars: Some(2) }, json!("abc")),
            (Kind::Int { min: 0, max: 9 }, json!("7")),
        ] {
            assert_eq!(coerce_owned(&kind, value.clone()), coerce(&kind, &value));
        }
        assert_eq!(coerce(&Kind::Boolean, &Json::Null).unwrap(), Out::Null);
    }

    #[test]
    fn decodes_kafka_serializer_bytes() {
        assert_eq!(
            BytesType::Long.decode(&7i64.to_be_bytes()).unwrap(),
            json!(7)
        );
        assert_eq!(BytesType::String.decode(b"hi").unwrap(), json!("hi"));
        assert_eq!(
            BytesType::ByteArray.decode(&[0, 255]).unwrap(),
            json!("AP8=")
        );
        assert!(BytesType::Integer.decode(&[1]).is_err());
        assert!(BytesType::String.decode(&[0xff]).is_err());
    }
}
