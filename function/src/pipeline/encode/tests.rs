use super::*;
use crate::maxcompute::{Column, ColumnType, Compression, TableSchema, decode_block};
use crate::transform::bindings::Cell;
use crate::transform::bindings::{Column as WitColumn, ColumnType as W, Instant};

fn table() -> TableSchema {
    TableSchema {
        columns: vec![
            Column::new("id", ColumnType::Int),
            Column::new("speed", ColumnType::Float),
            Column::new("tags", ColumnType::parse("array<string>").unwrap()),
            Column::new("name", ColumnType::Varchar(4)),
        ],
        partition_keys: vec![Column::new("ds", ColumnType::String)],
    }
}

fn chain() -> Vec<WitColumn> {
    let c = |name: &str, ty| WitColumn {
        name: name.into(),
        ty,
        nullable: true,
    };
    vec![
        c("id", W::Bigint),
        c("speed", W::Double),
        c("tags", W::Complex("array<string>".into())),
        c("name", W::String),
        c("ts", W::Timestamp),
    ]
}

fn row(source: u32, id: i64, name: &str, secs: i64) -> Row {
    Row {
        source,
        cells: vec![
            Cell::Int(id),
            Cell::Double(1.5),
            Cell::Json("[\"a\",\"b\"]".into()),
            Cell::String(name.into()),
            Cell::Timestamp(Instant {
                seconds: secs,
                nanos: 0,
            }),
        ],
    }
}

#[test]
fn layout_lists_every_problem() {
    let mut t = table();
    t.columns.push(Column {
        nullable: false,
        ..Column::new("must", ColumnType::String)
    });
    let problems = Layout::new(&chain(), &t, &[], false).unwrap_err();
    assert!(problems.iter().any(|p| p.contains("must")), "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("ts")), "{problems:?}");
}

#[test]
fn rows_route_convert_and_reject() {
    let layout = Layout::new(&chain(), &table(), &["ts".into()], false).unwrap();
    let now = chrono::Utc::now();
    let router = Router::new(
        "ds={ts:%Y%m%d}",
        &["ds".into()],
        &chain().iter().map(|c| c.name.clone()).collect::<Vec<_>>(),
        now,
    )
    .unwrap();
    let mut enc = Encoder::new(&layout, &router, 1 << 20, Compression::Lz4);
    let mut rows = vec![
        row(0, 1, "ok", 0),
        row(1, 1 << 40, "big", 0),       // INT overflow
        row(2, 2, "toolong", 0),         // VARCHAR(4)
        row(3, 3, "late", 86_400 * 400), // another day
    ];
    let (closed, rejected) = enc.add(&mut rows).unwrap();
    assert!(closed.is_empty());
    let codes: Vec<_> = rejected
        .iter()
        .map(|r| (r.source, r.code.as_str()))
        .collect();
    assert_eq!(codes, vec![(1, "out-of-range"), (2, "value-too-large")]);
    let blocks = enc.finish().unwrap();
    assert_eq!(blocks.len(), 2);
    for b in &blocks {
        enc.staged(b, format!("k{}", b.dest));
    }
    let dests = enc.destinations();
    assert_eq!(dests[0].partition, "ds=19700101");
    assert_eq!(dests[1].partition, "ds=19710205");
    let back = decode_block(&layout.types, &blocks[0].data, Compression::Lz4).unwrap();
    assert_eq!(back[0][0], Value::Int(1));
    assert_eq!(back[0][1], Value::Float(1.5));
    assert_eq!(
        back[0][2],
        Value::Array(vec![Value::String("a".into()), Value::String("b".into())])
    );
}

#[test]
fn blocks_close_at_the_size_limit_and_are_deterministic() {
    let layout = Layout::new(&chain(), &table(), &["ts".into()], false).unwrap();
    let router = Router::new("ds=x", &["ds".into()], &[], chrono::Utc::now()).unwrap();
    let rows: Vec<Row> = (0..5000).map(|i| row(i, i64::from(i), "abcd", 0)).collect();
    let run = || {
        let mut enc = Encoder::new(&layout, &router, 64 * 1024, Compression::Lz4);
        let (mut closed, _) = enc.add(&mut rows.clone()).unwrap();
        closed.extend(enc.finish().unwrap());
        closed
    };
    let a = run();
    assert!(a.len() > 1, "expected several blocks");
    assert_eq!(a.iter().map(|b| b.rows).sum::<u64>(), 5000);
    let b = run();
    assert!(
        a.iter()
            .zip(&b)
            .all(|(x, y)| x.data == y.data && x.id == y.id)
    );
}

#[test]
fn rows_scattered_over_many_partitions_keep_a_bounded_number_of_blocks_open() {
    // One row per day over 200 days, twice: at most MAX_OPEN_BLOCKS blocks are open at a time,
    // so some destinations get several blocks; every row is in exactly one block.
    let layout = Layout::new(&chain(), &table(), &["ts".into()], false).unwrap();
    let names: Vec<String> = chain().iter().map(|c| c.name.clone()).collect();
    let router = Router::new("ds={ts:%Y%m%d}", &["ds".into()], &names, chrono::Utc::now()).unwrap();
    let mut enc = Encoder::new(&layout, &router, 1 << 20, Compression::Lz4);
    let mut closed = Vec::new();
    for round in 0..2 {
        for day in 0..200u32 {
            let mut rows = [row(
                day,
                i64::from(round * 1000 + day),
                "x",
                i64::from(day) * 86_400,
            )];
            let (blocks, rejected) = enc.add(&mut rows).unwrap();
            assert!(rejected.is_empty());
            closed.extend(blocks);
            assert!(enc.open <= MAX_OPEN_BLOCKS, "{} open", enc.open);
        }
    }
    closed.extend(enc.finish().unwrap());
    assert_eq!(enc.open, 0);
    assert_eq!(closed.iter().map(|b| b.rows).sum::<u64>(), 400);
    let mut ids: Vec<(usize, u32)> = closed.iter().map(|b| (b.dest, b.id)).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len(),
        closed.len(),
        "block ids are unique per destination"
    );
    assert!(
        closed.len() > 200,
        "scattered rows closed blocks early: {}",
        closed.len()
    );
}

