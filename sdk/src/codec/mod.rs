//! The buffers of the guest ABI v2 (`ABI.md`): the deployment, the input batch (a small header,
//! then the records in Kafka's own v2 record format, [`records`]), the output table and the init
//! result. Both sides use this module: the guest through the SDK, the broker as the host, so the
//! two cannot drift apart.
//!
//! Decoding never panics: buffers come from the other side of a sandbox.

pub mod records;

/// A buffer that does not follow the ABI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecError(pub String);

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CodecError {}

/// What a deployment tells its module at start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deployment {
    /// Output topics; index 0 is the default.
    pub outputs: Vec<String>,
    /// `--env KEY=VALUE` pairs.
    pub env: Vec<(String, String)>,
}

/// The fixed part of an input buffer; the records follow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputHeader<'a> {
    pub topic: &'a str,
    pub partition: i32,
    /// A record's offset is `base_offset + offsetDelta`.
    pub base_offset: i64,
    /// A record's timestamp is `base_timestamp + timestampDelta`.
    pub base_timestamp: i64,
    pub record_count: u32,
}

/// One output section as the output table describes it: where in guest memory its records are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionRef {
    /// Index into [`Deployment::outputs`].
    pub output: u32,
    pub record_count: u32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    /// Guest-memory address of the records (Kafka v2 record format, offset deltas 0..count).
    pub records_ptr: u32,
    pub records_len: u32,
}

/// The output table a guest returns for a batch (host side, after the structural checks).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutputTable {
    /// In increasing output index, at most one per output, none empty.
    pub sections: Vec<SectionRef>,
    /// `(input index, message)` for each input record the transform refused.
    pub errors: Vec<(u32, String)>,
}

// ---- writing ----

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    // Lengths beyond u32 cannot occur: wasm32 memory is at most 4 GiB and the broker bounds
    // batches far below that; saturating keeps the encoder total.
    put_u32(out, u32::try_from(len).unwrap_or(u32::MAX));
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

/// Encodes the deployment buffer.
pub fn encode_deployment(deployment: &Deployment) -> Vec<u8> {
    let mut out = Vec::new();
    put_len(&mut out, deployment.outputs.len());
    for o in &deployment.outputs {
        put_str(&mut out, o);
    }
    put_len(&mut out, deployment.env.len());
    for (k, v) in &deployment.env {
        put_str(&mut out, k);
        put_str(&mut out, v);
    }
    out
}

/// Appends the fixed part of an input buffer for `records_len` bytes of records.
pub fn encode_input_header(out: &mut Vec<u8>, header: &InputHeader<'_>, records_len: u32) {
    put_str(out, header.topic);
    out.extend_from_slice(&header.partition.to_le_bytes());
    out.extend_from_slice(&header.base_offset.to_le_bytes());
    out.extend_from_slice(&header.base_timestamp.to_le_bytes());
    put_u32(out, header.record_count);
    put_u32(out, records_len);
}

/// A whole input buffer: the header, then `records` (encoded records, `header.record_count` of
/// them).
pub fn encode_batch_input(header: &InputHeader<'_>, records: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + header.topic.len() + records.len());
    encode_input_header(
        &mut out,
        header,
        u32::try_from(records.len()).unwrap_or(u32::MAX),
    );
    out.extend_from_slice(records);
    out
}

/// Appends the output table (guest side): the sections, then the refused inputs.
pub fn encode_output_table(out: &mut Vec<u8>, sections: &[SectionRef], errors: &[(u32, String)]) {
    put_len(out, sections.len());
    for s in sections {
        put_u32(out, s.output);
        put_u32(out, s.record_count);
        out.extend_from_slice(&s.base_timestamp.to_le_bytes());
        out.extend_from_slice(&s.max_timestamp.to_le_bytes());
        put_u32(out, s.records_ptr);
        put_u32(out, s.records_len);
    }
    put_len(out, errors.len());
    for (input, message) in errors {
        put_u32(out, *input);
        put_str(out, message);
    }
}

/// Encodes an init result: `None` is success.
pub fn encode_init_result(error: Option<&str>) -> Vec<u8> {
    let mut out = Vec::new();
    match error {
        None => out.push(0),
        Some(message) => {
            out.push(1);
            put_str(&mut out, message);
        }
    }
    out
}

// ---- reading ----

