//! The MaxCompute client: the load stage's only way into MaxCompute. It signs requests
//! (`sign`), speaks the REST API for SQL and metadata (`sql`) and the Tunnel for batch upload and
//! download (`tunnel`), and encodes rows in the Tunnel record stream (`wire`). The emulator under
//! `tests/emulator` reuses the codec and the signer to play the server side.

mod client;
mod error;
mod http;
mod json;
mod partition;
mod schema;
mod sign;
mod sql;
mod tunnel;
mod value;
mod wire;

pub use client::{ClientConfig, DEFAULT_REQUEST_TIMEOUT, MaxComputeClient};
pub use error::{MaxComputeError, SchemaError, WireError};
pub use http::{DEFAULT_MAX_RETRY_DELAY, DEFAULT_MAX_SERVER_RETRIES, RetryPolicy};
pub use json::{display_json, value_from_json};
pub use partition::PartitionSpec;
pub use schema::{Column, ColumnType, TableSchema};
pub use sign::{
    CanonicalRequest, Credentials, Secret, SignatureVersion, authorization, decode_path_and_query,
    v4_key,
};
pub use sql::{SqlResult, TableInfo, split_odps_error};
pub use tunnel::{
    Block, Compression, DownloadSession, MAX_BLOCKS, UploadSession, decode_block, encode_block,
};
pub use value::{Value, is_plain_decimal};
pub use wire::{RecordReader, RecordWriter};