#[test]
fn a_record_s_rows_reach_their_partitions_and_a_rejected_record_opens_none() {
    let layout = Layout::new(&chain(), &table(), &["ts".into()], false).unwrap();
    let router = Router::new(
        "ds={ts:%Y%m%d}",
        &["ds".into()],
        &chain().iter().map(|c| c.name.clone()).collect::<Vec<_>>(),
        chrono::Utc::now(),
    )
    .unwrap();
    let mut enc = Encoder::new(&layout, &router, 1 << 20, Compression::Lz4);
    let (a, b, c) = (0, 86_400 * 2, 86_400 * 5);
    let mut rows = vec![
        // One record over two new partitions, the first one twice.
        row(0, 1, "a", a),
        row(0, 2, "b", b + 7),
        row(0, 3, "a", a + 9),
        // The partition before the last one written.
        row(1, 4, "b", b),
        // A bad row after a good one to a new partition: the record is rejected whole.
        row(2, 5, "c", c),
        row(2, 6, "toolong", c),
        row(3, 7, "a", a + 1),
    ];
    let (closed, rejected) = enc.add(&mut rows).unwrap();
    assert!(closed.is_empty());
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].source, 2);
    let blocks = enc.finish().unwrap();
    let dests = enc.destinations();
    let seen: Vec<_> = dests
        .iter()
        .map(|d| (d.partition.as_str(), d.rows))
        .collect();
    assert_eq!(seen, vec![("ds=19700101", 3), ("ds=19700103", 2)]);
    let ids = |b: &ClosedBlock| {
        decode_block(&layout.types, &b.data, Compression::Lz4)
            .unwrap()
            .iter()
            .map(|r| r[0].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&blocks[0]), [1, 3, 7].map(Value::Int));
    assert_eq!(ids(&blocks[1]), [2, 4].map(Value::Int));
}
