//! What every decoder maps onto: MaxCompute 2.0 column types ([`Ty`]) and cell values
//! ([`Out`]), independent of the WIT bindings so the logic also runs natively (tests, fuzzing).
//! ARRAY, MAP and STRUCT values travel as canonical JSON text, which the host converts
//! (`wit/transform.wit`, `cell::json`): decimals as strings, binary as base64, DATE as days,
//! TIMESTAMP as `[seconds, nanos]`.

use serde_json::Value as Json;

/// A MaxCompute 2.0 column type.
#[derive(Debug, Clone, PartialEq)]
pub enum Ty {
    Boolean,
    Int,
    Bigint,
    Float,
    Double,
    Decimal(u8, u8),
    String,
    Binary,
    Json,
    Date,
    Timestamp,
    TimestampNtz,
    Array(Box<Ty>),
    /// Key and value types.
    Map(Box<Ty>, Box<Ty>),
    Struct(Vec<(String, Ty)>),
}

impl Ty {
    /// MaxCompute type text: `bigint`, `decimal(10,2)`, `struct<a:bigint,b:array<string>>`.
    pub fn text(&self) -> String {
        match self {
            Ty::Boolean => "boolean".into(),
            Ty::Int => "int".into(),
            Ty::Bigint => "bigint".into(),
            Ty::Float => "float".into(),
            Ty::Double => "double".into(),
            Ty::Decimal(p, s) => format!("decimal({p},{s})"),
            Ty::String => "string".into(),
            Ty::Binary => "binary".into(),
            Ty::Json => "json".into(),
            Ty::Date => "date".into(),
            Ty::Timestamp => "timestamp".into(),
            Ty::TimestampNtz => "timestamp_ntz".into(),
            Ty::Array(e) => format!("array<{}>", e.text()),
            Ty::Map(k, v) => format!("map<{},{}>", k.text(), v.text()),
            Ty::Struct(fields) => format!(
                "struct<{}>",
                fields
                    .iter()
                    .map(|(n, t)| format!("{n}:{}", t.text()))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        }
    }

    /// ARRAY, MAP and STRUCT: values travel as JSON.
    pub fn is_complex(&self) -> bool {
        matches!(self, Ty::Array(_) | Ty::Map(..) | Ty::Struct(_))
    }
}

/// An output column: name, type, and whether NULL is allowed.
#[derive(Debug, Clone, PartialEq)]
pub struct Col {
    pub name: String,
    pub ty: Ty,
    pub nullable: bool,
}

/// A field of a reader schema, whatever its format: what the stage's column plan walks.
/// `children` are a record's (or message's) fields; empty for anything else.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub ty: Ty,
    pub nullable: bool,
    pub children: Vec<Field>,
}

impl Field {
    /// Each child as (name, type text, nullable): what the unit tests compare.
    #[cfg(test)]
    pub(crate) fn described(&self) -> Vec<(String, String, bool)> {
        self.children
            .iter()
            .map(|f| (f.name.clone(), f.ty.text(), f.nullable))
            .collect()
    }
}

/// One cell, in the shape of the WIT `cell`.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    Null,
    Bool(bool),
    Int(i64),
    Double(f64),
    /// Plain decimal text.
    Decimal(String),
    Str(String),
    Bin(Vec<u8>),
    /// Days since 1970-01-01.
    Date(i32),
    /// Seconds and nanoseconds since the epoch.
    Timestamp(i64, u32),
    /// JSON text (JSON columns, and ARRAY/MAP/STRUCT).
    Json(String),
}

impl Out {
    /// The canonical JSON of this cell inside an ARRAY, MAP or STRUCT.
    pub fn to_json(&self) -> Json {
        use base64::Engine as _;
        match self {
            Out::Null => Json::Null,
            Out::Bool(b) => Json::Bool(*b),
            Out::Int(n) => Json::from(*n),
            Out::Double(x) if x.is_finite() => Json::from(*x),
            Out::Double(x) => Json::String(x.to_string()),
            Out::Decimal(s) | Out::Str(s) => Json::String(s.clone()),
            Out::Bin(b) => Json::String(base64::engine::general_purpose::STANDARD.encode(b)),
            Out::Date(d) => Json::from(*d),
            Out::Timestamp(s, n) => Json::Array(vec![Json::from(*s), Json::from(*n)]),
            Out::Json(text) => serde_json::from_str(text).unwrap_or(Json::Null),
        }
    }
}

/// An instant `units` since the epoch, `per_second` units to the second, as seconds and nanos.
pub fn instant(units: i64, per_second: i64) -> Out {
    let seconds = units.div_euclid(per_second);
    let rest = units.rem_euclid(per_second);
    Out::Timestamp(seconds, (rest * (1_000_000_000 / per_second)) as u32)
}

/// A time of day `units` after midnight as `HH:MM:SS.fff` (`digits` fractional digits).
pub fn time_of_day(units: i64, per_second: i64, digits: usize) -> Out {
    let seconds = units.div_euclid(per_second);
    let fraction = units.rem_euclid(per_second);
    Out::Str(format!(
        "{:02}:{:02}:{:02}.{:0digits$}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60,
        fraction
    ))
}

/// `unscaled × 10^-scale` as plain decimal text: `-12345`, scale 2 → `-123.45`.
pub fn decimal_text(unscaled: &str, scale: usize) -> String {
    let (sign, digits) = match unscaled.strip_prefix('-') {
        Some(d) => ("-", d),
        None => ("", unscaled),
    };
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{sign}{int}.{frac}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_text_nests() {
        let t = Ty::Struct(vec![
            ("a".into(), Ty::Decimal(10, 2)),
            (
                "b".into(),
                Ty::Array(Box::new(Ty::Map(
                    Box::new(Ty::String),
                    Box::new(Ty::Bigint),
                ))),
            ),
        ]);
        assert_eq!(
            t.text(),
            "struct<a:decimal(10,2),b:array<map<string,bigint>>>"
        );
    }

    #[test]
    fn decimals_times_and_instants_convert_exactly() {
        assert_eq!(decimal_text("-12345", 2), "-123.45");
        assert_eq!(decimal_text("5", 3), "0.005");
        assert_eq!(decimal_text("-5", 3), "-0.005");
        assert_eq!(decimal_text("42", 0), "42");
        assert_eq!(instant(-1, 1000), Out::Timestamp(-1, 999_000_000));
        assert_eq!(
            instant(1_500_001, 1_000_000),
            Out::Timestamp(1, 500_001_000)
        );
        assert_eq!(
            time_of_day(49_530_123, 1000, 3),
            Out::Str("13:45:30.123".into())
        );
    }
}
