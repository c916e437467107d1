//! Packed records (WIT 1.5, `packed-records-parser`): how this stage reads the records that
//! `parse-records-packed` takes as one byte list, in place, instead of a `list<kafka-record>`
//! whose every key, value and header list the host allocated in the stage's memory, one call into
//! the stage each, and the stage freed again after the call. The layout is in wit/README.md ("1.5:
//! packed records"); `extract` reads a [`Record`] whichever way it came.

/// A Kafka record as the stage reads it, borrowed from a `kafka-record` or from packed records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record<'b> {
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<&'b [u8]>,
    pub value: Option<&'b [u8]>,
    /// Each header's key and value, in order.
    pub headers: Vec<(&'b str, Option<&'b [u8]>)>,
}

/// Where a length would be: `none` of an `option<list<u8>>`.
const NONE: u32 = u32::MAX;

/// The fewest bytes a record takes: offset, timestamp, two `none`s and no headers.
const MIN_RECORD: usize = 8 + 8 + 4 + 4 + 4;

/// The `count` records packed in `bytes`. An error names the record and the byte where the
/// bytes break the layout; the host wrote them, so the stage reports it as `fatal`.
pub fn read(bytes: &[u8], count: u32) -> Result<Vec<Record<'_>>, String> {
    let mut reader = Reader { bytes, at: 0 };
    // Capped by what the bytes can hold, so that a wrong count allocates nothing outsized.
    let mut records = Vec::with_capacity((count as usize).min(bytes.len() / MIN_RECORD));
    for i in 0..count {
        let record = reader
            .record()
            .map_err(|e| format!("packed record {i}: {e}"))?;
        records.push(record);
    }
    if reader.at != bytes.len() {
        return Err(format!(
            "{} bytes are left after the last of {count} packed records",
            bytes.len() - reader.at
        ));
    }
    Ok(records)
}

/// A cursor over the packed records.
struct Reader<'b> {
    bytes: &'b [u8],
    at: usize,
}

impl<'b> Reader<'b> {
    fn take(&mut self, n: usize) -> Result<&'b [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(format!(
                "the records end at byte {} but {n} more are needed at byte {}",
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

    fn bytes(&mut self) -> Result<Option<&'b [u8]>, String> {
        match u32::from_le_bytes(self.array()?) {
            NONE => Ok(None),
            n => self.take(n as usize).map(Some),
        }
    }

    fn record(&mut self) -> Result<Record<'b>, String> {
        let offset = i64::from_le_bytes(self.array()?);
        let timestamp_ms = i64::from_le_bytes(self.array()?);
        let key = self.bytes()?;
        let value = self.bytes()?;
        let count = u32::from_le_bytes(self.array()?) as usize;
        let room = (self.bytes.len() - self.at) / 8;
        let mut headers = Vec::with_capacity(count.min(room));
        for _ in 0..count {
            let at = self.at;
            let key = self
                .bytes()?
                .ok_or_else(|| format!("the header key at byte {at} is none"))?;
            let key = std::str::from_utf8(key)
                .map_err(|e| format!("the header key at byte {at} is not UTF-8: {e}"))?;
            headers.push((key, self.bytes()?));
        }
        Ok(Record {
            offset,
            timestamp_ms,
            key,
            value,
            headers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout written out by hand, as the host writes it.
    fn pack_by_hand(records: &[Record<'_>]) -> Vec<u8> {
        let mut b = Vec::new();
        let sized = |b: &mut Vec<u8>, s: Option<&[u8]>| match s {
            Some(s) => {
                b.extend_from_slice(&(s.len() as u32).to_le_bytes());
                b.extend_from_slice(s);
            }
            None => b.extend_from_slice(&[0xff; 4]),
        };
        for r in records {
            b.extend_from_slice(&r.offset.to_le_bytes());
            b.extend_from_slice(&r.timestamp_ms.to_le_bytes());
            sized(&mut b, r.key);
            sized(&mut b, r.value);
            b.extend_from_slice(&(r.headers.len() as u32).to_le_bytes());
            for (k, v) in &r.headers {
                sized(&mut b, Some(k.as_bytes()));
                sized(&mut b, *v);
            }
        }
        b
    }

    fn every_shape() -> Vec<Record<'static>> {
        vec![
            Record {
                offset: i64::MAX,
                timestamp_ms: -1,
                key: Some(b"\x00\xffk".as_slice()),
                value: Some(r#"{"a":"北京"}"#.as_bytes()),
                headers: vec![
                    ("trace", Some(b"\xfe".as_slice())),
                    ("", None),
                    ("北", Some(b"".as_slice())),
                ],
            },
            Record::default(),
            Record {
                offset: 3,
                timestamp_ms: 1_704_067_200_000,
                key: Some(b"".as_slice()),
                value: None,
                headers: Vec::new(),
            },
        ]
    }

    #[test]
    fn packed_records_read_back_as_themselves() {
        let records = every_shape();
        let bytes = pack_by_hand(&records);
        assert_eq!(read(&bytes, 3).unwrap(), records);
        assert_eq!(read(&[], 0).unwrap(), Vec::new());
    }

    #[test]
    fn broken_bytes_are_named_by_record_and_byte() {
        let bytes = pack_by_hand(&every_shape());
        // Every cut short of the end breaks some record, and says which.
        for cut in 0..bytes.len() {
            let e = read(&bytes[..cut], 3).unwrap_err();
            assert!(e.starts_with("packed record "), "{cut}: {e}");
            assert!(e.contains("more are needed"), "{cut}: {e}");
        }
        let e = read(&bytes, 2).unwrap_err();
        assert!(e.contains("bytes are left after the last of 2"), "{e}");
        // A count far beyond the bytes allocates nothing outsized and fails on the first cut.
        let e = read(&bytes, u32::MAX).unwrap_err();
        assert!(e.starts_with("packed record 3:"), "{e}");
        let one = |headers: &[u8]| {
            let mut b = pack_by_hand(&[Record::default()]);
            b.truncate(b.len() - 4);
            b.extend_from_slice(&1u32.to_le_bytes());
            b.extend_from_slice(headers);
            b
        };
        let e = read(&one(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), 1).unwrap_err();
        assert!(e.contains("the header key at byte 28 is none"), "{e}");
        let e = read(&one(&[1, 0, 0, 0, 0xc3, 0xff, 0xff, 0xff, 0xff]), 1).unwrap_err();
        assert!(e.contains("the header key at byte 28 is not UTF-8"), "{e}");
    }
}
