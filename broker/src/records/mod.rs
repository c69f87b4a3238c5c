//! Kafka v2 record batches: the header, validation (CRC32C, sizes, counts), compression codecs,
//! and record-level decoding/encoding.
