//! MaxCompute column types and table schemas: the vocabulary the Tunnel codec, the SQL client and
//! the emulator share. Type text follows MaxCompute DDL (`decimal(38,18)`, `array<string>`,
//! `map<string,bigint>`, `struct<a:bigint,b:string>`), which is also what Tunnel session JSON
//! and table metadata carry.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::error::SchemaError;

/// One MaxCompute 2.0 column type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ColumnType {
    Boolean,
    Tinyint,
    Smallint,
    Int,
    Bigint,
    Float,
    Double,
    /// `decimal(p,s)`; a bare `decimal` is the 1.0 decimal and has no declared precision.
    Decimal(Option<(u8, u8)>),
    Varchar(u32),
    Char(u32),
    String,
    Binary,
    Json,
    Date,
    Datetime,
    Timestamp,
    TimestampNtz,
    IntervalDayTime,
    IntervalYearMonth,
    Array(Box<ColumnType>),
    Map(Box<ColumnType>, Box<ColumnType>),
    Struct(Vec<(String, ColumnType)>),
}

impl ColumnType {
    /// Parses MaxCompute type text, case-insensitively.
    pub fn parse(text: &str) -> Result<Self, SchemaError> {
        let mut parser = TypeParser {
            text,
            pos: 0,
            depth: 0,
        };
        let ty = parser.parse_type()?;
        parser.skip_ws();
        if parser.pos != text.len() {
            return Err(parser.error("unexpected trailing text"));
        }
        Ok(ty)
    }

    /// The integer range a column of this type accepts, for the integer types.
    pub fn integer_range(&self) -> Option<(i64, i64)> {
        match self {
            ColumnType::Tinyint => Some((i8::MIN.into(), i8::MAX.into())),
            ColumnType::Smallint => Some((i16::MIN.into(), i16::MAX.into())),
            ColumnType::Int => Some((i32::MIN.into(), i32::MAX.into())),
            ColumnType::Bigint => Some((i64::MIN, i64::MAX)),
            _ => None,
        }
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnType::Boolean => f.write_str("boolean"),
            ColumnType::Tinyint => f.write_str("tinyint"),
            ColumnType::Smallint => f.write_str("smallint"),
            ColumnType::Int => f.write_str("int"),
            ColumnType::Bigint => f.write_str("bigint"),
            ColumnType::Float => f.write_str("float"),
            ColumnType::Double => f.write_str("double"),
            ColumnType::Decimal(None) => f.write_str("decimal"),
            ColumnType::Decimal(Some((p, s))) => write!(f, "decimal({p},{s})"),
            ColumnType::Varchar(n) => write!(f, "varchar({n})"),
            ColumnType::Char(n) => write!(f, "char({n})"),
            ColumnType::String => f.write_str("string"),
            ColumnType::Binary => f.write_str("binary"),
            ColumnType::Json => f.write_str("json"),
            ColumnType::Date => f.write_str("date"),
            ColumnType::Datetime => f.write_str("datetime"),
            ColumnType::Timestamp => f.write_str("timestamp"),
            ColumnType::TimestampNtz => f.write_str("timestamp_ntz"),
            ColumnType::IntervalDayTime => f.write_str("interval_day_time"),
            ColumnType::IntervalYearMonth => f.write_str("interval_year_month"),
            ColumnType::Array(t) => write!(f, "array<{t}>"),
            ColumnType::Map(k, v) => write!(f, "map<{k},{v}>"),
            ColumnType::Struct(fields) => {
                f.write_str("struct<")?;
                for (i, (name, ty)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    if name.chars().all(|c| c.is_alphanumeric() || c == '_') {
                        write!(f, "{name}:{ty}")?;
                    } else {
                        write!(f, "`{name}`:{ty}")?;
                    }
                }
                f.write_str(">")
            }
        }
    }
}

impl Serialize for ColumnType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ColumnType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        ColumnType::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// How deep ARRAY, MAP and STRUCT may nest in one type. The parser recurses per level; a type
/// from a server or a DDL statement must not overflow a worker thread's stack.
const MAX_TYPE_DEPTH: usize = 32;

