//! The four codecs Kafka batches use, the levels the broker compresses at, and a topic's
//! `compression.type`. Decompression output is bounded: a batch is untrusted and a few kilobytes of
//! zstd can claim gigabytes.

use std::io::{Read, Write};

/// Codec ids (attributes bits 0–2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    /// The codec in a batch's attributes, `None` for an id Kafka does not define.
    pub fn from_attributes(attributes: i16) -> Option<Compression> {
        match attributes & 0x07 {
            0 => Some(Compression::None),
            1 => Some(Compression::Gzip),
            2 => Some(Compression::Snappy),
            3 => Some(Compression::Lz4),
            4 => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// The attributes bits of this codec.
    pub fn id(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }
}

/// Kafka's compression levels (KIP-390, `compression.<codec>.level`): their ranges and defaults.
pub mod level {
    /// gzip: 1 (fastest) to 9 (smallest), or -1 for zlib's default (6).
    pub const GZIP_MIN: i32 = 1;
    pub const GZIP_MAX: i32 = 9;
    pub const GZIP_DEFAULT: i32 = -1;
    /// lz4: 1 to 17; Kafka's default 9 is lz4's fast mode, the only one Sluice's encoder has.
    pub const LZ4_MIN: i32 = 1;
    pub const LZ4_MAX: i32 = 17;
    pub const LZ4_DEFAULT: i32 = 9;
    /// zstd: its negative "fast" levels up to 22.
    pub const ZSTD_MIN: i32 = -131_072;
    pub const ZSTD_MAX: i32 = 22;
    pub const ZSTD_DEFAULT: i32 = 3;
}

/// A codec and the level to compress at (ignored by codecs without levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec {
    pub compression: Compression,
    /// A level within Kafka's range for `compression`.
    pub level: i32,
}

impl Codec {
    /// `compression` at Kafka's default level.
    pub fn new(compression: Compression) -> Codec {
        let level = match compression {
            Compression::Gzip => level::GZIP_DEFAULT,
            Compression::Lz4 => level::LZ4_DEFAULT,
            Compression::Zstd => level::ZSTD_DEFAULT,
            Compression::None | Compression::Snappy => 0,
        };
        Codec { compression, level }
    }
}

/// A topic's `compression.type`: keep what the producer sent, or store every batch in one codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionType {
    /// `producer`: batches are stored as the producer compressed them.
    Producer,
    /// `uncompressed`, `gzip`, `snappy`, `lz4` or `zstd`: batches in another codec are
    /// recompressed into this one.
    Broker(Codec),
}

impl CompressionType {
    /// The codec a batch produced with `sent` is stored in, `None` when it is stored as sent.
    /// Like Kafka, a batch already in the topic's codec is kept even if its level differs.
    pub fn target_for(self, sent: Compression) -> Option<Codec> {
        match self {
            CompressionType::Broker(codec) if codec.compression != sent => Some(codec),
            _ => None,
        }
    }
}

/// Why a payload could not be decompressed.
#[derive(Debug, thiserror::Error)]
pub enum CompressionError {
    #[error("{codec:?} data is corrupt: {message}")]
    Corrupt { codec: Compression, message: String },
    #[error("{codec:?} data inflates past the limit of {limit} bytes")]
    TooLarge { codec: Compression, limit: usize },
}

/// The xerial snappy-java framing header some clients (the Java client) wrap snappy data in.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";

/// Decompresses `data`, refusing to produce more than `limit` bytes.
pub fn decompress(
    codec: Compression,
    data: &[u8],
    limit: usize,
) -> Result<Vec<u8>, CompressionError> {
    let corrupt = |e: &dyn std::fmt::Display| CompressionError::Corrupt {
        codec,
        message: e.to_string(),
    };
    match codec {
        Compression::None => Ok(data.to_vec()),
        Compression::Gzip => read_bounded(codec, flate2::read::GzDecoder::new(data), limit),
        Compression::Lz4 => read_bounded(codec, lz4_flex::frame::FrameDecoder::new(data), limit),
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::new(data).map_err(|e| corrupt(&e))?;
            read_bounded(codec, decoder, limit)
        }
        Compression::Snappy => {
            if data.starts_with(XERIAL_MAGIC) {
                // magic(8) + version(4) + compatible version(4), then [u32 BE length][chunk]...
                let mut rest = data
                    .get(16..)
                    .ok_or_else(|| corrupt(&"xerial header cut short"))?;
                let mut out = Vec::new();
                while !rest.is_empty() {
                    let len_bytes: [u8; 4] = rest
                        .get(..4)
                        .and_then(|b| b.try_into().ok())
                        .ok_or_else(|| corrupt(&"xerial chunk length cut short"))?;
                    let len = u32::from_be_bytes(len_bytes) as usize;
                    let chunk = rest
                        .get(4..4 + len)
                        .ok_or_else(|| corrupt(&"xerial chunk cut short"))?;
                    rest = &rest[4 + len..];
                    snappy_raw(chunk, limit.saturating_sub(out.len()), &mut out)?;
                }
                Ok(out)
            } else {
                let mut out = Vec::new();
                snappy_raw(data, limit, &mut out)?;
                Ok(out)
            }
        }
    }
}

