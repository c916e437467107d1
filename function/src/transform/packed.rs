//! Packed rows (WIT 1.3, interface `packed-parser`; WIT 1.4, `packed-row-transform`): a parser
//! stage that exports `parse-packed` returns its rows as one byte list instead of a `list<row>`,
//! and a row stage that exports `transform-packed` also takes them so; the chain run (`run.rs`)
//! packs a row stage's input here ([`pack`]) and reads every packed answer back into the rows the
//! next stage takes ([`unpack`]). The layout is in wit/README.md ("1.3: packed rows").
//!
//! Why: a `list<row>` costs the guest an allocation per row and per text cell (freed again after
//! the call) and the host a generic lift of every cell; the benchmark's profile put that crossing
//! near half of the chain's time (docs/bench/README.md, "`bench-transforms`").

use super::bindings::{BatchOutput, Cell, Instant, RecordError, Row};

/// A stage's packed answer: `packed-output` (a parser) or `packed-rows` (a row stage).
pub(crate) struct Packed {
    pub(crate) cells: Vec<u8>,
    pub(crate) sources: Vec<u32>,
    pub(crate) errors: Vec<RecordError>,
}

/// The rows of a packed answer, each of `width` cells; an error is the way the bytes break the
/// layout, naming the row, the cell and the byte.
pub(crate) fn unpack(out: Packed, width: usize) -> Result<BatchOutput, String> {
    let mut reader = Reader {
        bytes: &out.cells,
        at: 0,
    };
    let mut rows = Vec::with_capacity(out.sources.len());
    for (r, &source) in out.sources.iter().enumerate() {
        let mut cells = Vec::with_capacity(width);
        for c in 0..width {
            let cell = reader
                .cell()
                .map_err(|e| format!("packed row {r}, cell {c}: {e}"))?;
            cells.push(cell);
        }
        rows.push(Row { source, cells });
    }
    if reader.at != reader.bytes.len() {
        return Err(format!(
            "{} bytes of packed cells are left after the last of {} rows of {width} cells",
            reader.bytes.len() - reader.at,
            rows.len()
        ));
    }
    Ok(BatchOutput {
        rows,
        errors: out.errors,
    })
}

/// Packs `rows` for a row stage: cells `read` of each (every cell when `None`), row after row; a
/// row short of a cell gives NULL for it, as the listed path does (`projection.rs`).
pub(crate) fn pack(rows: &[Row], read: Option<&[usize]>, out: &mut Vec<u8>) {
    for row in rows {
        match read {
            Some(read) => {
                for &c in read {
                    put(row.cells.get(c).unwrap_or(&Cell::Null), out);
                }
            }
            None => row.cells.iter().for_each(|cell| put(cell, out)),
        }
    }
}

/// One cell in the layout: its case's index, then its value.
fn put(cell: &Cell, out: &mut Vec<u8>) {
    match cell {
        Cell::Null => out.push(0),
        Cell::Boolean(b) => tagged(out, 1, &[u8::from(*b)]),
        Cell::Int(n) => tagged(out, 2, &n.to_le_bytes()),
        Cell::Double(d) => tagged(out, 3, &d.to_le_bytes()),
        Cell::Decimal(s) => text(out, 4, s.as_bytes()),
        Cell::String(s) => text(out, 5, s.as_bytes()),
        Cell::Binary(b) => text(out, 6, b),
        Cell::Date(d) => tagged(out, 7, &d.to_le_bytes()),
        Cell::Datetime(ms) => tagged(out, 8, &ms.to_le_bytes()),
        Cell::Timestamp(i) => instant(out, 9, i),
        Cell::IntervalDayTime(i) => instant(out, 10, i),
        Cell::IntervalYearMonth(m) => tagged(out, 11, &m.to_le_bytes()),
        Cell::Json(s) => text(out, 12, s.as_bytes()),
    }
}

fn tagged(out: &mut Vec<u8>, tag: u8, value: &[u8]) {
    out.push(tag);
    out.extend_from_slice(value);
}

