//! The encode stage (pure, invariant 7): the chain's rows become Tunnel record blocks against the
//! table's schema. Each cell is checked and converted (integer ranges, FLOAT narrowing, field
//! size, JSON text of ARRAY/MAP/STRUCT into nested values); a record whose row does not fit
//! becomes a dead letter and the others go on. Rows are routed to their destination partition and
//! written into one open block per destination; a block is closed and handed back for staging
//! when it reaches the configured size, so memory is bounded by blocks, not by the range.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use flate2::Compression as Level;
use flate2::write::ZlibEncoder;

use crate::error::PipelineError;
use crate::maxcompute::{ColumnType, RecordWriter, TableSchema, Value, value_from_json};
use crate::pipeline::commit::{Destination, StagedBlock};
use crate::pipeline::route::Router;
use crate::transform::bindings::{self, Cell, Row};

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
    /// need no table column). Every mismatch is listed.
    pub fn new(
        chain: &[bindings::Column],
        table: &TableSchema,
        routing: &[String],
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
            if !in_table && !routed {
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

    /// One row's cells as table values, or why it does not fit.
    pub fn convert(&self, cells: &[Cell]) -> Result<Vec<Value>, (String, String)> {
        let mut out = Vec::with_capacity(self.types.len());
        for (t, src) in self.sources.iter().enumerate() {
            let cell = src.and_then(|i| cells.get(i)).unwrap_or(&Cell::Null);
            let value = convert_cell(cell, &self.types[t])
                .map_err(|(code, why)| (code, format!("column {}: {why}", self.names[t])))?;
            if matches!(value, Value::Null) && !self.nullable[t] {
                return Err((
                    "null-in-not-null".into(),
                    format!("column {} is NOT NULL but the value is null", self.names[t]),
                ));
            }
            out.push(value);
        }
        Ok(out)
    }
}

fn mismatch(cell: &Cell, ty: &ColumnType) -> (String, String) {
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
    (
        "type-mismatch".into(),
        format!("a {kind} cell cannot go into a {ty} column"),
    )
}

/// Converts one cell; errors are (code, message).
pub fn convert_cell(cell: &Cell, ty: &ColumnType) -> Result<Value, (String, String)> {
    use ColumnType as T;
    let too_big = |n: usize| {
        (
            "value-too-large".to_owned(),
            format!("{n} bytes is over the {MAX_FIELD_BYTES}-byte field limit"),
        )
    };
    Ok(match (cell, ty) {
        (Cell::Null, _) => Value::Null,
        (Cell::Boolean(b), T::Boolean) => Value::Boolean(*b),
        (Cell::Int(n), t) if t.integer_range().is_some() => {
            let (lo, hi) = t.integer_range().unwrap_or((i64::MIN, i64::MAX));
            if *n < lo || *n > hi {
                return Err((
                    "out-of-range".into(),
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
                return Err(("out-of-range".into(), format!("{x} does not fit a FLOAT")));
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
                .map_err(|e| ("out-of-range".into(), e))?
        }
        (Cell::String(s), T::String | T::Json) => {
            if s.len() > MAX_FIELD_BYTES {
                return Err(too_big(s.len()));
            }
            Value::String(s.clone())
        }
        (Cell::String(s), T::Varchar(n) | T::Char(n)) => {
            let chars = s.chars().count();
            if chars > *n as usize {
                return Err((
                    "value-too-large".into(),
                    format!("{chars} characters is over {ty}"),
                ));
            }
            Value::String(s.clone())
        }
        (Cell::Binary(b), T::Binary) => {
            if b.len() > MAX_FIELD_BYTES {
                return Err(too_big(b.len()));
            }
            Value::Binary(b.clone())
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
        (Cell::Json(text), T::Json) => {
            if text.len() > MAX_FIELD_BYTES {
                return Err(too_big(text.len()));
            }
            Value::String(text.clone())
        }
        (Cell::Json(text), T::Array(_) | T::Map(..) | T::Struct(_)) => {
            let json: serde_json::Value = serde_json::from_str(text).map_err(|e| {
                (
                    "bad-json".to_owned(),
                    format!("JSON for a {ty} column does not parse: {e}"),
                )
            })?;
            value_from_json(ty, &json).map_err(|e| ("type-mismatch".into(), e))?
        }
        _ => return Err(mismatch(cell, ty)),
    })
}

/// Counts bytes written through it: the uncompressed size of an open block.
struct Counting<W> {
    inner: W,
    count: Arc<AtomicU64>,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

type BlockWriter<'s> = RecordWriter<'s, Counting<ZlibEncoder<Vec<u8>>>>;

struct Open<'s> {
    writer: BlockWriter<'s>,
    size: Arc<AtomicU64>,
}

struct Dest<'s> {
    partition: String,
    open: Option<Open<'s>>,
    next_block: u32,
    rows: u64,
    blocks: Vec<StagedBlock>,
}

/// A finished block, ready for the stage step.
#[derive(Debug, Clone)]
pub struct ClosedBlock {
    /// Index of the destination in the batch.
    pub dest: usize,
    pub id: u32,
    pub rows: u64,
    pub data: Bytes,
}

/// A record the encode stage could not load.
#[derive(Debug, Clone)]
pub struct Rejected {
    /// Index of the record in the chunk.
    pub source: u32,
    pub code: String,
    pub message: String,
}

/// Encodes the rows of one batch.
pub struct Encoder<'s> {
    layout: &'s Layout,
    router: &'s Router,
    block_bytes: usize,
    dests: Vec<Dest<'s>>,
    index: HashMap<String, usize>,
}

impl std::fmt::Debug for Encoder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("destinations", &self.index.len())
            .finish_non_exhaustive()
    }
}

fn wire(err: impl std::fmt::Display) -> PipelineError {
    PipelineError::Corrupt {
        key: "(block being encoded)".into(),
        reason: err.to_string(),
    }
}

impl<'s> Encoder<'s> {
    pub fn new(layout: &'s Layout, router: &'s Router, block_bytes: usize) -> Self {
        Encoder {
            layout,
            router,
            block_bytes,
            dests: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// Encodes rows (grouped by `source`, in order); returns the blocks that filled up and the
    /// records that did not fit. A record with any bad row is rejected whole.
    pub fn add(
        &mut self,
        rows: &[Row],
    ) -> Result<(Vec<ClosedBlock>, Vec<Rejected>), PipelineError> {
        let mut closed = Vec::new();
        let mut rejected = Vec::new();
        let mut i = 0;
        while i < rows.len() {
            let source = rows[i].source;
            let mut j = i;
            while j < rows.len() && rows[j].source == source {
                j += 1;
            }
            let mut converted = Vec::with_capacity(j - i);
            let mut failure = None;
            for row in &rows[i..j] {
                match (
                    self.layout.convert(&row.cells),
                    self.router.route(&row.cells),
                ) {
                    (Ok(values), Ok(dest)) => converted.push((dest, values)),
                    (Err((code, message)), _) => {
                        failure = Some((code, message));
                        break;
                    }
                    (_, Err(message)) => {
                        failure = Some(("bad-partition".to_owned(), message));
                        break;
                    }
                }
            }
            match failure {
                Some((code, message)) => rejected.push(Rejected {
                    source,
                    code,
                    message,
                }),
                None => {
                    for (dest, values) in converted {
                        if let Some(block) = self.write(dest, &values)? {
                            closed.push(block);
                        }
                    }
                }
            }
            i = j;
        }
        Ok((closed, rejected))
    }

    fn write(
        &mut self,
        partition: String,
        values: &[Value],
    ) -> Result<Option<ClosedBlock>, PipelineError> {
        let d = match self.index.get(&partition) {
            Some(&d) => d,
            None => {
                self.dests.push(Dest {
                    partition: partition.clone(),
                    open: None,
                    next_block: 0,
                    rows: 0,
                    blocks: Vec::new(),
                });
                self.index.insert(partition, self.dests.len() - 1);
                self.dests.len() - 1
            }
        };
        let types = &self.layout.types;
        let dest = &mut self.dests[d];
        let open = dest.open.get_or_insert_with(|| {
            let size = Arc::new(AtomicU64::new(0));
            Open {
                writer: RecordWriter::new(
                    types,
                    Counting {
                        inner: ZlibEncoder::new(Vec::new(), Level::fast()),
                        count: size.clone(),
                    },
                ),
                size,
            }
        });
        open.writer.write(values).map_err(wire)?;
        dest.rows += 1;
        if open.size.load(Ordering::Relaxed) as usize >= self.block_bytes {
            return self.close(d).map(Some);
        }
        Ok(None)
    }

    fn close(&mut self, d: usize) -> Result<ClosedBlock, PipelineError> {
        let dest = &mut self.dests[d];
        let open = dest.open.take().ok_or_else(|| wire("no open block"))?;
        let rows = open.writer.count();
        let data = open
            .writer
            .finish()
            .map_err(wire)?
            .inner
            .finish()
            .map_err(wire)?;
        let id = dest.next_block;
        dest.next_block += 1;
        Ok(ClosedBlock {
            dest: d,
            id,
            rows,
            data: data.into(),
        })
    }

    /// Closes the open blocks; returns them and the destinations (blocks filled in by the caller
    /// through [`Encoder::staged`] as they are staged).
    pub fn finish(&mut self) -> Result<Vec<ClosedBlock>, PipelineError> {
        let mut out = Vec::new();
        for d in 0..self.dests.len() {
            if self.dests[d].open.is_some() {
                out.push(self.close(d)?);
            }
        }
        Ok(out)
    }

    /// Records that a block was staged under `key`.
    pub fn staged(&mut self, block: &ClosedBlock, key: String) {
        self.dests[block.dest].blocks.push(StagedBlock {
            id: block.id,
            key,
            rows: block.rows,
        });
    }

    /// The destinations with their staged blocks.
    pub fn destinations(&self) -> Vec<Destination> {
        self.dests
            .iter()
            .map(|d| Destination {
                partition: d.partition.clone(),
                rows: d.rows,
                blocks: d.blocks.clone(),
                upload_id: None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
