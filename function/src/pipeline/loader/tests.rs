//! How a load plans its blocks from the staged ones.

use super::*;
use crate::maxcompute::Compression;
use crate::pipeline::commit::{Counts, Destination, Join, SessionRecord, StagedBlock};

fn piece(key: &str, rows: u64, raw: Option<u64>) -> StagedBlock {
    StagedBlock {
        id: 0,
        key: key.into(),
        rows,
        compression: Compression::Deflate,
        join: raw.map(|raw| Join {
            body: 10,
            raw,
            adler32: 1,
            checksum: 0,
        }),
    }
}

fn intent(start: i64, dests: &[(&str, Vec<StagedBlock>)]) -> Intent {
    Intent {
        batch: BatchId {
            cluster: "c".into(),
            topic: "t".into(),
            partition: 0,
            start,
            end: start + 10,
        },
        counts: Counts::default(),
        modules: Vec::new(),
        destinations: dests
            .iter()
            .map(|(p, blocks)| Destination {
                partition: (*p).into(),
                rows: blocks.iter().map(|b| b.rows).sum(),
                blocks: blocks.clone(),
                session: SessionRecord::default(),
            })
            .collect(),
        dead_letters_key: None,
        project: None,
        table: None,
        last_record: None,
        load: None,
    }
}

#[test]
fn staged_blocks_of_many_batches_join_per_destination_until_each_reaches_the_block_size() {
    let intents = [
        intent(
            0,
            &[
                ("ds=1", vec![piece("a", 1, Some(40))]),
                ("ds=2", vec![piece("b", 2, Some(10))]),
            ],
        ),
        intent(
            10,
            &[(
                "ds=1",
                vec![piece("c", 3, Some(50)), piece("d", 4, Some(30))],
            )],
        ),
        // A block an older release staged (no join data) goes alone.
        intent(
            20,
            &[("ds=1", vec![piece("e", 5, None), piece("f", 6, Some(1))])],
        ),
    ];
    let plan = plan_blocks(&intents, 100);
    assert_eq!(plan.len(), 2);
    let ds1 = &plan[0];
    assert_eq!(ds1.partition, "ds=1");
    assert_eq!(ds1.rows, 1 + 3 + 4 + 5 + 6);
    let keys: Vec<Vec<&str>> = ds1
        .blocks
        .iter()
        .map(|b| b.pieces.iter().map(|p| p.key.as_str()).collect())
        .collect();
    // a+c = 90 is under 100, so d joins them (120); e has no join data and goes alone; f opens
    // the destination's last block, the one allowed under the size.
    assert_eq!(keys, vec![vec!["a", "c", "d"], vec!["e"], vec!["f"]]);
    assert_eq!(
        ds1.blocks.iter().map(|b| b.id).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert_eq!(ds1.blocks[0].rows, 1 + 3 + 4);
    assert_eq!(plan[1].partition, "ds=2");
    assert_eq!(plan[1].blocks.len(), 1);
}

#[test]
fn staged_blocks_of_another_compression_open_a_block_of_their_own() {
    // A rolling deploy or a config change staged the next batch in LZ4: a joined block holds
    // one compression only.
    let lz4 = |key, rows, raw| StagedBlock {
        compression: Compression::Lz4,
        ..piece(key, rows, Some(raw))
    };
    let intents = [
        intent(0, &[("ds=1", vec![piece("a", 1, Some(10))])]),
        intent(10, &[("ds=1", vec![lz4("b", 2, 10), lz4("c", 3, 10)])]),
        intent(20, &[("ds=1", vec![piece("d", 4, Some(10))])]),
    ];
    let plan = plan_blocks(&intents, 100);
    let keys: Vec<Vec<&str>> = plan[0]
        .blocks
        .iter()
        .map(|b| b.pieces.iter().map(|p| p.key.as_str()).collect())
        .collect();
    assert_eq!(keys, vec![vec!["a"], vec!["b", "c"], vec!["d"]]);
    assert_eq!(plan[0].rows, 10);
}
