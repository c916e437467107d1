//! `mask`: a row-transform stage that masks or pseudonymizes columns, deterministically.
//!
//! Configuration (string map):
//! - `column.<name>` = `phone` | `email` | `id-number` | `sha256` | `hmac-sha256` | `drop` | `null`
//! - `hmac-key` = the key for `hmac-sha256` (required when a column uses it)
//! - `debug` = `true` | `false`: print `mask: <n> rows` to stdout for every batch (a transform's
//!   stdout and stderr go to the function's logs, labelled with the stage's name)
//!
//! Rules (characters are Unicode scalar values, so JavaScript and Python ports agree):
//! - `phone`: keep the first 3 and the last 4 characters, `*` in between; 7 or fewer: all `*`.
//! - `email`: keep the first character of the local part, `*` for the rest of it, keep `@domain`;
//!   no `@`: all `*`.
//! - `id-number`: keep the first 6 and the last 4 characters, `*` in between; 10 or fewer: all `*`.
//! - `sha256`, `hmac-sha256`: lower-case hex of the digest of the UTF-8 value; the column
//!   becomes STRING.
//! - `drop`: the column is removed; `null`: every value becomes NULL.

pub mod packed;
pub mod rules;

/// Talc instead of the C library's dlmalloc: every row, cell and string crossing into and out of
/// the stage is one allocation, and dlmalloc's were a fifth of the stage's time
/// (`docs/bench/README.md`, "Talc in the shipped components").
#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

/// The component glue: WIT bindings and the exported stage. Only built for WebAssembly, so
/// the pure logic above also compiles natively (unit tests, the benchmark's native baseline).
#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "packed-row-stage",
    });

    use std::sync::Mutex;

    use exports::kafka2mc::transform::packed_row_transform::{
        Guest as PackedRowTransform, PackedRows,
    };
    use exports::kafka2mc::transform::projection::Guest as Projection;
    use exports::kafka2mc::transform::row_transform::Guest;
    use kafka2mc::transform::types::{
        BatchOutput, Cell, Column, ColumnType, ErrorKind, RecordError, Row, StageInfo,
    };

    use crate::rules::{Plan, Rule};

    static PLAN: Mutex<Option<Plan>> = Mutex::new(None);

    struct Mask;

    impl Guest for Mask {
        fn configure(
            config: Vec<(String, String)>,
            input: Vec<Column>,
        ) -> Result<StageInfo, String> {
            let names: Vec<(String, bool)> = input
                .iter()
                .map(|c| {
                    (
                        c.name.clone(),
                        matches!(
                            c.ty,
                            ColumnType::String | ColumnType::Varchar(_) | ColumnType::FixedChar(_)
                        ),
                    )
                })
                .collect();
            let plan = Plan::new(&config, &names)?;
            let mut output = Vec::new();
            for (column, rule) in input.into_iter().zip(&plan.rules) {
                match rule {
                    Some(Rule::Drop) => {}
                    Some(Rule::Sha256 | Rule::HmacSha256) => output.push(Column {
                        ty: ColumnType::String,
                        ..column
                    }),
                    Some(Rule::Null) => output.push(Column {
                        nullable: true,
                        ..column
                    }),
                    _ => output.push(column),
                }
            }
            *PLAN
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(plan);
            Ok(StageInfo {
                name: "mask".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                output,
            })
        }

        fn transform(rows: Vec<Row>) -> BatchOutput {
            let guard = PLAN
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let Some(plan) = guard.as_ref() else {
                // The host always configures first; without a plan, pass rows through unchanged.
                return BatchOutput {
                    rows,
                    errors: Vec::new(),
                };
            };
            if plan.debug {
                println!("mask: {} rows", rows.len());
            }
            // The host passes only the columns `columns_read` names, in its order, and puts
            // the others back itself (WIT 1.2 `projection`): cell k is input column read[k].
            let read = plan.columns_read();
            let rows = rows
                .into_iter()
                .map(|row| {
                    let cells = row
                        .cells
                        .into_iter()
                        .zip(&read)
                        .map(|(cell, &i)| match (plan.rules[i as usize], cell) {
                            (Some(Rule::Null), _) => Cell::Null,
                            (Some(rule), Cell::String(s)) => Cell::String(plan.apply(rule, &s)),
                            (_, other) => other,
                        })
                        .collect();
                    Row {
                        source: row.source,
                        cells,
                    }
                })
                .collect();
            BatchOutput {
                rows,
                errors: Vec::new(),
            }
        }
    }

    impl Projection for Mask {
        fn columns_read() -> Vec<u32> {
            PLAN.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .as_ref()
                .map(Plan::columns_read)
                .unwrap_or_default()
        }
    }

    impl PackedRowTransform for Mask {
        /// `transform` on packed rows (WIT 1.4): the same masking, read and written in place
        /// (`packed.rs`).
        fn transform_packed(rows: u32, cells: Vec<u8>) -> PackedRows {
            let guard = PLAN
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let done = match guard.as_ref() {
                Some(plan) => {
                    if plan.debug {
                        println!("mask: {rows} rows");
                    }
                    crate::packed::transform(plan, &plan.columns_read(), rows, &cells)
                }
                None => Err("transform-packed was called before configure".into()),
            };
            match done {
                Ok(cells) => PackedRows {
                    cells,
                    sources: (0..rows).collect(),
                    errors: Vec::new(),
                },
                // The host packed what it sends: input that breaks the layout is its fault,
                // and nothing of the batch can be trusted.
                Err(message) => PackedRows {
                    cells: Vec::new(),
                    sources: Vec::new(),
                    errors: vec![RecordError {
                        source: 0,
                        kind: ErrorKind::Fatal,
                        code: "bad-packed-input".into(),
                        message,
                    }],
                },
            }
        }
    }

    export!(Mask);
}