struct TypeParser<'a> {
    text: &'a str,
    pos: usize,
    /// Types open at `pos`.
    depth: usize,
}

impl TypeParser<'_> {
    fn error(&self, reason: &str) -> SchemaError {
        SchemaError::BadType {
            text: self.text.to_owned(),
            position: self.pos,
            reason: reason.to_owned(),
        }
    }

    fn skip_ws(&mut self) {
        // By characters: Unicode white space such as U+00A0 is more than one byte.
        while let Some(c) = self.text[self.pos..]
            .chars()
            .next()
            .filter(|c| c.is_whitespace())
        {
            self.pos += c.len_utf8();
        }
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_ws();
        if self.text[self.pos..].starts_with(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> Result<(), SchemaError> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.error(&format!("expected '{c}'")))
        }
    }

    fn ident(&mut self) -> Result<String, SchemaError> {
        self.skip_ws();
        let rest = &self.text[self.pos..];
        if let Some(quoted) = rest.strip_prefix('`') {
            let end = quoted
                .find('`')
                .ok_or_else(|| self.error("unterminated backquote"))?;
            if end == 0 {
                return Err(self.error("expected a name between the backquotes"));
            }
            self.pos += end + 2;
            return Ok(quoted[..end].to_owned());
        }
        let len = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if len == 0 {
            return Err(self.error("expected a name"));
        }
        self.pos += len;
        Ok(rest[..len].to_owned())
    }

    fn number(&mut self) -> Result<u32, SchemaError> {
        self.skip_ws();
        let rest = &self.text[self.pos..];
        let len = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let n = rest[..len]
            .parse()
            .map_err(|_| self.error("expected a number"))?;
        self.pos += len;
        Ok(n)
    }

    fn parse_type(&mut self) -> Result<ColumnType, SchemaError> {
        if self.depth == MAX_TYPE_DEPTH {
            return Err(self.error(&format!("types nest deeper than {MAX_TYPE_DEPTH} levels")));
        }
        self.depth += 1;
        let ty = self.parse_one_type();
        self.depth -= 1;
        ty
    }

    fn parse_one_type(&mut self) -> Result<ColumnType, SchemaError> {
        let start = self.pos;
        let name = self.ident()?.to_ascii_lowercase();
        let ty = match name.as_str() {
            "boolean" => ColumnType::Boolean,
            "tinyint" => ColumnType::Tinyint,
            "smallint" => ColumnType::Smallint,
            "int" => ColumnType::Int,
            "bigint" => ColumnType::Bigint,
            "float" => ColumnType::Float,
            "double" => ColumnType::Double,
            "string" => ColumnType::String,
            "binary" => ColumnType::Binary,
            "json" => ColumnType::Json,
            "date" => ColumnType::Date,
            "datetime" => ColumnType::Datetime,
            "timestamp" => ColumnType::Timestamp,
            "timestamp_ntz" => ColumnType::TimestampNtz,
            "interval_day_time" => ColumnType::IntervalDayTime,
            "interval_year_month" => ColumnType::IntervalYearMonth,
            "decimal" => {
                if self.eat('(') {
                    let p = self.number()?;
                    let s = if self.eat(',') { self.number()? } else { 0 };
                    self.expect(')')?;
                    if !(1..=38).contains(&p) || s > p {
                        return Err(
                            self.error("decimal precision must be 1..=38 and scale <= precision")
                        );
                    }
                    ColumnType::Decimal(Some((p as u8, s as u8)))
                } else {
                    ColumnType::Decimal(None)
                }
            }
            "varchar" | "char" => {
                self.expect('(')?;
                let n = self.number()?;
                self.expect(')')?;
                if name == "varchar" {
                    ColumnType::Varchar(n)
                } else {
                    ColumnType::Char(n)
                }
            }
            "array" => {
                self.expect('<')?;
                let inner = self.parse_type()?;
                self.expect('>')?;
                ColumnType::Array(Box::new(inner))
            }
            "map" => {
                self.expect('<')?;
                let k = self.parse_type()?;
                self.expect(',')?;
                let v = self.parse_type()?;
                self.expect('>')?;
                ColumnType::Map(Box::new(k), Box::new(v))
            }
            "struct" => {
                self.expect('<')?;
                let mut fields = Vec::new();
                loop {
                    let field = self.ident()?;
                    self.expect(':')?;
                    fields.push((field, self.parse_type()?));
                    if !self.eat(',') {
                        break;
                    }
                }
                self.expect('>')?;
                ColumnType::Struct(fields)
            }
            _ => {
                self.pos = start;
                return Err(self.error(&format!("unknown type '{name}'")));
            }
        };
        Ok(ty)
    }
}

