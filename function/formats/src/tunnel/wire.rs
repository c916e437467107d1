//! The Tunnel record stream (`docs/maxcompute-protocol.md` §2.5): protobuf-style tags and varints driven by the
//! table schema, a CRC32C per record, a record count and a CRC of CRCs. The encode stage writes
//! blocks with [`RecordWriter`]; the emulator and the tests read them with [`RecordReader`].
//!
//! This is not a protobuf message: a null cell is an omitted tag, a timestamp is two varints under
//! a length-delimited wire type with no length, and arrays carry null flags inline.

use std::io::Write;

use super::error::WireError;
use super::schema::ColumnType;
use super::value::{Value, is_plain_decimal};

const WIRETYPE_VARINT: u32 = 0;
const WIRETYPE_FIXED64: u32 = 1;
const WIRETYPE_LENGTH_DELIMITED: u32 = 2;
const WIRETYPE_FIXED32: u32 = 5;
/// Field number of the end-of-record marker, followed by the record CRC.
const END_RECORD: u32 = 33_553_408;
/// Field number of the record count in the footer.
const META_COUNT: u32 = 33_554_430;
/// Field number of the CRC of record CRCs in the footer.
const META_CHECKSUM: u32 = 33_554_431;
/// Field number closing the optional server-metrics trailer that downloads may carry.
const END_METRICS: u32 = 33_554_176;
/// How much encoded data the writer buffers before handing it to the sink, which it does in
/// multiples of this until the body ends: the block size of the LZ4 frames staged blocks are
/// compressed into.
const FLUSH_THRESHOLD: usize = 64 * 1024;

/// Writes rows as a Tunnel record stream into `W`. Call [`RecordWriter::finish`] to write the
/// footer; a stream without it is rejected by every reader.
#[derive(Debug)]
pub struct RecordWriter<'s, W: Write> {
    schema: &'s [ColumnType],
    out: W,
    buf: Vec<u8>,
    crc: u32,
    /// The record's checksummed bytes not yet folded into `crc`: the CRC-32C of a few bytes costs
    /// a call about as dear as that of a hundred, so field numbers and fixed-size values are
    /// gathered and folded in one call (docs/bench/README.md, "Fewer checksum calls and a vector
    /// UTF-8 check").
    crc_pending: Vec<u8>,
    crc_of_crcs: u32,
    count: u64,
}

/// Checksummed pieces up to this many bytes are gathered in `crc_pending`; longer ones are
/// checksummed where they lie.
const CRC_GATHER: usize = 64;

impl<'s, W: Write> RecordWriter<'s, W> {
    /// A writer for rows whose cells follow `schema` (data columns only, in table order).
    pub fn new(schema: &'s [ColumnType], out: W) -> Self {
        RecordWriter {
            schema,
            out,
            buf: Vec::with_capacity(FLUSH_THRESHOLD + 4096),
            crc: 0,
            crc_pending: Vec::with_capacity(4 * CRC_GATHER),
            crc_of_crcs: 0,
            count: 0,
        }
    }

    /// Appends one row. On error nothing of the row is written and the writer stays usable.
    pub fn write(&mut self, row: &[Value]) -> Result<(), WireError> {
        if row.len() != self.schema.len() {
            return Err(WireError::RowWidth {
                expected: self.schema.len(),
                found: row.len(),
            });
        }
        let mark = self.buf.len();
        self.crc = 0;
        self.crc_pending.clear();
        if let Err(e) = self.encode_row(row) {
            self.buf.truncate(mark);
            return Err(e);
        }
        self.fold_crc();
        put_tag(&mut self.buf, END_RECORD, WIRETYPE_VARINT);
        put_varint(&mut self.buf, u64::from(self.crc));
        self.crc_of_crcs = crc32c::crc32c_append(self.crc_of_crcs, &self.crc.to_le_bytes());
        self.count += 1;
        if self.buf.len() >= FLUSH_THRESHOLD {
            // Whole units only, the rest (less than a record) kept for the next: an LZ4 frame
            // compressor of 64 KiB blocks then compresses them where they are, instead of
            // copying the part that does not fill a block into a buffer of its own
            // (docs/bench/README.md, "The record writer hands the compressor whole blocks").
            let whole = self.buf.len() - self.buf.len() % FLUSH_THRESHOLD;
            self.out.write_all(&self.buf[..whole])?;
            self.buf.drain(..whole);
        }
        Ok(())
    }

