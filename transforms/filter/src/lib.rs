//! `filter`: a row-transform stage that keeps rows matching a predicate over their columns, e.g.
//! the DataWorks vehicle example `average_speed <= 90 && total_miles <= 200000`.
//!
//! Configuration: `predicate` (required). A bad predicate fails at configure time with the
//! position of the error. Numbers, decimals, dates and times compare as numbers (DATE in days,
//! DATETIME in milliseconds, TIMESTAMP in seconds); strings by code point; NULL is unknown.

pub mod predicate;

/// The component glue: WIT bindings and the exported stage. Only built for WebAssembly, so
/// the pure logic above also compiles natively (unit tests, the benchmark's native baseline).
#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "projected-row-stage",
    });

    use std::sync::Mutex;

    use crate::predicate::{Expr, Val};
    use exports::kafka2mc::transform::projection::Guest as Projection;
    use exports::kafka2mc::transform::row_transform::Guest;
    use kafka2mc::transform::types::{BatchOutput, Cell, Column, Row, StageInfo};

    /// The predicate over the columns it reads, and those columns (ascending input indexes).
    static PREDICATE: Mutex<Option<(Expr, Vec<u32>)>> = Mutex::new(None);

    fn to_val(cell: &Cell) -> Val {
        match cell {
            Cell::Null => Val::Null,
            Cell::Boolean(b) => Val::Bool(*b),
            Cell::Int(n) => Val::Num(*n as f64),
            Cell::Double(x) => Val::Num(*x),
            Cell::Decimal(d) => d.parse().map_or(Val::Null, Val::Num),
            Cell::String(s) | Cell::Json(s) => Val::Str(s.clone()),
            Cell::Binary(_) => Val::Null,
            Cell::Date(d) => Val::Num(f64::from(*d)),
            Cell::Datetime(ms) => Val::Num(*ms as f64),
            Cell::Timestamp(t) | Cell::IntervalDayTime(t) => {
                Val::Num(t.seconds as f64 + f64::from(t.nanos) / 1e9)
            }
            Cell::IntervalYearMonth(m) => Val::Num(*m as f64),
        }
    }

    struct Filter;

    impl Guest for Filter {
        fn configure(
            config: Vec<(String, String)>,
            input: Vec<Column>,
        ) -> Result<StageInfo, String> {
            let mut text = None;
            for (key, value) in &config {
                match key.as_str() {
                    "predicate" => text = Some(value.clone()),
                    other => {
                        return Err(format!(
                            "unknown key '{other}': filter takes only 'predicate'"
                        ));
                    }
                }
            }
            let text = text.ok_or(
                "predicate is required, e.g. average_speed <= 90 && total_miles <= 200000",
            )?;
            let names: Vec<String> = input.iter().map(|c| c.name.clone()).collect();
            let expr = crate::predicate::parse(&text, &names)
                .map_err(|e| format!("predicate '{text}': {e}"))?;
            // The host passes only the columns the predicate reads and puts the others back
            // itself (WIT 1.2 `projection`), so the predicate is rewritten over those.
            let read = expr.columns();
            let expr = expr.project(&read);
            let read = read.into_iter().map(|i| i as u32).collect();
            *PREDICATE
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((expr, read));
            Ok(StageInfo {
                name: "filter".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                output: input,
            })
        }

        fn transform(rows: Vec<Row>) -> BatchOutput {
            let guard = PREDICATE
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let rows = match guard.as_ref() {
                Some((expr, _)) => rows
                    .into_iter()
                    .filter(|row| {
                        let vals: Vec<Val> = row.cells.iter().map(to_val).collect();
                        expr.eval(&vals) == Some(true)
                    })
                    .collect(),
                None => rows,
            };
            BatchOutput {
                rows,
                errors: Vec::new(),
            }
        }
    }

    impl Projection for Filter {
        fn columns_read() -> Vec<u32> {
            PREDICATE
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .as_ref()
                .map(|(_, read)| read.clone())
                .unwrap_or_default()
        }
    }

    export!(Filter);
}
