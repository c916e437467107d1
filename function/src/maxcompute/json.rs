//! JSON ⇄ cell values for people and files: the `k2mc maxcompute upload` and `read` commands, dead
//! letter replay and test fixtures. Accepts the readable forms (`"2024-01-01 10:00:00"`, base64
//! binary, objects for maps and structs) as well as the canonical integer forms of
//! [`Value::to_canonical_json`].

use base64::Engine as _;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::{Value as Json, json};

use k2mc_formats::tunnel::ColumnType;
use k2mc_formats::tunnel::{Value, is_plain_decimal};

/// Converts a JSON value to a cell of column type `ty`. The error names the expectation.
pub fn value_from_json(ty: &ColumnType, json: &Json) -> Result<Value, String> {
    if json.is_null() {
        return Ok(Value::Null);
    }
    let want = |what: &str| format!("expected {what} for a {ty} column, found {json}");
    Ok(match ty {
        ColumnType::Boolean => Value::Boolean(json.as_bool().ok_or_else(|| want("true or false"))?),
        t if t.integer_range().is_some() => {
            let n = json
                .as_i64()
                .or_else(|| json.as_str().and_then(|s| s.trim().parse().ok()))
                .ok_or_else(|| want("an integer"))?;
            let (lo, hi) = t.integer_range().unwrap_or((i64::MIN, i64::MAX));
            if n < lo || n > hi {
                return Err(format!("{n} is outside the range of {ty}"));
            }
            Value::Int(n)
        }
        ColumnType::Float | ColumnType::Double => {
            let x = json
                .as_f64()
                .or_else(|| json.as_str().and_then(|s| s.trim().parse().ok()))
                .ok_or_else(|| want("a number"))?;
            if matches!(ty, ColumnType::Float) {
                Value::Float(x as f32)
            } else {
                Value::Double(x)
            }
        }
        ColumnType::Decimal(ps) => {
            let text = match json {
                Json::String(s) => s.trim().to_owned(),
                Json::Number(n) => n.to_string(),
                _ => return Err(want("a decimal string or number")),
            };
            if !is_plain_decimal(&text, *ps) {
                return Err(format!("'{text}' is not a plain decimal that fits {ty}"));
            }
            Value::Decimal(text)
        }
        ColumnType::String | ColumnType::Varchar(_) | ColumnType::Char(_) => Value::String(
            json.as_str()
                .map_or_else(|| json.to_string(), str::to_owned),
        ),
        ColumnType::Json => Value::String(
            json.as_str()
                .map_or_else(|| json.to_string(), str::to_owned),
        ),
        ColumnType::Binary => {
            let text = json.as_str().ok_or_else(|| want("a base64 string"))?;
            Value::Binary(
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|e| format!("bad base64: {e}"))?,
            )
        }
        ColumnType::Date => match json {
            Json::Number(n) => Value::Date(n.as_i64().ok_or_else(|| want("whole days"))?),
            Json::String(s) => {
                let d = NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
                    .map_err(|_| want("YYYY-MM-DD"))?;
                Value::Date(d.signed_duration_since(NaiveDate::default()).num_days())
            }
            _ => return Err(want("YYYY-MM-DD")),
        },
        ColumnType::Datetime => match json {
            Json::Number(n) => {
                Value::Datetime(n.as_i64().ok_or_else(|| want("epoch milliseconds"))?)
            }
            Json::String(s) => Value::Datetime(
                parse_instant(s)
                    .ok_or_else(|| want("a date-time"))?
                    .timestamp_millis(),
            ),
            _ => return Err(want("a date-time")),
        },
        ColumnType::Timestamp | ColumnType::TimestampNtz | ColumnType::IntervalDayTime => {
            let (seconds, nanos) = match json {
                Json::Array(pair) if pair.len() == 2 => (
                    pair[0].as_i64().ok_or_else(|| want("[seconds, nanos]"))?,
                    pair[1]
                        .as_i64()
                        .and_then(|n| i32::try_from(n).ok())
                        .ok_or_else(|| want("[seconds, nanos]"))?,
                ),
                Json::String(s) if !matches!(ty, ColumnType::IntervalDayTime) => {
                    let t = parse_instant(s).ok_or_else(|| want("a timestamp"))?;
                    (t.timestamp(), t.timestamp_subsec_nanos() as i32)
                }
                _ => return Err(want("[seconds, nanos]")),
            };
            if matches!(ty, ColumnType::IntervalDayTime) {
                Value::IntervalDayTime { seconds, nanos }
            } else {
                Value::Timestamp { seconds, nanos }
            }
        }
        ColumnType::IntervalYearMonth => {
            Value::IntervalYearMonth(json.as_i64().ok_or_else(|| want("months"))?)
        }
        ColumnType::Array(elem) => Value::Array(
            json.as_array()
                .ok_or_else(|| want("an array"))?
                .iter()
                .map(|j| value_from_json(elem, j))
                .collect::<Result<_, _>>()?,
        ),
        ColumnType::Map(k, v) => {
            let mut entries = Vec::new();
            match json {
                Json::Object(map) => {
                    for (key, val) in map {
                        entries.push((
                            value_from_json(k, &Json::String(key.clone()))?,
                            value_from_json(v, val)?,
                        ));
                    }
                }
                Json::Array(pairs) => {
                    for pair in pairs {
                        let pair = pair
                            .as_array()
                            .filter(|p| p.len() == 2)
                            .ok_or_else(|| want("[key, value] pairs"))?;
                        entries
                            .push((value_from_json(k, &pair[0])?, value_from_json(v, &pair[1])?));
                    }
                }
                _ => return Err(want("an object")),
            }
            Value::Map(entries)
        }
        ColumnType::Struct(fields) => {
            let items = match json {
                Json::Object(map) => fields
                    .iter()
                    .map(|(name, fty)| value_from_json(fty, map.get(name).unwrap_or(&Json::Null)))
                    .collect::<Result<_, _>>()?,
                Json::Array(list) if list.len() == fields.len() => fields
                    .iter()
                    .zip(list)
                    .map(|((_, fty), j)| value_from_json(fty, j))
                    .collect::<Result<_, _>>()?,
                _ => return Err(want("an object")),
            };
            Value::Struct(items)
        }
        _ => return Err(want("a supported value")),
    })
}