fn snappy_raw(chunk: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<(), CompressionError> {
    let codec = Compression::Snappy;
    let len = snap::raw::decompress_len(chunk).map_err(|e| CompressionError::Corrupt {
        codec,
        message: e.to_string(),
    })?;
    if len > limit {
        return Err(CompressionError::TooLarge { codec, limit });
    }
    let start = out.len();
    out.resize(start + len, 0);
    snap::raw::Decoder::new()
        .decompress(chunk, &mut out[start..])
        .map_err(|e| CompressionError::Corrupt {
            codec,
            message: e.to_string(),
        })?;
    Ok(())
}

fn read_bounded(
    codec: Compression,
    reader: impl Read,
    limit: usize,
) -> Result<Vec<u8>, CompressionError> {
    let mut out = Vec::new();
    // One byte past the limit tells "exactly at the limit" from "over it".
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| CompressionError::Corrupt {
            codec,
            message: e.to_string(),
        })?;
    if out.len() > limit {
        return Err(CompressionError::TooLarge { codec, limit });
    }
    Ok(out)
}

/// Compresses `data` with `codec` at its default level (snappy without framing, as librdkafka
/// writes it).
pub fn compress(codec: Compression, data: &[u8]) -> Vec<u8> {
    compress_with(Codec::new(codec), data)
}

/// Compresses `data` with `codec.compression` at `codec.level`. A level outside Kafka's range
/// (config validation keeps them in it) falls back to the codec's default.
pub fn compress_with(codec: Codec, data: &[u8]) -> Vec<u8> {
    match codec.compression {
        Compression::None => data.to_vec(),
        Compression::Gzip => {
            let gzip_level = u32::try_from(codec.level)
                .ok()
                .filter(|l| (level::GZIP_MIN as u32..=level::GZIP_MAX as u32).contains(l))
                .map_or_else(flate2::Compression::default, flate2::Compression::new);
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), gzip_level);
            // Writing to a Vec cannot fail.
            let _ = encoder.write_all(data);
            encoder.finish().unwrap_or_default()
        }
        Compression::Snappy => snap::raw::Encoder::new()
            .compress_vec(data)
            .unwrap_or_default(),
        Compression::Lz4 => {
            let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::new());
            let _ = encoder.write_all(data);
            encoder.finish().unwrap_or_default()
        }
        Compression::Zstd => {
            let zstd_level = if (level::ZSTD_MIN..=level::ZSTD_MAX).contains(&codec.level) {
                codec.level
            } else {
                level::ZSTD_DEFAULT
            };
            zstd::bulk::compress(data, zstd_level).unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    #[test]
    fn every_codec_round_trips() {
        let data: Vec<u8> = (0..10_000u32).flat_map(|i| i.to_le_bytes()).collect();
        for codec in ALL {
            let packed = compress(codec, &data);
            assert_eq!(
                decompress(codec, &packed, 1 << 20).unwrap(),
                data,
                "{codec:?}"
            );
        }
    }

    #[test]
    fn levels_change_the_output_and_still_round_trip() {
        let data: Vec<u8> = (0..20_000u32)
            .flat_map(|i| format!("record {} of a batch;", i % 97).into_bytes())
            .collect();
        for (compression, low, high) in [(Compression::Gzip, 1, 9), (Compression::Zstd, -5, 19)] {
            let fast = compress_with(
                Codec {
                    compression,
                    level: low,
                },
                &data,
            );
            let small = compress_with(
                Codec {
                    compression,
                    level: high,
                },
                &data,
            );
            assert!(small.len() < fast.len(), "{compression:?}");
            for packed in [fast, small] {
                assert_eq!(decompress(compression, &packed, 1 << 22).unwrap(), data);
            }
        }
        let gzip_default = compress_with(Codec::new(Compression::Gzip), &data);
        assert_eq!(
            decompress(Compression::Gzip, &gzip_default, 1 << 22).unwrap(),
            data
        );
    }

    #[test]
    fn a_batch_in_the_topic_codec_is_kept_whatever_its_level() {
        let zstd = CompressionType::Broker(Codec::new(Compression::Zstd));
        assert_eq!(zstd.target_for(Compression::Zstd), None);
        assert_eq!(
            zstd.target_for(Compression::Gzip),
            Some(Codec::new(Compression::Zstd))
        );
        assert_eq!(CompressionType::Producer.target_for(Compression::Lz4), None);
    }

    #[test]
    fn xerial_framed_snappy_is_read() {
        let data = b"hello hello hello hello".repeat(10);
        let chunk = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        let mut framed = XERIAL_MAGIC.to_vec();
        framed.extend_from_slice(&1i32.to_be_bytes());
        framed.extend_from_slice(&1i32.to_be_bytes());
        for _ in 0..2 {
            framed.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
            framed.extend_from_slice(&chunk);
        }
        let out = decompress(Compression::Snappy, &framed, 1 << 20).unwrap();
        assert_eq!(out, [data.clone(), data].concat());
    }

    #[test]
    fn a_decompression_bomb_is_refused() {
        let zeros = vec![0u8; 8 << 20];
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let packed = compress(codec, &zeros);
            assert!(
                packed.len() < zeros.len() / 10,
                "{codec:?} compresses zeros"
            );
            assert!(
                matches!(
                    decompress(codec, &packed, 1 << 20),
                    Err(CompressionError::TooLarge { .. })
                ),
                "{codec:?}"
            );
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            assert!(
                decompress(codec, b"\x82SNAPPY\x00garbage!\x00\x00\x00\x09abc", 1 << 20).is_err(),
                "{codec:?}"
            );
        }
    }
}