    /// The sink.
    pub fn get_ref(&self) -> &W {
        &self.out
    }

    /// Rows written so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The CRC-32C of the record CRCs written so far (the footer's checksum).
    pub fn checksum(&self) -> u32 {
        self.crc_of_crcs
    }

    /// Hands every record written so far to the sink and flushes it, without the footer: the
    /// body of the stream ends here ([`footer`] follows it).
    pub fn flush_body(&mut self) -> Result<(), WireError> {
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        self.out.flush()?;
        Ok(())
    }

    /// Writes the footer and returns the sink.
    pub fn finish(mut self) -> Result<W, WireError> {
        self.buf
            .extend_from_slice(&footer(self.count, self.crc_of_crcs));
        self.out.write_all(&self.buf)?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn encode_row(&mut self, row: &[Value]) -> Result<(), WireError> {
        let schema = self.schema;
        for (i, (ty, value)) in schema.iter().zip(row).enumerate() {
            if matches!(value, Value::Null) {
                continue;
            }
            let field = i as u32 + 1;
            put_tag(&mut self.buf, field, wire_type(ty));
            self.update(&field.to_le_bytes());
            self.encode_value(ty, value).map_err(|e| e.in_column(i))?;
        }
        Ok(())
    }

    /// Adds `bytes` to the record's checksum (a stream: gathering pieces before checksumming
    /// them gives the same CRC as checksumming each in turn).
    fn update(&mut self, bytes: &[u8]) {
        if bytes.len() <= CRC_GATHER {
            self.crc_pending.extend_from_slice(bytes);
        } else {
            self.fold_crc();
            self.crc = crc32c::crc32c_append(self.crc, bytes);
        }
    }

    /// Folds the gathered pieces into the record's checksum.
    fn fold_crc(&mut self) {
        if !self.crc_pending.is_empty() {
            self.crc = crc32c::crc32c_append(self.crc, &self.crc_pending);
            self.crc_pending.clear();
        }
    }

    fn encode_value(&mut self, ty: &ColumnType, value: &Value) -> Result<(), WireError> {
        let mismatch = || WireError::TypeMismatch {
            column: None,
            expected: ty.to_string(),
            found: value.kind(),
        };
        check_fits(ty, value)?;
        match (ty, value) {
            (ColumnType::Boolean, Value::Boolean(b)) => {
                put_varint(&mut self.buf, u64::from(*b));
                self.update(&[u8::from(*b)]);
            }
            (t, Value::Int(n)) if t.integer_range().is_some() => self.put_long(*n),
            (ColumnType::Float, Value::Float(x)) => {
                let bytes = x.to_le_bytes();
                self.buf.extend_from_slice(&bytes);
                self.update(&bytes);
            }
            (ColumnType::Double, Value::Double(x)) => {
                let bytes = x.to_le_bytes();
                self.buf.extend_from_slice(&bytes);
                self.update(&bytes);
            }
            (ColumnType::Decimal(_), Value::Decimal(text)) => self.put_bytes(text.as_bytes()),
            (ColumnType::String | ColumnType::Json, Value::String(s)) => {
                self.put_bytes(s.as_bytes());
            }
            (ColumnType::Varchar(_) | ColumnType::Char(_), Value::String(s)) => {
                self.put_bytes(s.as_bytes());
            }
            (ColumnType::Binary, Value::Binary(b)) => self.put_bytes(b),
            (ColumnType::Date, Value::Date(n))
            | (ColumnType::Datetime, Value::Datetime(n))
            | (ColumnType::IntervalYearMonth, Value::IntervalYearMonth(n)) => self.put_long(*n),
            (
                ColumnType::Timestamp | ColumnType::TimestampNtz,
                Value::Timestamp { seconds, nanos },
            )
            | (ColumnType::IntervalDayTime, Value::IntervalDayTime { seconds, nanos }) => {
                self.put_long(*seconds);
                put_varint(&mut self.buf, u64::from(zigzag32(*nanos)));
                self.update(&nanos.to_le_bytes());
            }
            (ColumnType::Array(elem), Value::Array(items)) => self.put_array(elem, items)?,
            (ColumnType::Map(k, v), Value::Map(entries)) => {
                let keys: Vec<Value> = entries.iter().map(|(k, _)| k.clone()).collect();
                let values: Vec<Value> = entries.iter().map(|(_, v)| v.clone()).collect();
                self.put_array(k, &keys)?;
                self.put_array(v, &values)?;
            }
            (ColumnType::Struct(fields), Value::Struct(items)) => {
                if fields.len() != items.len() {
                    return Err(mismatch());
                }
                for ((_, fty), item) in fields.iter().zip(items) {
                    self.put_nullable(fty, item)?;
                }
            }
            _ => return Err(mismatch()),
        }
        Ok(())
    }

    fn put_array(&mut self, elem: &ColumnType, items: &[Value]) -> Result<(), WireError> {
        put_varint(&mut self.buf, items.len() as u64);
        for item in items {
            self.put_nullable(elem, item)?;
        }
        Ok(())
    }

    fn put_nullable(&mut self, ty: &ColumnType, value: &Value) -> Result<(), WireError> {
        if matches!(value, Value::Null) {
            put_varint(&mut self.buf, 1);
            Ok(())
        } else {
            put_varint(&mut self.buf, 0);
            self.encode_value(ty, value)
        }
    }

    fn put_long(&mut self, n: i64) {
        put_varint(&mut self.buf, zigzag64(n));
        self.update(&n.to_le_bytes());
    }

    fn put_bytes(&mut self, bytes: &[u8]) {
        put_varint(&mut self.buf, bytes.len() as u64);
        self.buf.extend_from_slice(bytes);
        self.update(bytes);
    }
}

/// Whether a cell is inside what its column type allows: the integer type's range, a decimal's
/// precision and scale, a VARCHAR or CHAR's length, a timestamp's nanoseconds. The writer refuses
/// such cells and the reader refuses streams carrying them, as MaxCompute does. Cells of another
/// kind than the type pass here; the codec reports those as type mismatches.
fn check_fits(ty: &ColumnType, value: &Value) -> Result<(), WireError> {
    let out_of_range = |shown: String| WireError::OutOfRange {
        column: None,
        ty: ty.to_string(),
        value: shown,
    };
    match (ty, value) {
        (t, Value::Int(n)) => match t.integer_range() {
            Some((lo, hi)) if *n < lo || *n > hi => Err(out_of_range(n.to_string())),
            _ => Ok(()),
        },
        (ColumnType::Decimal(ps), Value::Decimal(text)) if !is_plain_decimal(text, *ps) => {
            Err(out_of_range(text.clone()))
        }
        (ColumnType::Varchar(max) | ColumnType::Char(max), Value::String(s))
            if s.chars().count() > *max as usize =>
        {
            Err(out_of_range(s.chars().take(64).collect()))
        }
        (
            ColumnType::Timestamp | ColumnType::TimestampNtz | ColumnType::IntervalDayTime,
            Value::Timestamp { nanos, .. } | Value::IntervalDayTime { nanos, .. },
        ) if !(0..1_000_000_000).contains(nanos) => {
            Err(out_of_range(format!("{nanos} nanoseconds")))
        }
        _ => Ok(()),
    }
}

/// Whether a stored CRC matches the computed one. Fuzz builds (`--cfg fuzzing`, set by
/// `cargo fuzz`) accept any CRC: random inputs would almost never carry a right one, and the
/// fuzzer would stop at the first checksum instead of reaching the decoder behind it.
fn crc_matches(stored: u32, computed: u32) -> bool {
    cfg!(fuzzing) || stored == computed
}

/// Reads rows from a complete Tunnel record stream held in memory, checking every record CRC,
/// the record count and the CRC of CRCs.
#[derive(Debug)]
pub struct RecordReader<'a> {
    schema: &'a [ColumnType],
    data: &'a [u8],
    pos: usize,
    crc: u32,
    crc_of_crcs: u32,
    count: u64,
    done: bool,
}

