//! The MaxCompute client: the load stage's only way into MaxCompute. It signs requests
//! (`sign`), speaks the REST API for SQL and metadata (`sql`) and the Tunnel for batch upload and
//! download (`tunnel`), and encodes rows in the Tunnel record stream (`k2mc_formats::tunnel`, re-exported here) and
//! compressed blocks (`block`), sent from a body source (`body`). The emulator under
//! `tests/emulator` reuses the codec and the signer to play the server side.

mod block;
mod body;
mod client;
mod error;
mod http;
mod json;
mod partition;
mod session;
mod sign;
mod sql;
mod tunnel;

pub use block::{Block, decode_block, decompress, encode_block, lz4_frame};
#[cfg(test)]
pub(crate) use body::SEND_SLICE;
pub(crate) use body::slices;
pub use body::{BodySource, BodyStream, BodyUnreadable, Parts};
pub use client::{ClientConfig, DEFAULT_REQUEST_TIMEOUT, MaxComputeClient};
pub use error::MaxComputeError;
pub use http::{DEFAULT_MAX_RETRY_DELAY, DEFAULT_MAX_SERVER_RETRIES, RetryPolicy};
pub use json::{display_json, value_from_json};
pub use k2mc_formats::secret::Secret;
pub use k2mc_formats::tunnel::{
    Column, ColumnType, Compression, RecordReader, RecordWriter, SchemaError, TableSchema, Value,
    WireError, footer, is_plain_decimal,
};
pub use partition::PartitionSpec;
pub use session::SessionState;
pub use sign::{
    CanonicalRequest, Credentials, SignatureVersion, authorization, decode_path_and_query, v4_key,
};
pub use sql::{SqlResult, TableInfo, split_odps_error};
pub use tunnel::{DownloadSession, MAX_BLOCKS, UploadSession};