/// A cursor over an untrusted buffer.
struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.buf.len() < n {
            return Err(CodecError(format!(
                "{} buffer ends early: {n} more bytes needed, {} left",
                self.what,
                self.buf.len()
            )));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.array::<1>()?[0])
    }
    fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn i32(&mut self) -> Result<i32, CodecError> {
        Ok(i32::from_le_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64, CodecError> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    /// A count of items each at least `min_item` bytes long, checked against what is left so a
    /// hostile count cannot make us allocate.
    fn count(&mut self, min_item: usize) -> Result<usize, CodecError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item) > self.buf.len() {
            return Err(CodecError(format!(
                "{} buffer claims {n} items but only {} bytes are left",
                self.what,
                self.buf.len()
            )));
        }
        Ok(n)
    }
    fn str(&mut self) -> Result<&'a str, CodecError> {
        let len = self.u32()? as usize;
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .map_err(|e| CodecError(format!("{} buffer: string is not UTF-8: {e}", self.what)))
    }
    fn end(&self) -> Result<(), CodecError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(CodecError(format!(
                "{} buffer has {} trailing bytes",
                self.what,
                self.buf.len()
            )))
        }
    }
}

/// Decodes the deployment buffer.
pub fn decode_deployment(buf: &[u8]) -> Result<Deployment, CodecError> {
    let mut r = Reader {
        buf,
        what: "deployment",
    };
    let n = r.count(4)?;
    let outputs = (0..n)
        .map(|_| r.str().map(str::to_string))
        .collect::<Result<_, _>>()?;
    let n = r.count(8)?;
    let env = (0..n)
        .map(|_| Ok((r.str()?.to_string(), r.str()?.to_string())))
        .collect::<Result<_, CodecError>>()?;
    r.end()?;
    Ok(Deployment { outputs, env })
}

/// Decodes an input buffer: its header and its records area (guest side). The records are read
/// with [`records::RecordReader`], which checks each one's framing.
pub fn decode_batch_input(buf: &[u8]) -> Result<(InputHeader<'_>, &[u8]), CodecError> {
    let mut r = Reader { buf, what: "input" };
    let topic = r.str()?;
    let partition = r.i32()?;
    let base_offset = r.i64()?;
    let base_timestamp = r.i64()?;
    let record_count = r.u32()?;
    let records_len = r.u32()? as usize;
    // A record takes at least 7 bytes, which bounds a hostile count.
    if (record_count as usize).saturating_mul(7) > records_len {
        return Err(CodecError(format!(
            "input buffer claims {record_count} records in {records_len} bytes"
        )));
    }
    let records = r.take(records_len)?;
    r.end()?;
    Ok((
        InputHeader {
            topic,
            partition,
            base_offset,
            base_timestamp,
            record_count,
        },
        records,
    ))
}

/// Decodes the output table (host side) and checks what can be checked without guest memory:
/// sections in increasing output index below `output_count`, none empty, errors naming inputs
/// below `input_count`. The records themselves the host checks where they lie.
pub fn decode_output_table(
    buf: &[u8],
    input_count: u32,
    output_count: u32,
) -> Result<OutputTable, CodecError> {
    let mut r = Reader {
        buf,
        what: "output",
    };
    let n = r.count(32)?;
    let mut sections = Vec::with_capacity(n);
    for _ in 0..n {
        let section = SectionRef {
            output: r.u32()?,
            record_count: r.u32()?,
            base_timestamp: r.i64()?,
            max_timestamp: r.i64()?,
            records_ptr: r.u32()?,
            records_len: r.u32()?,
        };
        if section.output >= output_count {
            return Err(CodecError(format!(
                "output index {} but the deployment has {output_count} outputs",
                section.output
            )));
        }
        if let Some(last) = sections.last().map(|s: &SectionRef| s.output) {
            if section.output <= last {
                return Err(CodecError(format!(
                    "output sections are not in increasing output order ({last} then {})",
                    section.output
                )));
            }
        }
        if section.record_count == 0 {
            return Err(CodecError(format!(
                "output section {} holds no records",
                section.output
            )));
        }
        sections.push(section);
    }
    let n = r.count(8)?;
    let mut errors = Vec::with_capacity(n);
    for _ in 0..n {
        let input = r.u32()?;
        if input >= input_count {
            return Err(CodecError(format!(
                "error names input record {input} of a batch of {input_count}"
            )));
        }
        errors.push((input, r.str()?.to_string()));
    }
    r.end()?;
    Ok(OutputTable { sections, errors })
}