impl<'a> RecordReader<'a> {
    /// A reader of `data` (already inflated) whose records follow `schema`.
    pub fn new(schema: &'a [ColumnType], data: &'a [u8]) -> Self {
        RecordReader {
            schema,
            data,
            pos: 0,
            crc: 0,
            crc_of_crcs: 0,
            count: 0,
            done: false,
        }
    }

    /// Reads every remaining row.
    pub fn read_all(mut self) -> Result<Vec<Vec<Value>>, WireError> {
        let mut rows = Vec::new();
        while let Some(row) = self.next_row()? {
            rows.push(row);
        }
        Ok(rows)
    }

    /// The next row, or `None` after the footer has been read and verified.
    pub fn next_row(&mut self) -> Result<Option<Vec<Value>>, WireError> {
        if self.done {
            return Ok(None);
        }
        let mut row = vec![Value::Null; self.schema.len()];
        self.crc = 0;
        loop {
            let at = self.pos;
            let tag = self.varint()?;
            let field = (tag >> 3) as u32;
            let wt = (tag & 7) as u32;
            match field {
                END_RECORD => {
                    let stored = self.varint()? as u32;
                    if !crc_matches(stored, self.crc) {
                        return Err(WireError::Checksum {
                            what: "record",
                            offset: at,
                        });
                    }
                    self.crc_of_crcs =
                        crc32c::crc32c_append(self.crc_of_crcs, &self.crc.to_le_bytes());
                    self.count += 1;
                    return Ok(Some(row));
                }
                META_COUNT => {
                    self.read_footer(at)?;
                    return Ok(None);
                }
                f if f >= 1 && (f as usize) <= self.schema.len() => {
                    let ty = &self.schema[f as usize - 1];
                    if wt != wire_type(ty) {
                        return Err(WireError::Malformed {
                            offset: at,
                            reason: format!("wire type {wt} for a {ty} column"),
                        });
                    }
                    self.crc = crc32c::crc32c_append(self.crc, &f.to_le_bytes());
                    row[f as usize - 1] = self.value(ty)?;
                }
                f => {
                    return Err(WireError::Malformed {
                        offset: at,
                        reason: format!("unexpected field number {f}"),
                    });
                }
            }
        }
    }

