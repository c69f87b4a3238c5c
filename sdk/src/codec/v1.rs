//! The v1 batch buffers, kept only as the bridge for the broker's write path until it calls the
//! v2 host API (`Guest::transform`): the broker encodes v1 input, its guest runtime translates
//! to v2 and back. No module speaks v1 any more; delete this with the bridge.

use super::{put_len, put_str, put_u32, CodecError, Reader};

/// An input record as the host writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InRecord<'a> {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: Vec<(&'a str, Option<&'a [u8]>)>,
}

/// One output record as the host reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutRecord {
    /// The input record (index within the batch) that produced it.
    pub input_index: u32,
    /// Index into the deployment's outputs.
    pub output: u32,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// What the guest returned for a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutput {
    pub records: Vec<OutRecord>,
    /// `(input index, message)` for each input record the transform refused.
    pub errors: Vec<(u32, String)>,
}

fn put_opt_bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => out.extend_from_slice(&(-1i32).to_le_bytes()),
        Some(b) => {
            let len = i32::try_from(b.len()).unwrap_or(i32::MAX);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(b);
        }
    }
}

/// Encodes a v1 input buffer.
pub fn encode_input(topic: &str, partition: i32, records: &[InRecord<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    put_str(&mut out, topic);
    out.extend_from_slice(&partition.to_le_bytes());
    put_len(&mut out, records.len());
    for r in records {
        out.extend_from_slice(&r.offset.to_le_bytes());
        out.extend_from_slice(&r.timestamp.to_le_bytes());
        put_opt_bytes(&mut out, r.key);
        put_opt_bytes(&mut out, r.value);
        put_len(&mut out, r.headers.len());
        for (k, v) in &r.headers {
            put_str(&mut out, k);
            put_opt_bytes(&mut out, *v);
        }
    }
    out
}

/// A header as read from a buffer: key and optional value.
type BorrowedHeader<'a> = (&'a str, Option<&'a [u8]>);

impl<'a> Reader<'a> {
    fn opt_bytes(&mut self) -> Result<Option<&'a [u8]>, CodecError> {
        match self.i32()? {
            -1 => Ok(None),
            n if n < 0 => Err(CodecError(format!(
                "{} buffer: negative length {n}",
                self.what
            ))),
            n => self.take(n as usize).map(Some),
        }
    }
    fn headers(&mut self) -> Result<Vec<BorrowedHeader<'a>>, CodecError> {
        let n = self.count(8)?;
        (0..n)
            .map(|_| Ok((self.str()?, self.opt_bytes()?)))
            .collect()
    }
}

/// Decodes a v1 input buffer: topic, partition, records.
pub fn decode_input_v1(buf: &[u8]) -> Result<(&str, i32, Vec<InRecord<'_>>), CodecError> {
    let mut r = Reader { buf, what: "input" };
    let topic = r.str()?;
    let partition = r.i32()?;
    let n = r.count(28)?;
    let mut records = Vec::with_capacity(n);
    for _ in 0..n {
        records.push(InRecord {
            offset: r.i64()?,
            timestamp: r.i64()?,
            key: r.opt_bytes()?,
            value: r.opt_bytes()?,
            headers: r.headers()?,
        });
    }
    r.end()?;
    Ok((topic, partition, records))
}

/// Writes a v1 output buffer from borrowed fields.
#[derive(Debug, Default)]
pub struct V1OutputWriter {
    buf: Vec<u8>,
    count: u32,
}

impl V1OutputWriter {
    pub fn new() -> V1OutputWriter {
        V1OutputWriter {
            buf: vec![0; 4],
            count: 0,
        }
    }
    /// One output record.
    pub fn push<'h>(
        &mut self,
        input_index: u32,
        output: u32,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: impl ExactSizeIterator<Item = (&'h [u8], Option<&'h [u8]>)>,
    ) {
        let out = &mut self.buf;
        put_u32(out, input_index);
        put_u32(out, output);
        out.extend_from_slice(&timestamp.to_le_bytes());
        put_opt_bytes(out, key);
        put_opt_bytes(out, value);
        put_len(out, headers.len());
        for (k, v) in headers {
            put_str(out, &String::from_utf8_lossy(k));
            put_opt_bytes(out, v);
        }
        self.count += 1;
    }
    /// The buffer, with the refused inputs.
    pub fn finish(mut self, errors: &[(u32, String)]) -> Vec<u8> {
        self.buf[..4].copy_from_slice(&self.count.to_le_bytes());
        put_len(&mut self.buf, errors.len());
        for (input, message) in errors {
            put_u32(&mut self.buf, *input);
            put_str(&mut self.buf, message);
        }
        self.buf
    }
}

/// Decodes and checks a v1 output buffer (host side): indices in range and in order.
pub fn decode_output(
    buf: &[u8],
    input_count: usize,
    output_count: usize,
) -> Result<BatchOutput, CodecError> {
    let mut r = Reader {
        buf,
        what: "output",
    };
    let n = r.count(28)?;
    let mut records = Vec::with_capacity(n);
    let mut last_input = 0u32;
    for _ in 0..n {
        let input_index = r.u32()?;
        let output = r.u32()?;
        if input_index as usize >= input_count {
            return Err(CodecError(format!(
                "output names input record {input_index} of a batch of {input_count}"
            )));
        }
        if input_index < last_input {
            return Err(CodecError("output records are not in input order".into()));
        }
        last_input = input_index;
        if output as usize >= output_count {
            return Err(CodecError(format!(
                "output index {output} but the deployment has {output_count} outputs"
            )));
        }
        let timestamp = r.i64()?;
        let key = r.opt_bytes()?.map(<[u8]>::to_vec);
        let value = r.opt_bytes()?.map(<[u8]>::to_vec);
        let headers = r
            .headers()?
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.map(<[u8]>::to_vec)))
            .collect();
        records.push(OutRecord {
            input_index,
            output,
            timestamp,
            key,
            value,
            headers,
        });
    }
    let n = r.count(8)?;
    let mut errors = Vec::with_capacity(n);
    for _ in 0..n {
        let input = r.u32()?;
        if input as usize >= input_count {
            return Err(CodecError(format!(
                "error names input record {input} of a batch of {input_count}"
            )));
        }
        errors.push((input, r.str()?.to_string()));
    }
    r.end()?;
    Ok(BatchOutput { records, errors })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_buffers_round_trip() {
        let records = vec![InRecord {
            offset: 7,
            timestamp: 9,
            key: Some(b"k"),
            value: None,
            headers: vec![("h", Some(b"v")), ("n", None)],
        }];
        let buf = encode_input("in", 3, &records);
        assert_eq!(decode_input_v1(&buf).unwrap(), ("in", 3, records));
        let mut w = V1OutputWriter::new();
        w.push(0, 1, 5, None, Some(b"v"), [(&b"h"[..], None)].into_iter());
        let out = decode_output(&w.finish(&[(0, "no".into())]), 1, 2).unwrap();
        assert_eq!(out.records[0].output, 1);
        assert_eq!(out.records[0].headers, vec![("h".to_string(), None)]);
        assert_eq!(out.errors, vec![(0, "no".to_string())]);
        assert!(decode_output(&V1OutputWriter::new().finish(&[(3, "x".into())]), 1, 1).is_err());
    }
}
