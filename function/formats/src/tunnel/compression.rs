//! How a Tunnel block body is compressed on the wire (`docs/maxcompute-protocol.md` §2.4): the
//! encode stage writes blocks in one of these, an intent records which per staged block, and the
//! load stage names it in `Content-Encoding`. The choice and what it costs are in
//! `docs/bench/README.md` ("Levers").

use serde::{Deserialize, Serialize};

/// A block body's compression, as `[limits] compression` and the commit log spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Records as written (no `Content-Encoding`).
    None,
    /// A zlib (RFC 1950) stream, sent as `Content-Encoding: deflate`. Blocks staged by releases
    /// that recorded no compression are deflate.
    #[default]
    Deflate,
    /// One LZ4 frame of independent blocks, sent as `Content-Encoding: x-lz4-frame`.
    Lz4,
}

impl Compression {
    /// The `Content-Encoding` header value; `None` for an uncompressed body.
    pub fn content_encoding(self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Deflate => Some("deflate"),
            Compression::Lz4 => Some("x-lz4-frame"),
        }
    }

    /// The compression a `Content-Encoding` header names (absent or `identity`: none).
    pub fn from_content_encoding(value: Option<&str>) -> Option<Compression> {
        match value {
            None | Some("") | Some("identity") => Some(Compression::None),
            Some("deflate") => Some(Compression::Deflate),
            Some("x-lz4-frame") => Some(Compression::Lz4),
            Some(_) => None,
        }
    }

    /// True for deflate (what a staged block without a recorded compression is).
    pub fn is_deflate(&self) -> bool {
        *self == Compression::Deflate
    }

    /// The name the config file and the commit log use.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Deflate => "deflate",
            Compression::Lz4 => "lz4",
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_compression_round_trips_through_its_header_and_its_name() {
        for c in [Compression::None, Compression::Deflate, Compression::Lz4] {
            assert_eq!(
                Compression::from_content_encoding(c.content_encoding()),
                Some(c)
            );
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, format!("\"{c}\""));
            assert_eq!(serde_json::from_str::<Compression>(&json).unwrap(), c);
        }
        assert_eq!(Compression::from_content_encoding(Some("zstd")), None);
    }
}
