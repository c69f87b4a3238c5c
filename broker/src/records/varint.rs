//! Zig-zag varints as Kafka's record format uses them (same encoding as protobuf's `sint`).

/// Reads a zig-zag varint (at most 5 bytes for i32 values, 10 for i64) from the front of `buf`.
pub(crate) fn read_varlong(buf: &mut &[u8]) -> Option<i64> {
    let mut value: u64 = 0;
    for i in 0..10 {
        let (&byte, rest) = buf.split_first()?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    None
}

/// Reads a varint that must fit in i32.
pub(crate) fn read_varint(buf: &mut &[u8]) -> Option<i32> {
    read_varlong(buf).and_then(|v| i32::try_from(v).ok())
}

/// Appends a zig-zag varint.
pub(crate) fn write_varlong(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_edge_values() {
        for v in [
            0i64,
            1,
            -1,
            63,
            -64,
            64,
            300,
            i32::MAX as i64,
            i32::MIN as i64,
            i64::MAX,
            i64::MIN,
        ] {
            let mut out = Vec::new();
            write_varlong(&mut out, v);
            let mut slice = &out[..];
            assert_eq!(read_varlong(&mut slice), Some(v));
            assert!(slice.is_empty());
        }
    }

    #[test]
    fn known_encodings() {
        let mut out = Vec::new();
        write_varlong(&mut out, -1);
        write_varlong(&mut out, 1);
        write_varlong(&mut out, 150);
        assert_eq!(out, vec![0x01, 0x02, 0xac, 0x02]);
    }

    #[test]
    fn truncated_or_overlong_is_none() {
        let mut truncated: &[u8] = &[0x80];
        assert_eq!(read_varlong(&mut truncated), None);
        let mut overlong: &[u8] = &[0xff; 11];
        assert_eq!(read_varlong(&mut overlong), None);
    }
}
