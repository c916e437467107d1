//! Packed rows (WIT 1.3, `packed-parser`): how this stage writes a row's cells into the one byte
//! list `parse-packed` returns, instead of a `list<cell>` per row. The layout is in
//! wit/README.md ("1.3: packed rows"): per cell, the index of its `cell` case in one byte, then
//! its value, little-endian, with a 4-byte length before text and bytes.

use crate::columns::Out;

/// The `cell` case indexes of `kafka2mc:transform/types` this stage writes.
mod case {
    pub const NULL: u8 = 0;
    pub const BOOLEAN: u8 = 1;
    pub const INT: u8 = 2;
    pub const DOUBLE: u8 = 3;
    pub const DECIMAL: u8 = 4;
    pub const STRING: u8 = 5;
    pub const BINARY: u8 = 6;
    pub const DATE: u8 = 7;
    pub const DATETIME: u8 = 8;
    pub const TIMESTAMP: u8 = 9;
    pub const JSON: u8 = 12;
}

/// Appends one cell to `buf`.
pub fn put(buf: &mut Vec<u8>, cell: &Out<'_>) {
    match cell {
        Out::Null => buf.push(case::NULL),
        Out::Bool(b) => buf.extend_from_slice(&[case::BOOLEAN, u8::from(*b)]),
        Out::Int(n) => fixed(buf, case::INT, &n.to_le_bytes()),
        Out::Double(x) => fixed(buf, case::DOUBLE, &x.to_le_bytes()),
        Out::Decimal(s) => sized(buf, case::DECIMAL, s.as_bytes()),
        Out::Text(s) => sized(buf, case::STRING, s.as_bytes()),
        Out::Binary(b) => sized(buf, case::BINARY, b),
        Out::Date(d) => fixed(buf, case::DATE, &d.to_le_bytes()),
        Out::Datetime(ms) => fixed(buf, case::DATETIME, &ms.to_le_bytes()),
        Out::Timestamp(seconds, nanos) => {
            fixed(buf, case::TIMESTAMP, &seconds.to_le_bytes());
            buf.extend_from_slice(&nanos.to_le_bytes());
        }
        Out::Json(s) => sized(buf, case::JSON, s.as_bytes()),
    }
}

fn fixed(buf: &mut Vec<u8>, case: u8, value: &[u8]) {
    buf.push(case);
    buf.extend_from_slice(value);
}

/// Text and bytes: the length first. A cell over 4 GiB cannot occur: the host caps a batch's
/// bytes far below that, and a guest's memory is 32-bit.
fn sized(buf: &mut Vec<u8>, case: u8, value: &[u8]) {
    buf.push(case);
    buf.extend_from_slice(&(value.len() as u32).to_le_bytes());
    buf.extend_from_slice(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_written_as_the_contract_lays_them_out() {
        let mut buf = Vec::new();
        for cell in [
            Out::Null,
            Out::Bool(true),
            Out::Int(-2),
            Out::Double(1.5),
            Out::Decimal("1.20".into()),
            Out::Text("é".into()),
            Out::Binary(vec![9]),
            Out::Date(-1),
            Out::Datetime(258),
            Out::Timestamp(1, 2),
            Out::Json("[]".into()),
        ] {
            put(&mut buf, &cell);
        }
        let mut want = vec![0, 1, 1, 2];
        want.extend((-2i64).to_le_bytes());
        want.push(3);
        want.extend(1.5f64.to_le_bytes());
        want.extend([4, 4, 0, 0, 0, b'1', b'.', b'2', b'0']);
        want.extend([5, 2, 0, 0, 0, 0xc3, 0xa9]);
        want.extend([6, 1, 0, 0, 0, 9]);
        want.extend([7, 0xff, 0xff, 0xff, 0xff]);
        want.extend([8, 2, 1, 0, 0, 0, 0, 0, 0]);
        want.extend([9, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0]);
        want.extend([12, 2, 0, 0, 0, b'[', b']']);
        assert_eq!(buf, want);
    }
}
