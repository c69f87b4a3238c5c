//! The v2 record batch header, its validation, and the broker-owned fields the log rewrites.
//!
//! Layout (big-endian):
//! ```text
//! 0  baseOffset i64        12 partitionLeaderEpoch i32   21 attributes i16
//! 8  batchLength i32       16 magic i8                   23 lastOffsetDelta i32
//!                          17 crc u32 (CRC32C of 21..end) 27 baseTimestamp i64
//! 35 maxTimestamp i64      43 producerId i64             51 producerEpoch i16
//! 53 baseSequence i32      57 recordsCount i32           61 records...
//! ```

use super::compression::{self, Compression};
use super::record;

/// Bytes before the records.
pub const HEADER_LEN: usize = 61;
/// baseOffset + batchLength: the part of the header `batchLength` does not count.
pub const LOG_OVERHEAD: usize = 12;
const MAGIC_AT: usize = 16;
pub(super) const CRC_AT: usize = 17;
pub(super) const ATTRIBUTES_AT: usize = 21;
const MAX_TIMESTAMP_AT: usize = 35;
/// Attributes bit 3: the batch carries the broker's log-append time.
const LOG_APPEND_TIME_BIT: i16 = 0x08;
/// Attributes bit 4: the batch belongs to a transaction (ended by a control batch).
pub(super) const TRANSACTIONAL_BIT: i16 = 0x10;
/// Attributes bit 5: a control batch (transaction marker), never a user record.
pub(super) const CONTROL_BIT: i16 = 0x20;
/// Attributes bit 6 (KIP-534): the log cleaner set a delete horizon, carried in baseTimestamp;
/// tombstones in the batch may be removed once the horizon has passed.
pub const DELETE_HORIZON_BIT: i16 = 0x40;
/// The most a compressed batch may inflate to, relative to `max.message.bytes`, and absolutely.
const INFLATE_FACTOR: usize = 64;
const INFLATE_CAP: usize = 256 << 20;

/// A parsed batch header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

/// Why a batch is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Framing or checksum damage: CORRUPT_MESSAGE.
    #[error("{0}")]
    Corrupt(String),
    /// Well-framed but not acceptable: INVALID_RECORD.
    #[error("{0}")]
    Invalid(String),
    /// Not a v2 batch.
    #[error("{0}")]
    Unsupported(String),
    #[error("batch of {size} bytes is larger than max.message.bytes {max}")]
    TooLarge { size: usize, max: u32 },
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

impl BatchHeader {
    /// Parses the header at the front of `buf`; `None` if fewer than [`HEADER_LEN`] bytes.
    pub fn parse(buf: &[u8]) -> Option<BatchHeader> {
        if buf.len() < HEADER_LEN {
            return None;
        }
        Some(BatchHeader {
            base_offset: be_i64(buf, 0),
            batch_length: be_i32(buf, 8),
            partition_leader_epoch: be_i32(buf, 12),
            magic: buf[MAGIC_AT] as i8,
            crc: be_i32(buf, CRC_AT) as u32,
            attributes: be_i16(buf, ATTRIBUTES_AT),
            last_offset_delta: be_i32(buf, 23),
            base_timestamp: be_i64(buf, 27),
            max_timestamp: be_i64(buf, MAX_TIMESTAMP_AT),
            producer_id: be_i64(buf, 43),
            producer_epoch: be_i16(buf, 51),
            base_sequence: be_i32(buf, 53),
            records_count: be_i32(buf, 57),
        })
    }

    /// Reads only baseOffset and batchLength (what the log needs to walk batches): `(base, total size)`.
    pub fn peek_size(buf: &[u8]) -> Option<(i64, usize)> {
        if buf.len() < LOG_OVERHEAD {
            return None;
        }
        let len = usize::try_from(be_i32(buf, 8)).ok()?;
        Some((be_i64(buf, 0), LOG_OVERHEAD + len))
    }

