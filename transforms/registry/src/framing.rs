//! Schema registry wire framings: where the schema id ends and the payload begins.
//!
//! - Confluent (Schema Registry, Redpanda, Karapace, Apicurio's ccompat): magic byte `0`, the
//!   schema id as 4 big-endian bytes, then the payload (for Protobuf, message indexes first).
//! - AWS Glue Schema Registry: header version byte `3`, a compression byte (`0` none, `5` zlib),
//!   the schema version id as 16 bytes (a UUID), then the payload.

/// The schema a record names, and where its payload starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framed<'a> {
    Confluent {
        id: u32,
        payload: &'a [u8],
    },
    Glue {
        version_id: String,
        compressed: bool,
        payload: &'a [u8],
    },
}

/// Why bytes are not a framed record; the message names what was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FramingError(pub String);

const CONFLUENT_MAGIC: u8 = 0;
const GLUE_VERSION: u8 = 3;
const GLUE_NONE: u8 = 0;
const GLUE_ZLIB: u8 = 5;

/// Splits `bytes` into the schema id and the payload.
pub fn split(bytes: &[u8]) -> Result<Framed<'_>, FramingError> {
    match bytes.first() {
        Some(&CONFLUENT_MAGIC) => {
            let id = bytes.get(1..5).ok_or_else(|| {
                FramingError(format!(
                    "{} bytes: too short for the Confluent framing (magic byte 0 and a 4-byte schema id)",
                    bytes.len()
                ))
            })?;
            Ok(Framed::Confluent {
                id: u32::from_be_bytes([id[0], id[1], id[2], id[3]]),
                payload: &bytes[5..],
            })
        }
        Some(&GLUE_VERSION) => {
            let (compression, uuid) = match (bytes.get(1), bytes.get(2..18)) {
                (Some(c), Some(u)) => (*c, u),
                _ => {
                    return Err(FramingError(format!(
                        "{} bytes: too short for the AWS Glue framing (version 3, compression, 16-byte schema version id)",
                        bytes.len()
                    )));
                }
            };
            let compressed = match compression {
                GLUE_NONE => false,
                GLUE_ZLIB => true,
                other => {
                    return Err(FramingError(format!(
                        "AWS Glue framing with unknown compression byte {other} (0 is none, 5 is zlib)"
                    )));
                }
            };
            Ok(Framed::Glue {
                version_id: uuid_text(uuid),
                compressed,
                payload: &bytes[18..],
            })
        }
        Some(other) => Err(FramingError(format!(
            "first byte is {other:#04x}, not a schema registry framing (Confluent starts with 0x00, AWS Glue with 0x03); was it produced with a registry serializer?"
        ))),
        None => Err(FramingError("empty value".into())),
    }
}

/// A UUID's canonical text, `8-4-4-4-12` lower-case hex digits.
fn uuid_text(b: &[u8]) -> String {
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confluent_framing_carries_a_big_endian_id() {
        let f = split(&[0, 0, 0, 1, 2, 9, 9]).expect("framed");
        assert_eq!(
            f,
            Framed::Confluent {
                id: 258,
                payload: &[9, 9]
            }
        );
    }

    #[test]
    fn glue_framing_carries_a_uuid_and_compression() {
        let mut b = vec![3, 5];
        b.extend(0u8..16);
        b.push(42);
        match split(&b).expect("framed") {
            Framed::Glue {
                version_id,
                compressed,
                payload,
            } => {
                assert_eq!(version_id, "00010203-0405-0607-0809-0a0b0c0d0e0f");
                assert!(compressed);
                assert_eq!(payload, &[42]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn short_and_unknown_framings_say_what_they_saw() {
        assert!(split(&[0, 1]).unwrap_err().0.contains("too short"));
        assert!(split(&[3, 0, 1]).unwrap_err().0.contains("Glue"));
        assert!(split(&[3, 9]).unwrap_err().0.contains("too short"));
        assert!(split(b"{\"a\":1}").unwrap_err().0.contains("0x7b"));
        assert!(split(&[]).unwrap_err().0.contains("empty"));
    }
}
