//! Cells against the table (part of the pure encode stage): how the chain's output columns map
//! onto the table's data columns ([`Layout`]), and each cell checked and converted (integer
//! ranges, FLOAT narrowing, field size, JSON text of ARRAY/MAP/STRUCT into nested values). A row
//! that does not fit is a [`RowError`]: a dead letter, never a batch failure.

use crate::maxcompute::{ColumnType, TableSchema, Value, value_from_json};
use crate::transform::bindings::{self, Cell};

/// MaxCompute's default cap on one STRING/BINARY field.
pub const MAX_FIELD_BYTES: usize = 8 * 1024 * 1024;

/// How the chain's output columns map onto the table's data columns.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Table data column types, in stream order.
    pub types: Vec<ColumnType>,
    /// For each table column, the chain column feeding it (`None`: always NULL).
    sources: Vec<Option<usize>>,
    nullable: Vec<bool>,
    names: Vec<String>,
}

/// The MaxCompute type text of a WIT column type.
pub fn type_text(ty: &bindings::ColumnType) -> String {
    use bindings::ColumnType as W;
    match ty {
        W::Boolean => "boolean".into(),
        W::Tinyint => "tinyint".into(),
        W::Smallint => "smallint".into(),
        W::Int => "int".into(),
        W::Bigint => "bigint".into(),
        W::Float => "float".into(),
        W::Double => "double".into(),
        W::Decimal(d) => format!("decimal({},{})", d.precision, d.scale),
        W::Varchar(n) => format!("varchar({n})"),
        W::FixedChar(n) => format!("char({n})"),
        W::String => "string".into(),
        W::Binary => "binary".into(),
        W::Json => "json".into(),
        W::Date => "date".into(),
        W::Datetime => "datetime".into(),
        W::Timestamp => "timestamp".into(),
        W::TimestampNtz => "timestamp_ntz".into(),
        W::IntervalDayTime => "interval_day_time".into(),
        W::IntervalYearMonth => "interval_year_month".into(),
        W::Complex(text) => text.clone(),
    }
}

/// Whether a chain column of type `from` can fill a table column of type `to`.
fn compatible(from: &ColumnType, to: &ColumnType) -> bool {
    use ColumnType as T;
    let stringy = |t: &T| matches!(t, T::String | T::Varchar(_) | T::Char(_));
    from == to
        || (from.integer_range().is_some() && to.integer_range().is_some())
        || (matches!(from, T::Float | T::Double) && matches!(to, T::Float | T::Double))
        || (matches!(from, T::Decimal(_)) && matches!(to, T::Decimal(_)))
        || (stringy(from) && stringy(to))
        || (matches!(from, T::Timestamp | T::TimestampNtz)
            && matches!(to, T::Timestamp | T::TimestampNtz))
}

impl Layout {
    /// Matches columns by name. `routing` are chain columns the partition template uses (they
    /// need no table column); with `ignore_extra`, chain columns the table lacks are not loaded
    /// (`maxcompute.schema_evolution = "ignore"`). Every mismatch is listed.
    pub fn new(
        chain: &[bindings::Column],
        table: &TableSchema,
        routing: &[String],
        ignore_extra: bool,
    ) -> Result<Layout, Vec<String>> {
        let mut problems = Vec::new();
        let mut sources = Vec::new();
        for col in &table.columns {
            let found = chain
                .iter()
                .position(|c| c.name.eq_ignore_ascii_case(&col.name));
            match found {
                Some(i) => {
                    let text = type_text(&chain[i].ty);
                    match ColumnType::parse(&text) {
                        Ok(t) if compatible(&t, &col.ty) => {}
                        Ok(t) => problems.push(format!(
                            "column {} is {} in the table but the transforms emit {t}",
                            col.name, col.ty
                        )),
                        Err(e) => problems.push(format!("column {}: transform type {text:?}: {e}", col.name)),
                    }
                    sources.push(Some(i));
                }
                None if col.nullable => sources.push(None),
                None => problems.push(format!(
                    "table column {} is NOT NULL but no transform emits it; add it to the parser's columns",
                    col.name
                )),
            }
        }
        for c in chain {
            let in_table = table
                .columns
                .iter()
                .any(|t| t.name.eq_ignore_ascii_case(&c.name));
            let routed = routing.iter().any(|r| r.eq_ignore_ascii_case(&c.name));
            if !in_table && !routed && !ignore_extra {
                problems.push(format!(
                    "the transforms emit {} but table has no such column; add it (ALTER TABLE … ADD COLUMNS) or drop it in the chain",
                    c.name
                ));
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Layout {
            types: table.column_types(),
            sources,
            nullable: table.columns.iter().map(|c| c.nullable).collect(),
            names: table.columns.iter().map(|c| c.name.clone()).collect(),
        })
    }

    /// One row's cells as table values, or why it does not fit. Text and bytes move out of
    /// `cells` (each table column has its own source cell), so they are not copied again.
    pub fn convert(&self, cells: &mut [Cell]) -> Result<Vec<Value>, RowError> {
        let mut out = Vec::with_capacity(self.types.len());
        for (t, src) in self.sources.iter().enumerate() {
            let cell = src
                .and_then(|i| cells.get_mut(i))
                .map_or(Cell::Null, |c| std::mem::replace(c, Cell::Null));
            let value = convert_cell(cell, &self.types[t]).map_err(|e| {
                RowError::new(e.code, format!("column {}: {}", self.names[t], e.message))
            })?;
            if matches!(value, Value::Null) && !self.nullable[t] {
                return Err(RowError::new(
                    "null-in-not-null",
                    format!("column {} is NOT NULL but the value is null", self.names[t]),
                ));
            }
            out.push(value);
        }
        Ok(out)
    }
}

/// Why a row does not fit the table: the record becomes a dead letter with this code and
/// message, never a batch failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// A stable code: `type-mismatch`, `out-of-range`, `value-too-large`, `bad-json`,
    /// `null-in-not-null` or `bad-partition`.
    pub code: &'static str,
    pub message: String,
}

