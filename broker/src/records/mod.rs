//! Kafka v2 record batches: the header ([`batch`]), validation (CRC32C, sizes, counts),
//! compression codecs ([`compression`]), record-level decoding/encoding ([`record`]) and batches
//! built around already-encoded records ([`build`]).
//!
//! The log stores batches exactly as producers sent them; this module only reads them, rewrites
//! the broker-owned header fields (base offset, log-append time) and, for transforms, builds new
//! batches.

pub mod batch;
pub mod build;
pub mod compression;
pub mod record;

pub use batch::{BatchError, BatchHeader};
pub use compression::Compression;
pub use record::{build_batch, decode_records, NewRecord, RecordView};