    fn read_footer(&mut self, at: usize) -> Result<(), WireError> {
        let count = unzigzag64(self.varint()?);
        if count < 0 || count as u64 != self.count {
            return Err(WireError::Malformed {
                offset: at,
                reason: format!("footer says {count} records, stream held {}", self.count),
            });
        }
        let mut tag_at = self.pos;
        let mut field = (self.varint()? >> 3) as u32;
        if field != META_CHECKSUM {
            // Server metrics trailer: a length-delimited string under its own CRC.
            self.crc = crc32c::crc32c_append(0, &field.to_le_bytes());
            let metrics = self.bytes()?.to_vec();
            self.update(&metrics);
            let end = (self.varint()? >> 3) as u32;
            let stored = self.varint()? as u32;
            if end != END_METRICS || !crc_matches(stored, self.crc) {
                return Err(WireError::Checksum {
                    what: "metrics trailer",
                    offset: tag_at,
                });
            }
            tag_at = self.pos;
            field = (self.varint()? >> 3) as u32;
        }
        if field != META_CHECKSUM {
            return Err(WireError::Malformed {
                offset: tag_at,
                reason: "missing stream checksum".into(),
            });
        }
        if !crc_matches(self.varint()? as u32, self.crc_of_crcs) {
            return Err(WireError::Checksum {
                what: "stream",
                offset: tag_at,
            });
        }
        if self.pos != self.data.len() {
            return Err(WireError::Malformed {
                offset: self.pos,
                reason: "data after the stream footer".into(),
            });
        }
        self.done = true;
        Ok(())
    }

