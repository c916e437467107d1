//! One call of one stage (`ChainRun::call`, for `isolate` in `run.rs`): its input lowered as the
//! stage's world takes it (records listed or packed, rows listed, projected or packed) and its
//! answer lifted or unpacked into rows, a trap kept apart as its description.

use std::borrow::Cow;
use std::time::Duration;

use super::super::bindings::{BatchOutput, RecordBatch, RecordError, Row};
use super::super::error::TransformError;
use super::super::packed;
use super::super::records;
use super::super::stage::{Bound, Live, LoadedStage, deadline_ticks};
use super::{ChainRun, Items, contract};

impl ChainRun<'_> {
    /// One call; the inner `Err` is a trap's description.
    pub(super) fn call(
        &mut self,
        stage: usize,
        items: &Items<'_>,
    ) -> Result<Result<BatchOutput, String>, TransformError> {
        let loaded = &self.chain.stages[stage];
        if self.live[stage].is_none() {
            self.live[stage] = Some(loaded.instantiate(&self.chain.engine)?.0);
        }
        let Some(Live { store, bound }) = self.live[stage].as_mut() else {
            unreachable!()
        };
        store.data_mut().start_call();
        store.set_epoch_deadline(deadline_ticks(loaded.spec.limits.call_deadline));
        // The whole input goes as it is; only a bisected half is copied (and renumbered, since
        // sources are indices into the batch as the call sees it; `window`).
        let result = match (&*bound, *items) {
            (Bound::Parser(p), Items::Records { batch, start, end }) => p
                .kafka2mc_transform_parser()
                .call_parse(&mut *store, &window(batch, start, end)),
            // A packed parser's rows are read back here (WIT 1.3); bytes that break the layout
            // are the stage's fault, not a trap.
            (Bound::PackedParser(p), Items::Records { batch, start, end }) => match p
                .kafka2mc_transform_packed_parser()
                .call_parse_packed(&mut *store, &window(batch, start, end))
            {
                Ok(out) => Ok(unpacked(loaded, out.cells, out.sources, out.errors)?),
                Err(e) => Err(e),
            },
            // A packed-records parser (WIT 1.5) takes a window of small records packed (a bisected
            // half is not copied into a batch of its own either) and answers as a packed parser;
            // larger records go to its `parse-packed` (`records::worth_packing`).
            (Bound::PackedRecordsParser(p), Items::Records { batch, start, end })
                if records::worth_packing(&batch.records[start..end]) =>
            {
                let mut bytes = std::mem::take(&mut self.packed_records);
                bytes.clear();
                records::pack(&batch.records[start..end], &mut bytes);
                let called = p
                    .kafka2mc_transform_packed_records_parser()
                    .call_parse_records_packed(
                        &mut *store,
                        &batch.topic,
                        batch.partition,
                        (end - start) as u32,
                        &bytes,
                    );
                self.packed_records = bytes;
                match called {
                    Ok(out) => Ok(unpacked(loaded, out.cells, out.sources, out.errors)?),
                    Err(e) => Err(e),
                }
            }
            (Bound::PackedRecordsParser(p), Items::Records { batch, start, end }) => match p
                .kafka2mc_transform_packed_parser()
                .call_parse_packed(&mut *store, &window(batch, start, end))
            {
                Ok(out) => Ok(unpacked(loaded, out.cells, out.sources, out.errors)?),
                Err(e) => Err(e),
            },
            // A packed row stage (WIT 1.4) gets the cells it reads packed straight from the rows
            // (no row is copied, a bisected half neither) and answers packed.
            (Bound::PackedRow(b), Items::Rows { rows, start, end }) => {
                let mut cells = Vec::new();
                let read = loaded.projection.as_ref().map(|p| p.read());
                packed::pack(&rows[start..end], read, &mut cells);
                match b
                    .kafka2mc_transform_packed_row_transform()
                    .call_transform_packed(&mut *store, (end - start) as u32, &cells)
                {
                    Ok(out) => Ok(unpacked(loaded, out.cells, out.sources, out.errors)?),
                    Err(e) => Err(e),
                }
            }
            (Bound::Row(_) | Bound::ProjectedRow(_), Items::Rows { rows, start, end }) => {
                let called = if let Some(p) = &loaded.projection {
                    bound.transform(store, &p.narrow(&rows[start..end]))
                } else if start == 0 && end == rows.len() {
                    bound.transform(store, rows)
                } else {
                    let half: Vec<Row> = rows[start..end]
                        .iter()
                        .enumerate()
                        .map(|(i, row)| Row {
                            source: i as u32,
                            cells: row.cells.clone(),
                        })
                        .collect();
                    bound.transform(store, &half)
                };
                match called {
                    Some(result) => result,
                    None => {
                        return Err(contract(
                            &loaded.spec.name,
                            "stage kind does not match its input".into(),
                        ));
                    }
                }
            }
            _ => {
                return Err(contract(
                    &loaded.spec.name,
                    "stage kind does not match its input".into(),
                ));
            }
        };
        Ok(result.map_err(|e| describe_trap(&e, loaded.spec.limits.call_deadline)))
    }
}

/// A stage's packed answer read back into rows; bytes that break the layout break the contract.
fn unpacked(
    loaded: &LoadedStage,
    cells: Vec<u8>,
    sources: Vec<u32>,
    errors: Vec<RecordError>,
) -> Result<BatchOutput, TransformError> {
    let out = packed::Packed {
        cells,
        sources,
        errors,
    };
    packed::unpack(out, loaded.width()).map_err(|reason| contract(&loaded.spec.name, reason))
}

/// Records `start..end` of a batch: the batch itself when that is all of it, a copy of the window
/// when a trap is being isolated.
fn window(batch: &RecordBatch, start: usize, end: usize) -> Cow<'_, RecordBatch> {
    if start == 0 && end == batch.records.len() {
        Cow::Borrowed(batch)
    } else {
        Cow::Owned(RecordBatch {
            topic: batch.topic.clone(),
            partition: batch.partition,
            records: batch.records[start..end].to_vec(),
        })
    }
}

fn describe_trap(e: &wasmtime::Error, deadline: Duration) -> String {
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => format!("deadline of {deadline:?} per call exceeded"),
        Some(trap) => format!("{trap}: {}", e.root_cause()),
        None => format!("{}", e.root_cause()),
    }
}
