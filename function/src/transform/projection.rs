//! Column projection for row stages that declare the columns they read (WIT 1.2, interface
//! `projection`; wit/README.md). Between two stages of a chain run (`run.rs`): which cells the
//! host passes a stage, and how it rebuilds the stage's full output rows from the cells the stage
//! returned and the pass-through cells of its input.
//!
//! Why: a masking stage that rewrites 2 of 9 columns otherwise receives every cell (a long text
//! column included), copied into its memory and back out of it; the benchmark's profile put that
//! crossing at a large share of the function's CPU (docs/bench/README.md).

use super::bindings::{Cell, Column, Row};

/// Where one output column's cells come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fill {
    /// The next cell of the row the stage returned.
    Stage,
    /// The cell of this input column, passed through by the host.
    Input(usize),
}

/// A row stage's declared projection, checked against its input and output columns at load time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Projection {
    /// The input columns the stage receives, ascending.
    read: Vec<usize>,
    /// One entry per output column.
    fill: Vec<Fill>,
}

impl Projection {
    /// Checks the stage's `columns-read` answer against its columns; an error is the reason the
    /// stage breaks the contract.
    pub(crate) fn new(read: &[u32], input: &[Column], output: &[Column]) -> Result<Self, String> {
        let read: Vec<usize> = read.iter().map(|&i| i as usize).collect();
        if let Some(bad) = read.iter().find(|&&i| i >= input.len()) {
            return Err(format!(
                "columns-read names input column {bad}, but the input has {} columns",
                input.len()
            ));
        }
        if read.windows(2).any(|w| w[0] >= w[1]) {
            return Err(format!(
                "columns-read must be ascending without repeats, got {read:?}"
            ));
        }
        let mut fill = Vec::with_capacity(output.len());
        for column in output {
            let passed = input.iter().enumerate().find(|(i, c)| {
                c.name.eq_ignore_ascii_case(&column.name) && read.binary_search(i).is_err()
            });
            fill.push(match passed {
                None => Fill::Stage,
                Some((i, c)) if c.ty == column.ty && c.nullable == column.nullable => {
                    Fill::Input(i)
                }
                Some((_, c)) => {
                    return Err(format!(
                        "output column '{}' passes input column '{}' through (the stage does not \
                         read it) but declares another type or nullability; read it, or keep \
                         its type",
                        column.name, c.name
                    ));
                }
            });
        }
        Ok(Projection { read, fill })
    }

    /// The input columns the stage receives, ascending (a packed row stage's input, `packed.rs`).
    pub(crate) fn read(&self) -> &[usize] {
        &self.read
    }

    /// The number of cells in each row the stage returns.
    pub(crate) fn width(&self) -> usize {
        self.fill.iter().filter(|f| **f == Fill::Stage).count()
    }

    /// The rows the stage receives: only the cells it reads; `source` is the row's place in
    /// `rows`, as the call sees the batch.
    pub(crate) fn narrow(&self, rows: &[Row]) -> Vec<Row> {
        rows.iter()
            .enumerate()
            .map(|(i, row)| Row {
                source: i as u32,
                cells: self
                    .read
                    .iter()
                    .map(|&c| row.cells.get(c).cloned().unwrap_or(Cell::Null))
                    .collect(),
            })
            .collect()
    }