    fn update(&mut self, bytes: &[u8]) {
        self.crc = crc32c::crc32c_append(self.crc, bytes);
    }

    fn value(&mut self, ty: &ColumnType) -> Result<Value, WireError> {
        let at = self.pos;
        let value = match ty {
            ColumnType::Boolean => {
                let b = self.varint()? != 0;
                self.update(&[u8::from(b)]);
                Value::Boolean(b)
            }
            ColumnType::Tinyint | ColumnType::Smallint | ColumnType::Int | ColumnType::Bigint => {
                Value::Int(self.long()?)
            }
            ColumnType::Float => {
                let bytes: [u8; 4] = self.take(4)?.try_into().map_err(|_| self.truncated())?;
                self.update(&bytes);
                Value::Float(f32::from_le_bytes(bytes))
            }
            ColumnType::Double => {
                let bytes: [u8; 8] = self.take(8)?.try_into().map_err(|_| self.truncated())?;
                self.update(&bytes);
                Value::Double(f64::from_le_bytes(bytes))
            }
            ColumnType::Decimal(_) => Value::Decimal(self.utf8(at)?),
            ColumnType::String
            | ColumnType::Json
            | ColumnType::Varchar(_)
            | ColumnType::Char(_) => Value::String(self.utf8(at)?),
            ColumnType::Binary => {
                let b = self.bytes()?.to_vec();
                self.update(&b);
                Value::Binary(b)
            }
            ColumnType::Date => Value::Date(self.long()?),
            ColumnType::Datetime => Value::Datetime(self.long()?),
            ColumnType::IntervalYearMonth => Value::IntervalYearMonth(self.long()?),
            ColumnType::Timestamp | ColumnType::TimestampNtz | ColumnType::IntervalDayTime => {
                let seconds = self.long()?;
                let nanos = unzigzag32(self.varint()? as u32);
                self.update(&nanos.to_le_bytes());
                if matches!(ty, ColumnType::IntervalDayTime) {
                    Value::IntervalDayTime { seconds, nanos }
                } else {
                    Value::Timestamp { seconds, nanos }
                }
            }
            ColumnType::Array(elem) => Value::Array(self.array(elem)?),
            ColumnType::Map(k, v) => {
                let keys = self.array(k)?;
                let values = self.array(v)?;
                if keys.len() != values.len() {
                    return Err(WireError::Malformed {
                        offset: at,
                        reason: "map with unequal key and value counts".into(),
                    });
                }
                Value::Map(keys.into_iter().zip(values).collect())
            }
            ColumnType::Struct(fields) => {
                let mut items = Vec::with_capacity(fields.len());
                for (_, fty) in fields {
                    items.push(self.nullable(fty)?);
                }
                Value::Struct(items)
            }
        };
        check_fits(ty, &value).map_err(|e| WireError::Malformed {
            offset: at,
            reason: match e {
                WireError::OutOfRange { ty, value, .. } => format!("'{value}' does not fit {ty}"),
                other => other.to_string(),
            },
        })?;
        Ok(value)
    }