/// Decodes an init result: `Ok(None)` is success, `Ok(Some(message))` the guest's refusal.
pub fn decode_init_result(buf: &[u8]) -> Result<Option<String>, CodecError> {
    let mut r = Reader {
        buf,
        what: "init result",
    };
    let result = match r.u8()? {
        0 => None,
        1 => Some(r.str()?.to_string()),
        other => {
            return Err(CodecError(format!(
                "init result status {other} is not 0 or 1"
            )))
        }
    };
    r.end()?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::records::{write_record, RecordReader};

    fn two_records() -> Vec<u8> {
        let mut area = Vec::new();
        let headers = [(&b"h"[..], Some(&b"v"[..])), (&b"n"[..], None)];
        write_record(&mut area, 0, 5, Some(b"k"), None, headers.iter().copied());
        write_record(&mut area, 1, -1, None, Some(b""), std::iter::empty());
        area
    }

    #[test]
    fn input_round_trips_with_nulls_and_headers() {
        let header = InputHeader {
            topic: "in",
            partition: 3,
            base_offset: 7,
            base_timestamp: 1_700_000_000_000,
            record_count: 2,
        };
        let buf = encode_batch_input(&header, &two_records());
        let (decoded, records) = decode_batch_input(&buf).unwrap();
        assert_eq!(decoded, header);
        let records: Vec<_> = RecordReader::new(&decoded, records)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].topic(), "in");
        assert_eq!(records[0].partition(), 3);
        assert_eq!(records[0].offset(), 7);
        assert_eq!(records[1].offset(), 8);
        assert_eq!(records[0].timestamp(), 1_700_000_000_005);
        assert_eq!(records[1].timestamp(), 1_699_999_999_999);
        assert_eq!(records[0].key(), Some(&b"k"[..]));
        assert_eq!(records[0].value(), None);
        assert_eq!(records[0].header("n"), Some(None));
        assert_eq!(records[0].header("h"), Some(Some(&b"v"[..])));
        assert_eq!(records[0].headers().len(), 2);
        assert_eq!(records[1].value(), Some(&b""[..]));
        assert_eq!(records[1].key(), None);
    }

    #[test]
    fn hostile_input_buffers_are_errors_not_panics() {
        let header = InputHeader {
            topic: "in",
            partition: 0,
            base_offset: 0,
            base_timestamp: 0,
            record_count: 2,
        };
        let good = encode_batch_input(&header, &two_records());
        let read_all = |buf: &[u8]| -> Result<usize, CodecError> {
            let (h, records) = decode_batch_input(buf)?;
            RecordReader::new(&h, records).try_fold(0, |n, r| r.map(|_| n + 1))
        };
        assert_eq!(read_all(&good), Ok(2));
        for cut in 0..good.len() {
            assert!(read_all(&good[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..good.len() {
            for b in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[i] = b;
                let _ = read_all(&bad);
            }
        }
        // More records claimed than the area can hold, and fewer than it holds.
        let claims = |count: u32| {
            let h = InputHeader {
                record_count: count,
                ..header
            };
            read_all(&encode_batch_input(&h, &two_records()))
        };
        assert!(claims(u32::MAX).unwrap_err().0.contains("claims"));
        assert!(claims(3).is_err());
        assert!(claims(1).unwrap_err().0.contains("past its last record"));
    }

    #[test]
    fn the_output_table_round_trips_and_is_checked() {
        let section = |output, record_count| SectionRef {
            output,
            record_count,
            base_timestamp: 10,
            max_timestamp: 20,
            records_ptr: 4096,
            records_len: 50,
        };
        let encode = |sections: &[SectionRef], errors: &[(u32, String)]| {
            let mut out = Vec::new();
            encode_output_table(&mut out, sections, errors);
            out
        };
        let good = encode(&[section(0, 2), section(2, 1)], &[(1, "bad".into())]);
        let table = decode_output_table(&good, 2, 3).unwrap();
        assert_eq!(table.sections, vec![section(0, 2), section(2, 1)]);
        assert_eq!(table.errors, vec![(1, "bad".to_string())]);
        let refused = |buf: Vec<u8>, inputs, outputs| decode_output_table(&buf, inputs, outputs);
        assert!(refused(good.clone(), 2, 2)
            .unwrap_err()
            .0
            .contains("output index 2"));
        assert!(refused(good.clone(), 1, 3)
            .unwrap_err()
            .0
            .contains("input record 1"));
        assert!(refused(encode(&[section(1, 1), section(1, 1)], &[]), 1, 3)
            .unwrap_err()
            .0
            .contains("increasing"));
        assert!(refused(encode(&[section(0, 0)], &[]), 1, 3)
            .unwrap_err()
            .0
            .contains("no records"));
        for cut in 0..good.len() {
            assert!(decode_output_table(&good[..cut], 2, 3).is_err());
        }
        let mut huge = Vec::new();
        put_u32(&mut huge, u32::MAX);
        assert!(refused(huge, 1, 1).unwrap_err().0.contains("claims"));
    }

    #[test]
    fn deployment_and_init_result_round_trip() {
        let d = Deployment {
            outputs: vec!["a".into(), "b".into()],
            env: vec![("K".into(), "V".into())],
        };
        assert_eq!(decode_deployment(&encode_deployment(&d)).unwrap(), d);
        assert_eq!(decode_init_result(&encode_init_result(None)).unwrap(), None);
        assert_eq!(
            decode_init_result(&encode_init_result(Some("no"))).unwrap(),
            Some("no".to_string())
        );
    }
}