impl RowError {
    pub(crate) fn new(code: &'static str, message: impl Into<String>) -> Self {
        RowError {
            code,
            message: message.into(),
        }
    }
}

fn mismatch(cell: &Cell, ty: &ColumnType) -> RowError {
    let kind = match cell {
        Cell::Null => "null",
        Cell::Boolean(_) => "boolean",
        Cell::Int(_) => "integer",
        Cell::Double(_) => "double",
        Cell::Decimal(_) => "decimal",
        Cell::String(_) => "string",
        Cell::Binary(_) => "binary",
        Cell::Date(_) => "date",
        Cell::Datetime(_) => "datetime",
        Cell::Timestamp(_) => "timestamp",
        Cell::IntervalDayTime(_) => "interval",
        Cell::IntervalYearMonth(_) => "interval",
        Cell::Json(_) => "json",
    };
    RowError::new(
        "type-mismatch",
        format!("a {kind} cell cannot go into a {ty} column"),
    )
}

fn too_big(n: usize) -> RowError {
    RowError::new(
        "value-too-large",
        format!("{n} bytes is over the {MAX_FIELD_BYTES}-byte field limit"),
    )
}

/// Converts one cell, or says why it does not fit. Text and bytes move into the value.
pub fn convert_cell(cell: Cell, ty: &ColumnType) -> Result<Value, RowError> {
    use ColumnType as T;
    Ok(match (cell, ty) {
        (Cell::String(s), T::String | T::Json) | (Cell::Json(s), T::Json) => {
            if s.len() > MAX_FIELD_BYTES {
                return Err(too_big(s.len()));
            }
            Value::String(s)
        }
        (Cell::String(s), T::Varchar(n) | T::Char(n)) => {
            let chars = s.chars().count();
            if chars > *n as usize {
                return Err(RowError::new(
                    "value-too-large",
                    format!("{chars} characters is over {ty}"),
                ));
            }
            Value::String(s)
        }
        (Cell::Binary(b), T::Binary) => {
            if b.len() > MAX_FIELD_BYTES {
                return Err(too_big(b.len()));
            }
            Value::Binary(b)
        }
        (cell, ty) => return convert_other(&cell, ty),
    })
}

/// The conversions that copy nothing large (numbers, times, decimals, complex types from JSON).
fn convert_other(cell: &Cell, ty: &ColumnType) -> Result<Value, RowError> {
    use ColumnType as T;
    Ok(match (cell, ty) {
        (Cell::Null, _) => Value::Null,
        (Cell::Boolean(b), T::Boolean) => Value::Boolean(*b),
        (Cell::Int(n), t) if t.integer_range().is_some() => {
            let (lo, hi) = t.integer_range().unwrap_or((i64::MIN, i64::MAX));
            if *n < lo || *n > hi {
                return Err(RowError::new(
                    "out-of-range",
                    format!("{n} is outside the range of {t}"),
                ));
            }
            Value::Int(*n)
        }
        (Cell::Int(n), T::Double) => Value::Double(*n as f64),
        (Cell::Int(n), T::Float) => Value::Float(*n as f32),
        (Cell::Double(x), T::Double) => Value::Double(*x),
        (Cell::Double(x), T::Float) => {
            let narrowed = *x as f32;
            if x.is_finite() && !narrowed.is_finite() {
                return Err(RowError::new(
                    "out-of-range",
                    format!("{x} does not fit a FLOAT"),
                ));
            }
            Value::Float(narrowed)
        }
        (Cell::Int(_) | Cell::Double(_) | Cell::Decimal(_), T::Decimal(_)) => {
            let text = match cell {
                Cell::Int(n) => n.to_string(),
                Cell::Double(x) => x.to_string(),
                Cell::Decimal(s) => s.clone(),
                _ => String::new(),
            };
            value_from_json(ty, &serde_json::Value::String(text))
                .map_err(|e| RowError::new("out-of-range", e))?
        }
        (Cell::Date(d), T::Date) => Value::Date(i64::from(*d)),
        (Cell::Datetime(ms), T::Datetime) => Value::Datetime(*ms),
        (Cell::Timestamp(t), T::Timestamp | T::TimestampNtz) => Value::Timestamp {
            seconds: t.seconds,
            nanos: t.nanos as i32,
        },
        (Cell::Timestamp(t), T::Datetime) => {
            Value::Datetime(t.seconds * 1000 + i64::from(t.nanos / 1_000_000))
        }
        (Cell::Datetime(ms), T::Timestamp | T::TimestampNtz) => Value::Timestamp {
            seconds: ms.div_euclid(1000),
            nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
        },
        (Cell::IntervalDayTime(t), T::IntervalDayTime) => Value::IntervalDayTime {
            seconds: t.seconds,
            nanos: t.nanos as i32,
        },
        (Cell::IntervalYearMonth(m), T::IntervalYearMonth) => Value::IntervalYearMonth(*m),
        (Cell::Json(text), T::Array(_) | T::Map(..) | T::Struct(_)) => {
            let json: serde_json::Value = serde_json::from_str(text).map_err(|e| {
                RowError::new(
                    "bad-json",
                    format!("JSON for a {ty} column does not parse: {e}"),
                )
            })?;
            value_from_json(ty, &json).map_err(|e| RowError::new("type-mismatch", e))?
        }
        _ => return Err(mismatch(cell, ty)),
    })
}
