//! Packed rows (WIT 1.4, `packed-row-transform`): the rows `transform` would receive, as one byte
//! list in the layout of wit/README.md ("1.3: packed rows"), masked into one byte list back. A
//! text cell with a rule is read where it lies and written masked; every other cell is copied as
//! it came, so no row or cell is an allocation of its own.

use crate::rules::{Plan, Rule};

/// The `cell` case of text (`string`).
const STRING: u8 = 5;

/// Masks `rows` packed rows of `read.len()` cells each (cell `k` is input column `read[k]`), as
/// `transform` masks listed ones; an error names the row, the cell and the byte where the input
/// breaks the layout.
pub fn transform(plan: &Plan, read: &[u32], rows: u32, cells: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(cells.len());
    let mut at = 0;
    for r in 0..rows {
        for (k, &column) in read.iter().enumerate() {
            let fail = |why: String| format!("packed row {r}, cell {k}: {why}");
            let end = cell_end(cells, at).map_err(fail)?;
            let cell = &cells[at..end];
            match (plan.rules.get(column as usize).copied().flatten(), cell[0]) {
                (Some(Rule::Null), _) => out.push(0),
                (Some(rule), STRING) => match std::str::from_utf8(&cell[5..]) {
                    Ok(text) => {
                        let masked = plan.apply(rule, text);
                        out.push(STRING);
                        out.extend_from_slice(&(masked.len() as u32).to_le_bytes());
                        out.extend_from_slice(masked.as_bytes());
                    }
                    Err(e) => {
                        return Err(fail(format!("the string at byte {at} is not UTF-8: {e}")));
                    }
                },
                _ => out.extend_from_slice(cell),
            }
            at = end;
        }
    }
    if at != cells.len() {
        return Err(format!(
            "{} bytes of packed cells are left after the last of {rows} rows",
            cells.len() - at
        ));
    }
    Ok(out)
}

/// Where the cell starting at byte `at` ends.
fn cell_end(cells: &[u8], at: usize) -> Result<usize, String> {
    let tag = *cells
        .get(at)
        .ok_or_else(|| format!("the cells end at byte {at}"))?;
    let value = match tag {
        0 => 0,
        1 => 1,
        7 => 4,
        2 | 3 | 8 | 11 => 8,
        9 | 10 => 12,
        4 | 5 | 6 | 12 => {
            let len = cells
                .get(at + 1..at + 5)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_le_bytes)
                .ok_or_else(|| format!("the length at byte {} is cut short", at + 1))?;
            4 + len as usize
        }
        other => {
            return Err(format!(
                "cell case {other} at byte {at} is not a case of `cell`"
            ));
        }
    };
    let end = at + 1 + value;
    if end > cells.len() {
        return Err(format!(
            "the cells end at byte {} but the cell at byte {at} needs {end}",
            cells.len()
        ));
    }
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        let config: Vec<(String, String)> = [
            ("column.phone", "phone"),
            ("column.n", "null"),
            ("column.id", "sha256"),
            ("column.count", "null"),
        ]
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
        let names: Vec<(String, bool)> =
            [("phone", true), ("n", true), ("id", true), ("count", false)]
                .iter()
                .map(|(n, s)| ((*n).into(), *s))
                .collect();
        Plan::new(&config, &names).unwrap()
    }

    fn text(tag: u8, s: &str) -> Vec<u8> {
        [&[tag][..], &(s.len() as u32).to_le_bytes(), s.as_bytes()].concat()
    }

    #[test]
    fn text_with_a_rule_is_masked_and_every_other_cell_copied() {
        let p = plan();
        let read = p.columns_read();
        assert_eq!(read, [0, 1, 2, 3]);
        let int = [&[2u8][..], &7i64.to_le_bytes()].concat();
        let row = [
            text(STRING, "13812345678"),
            text(STRING, "gone"),
            text(STRING, "x"),
            int,
        ]
        .concat();
        let null_row = [vec![0], vec![0], text(12, "{}"), vec![1, 1]].concat();
        let out = transform(&p, &read, 2, &[row, null_row].concat()).unwrap();
        let digest = p.apply(Rule::Sha256, "x");
        let expected = [
            text(STRING, "138****5678"),
            vec![0],
            text(STRING, &digest),
            vec![0],
            vec![0],
            vec![0],
            text(12, "{}"),
            vec![0],
        ]
        .concat();
        assert_eq!(out, expected);
        assert_eq!(transform(&p, &read, 0, &[]).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn input_that_breaks_the_layout_is_named() {
        let p = plan();
        let read = p.columns_read();
        let e = transform(&p, &read, 1, &[0, 0, 0]).unwrap_err();
        assert!(e.starts_with("packed row 0, cell 3"), "{e}");
        let e = transform(&p, &read, 1, &[13]).unwrap_err();
        assert!(e.contains("cell case 13"), "{e}");
        let e = transform(&p, &read, 1, &[5, 9, 0, 0, 0, b'a']).unwrap_err();
        assert!(e.contains("needs"), "{e}");
        let e = transform(&p, &read, 1, &[5, 1, 0, 0, 0, 0xff, 0, 0, 0]).unwrap_err();
        assert!(e.contains("not UTF-8"), "{e}");
        let e = transform(&p, &read, 1, &[0, 0, 0, 0, 0]).unwrap_err();
        assert!(e.contains("1 bytes of packed cells are left"), "{e}");
    }
}
