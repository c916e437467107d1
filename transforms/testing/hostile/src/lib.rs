//! `hostile`: a row stage that misbehaves on purpose, so the sandbox tests can prove the host
//! contains it. `mode` selects the behaviour:
//! - `loop`: never returns; `alloc`: allocates without bound;
//! - `trap-on`: panics on rows whose first cell is the string `value`, passes others through;
//! - `print`: writes to stdout and stderr on every call (`value` bytes more to stdout: a flood);
//! - `probe`: one row per input row with one string cell saying what the sandbox allowed:
//!   reading a file, an environment variable, a TCP connection, the clock and randomness.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "row-stage",
});

use std::sync::Mutex;

use exports::kafka2mc::transform::row_transform::Guest;
use kafka2mc::transform::types::{BatchOutput, Cell, Column, ColumnType, Row, StageInfo};

static MODE: Mutex<(String, String)> = Mutex::new((String::new(), String::new()));

struct Hostile;

fn probe() -> String {
    let file = match std::fs::read("/etc/passwd") {
        Ok(_) => "file:read".to_owned(),
        Err(_) => "file:denied".to_owned(),
    };
    let env = match std::env::var("HOME") {
        Ok(v) => format!("env:{v}"),
        Err(_) => "env:none".to_owned(),
    };
    let net = match std::net::TcpStream::connect("127.0.0.1:1") {
        Ok(_) => "net:connected".to_owned(),
        Err(e) => format!("net:denied({:?})", e.kind()),
    };
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(u64::MAX);
    // RandomState seeds from the WASI random source: equal across instances iff it is fixed.
    let random =
        std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), 42u8);
    format!(
        "{file} {env} {net} clock:{clock} random:{random:016x} args:{}",
        std::env::args().count()
    )
}

impl Guest for Hostile {
    fn configure(config: Vec<(String, String)>, input: Vec<Column>) -> Result<StageInfo, String> {
        let get = |k: &str| {
            config
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let mode = get("mode");
        let output = match mode.as_str() {
            "probe" => vec![Column {
                name: "probe".into(),
                ty: ColumnType::String,
                nullable: true,
            }],
            "loop" | "alloc" | "trap-on" | "print" | "split" => input,
            other => {
                return Err(format!(
                    "mode = '{other}': use loop, alloc, trap-on, print, split or probe"
                ));
            }
        };
        *MODE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = (mode, get("value"));
        Ok(StageInfo {
            name: "hostile".into(),
            version: "0".into(),
            output,
        })
    }

    fn transform(rows: Vec<Row>) -> BatchOutput {
        let (mode, value) = MODE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        match mode.as_str() {
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            // Writes to stdout and stderr on every call: `value` bytes of `#` to stdout in lines
            // of 100 (a flood when large), one line to stderr. Rows pass unchanged.
            "print" => {
                println!("hostile: {} rows", rows.len());
                let mut left: usize = value.parse().unwrap_or(0);
                while left > 0 {
                    let n = left.min(100);
                    println!("{}", "#".repeat(n));
                    left -= n;
                }
                eprintln!("hostile: to stderr");
                BatchOutput {
                    rows,
                    errors: Vec::new(),
                }
            }
            // One record, two rows: a row whose first cell is `value` is followed by a copy
            // whose first cell is `value!` (a 1:N parser; a later `trap-on` can refuse one).
            "split" => {
                let mut out = Vec::with_capacity(rows.len());
                for row in rows {
                    let copy = matches!(row.cells.first(), Some(Cell::String(s)) if *s == value)
                        .then(|| {
                            let mut cells = row.cells.clone();
                            cells[0] = Cell::String(format!("{value}!"));
                            Row {
                                source: row.source,
                                cells,
                            }
                        });
                    out.push(row);
                    out.extend(copy);
                }
                BatchOutput {
                    rows: out,
                    errors: Vec::new(),
                }
            }
            "trap-on" => {
                for row in &rows {
                    if matches!(row.cells.first(), Some(Cell::String(s)) if *s == value) {
                        panic!("poison record {value}");
                    }
                }
                BatchOutput {
                    rows,
                    errors: Vec::new(),
                }
            }
            _ => {
                let rows = rows
                    .into_iter()
                    .map(|r| Row {
                        source: r.source,
                        cells: vec![Cell::String(probe())],
                    })
                    .collect();
                BatchOutput {
                    rows,
                    errors: Vec::new(),
                }
            }
        }
    }
}

export!(Hostile);
