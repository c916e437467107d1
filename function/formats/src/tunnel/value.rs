//! Cell values as the Tunnel record stream carries them. The encode stage builds rows of these;
//! the codec in `wire` writes and reads them against a table's column types.

use base64::Engine as _;
use serde_json::json;

/// One cell of a MaxCompute row. Each variant is the wire representation of a family of column
/// types, so conversions here are lossless.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Boolean(bool),
    /// TINYINT, SMALLINT, INT and BIGINT; the writer range-checks against the column type.
    Int(i64),
    Float(f32),
    Double(f64),
    /// Plain decimal text with no exponent, e.g. `-123.4500`.
    Decimal(String),
    /// STRING, VARCHAR, CHAR and JSON text.
    String(String),
    Binary(Vec<u8>),
    /// Days since 1970-01-01.
    Date(i64),
    /// Milliseconds since the epoch (MaxCompute DATETIME has millisecond precision).
    Datetime(i64),
    /// TIMESTAMP and TIMESTAMP_NTZ: seconds since the epoch and nanoseconds within the second.
    Timestamp {
        seconds: i64,
        nanos: i32,
    },
    /// INTERVAL_DAY_TIME as seconds and nanoseconds.
    IntervalDayTime {
        seconds: i64,
        nanos: i32,
    },
    /// INTERVAL_YEAR_MONTH as months.
    IntervalYearMonth(i64),
    Array(Vec<Value>),
    /// Entries in order; MaxCompute maps keep insertion order on the wire.
    Map(Vec<(Value, Value)>),
    /// Field values in the struct type's declaration order.
    Struct(Vec<Value>),
}

impl Value {
    /// A stable JSON form used by tests, dead letters and the emulator's SQL results: temporal
    /// values as integers (`Date` days, `Datetime` ms, `Timestamp` `[seconds, nanos]`), binary as
    /// base64, decimals as strings, floats that JSON cannot hold as strings.
    pub fn to_canonical_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Boolean(b) => json!(b),
            Value::Int(i) => json!(i),
            Value::Float(x) => float_json(f64::from(*x)),
            Value::Double(x) => float_json(*x),
            Value::Decimal(d) => json!(d),
            Value::String(s) => json!(s),
            Value::Binary(b) => json!(base64::engine::general_purpose::STANDARD.encode(b)),
            Value::Date(d) => json!(d),
            Value::Datetime(ms) => json!(ms),
            Value::Timestamp { seconds, nanos } | Value::IntervalDayTime { seconds, nanos } => {
                json!([seconds, nanos])
            }
            Value::IntervalYearMonth(m) => json!(m),
            Value::Array(items) | Value::Struct(items) => {
                serde_json::Value::Array(items.iter().map(Value::to_canonical_json).collect())
            }
            Value::Map(entries) => serde_json::Value::Array(
                entries
                    .iter()
                    .map(|(k, v)| json!([k.to_canonical_json(), v.to_canonical_json()]))
                    .collect(),
            ),
        }
    }

    /// The name of the variant, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Boolean(_) => "boolean",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Double(_) => "double",
            Value::Decimal(_) => "decimal",
            Value::String(_) => "string",
            Value::Binary(_) => "binary",
            Value::Date(_) => "date",
            Value::Datetime(_) => "datetime",
            Value::Timestamp { .. } => "timestamp",
            Value::IntervalDayTime { .. } => "interval_day_time",
            Value::IntervalYearMonth(_) => "interval_year_month",
            Value::Array(_) => "array",
            Value::Map(_) => "map",
            Value::Struct(_) => "struct",
        }
    }
}

fn float_json(x: f64) -> serde_json::Value {
    if x.is_finite() {
        json!(x)
    } else {
        json!(x.to_string())
    }
}

/// Checks that `text` is a plain decimal literal (optional sign, digits, optional fraction, no
/// exponent) that fits `precision` and `scale` when they are given.
pub fn is_plain_decimal(text: &str, precision_scale: Option<(u8, u8)>) -> bool {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (int_part, frac_part) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int_part.is_empty() && frac_part.is_empty()
        || !all_digits(int_part)
        || !all_digits(frac_part)
    {
        return false;
    }
    match precision_scale {
        None => true,
        Some((precision, scale)) => {
            let int_digits = int_part.trim_start_matches('0').len();
            frac_part.len() <= usize::from(scale)
                && int_digits <= usize::from(precision) - usize::from(scale)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_literals() {
        assert!(is_plain_decimal("12.34", Some((18, 2))));
        assert!(is_plain_decimal("-0.5", Some((1, 1))));
        assert!(is_plain_decimal(&"9".repeat(38), Some((38, 0))));
        assert!(!is_plain_decimal(&"9".repeat(39), Some((38, 0))));
        assert!(!is_plain_decimal("1e5", None));
        assert!(!is_plain_decimal("12.345", Some((18, 2))));
        assert!(!is_plain_decimal("", None));
        assert!(!is_plain_decimal(".", None));
    }
}