fn text(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    // A cell of 4 GiB or more is never in a call: the host caps a call's bytes far below that.
    tagged(out, tag, &(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn instant(out: &mut Vec<u8>, tag: u8, at: &Instant) {
    tagged(out, tag, &at.seconds.to_le_bytes());
    out.extend_from_slice(&at.nanos.to_le_bytes());
}

/// A cursor over the packed cells.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(format!(
                "the cells end at byte {} but {n} more are needed at byte {}",
                self.bytes.len(),
                self.at
            ));
        };
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn i64(&mut self) -> Result<i64, String> {
        self.array().map(i64::from_le_bytes)
    }

    fn instant(&mut self) -> Result<Instant, String> {
        Ok(Instant {
            seconds: self.i64()?,
            nanos: self.array().map(u32::from_le_bytes)?,
        })
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let len = u32::from_le_bytes(self.array()?) as usize;
        self.take(len)
    }

    fn text(&mut self, case: &str) -> Result<String, String> {
        let at = self.at;
        let bytes = self.bytes()?;
        // The guest's text is checked with vector instructions (simdutf8, as `kafka-columns`
        // checks a record's value; std's check was 1.8 % of the function's instructions at 1 KB,
        // docs/bench/README.md, "Fewer checksum calls and a vector UTF-8 check"); std's own
        // check, only on failure, says where the bytes break.
        match simdutf8::basic::from_utf8(bytes) {
            Ok(text) => Ok(text.to_owned()),
            Err(_) => std::str::from_utf8(bytes)
                .map(str::to_owned)
                .map_err(|e| format!("the {case} at byte {at} is not UTF-8: {e}")),
        }
    }

    fn cell(&mut self) -> Result<Cell, String> {
        let [tag] = self.array()?;
        Ok(match tag {
            0 => Cell::Null,
            1 => match self.array()? {
                [0] => Cell::Boolean(false),
                [1] => Cell::Boolean(true),
                [b] => {
                    return Err(format!(
                        "boolean byte {b} at byte {} is not 0 or 1",
                        self.at - 1
                    ));
                }
            },
            2 => Cell::Int(self.i64()?),
            3 => Cell::Double(self.array().map(f64::from_le_bytes)?),
            4 => Cell::Decimal(self.text("decimal")?),
            5 => Cell::String(self.text("string")?),
            6 => Cell::Binary(self.bytes()?.to_vec()),
            7 => Cell::Date(self.array().map(i32::from_le_bytes)?),
            8 => Cell::Datetime(self.i64()?),
            9 => Cell::Timestamp(self.instant()?),
            10 => Cell::IntervalDayTime(self.instant()?),
            11 => Cell::IntervalYearMonth(self.i64()?),
            12 => Cell::Json(self.text("json")?),
            other => {
                return Err(format!(
                    "cell case {other} at byte {} is not a case of `cell` (0 to 12)",
                    self.at - 1
                ));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::bindings::{ErrorKind, RecordError};

    /// The layout written out by hand, as a guest in any language would write it.
    fn pack_by_hand(cells: &[Cell]) -> Vec<u8> {
        let mut b = Vec::new();
        let text = |b: &mut Vec<u8>, tag: u8, s: &[u8]| {
            b.push(tag);
            b.extend_from_slice(&(s.len() as u32).to_le_bytes());
            b.extend_from_slice(s);
        };
        for cell in cells {
            match cell {
                Cell::Null => b.push(0),
                Cell::Boolean(v) => b.extend_from_slice(&[1, u8::from(*v)]),
                Cell::Int(v) => {
                    b.push(2);
                    b.extend_from_slice(&v.to_le_bytes());
                }
                Cell::Double(v) => {
                    b.push(3);
                    b.extend_from_slice(&v.to_le_bytes());
                }
                Cell::Decimal(s) => text(&mut b, 4, s.as_bytes()),
                Cell::String(s) => text(&mut b, 5, s.as_bytes()),
                Cell::Binary(v) => text(&mut b, 6, v),
                Cell::Date(v) => {
                    b.push(7);
                    b.extend_from_slice(&v.to_le_bytes());
                }
                Cell::Datetime(v) => {
                    b.push(8);
                    b.extend_from_slice(&v.to_le_bytes());
                }
                Cell::Timestamp(i) | Cell::IntervalDayTime(i) => {
                    b.push(if matches!(cell, Cell::Timestamp(_)) {
                        9
                    } else {
                        10
                    });
                    b.extend_from_slice(&i.seconds.to_le_bytes());
                    b.extend_from_slice(&i.nanos.to_le_bytes());
                }
                Cell::IntervalYearMonth(v) => {
                    b.push(11);
                    b.extend_from_slice(&v.to_le_bytes());
                }
                Cell::Json(s) => text(&mut b, 12, s.as_bytes()),
            }
        }
        b
    }

    fn every_case() -> Vec<Cell> {
        let at = Instant {
            seconds: -1_700_000_000,
            nanos: 999_999_999,
        };
        vec![
            Cell::Null,
            Cell::Boolean(true),
            Cell::Boolean(false),
            Cell::Int(i64::MIN),
            Cell::Double(-0.125),
            Cell::Decimal("-123.4500".into()),
            Cell::String("北京 \u{1F600}".into()),
            Cell::String(String::new()),
            Cell::Binary(vec![0, 255, 7]),
            Cell::Date(-719_162),
            Cell::Datetime(1_704_067_200_123),
            Cell::Timestamp(at),
            Cell::IntervalDayTime(Instant {
                seconds: 86_400,
                nanos: 1,
            }),
            Cell::IntervalYearMonth(-13),
            Cell::Json(r#"{"a":[1,2]}"#.into()),
        ]
    }

    fn output(cells: Vec<u8>, sources: Vec<u32>) -> Packed {
        Packed {
            cells,
            sources,
            errors: vec![RecordError {
                source: 9,
                kind: ErrorKind::InvalidInput,
                code: "bad-json".into(),
                message: "m".into(),
            }],
        }
    }

    #[test]
    fn every_cell_case_reads_back_as_itself() {
        let row = every_case();
        let mut bytes = pack_by_hand(&row);
        bytes.extend(pack_by_hand(&row));
        let out = unpack(output(bytes, vec![3, 0]), row.len()).unwrap();
        assert_eq!(
            out.rows,
            vec![
                Row {
                    source: 3,
                    cells: row.clone()
                },
                Row {
                    source: 0,
                    cells: row
                }
            ]
        );
        assert_eq!(out.errors.len(), 1);
        assert_eq!(out.errors[0].source, 9);
    }

    #[test]
    fn the_host_packs_as_the_layout_says_and_only_the_cells_read() {
        let row = every_case();
        let rows = vec![
            Row {
                source: 0,
                cells: row.clone(),
            },
            Row {
                source: 1,
                cells: row.clone(),
            },
        ];
        let mut all = Vec::new();
        pack(&rows, None, &mut all);
        assert_eq!(all, [pack_by_hand(&row), pack_by_hand(&row)].concat());
        let mut some = Vec::new();
        pack(&rows, Some(&[6, 0, row.len() + 3]), &mut some);
        let picked = [row[6].clone(), row[0].clone(), Cell::Null];
        assert_eq!(
            some,
            [pack_by_hand(&picked), pack_by_hand(&picked)].concat()
        );
        let back = unpack(output(some, vec![0, 1]), 3).unwrap();
        assert!(back.rows.iter().all(|r| r.cells == picked));
    }

    #[test]
    fn rows_without_cells_and_no_rows_read() {
        let out = unpack(output(Vec::new(), vec![0, 1, 1]), 0).unwrap();
        assert_eq!(out.rows.len(), 3);
        assert!(out.rows.iter().all(|r| r.cells.is_empty()));
        assert!(
            unpack(output(Vec::new(), vec![]), 5)
                .unwrap()
                .rows
                .is_empty()
        );
    }

    #[test]
    fn broken_bytes_are_named_by_row_cell_and_byte() {
        let row = vec![Cell::Int(1), Cell::String("ab".into())];
        let good = pack_by_hand(&row);
        // Cut inside the string of the second row.
        let mut cut = good.clone();
        cut.extend_from_slice(&good[..good.len() - 1]);
        let e = unpack(output(cut, vec![0, 1]), 2).unwrap_err();
        assert!(
            e.starts_with("packed row 1, cell 1:") && e.contains("more are needed"),
            "{e}"
        );
        // A row short of cells leaves the next row's bytes misread or missing.
        let e = unpack(output(good.clone(), vec![0]), 3).unwrap_err();
        assert!(e.contains("packed row 0, cell 2"), "{e}");
        // Bytes beyond the rows the sources count.
        let mut extra = good.clone();
        extra.push(0);
        let e = unpack(output(extra, vec![0]), 2).unwrap_err();
        assert!(e.contains("1 bytes of packed cells are left"), "{e}");
        // An unknown case, a bad boolean, text that is not UTF-8, a length beyond the end.
        let e = unpack(output(vec![13], vec![0]), 1).unwrap_err();
        assert!(e.contains("cell case 13 at byte 0"), "{e}");
        let e = unpack(output(vec![1, 2], vec![0]), 1).unwrap_err();
        assert!(e.contains("boolean byte 2"), "{e}");
        let e = unpack(output(vec![5, 1, 0, 0, 0, 0xff], vec![0]), 1).unwrap_err();
        assert!(e.contains("the string at byte 1 is not UTF-8"), "{e}");
        let e = unpack(output(vec![6, 0xff, 0xff, 0xff, 0xff], vec![0]), 1).unwrap_err();
        assert!(e.contains("4294967295 more are needed"), "{e}");
    }
}