/// RFC 3339, or `YYYY-MM-DD HH:MM:SS[.f]` taken as UTC.
fn parse_instant(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
                .ok()
                .map(|t| t.and_utc())
        })
}

/// A readable JSON form of a cell: dates and times as text, everything else canonical.
pub fn display_json(ty: &ColumnType, value: &Value) -> Json {
    match (ty, value) {
        (ColumnType::Date, Value::Date(d)) => NaiveDate::default()
            .checked_add_signed(chrono::Duration::days(*d))
            .map_or_else(|| json!(d), |d| json!(d.format("%Y-%m-%d").to_string())),
        (ColumnType::Datetime, Value::Datetime(ms)) => DateTime::from_timestamp_millis(*ms)
            .map_or_else(
                || json!(ms),
                |t| json!(t.format("%Y-%m-%d %H:%M:%S%.3f").to_string()),
            ),
        (ColumnType::Timestamp | ColumnType::TimestampNtz, Value::Timestamp { seconds, nanos }) => {
            DateTime::from_timestamp(*seconds, *nanos as u32).map_or_else(
                || value.to_canonical_json(),
                |t| json!(t.format("%Y-%m-%d %H:%M:%S%.9f").to_string()),
            )
        }
        (ColumnType::Array(elem), Value::Array(items)) => {
            Json::Array(items.iter().map(|v| display_json(elem, v)).collect())
        }
        (ColumnType::Struct(fields), Value::Struct(items)) => Json::Object(
            fields
                .iter()
                .zip(items)
                .map(|((name, fty), v)| (name.clone(), display_json(fty, v)))
                .collect(),
        ),
        _ => value.to_canonical_json(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(ty: &str, input: Json, expected: Value) {
        let ty = ColumnType::parse(ty).unwrap();
        assert_eq!(value_from_json(&ty, &input).unwrap(), expected);
        // The canonical form reads back to the same value.
        assert_eq!(
            value_from_json(&ty, &expected.to_canonical_json()).unwrap(),
            expected
        );
    }

    #[test]
    fn readable_and_canonical_forms() {
        check("bigint", json!("42"), Value::Int(42));
        check("date", json!("1969-12-31"), Value::Date(-1));
        check(
            "datetime",
            json!("2024-01-01 00:00:01.5"),
            Value::Datetime(1_704_067_201_500),
        );
        check(
            "timestamp",
            json!("2024-01-01T00:00:00.000000001Z"),
            Value::Timestamp {
                seconds: 1_704_067_200,
                nanos: 1,
            },
        );
        check("decimal(10,2)", json!(12.5), Value::Decimal("12.5".into()));
        check("binary", json!("AP8="), Value::Binary(vec![0, 255]));
        check(
            "map<string,struct<a:bigint>>",
            json!({"k": {"a": 1}}),
            Value::Map(vec![(
                Value::String("k".into()),
                Value::Struct(vec![Value::Int(1)]),
            )]),
        );
    }

    #[test]
    fn errors_name_the_expectation() {
        let err = value_from_json(&ColumnType::Tinyint, &json!(300)).unwrap_err();
        assert!(err.contains("outside the range of tinyint"), "{err}");
        let err = value_from_json(&ColumnType::Date, &json!("yesterday")).unwrap_err();
        assert!(err.contains("YYYY-MM-DD"), "{err}");
    }
}
