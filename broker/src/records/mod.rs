//! Kafka v2 record batches: the header ([`batch`]), validation (CRC32C, sizes, counts),
//! compression codecs and levels ([`compression`]), record-level decoding/encoding ([`record`]),
//! recompression into another codec ([`recompress`]), a topic's rules for what it stores
//! ([`conform`]: `compression.type`, timestamp bounds), batches built around already-encoded
//! records ([`build`]), transaction markers ([`control`]) and Kafka's murmur2 partitioner
//! ([`partitioner`]).
//!
//! The log stores batches as producers sent them unless the topic's `compression.type` names
//! another codec; this module reads them, rewrites the broker-owned header fields (base offset,
//! log-append time), recompresses them, and, for transforms, builds new batches.

pub mod batch;
pub mod build;
pub mod compression;
pub mod conform;
pub mod control;
pub mod partitioner;
pub mod recompress;
pub mod record;

pub use batch::{BatchError, BatchHeader};
pub use compression::{Codec, Compression, CompressionType};
pub use conform::{conform, BatchRules, ConformError, TimestampBounds};
pub use recompress::{recompress, recompress_records};
pub use record::{build_batch, decode_records, NewRecord, RecordView};