    /// The whole batch's size in bytes, header included.
    pub fn total_size(&self) -> usize {
        LOG_OVERHEAD + self.batch_length.max(0) as usize
    }
    /// The offset of the batch's last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }
    pub fn compression(&self) -> Option<Compression> {
        Compression::from_attributes(self.attributes)
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }
    pub fn has_log_append_time(&self) -> bool {
        self.attributes & LOG_APPEND_TIME_BIT != 0
    }
    /// The cleaner's delete horizon for the batch's tombstones, if one was set (KIP-534).
    pub fn delete_horizon(&self) -> Option<i64> {
        (self.attributes & DELETE_HORIZON_BIT != 0).then_some(self.base_timestamp)
    }
    /// Whether an idempotent producer wrote it (sequence numbers apply).
    pub fn is_idempotent(&self) -> bool {
        self.producer_id >= 0 && self.base_sequence >= 0
    }
    /// The sequence number of the batch's last record (sequences wrap at i32::MAX).
    pub fn last_sequence(&self) -> i32 {
        let last = i64::from(self.base_sequence) + i64::from(self.last_offset_delta);
        if last > i64::from(i32::MAX) {
            (last - i64::from(i32::MAX) - 1) as i32
        } else {
            last as i32
        }
    }
}

/// The CRC32C a header should carry: over attributes to the end.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[ATTRIBUTES_AT..])
}

/// Checks framing and CRC only (what recovery needs): the batch is whole and undamaged.
pub fn check_frame(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(batch).ok_or_else(|| {
        BatchError::Corrupt(format!(
            "batch of {} bytes is shorter than its header",
            batch.len()
        ))
    })?;
    if header.magic != 2 {
        return Err(BatchError::Unsupported(format!(
            "record batch magic {} is not supported; only v2 (magic 2) batches are accepted",
            header.magic
        )));
    }
    if header.batch_length < (HEADER_LEN - LOG_OVERHEAD) as i32
        || header.total_size() != batch.len()
    {
        return Err(BatchError::Corrupt(format!(
            "batchLength {} does not match the {} bytes of the batch",
            header.batch_length,
            batch.len()
        )));
    }
    let crc = compute_crc(batch);
    if crc != header.crc {
        return Err(BatchError::Corrupt(format!(
            "CRC32C mismatch: header says {:#010x}, data is {crc:#010x}",
            header.crc
        )));
    }
    Ok(header)
}

/// Full validation of a produced batch: framing, CRC, size, offsets and every record's framing
/// (decompressing to check, with bounded output).
pub fn validate(batch: &[u8], max_message_bytes: u32) -> Result<BatchHeader, BatchError> {
    validate_and_decompress(batch, max_message_bytes).map(|(header, _)| header)
}

/// [`validate`], also handing back the records area it checked (decompressed, or borrowed from
/// `batch` when the batch is uncompressed), so a caller that needs the records decompresses once.
pub fn validate_and_decompress(
    batch: &[u8],
    max_message_bytes: u32,
) -> Result<(BatchHeader, std::borrow::Cow<'_, [u8]>), BatchError> {
    let header = check_frame(batch)?;
    if batch.len() > max_message_bytes as usize {
        return Err(BatchError::TooLarge {
            size: batch.len(),
            max: max_message_bytes,
        });
    }
    if header.records_count < 1 {
        return Err(BatchError::Invalid(format!(
            "batch holds {} records",
            header.records_count
        )));
    }
    if header.last_offset_delta != header.records_count - 1 {
        return Err(BatchError::Invalid(format!(
            "lastOffsetDelta {} does not match recordsCount {}",
            header.last_offset_delta, header.records_count
        )));
    }
    if header.is_control() {
        return Err(BatchError::Invalid(
            "producers may not write control batches".into(),
        ));
    }
    // A transaction is a producer's: without an id, epoch and sequence there is none to end.
    if header.is_transactional() && !header.is_idempotent() {
        return Err(BatchError::Invalid(
            "a transactional batch needs a producer id and sequence".into(),
        ));
    }
    let codec = header.compression().ok_or_else(|| {
        BatchError::Invalid(format!(
            "unknown compression codec {}",
            header.attributes & 7
        ))
    })?;
    let payload = &batch[HEADER_LEN..];
    let limit = (max_message_bytes as usize)
        .saturating_mul(INFLATE_FACTOR)
        .min(INFLATE_CAP);
    let records = match codec {
        Compression::None => std::borrow::Cow::Borrowed(payload),
        codec => std::borrow::Cow::Owned(
            compression::decompress(codec, payload, limit)
                .map_err(|e| BatchError::Corrupt(e.to_string()))?,
        ),
    };
    record::check_records(&records, header.records_count).map_err(BatchError::Corrupt)?;
    Ok((header, records))
}

/// Writes the broker-assigned base offset (not covered by the CRC).
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    if batch.len() >= 8 {
        batch[..8].copy_from_slice(&base_offset.to_be_bytes());
    }
}