    fn array(&mut self, elem: &ColumnType) -> Result<Vec<Value>, WireError> {
        let n = self.varint()? as u32 as usize;
        // Each element takes at least one byte, so a count beyond the data left is corrupt.
        if n > self.data.len() - self.pos {
            return Err(self.truncated());
        }
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(self.nullable(elem)?);
        }
        Ok(items)
    }

    fn nullable(&mut self, ty: &ColumnType) -> Result<Value, WireError> {
        if self.varint()? != 0 {
            Ok(Value::Null)
        } else {
            self.value(ty)
        }
    }

    fn long(&mut self) -> Result<i64, WireError> {
        let n = unzigzag64(self.varint()?);
        self.update(&n.to_le_bytes());
        Ok(n)
    }

    fn utf8(&mut self, at: usize) -> Result<String, WireError> {
        let bytes = self.bytes()?;
        let text = std::str::from_utf8(bytes)
            .map_err(|_| WireError::Malformed {
                offset: at,
                reason: "string is not valid UTF-8".into(),
            })?
            .to_owned();
        self.update(text.as_bytes());
        Ok(text)
    }

    fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.varint()?;
        let len = usize::try_from(len).map_err(|_| self.truncated())?;
        self.take(len)
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], WireError> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|&end| end <= self.data.len())
            .ok_or_else(|| self.truncated())?;
        let slice = &self.data[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    /// A varint of up to ten bytes: pyodps writes a CRC with bit 31 set sign-extended to 64 bits.
    fn varint(&mut self) -> Result<u64, WireError> {
        let mut result = 0u64;
        for i in 0..10 {
            let byte = *self.data.get(self.pos).ok_or_else(|| self.truncated())?;
            self.pos += 1;
            result |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(result);
            }
        }
        Err(WireError::Malformed {
            offset: self.pos,
            reason: "varint longer than ten bytes".into(),
        })
    }

    fn truncated(&self) -> WireError {
        WireError::Truncated { offset: self.pos }
    }
}

fn wire_type(ty: &ColumnType) -> u32 {
    match ty {
        ColumnType::Double => WIRETYPE_FIXED64,
        ColumnType::Float => WIRETYPE_FIXED32,
        ColumnType::Boolean
        | ColumnType::Tinyint
        | ColumnType::Smallint
        | ColumnType::Int
        | ColumnType::Bigint
        | ColumnType::Date
        | ColumnType::Datetime
        | ColumnType::IntervalYearMonth => WIRETYPE_VARINT,
        _ => WIRETYPE_LENGTH_DELIMITED,
    }
}

/// The footer that ends a record stream of `count` records whose CRC of CRCs is `checksum`.
/// Streams are joined by concatenating their bodies and writing one footer with the counts
/// summed and the checksums combined (`crc32c::crc32c_combine` over 4 bytes a record).
pub fn footer(count: u64, checksum: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    put_tag(&mut out, META_COUNT, WIRETYPE_VARINT);
    put_varint(&mut out, zigzag64(count as i64));
    put_tag(&mut out, META_CHECKSUM, WIRETYPE_VARINT);
    put_varint(&mut out, u64::from(checksum));
    out
}

fn put_tag(buf: &mut Vec<u8>, field: u32, wt: u32) {
    put_varint(buf, (u64::from(field) << 3) | u64::from(wt));
}

fn put_varint(buf: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        buf.push((n as u8) | 0x80);
        n >>= 7;
    }
    buf.push(n as u8);
}

fn zigzag64(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

fn unzigzag64(n: u64) -> i64 {
    ((n >> 1) as i64) ^ -((n & 1) as i64)
}

fn zigzag32(n: i32) -> u32 {
    ((n << 1) ^ (n >> 31)) as u32
}

fn unzigzag32(n: u32) -> i32 {
    ((n >> 1) as i32) ^ -((n & 1) as i32)
}

#[cfg(test)]
mod tests;
