//! The buffers of the guest ABI (`ABI.md`): the deployment, the input batch, the output and the
//! init result. Both sides use this module: the guest through the SDK, the broker as the host, so
//! the two cannot drift apart.
//!
//! Decoding never panics: buffers come from the other side of a sandbox.

use crate::record::{Header, OwnedRecord, Record};

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

/// One output record as the host reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutRecord {
    /// The input record (index within the batch) that produced it.
    pub input_index: u32,
    /// Index into [`Deployment::outputs`].
    pub output: u32,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// What the guest returns for a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutput {
    pub records: Vec<OutRecord>,
    /// `(input index, message)` for each input record the transform refused.
    pub errors: Vec<(u32, String)>,
}

/// An input record as the host writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InRecord<'a> {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: Vec<(&'a str, Option<&'a [u8]>)>,
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

fn put_headers<'h>(
    out: &mut Vec<u8>,
    headers: impl ExactSizeIterator<Item = (&'h str, Option<&'h [u8]>)>,
) {
    put_len(out, headers.len());
    for (k, v) in headers {
        put_str(out, k);
        put_opt_bytes(out, v);
    }
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

/// Encodes the input buffer.
pub fn encode_input(topic: &str, partition: i32, records: &[InRecord<'_>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        32 + records
            .iter()
            .map(|r| 32 + r.key.map_or(0, <[u8]>::len) + r.value.map_or(0, <[u8]>::len))
            .sum::<usize>(),
    );
    put_str(&mut out, topic);
    out.extend_from_slice(&partition.to_le_bytes());
    put_len(&mut out, records.len());
    for r in records {
        out.extend_from_slice(&r.offset.to_le_bytes());
        out.extend_from_slice(&r.timestamp.to_le_bytes());
        put_opt_bytes(&mut out, r.key);
        put_opt_bytes(&mut out, r.value);
        put_headers(&mut out, r.headers.iter().copied());
    }
    out
}

/// Encodes the output buffer (guest side). `written` is `(input index, output, record)`;
/// a record without a timestamp takes `default_timestamps[input index]`.
pub fn encode_output(
    written: &[(u32, u32, OwnedRecord)],
    default_timestamps: &[i64],
    errors: &[(u32, String)],
) -> Vec<u8> {
    let mut out = Vec::new();
    put_len(&mut out, written.len());
    for (input, output, r) in written {
        put_u32(&mut out, *input);
        put_u32(&mut out, *output);
        let ts = r
            .timestamp
            .or_else(|| default_timestamps.get(*input as usize).copied())
            .unwrap_or(0);
        out.extend_from_slice(&ts.to_le_bytes());
        put_opt_bytes(&mut out, r.key.as_deref());
        put_opt_bytes(&mut out, r.value.as_deref());
        put_headers(
            &mut out,
            r.headers.iter().map(|(k, v)| (k.as_str(), v.as_deref())),
        );
    }
    put_len(&mut out, errors.len());
    for (input, message) in errors {
        put_u32(&mut out, *input);
        put_str(&mut out, message);
    }
    out
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

/// A header as read from a buffer: key and optional value.
type BorrowedHeader<'a> = (&'a str, Option<&'a [u8]>);

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

/// Decodes the input buffer into borrowed records (guest side).
pub fn decode_input(buf: &[u8]) -> Result<Vec<Record<'_>>, CodecError> {
    let mut r = Reader { buf, what: "input" };
    let topic = r.str()?;
    let partition = r.i32()?;
    let n = r.count(28)?;
    let mut records = Vec::with_capacity(n);
    for _ in 0..n {
        let offset = r.i64()?;
        let timestamp = r.i64()?;
        let key = r.opt_bytes()?;
        let value = r.opt_bytes()?;
        let headers = r
            .headers()?
            .into_iter()
            .map(|(key, value)| Header { key, value })
            .collect();
        records.push(Record {
            topic,
            partition,
            offset,
            timestamp,
            key,
            value,
            headers,
        });
    }
    r.end()?;
    Ok(records)
}

/// Decodes and checks the output buffer (host side): indices in range and in order.
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

    #[test]
    fn input_round_trips_with_nulls_and_headers() {
        let records = vec![
            InRecord {
                offset: 7,
                timestamp: 1_700_000_000_000,
                key: Some(b"k"),
                value: None,
                headers: vec![("h", Some(b"v")), ("n", None)],
            },
            InRecord {
                offset: 8,
                timestamp: 1,
                key: None,
                value: Some(b""),
                headers: vec![],
            },
        ];
        let buf = encode_input("in", 3, &records);
        let decoded = decode_input(&buf).unwrap();
        assert_eq!(decoded.len(), 2);
        assert_eq!(decoded[0].topic(), "in");
        assert_eq!(decoded[0].partition(), 3);
        assert_eq!(decoded[0].offset(), 7);
        assert_eq!(decoded[0].key(), Some(&b"k"[..]));
        assert_eq!(decoded[0].value(), None);
        assert_eq!(decoded[0].header("n"), Some(None));
        assert_eq!(decoded[0].header("h"), Some(Some(&b"v"[..])));
        assert_eq!(decoded[1].value(), Some(&b""[..]));
        assert_eq!(decoded[1].key(), None);
    }

    #[test]
    fn output_round_trips_and_takes_input_timestamps() {
        let written = vec![
            (0, 1, OwnedRecord::new().with_value("a")),
            (1, 0, OwnedRecord::new().with_key("k").with_timestamp(5)),
        ];
        let buf = encode_output(&written, &[100, 200], &[(1, "bad".into())]);
        let out = decode_output(&buf, 2, 2).unwrap();
        assert_eq!(out.records[0].timestamp, 100);
        assert_eq!(out.records[0].output, 1);
        assert_eq!(out.records[1].timestamp, 5);
        assert_eq!(out.errors, vec![(1, "bad".to_string())]);
    }

    #[test]
    fn malformed_output_is_refused_not_panicked_on() {
        let written = vec![(0, 3, OwnedRecord::new())];
        let buf = encode_output(&written, &[0], &[]);
        assert!(decode_output(&buf, 1, 2)
            .unwrap_err()
            .0
            .contains("output index 3"));
        assert!(decode_output(&buf[..5], 1, 4).is_err());
        let mut huge = Vec::new();
        put_u32(&mut huge, u32::MAX);
        assert!(decode_output(&huge, 1, 1).unwrap_err().0.contains("claims"));
        let out_of_order = encode_output(
            &[(1, 0, OwnedRecord::new()), (0, 0, OwnedRecord::new())],
            &[0, 0],
            &[],
        );
        assert!(decode_output(&out_of_order, 2, 1).is_err());
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