/// A data or partition column as MaxCompute describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ColumnType,
    #[serde(default)]
    pub comment: String,
    #[serde(default = "default_true", alias = "isNullable")]
    pub nullable: bool,
}

fn default_true() -> bool {
    true
}

impl Column {
    /// A nullable column with no comment.
    pub fn new(name: impl Into<String>, ty: ColumnType) -> Self {
        Column {
            name: name.into(),
            ty,
            comment: String::new(),
            nullable: true,
        }
    }
}

/// A table's data columns (in record-stream order) and partition keys.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TableSchema {
    #[serde(default)]
    pub columns: Vec<Column>,
    #[serde(default, rename = "partitionKeys")]
    pub partition_keys: Vec<Column>,
}

impl TableSchema {
    /// The data column types in stream order, as the codec wants them.
    pub fn column_types(&self) -> Vec<ColumnType> {
        self.columns.iter().map(|c| c.ty.clone()).collect()
    }

    /// The index of a data column by case-insensitive name.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, display: &str) {
        let ty = ColumnType::parse(text).unwrap();
        assert_eq!(ty.to_string(), display);
        assert_eq!(ColumnType::parse(display).unwrap(), ty);
    }

    #[test]
    fn parses_every_type() {
        check("BIGINT", "bigint");
        check("decimal(38, 18)", "decimal(38,18)");
        check("decimal", "decimal");
        check("varchar(10)", "varchar(10)");
        check(
            "array<map<string,array<int>>>",
            "array<map<string,array<int>>>",
        );
        check(
            "struct<a:bigint, `b c`:struct<d:timestamp_ntz>>",
            "struct<a:bigint,`b c`:struct<d:timestamp_ntz>>",
        );
    }

    #[test]
    fn rejects_bad_types() {
        for bad in [
            "",
            "bigin",
            "decimal(39,1)",
            "array<string",
            "map<string>",
            "int extra",
        ] {
            assert!(ColumnType::parse(bad).is_err(), "{bad}");
        }
    }

    /// Found by fuzzing (tests/fuzz/regressions/column_type/no-break-space): white space wider than one
    /// byte panicked the parser mid-character. And an empty quoted field name was accepted,
    /// which no table can have and which did not print back as a type.
    #[test]
    fn unicode_white_space_and_empty_quoted_names() {
        assert!(ColumnType::parse("\u{a0}").is_err());
        // tests/fuzz/regressions/column_type/empty-quoted-name: printed as `struct<:string>`.
        assert!(ColumnType::parse("STRUCT< ``:string>").is_err());
        assert_eq!(
            ColumnType::parse("\u{a0}array<\u{2003}int\u{3000}>\u{a0}"),
            Ok(ColumnType::Array(Box::new(ColumnType::Int)))
        );
    }

    #[test]
    fn nesting_is_bounded() {
        let nested = |n: usize| format!("{}int{}", "array<".repeat(n), ">".repeat(n));
        assert!(ColumnType::parse(&nested(MAX_TYPE_DEPTH - 1)).is_ok());
        let err = ColumnType::parse(&nested(MAX_TYPE_DEPTH)).unwrap_err();
        assert!(err.to_string().contains("deeper than 32"), "{err}");
    }
}