    /// The stage's full output rows: each returned row's cells in their output places, the
    /// pass-through cells taken from `input[row.source]`. A source's cells move on its last
    /// use and are copied before it (one input may give several rows). The caller has checked
    /// every `source` against `input` and every row's width against [`Projection::width`].
    pub(crate) fn widen(&self, input: &mut [Row], rows: Vec<Row>) -> Vec<Row> {
        let mut uses = vec![0u32; input.len()];
        for row in &rows {
            if let Some(u) = uses.get_mut(row.source as usize) {
                *u += 1;
            }
        }
        rows.into_iter()
            .map(|row| {
                let s = row.source as usize;
                let last = uses.get_mut(s).is_some_and(|u| {
                    *u -= 1;
                    *u == 0
                });
                let mut own = row.cells.into_iter();
                let cells = self
                    .fill
                    .iter()
                    .map(|f| match *f {
                        Fill::Stage => own.next().unwrap_or(Cell::Null),
                        Fill::Input(c) => match input.get_mut(s).and_then(|r| r.cells.get_mut(c)) {
                            Some(cell) if last => std::mem::replace(cell, Cell::Null),
                            Some(cell) => cell.clone(),
                            None => Cell::Null,
                        },
                    })
                    .collect();
                Row {
                    source: row.source,
                    cells,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::bindings::ColumnType;

    fn col(name: &str, ty: ColumnType) -> Column {
        Column {
            name: name.into(),
            ty,
            nullable: true,
        }
    }

    fn text(s: &str) -> Cell {
        Cell::String(s.into())
    }

    /// id bigint, phone string, note string, secret string.
    fn input() -> Vec<Column> {
        vec![
            col("id", ColumnType::Bigint),
            col("phone", ColumnType::String),
            col("note", ColumnType::String),
            col("secret", ColumnType::String),
        ]
    }

    fn rows() -> Vec<Row> {
        (0..2)
            .map(|i| Row {
                source: i,
                cells: vec![
                    Cell::Int(i.into()),
                    text(&format!("1380000000{i}")),
                    text(&format!("note {i}")),
                    text("s"),
                ],
            })
            .collect()
    }

    #[test]
    fn a_stage_gets_only_what_it_reads_and_the_rest_passes_through() {
        // A mask that rewrites phone, drops secret and leaves id and note alone.
        let mut output = input();
        output.pop();
        output[1].ty = ColumnType::Varchar(20);
        let p = Projection::new(&[1, 3], &input(), &output).unwrap();
        assert_eq!(p.width(), 1);
        let mut rows = rows();
        let narrow = p.narrow(&rows[1..]);
        assert_eq!(
            narrow,
            vec![Row {
                source: 0,
                cells: vec![text("13800000001"), text("s")]
            }]
        );
        let returned = vec![
            Row {
                source: 1,
                cells: vec![text("138****0001")],
            },
            Row {
                source: 0,
                cells: vec![text("138****0000")],
            },
        ];
        let wide = p.widen(&mut rows, returned);
        assert_eq!(
            wide,
            vec![
                Row {
                    source: 1,
                    cells: vec![Cell::Int(1), text("138****0001"), text("note 1")]
                },
                Row {
                    source: 0,
                    cells: vec![Cell::Int(0), text("138****0000"), text("note 0")]
                },
            ]
        );
    }

    #[test]
    fn an_input_giving_several_rows_passes_its_cells_to_each() {
        let p = Projection::new(&[], &input(), &input()).unwrap();
        assert_eq!(p.width(), 0);
        let mut rows = rows();
        let returned = (0..3)
            .map(|_| Row {
                source: 1,
                cells: vec![],
            })
            .collect();
        let wide = p.widen(&mut rows, returned);
        assert_eq!(wide.len(), 3);
        for row in wide {
            assert_eq!(row.cells, rows_cells(1));
        }
    }

    fn rows_cells(i: u32) -> Vec<Cell> {
        rows().swap_remove(i as usize).cells
    }

    #[test]
    fn new_columns_and_read_columns_come_from_the_stage() {
        let mut output = input();
        output.push(col("phone_hash", ColumnType::String));
        let p = Projection::new(&[1], &input(), &output).unwrap();
        assert_eq!(p.width(), 2);
        let mut rows = rows();
        let returned = vec![Row {
            source: 0,
            cells: vec![text("p"), text("h")],
        }];
        assert_eq!(
            p.widen(&mut rows, returned)[0].cells,
            vec![
                Cell::Int(0),
                text("p"),
                text("note 0"),
                text("s"),
                text("h")
            ]
        );
    }

    #[test]
    fn a_broken_declaration_is_named() {
        let e = Projection::new(&[4], &input(), &input()).unwrap_err();
        assert!(
            e.contains("input column 4") && e.contains("4 columns"),
            "{e}"
        );
        let e = Projection::new(&[2, 1], &input(), &input()).unwrap_err();
        assert!(e.contains("ascending"), "{e}");
        let e = Projection::new(&[1, 1], &input(), &input()).unwrap_err();
        assert!(e.contains("ascending"), "{e}");
        let mut output = input();
        output[2].ty = ColumnType::Json;
        let e = Projection::new(&[1], &input(), &output).unwrap_err();
        assert!(e.contains("'note'") && e.contains("type"), "{e}");
        output[2] = Column {
            nullable: false,
            ..col("NOTE", ColumnType::String)
        };
        let e = Projection::new(&[1], &input(), &output).unwrap_err();
        assert!(e.contains("nullability"), "{e}");
    }
}