/// Marks the batch as carrying log-append time `now` and recomputes the CRC.
pub fn set_log_append_time(batch: &mut [u8], now: i64) {
    if batch.len() < HEADER_LEN {
        return;
    }
    let attributes = be_i16(batch, ATTRIBUTES_AT) | LOG_APPEND_TIME_BIT;
    batch[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&now.to_be_bytes());
    let crc = compute_crc(batch);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// [`set_log_append_time`] for a batch held as its header and, apart, its body.
pub fn set_log_append_time_split(head: &mut [u8; HEADER_LEN], body: &[u8], now: i64) {
    let attributes = be_i16(head, ATTRIBUTES_AT) | LOG_APPEND_TIME_BIT;
    head[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    head[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&now.to_be_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&head[ATTRIBUTES_AT..]), body);
    head[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Splits a buffer of concatenated batches (a Produce request's records) into batch slices.
/// A trailing partial batch is an error.
pub fn split(buf: &[u8]) -> Result<Vec<std::ops::Range<usize>>, BatchError> {
    let mut ranges = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let rest = &buf[at..];
        let (_, size) = BatchHeader::peek_size(rest).ok_or_else(|| {
            BatchError::Corrupt(format!(
                "{} trailing bytes are not a whole batch",
                rest.len()
            ))
        })?;
        if size < HEADER_LEN || size > rest.len() {
            return Err(BatchError::Corrupt(format!(
                "batch claims {size} bytes but {} remain",
                rest.len()
            )));
        }
        ranges.push(at..at + size);
        at += size;
    }
    if ranges.is_empty() {
        return Err(BatchError::Invalid("no record batches".into()));
    }
    Ok(ranges)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::record::{build_batch, BatchMeta, NewRecord};

    fn sample(codec: Compression) -> Vec<u8> {
        let records: Vec<NewRecord> = (0..3)
            .map(|i| NewRecord {
                timestamp: 1000 + i,
                key: Some(format!("k{i}").into_bytes()),
                value: Some(b"value".to_vec()),
                headers: vec![("h".into(), None)],
            })
            .collect();
        build_batch(&records, codec, &BatchMeta::default())
    }

    #[test]
    fn a_built_batch_validates_for_every_codec() {
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let batch = sample(codec);
            let header = validate(&batch, 1 << 20).unwrap();
            assert_eq!(header.records_count, 3);
            assert_eq!(header.last_offset_delta, 2);
            assert_eq!(header.max_timestamp, 1002);
            assert_eq!(header.compression(), Some(codec));
        }
    }

    #[test]
    fn a_flipped_byte_fails_the_crc() {
        let mut batch = sample(Compression::None);
        let last = batch.len() - 1;
        batch[last] ^= 0xff;
        assert!(
            matches!(validate(&batch, 1 << 20), Err(BatchError::Corrupt(m)) if m.contains("CRC"))
        );
    }

    #[test]
    fn base_offset_is_outside_the_crc() {
        let mut batch = sample(Compression::None);
        set_base_offset(&mut batch, 12345);
        let header = validate(&batch, 1 << 20).unwrap();
        assert_eq!(header.base_offset, 12345);
        assert_eq!(header.last_offset(), 12347);
    }

    #[test]
    fn log_append_time_rewrites_crc() {
        let mut batch = sample(Compression::None);
        set_log_append_time(&mut batch, 99);
        let header = validate(&batch, 1 << 20).unwrap();
        assert!(header.has_log_append_time());
        assert_eq!(header.max_timestamp, 99);
    }

    #[test]
    fn wrong_magic_count_and_size_are_refused() {
        let batch = sample(Compression::None);
        let mut old = batch.clone();
        old[MAGIC_AT] = 1;
        assert!(matches!(
            validate(&old, 1 << 20),
            Err(BatchError::Unsupported(_))
        ));
        assert!(matches!(
            validate(&batch, 10),
            Err(BatchError::TooLarge { .. })
        ));
        // recordsCount says 4 while 3 records follow: fix the CRC so only the count is wrong.
        let mut miscounted = batch.clone();
        miscounted[57..61].copy_from_slice(&4i32.to_be_bytes());
        miscounted[23..27].copy_from_slice(&3i32.to_be_bytes());
        let crc = compute_crc(&miscounted);
        miscounted[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        assert!(validate(&miscounted, 1 << 20).is_err());
    }

    #[test]
    fn split_finds_batches_and_refuses_a_partial_tail() {
        let one = sample(Compression::None);
        let two = [one.clone(), one.clone()].concat();
        assert_eq!(split(&two).unwrap().len(), 2);
        assert!(split(&two[..two.len() - 3]).is_err());
        assert!(split(&[]).is_err());
    }
}
