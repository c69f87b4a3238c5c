//! Sinks: deliver records to an outside system from inside the broker's sandbox. A sink function
//! gets a batch of records and reports delivered, retry later, or failed for good:
//!
//! ```
//! use sluice_sdk::prelude::*;
//!
//! #[sink]
//! fn deliver(records: &[Record<'_>]) -> Result<(), SinkError> {
//!     for r in records {
//!         let line = format!("{}\n", r.value_str().unwrap_or("null"));
//!         sluice_sdk::sink::append_file("out.txt", line.as_bytes()).map_err(SinkError::retryable)?;
//!     }
//!     Ok(())
//! }
//! ```
//!
//! Only what the deployment grants is reachable: files under its one directory
//! ([`append_file`]), HTTP requests to its granted base URLs ([`http`]).

use crate::Record;

/// How a delivery failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkError {
    /// Try the same batch again later (with backoff): the outside system is unavailable.
    Retryable(String),
    /// These records cannot be delivered: the deployment's `errors.tolerance` decides (dead-letter
    /// topic, skip, or fail the task). The broker retries the batch record by record to find
    /// which ones.
    Permanent(String),
}

impl SinkError {
    pub fn retryable(e: impl std::fmt::Display) -> SinkError {
        SinkError::Retryable(e.to_string())
    }
    pub fn permanent(e: impl std::fmt::Display) -> SinkError {
        SinkError::Permanent(e.to_string())
    }
}

impl std::fmt::Display for SinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SinkError::Retryable(m) => write!(f, "retryable: {m}"),
            SinkError::Permanent(m) => write!(f, "permanent: {m}"),
        }
    }
}

/// A capability call that was refused or failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapabilityError(pub String);

impl std::fmt::Display for CapabilityError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CapabilityError {}

/// An HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Encodes the sink result buffer (`ABI.md`).
pub fn encode_result(result: &Result<(), SinkError>) -> Vec<u8> {
    let mut out = Vec::new();
    let (status, message) = match result {
        Ok(()) => (0u8, ""),
        Err(SinkError::Retryable(m)) => (1, m.as_str()),
        Err(SinkError::Permanent(m)) => (2, m.as_str()),
    };
    out.push(status);
    out.extend_from_slice(&(message.len() as u32).to_le_bytes());
    out.extend_from_slice(message.as_bytes());
    out
}

/// Decodes a sink result buffer (host side): `None` if malformed.
pub fn decode_result(buf: &[u8]) -> Option<Result<(), SinkError>> {
    let (&status, rest) = buf.split_first()?;
    let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let message = std::str::from_utf8(rest.get(4..4 + len)?).ok()?.to_string();
    if rest.len() != 4 + len {
        return None;
    }
    match status {
        0 => Some(Ok(())),
        1 => Some(Err(SinkError::Retryable(message))),
        2 => Some(Err(SinkError::Permanent(message))),
        _ => None,
    }
}

/// Encodes an HTTP request buffer: method, url, headers, body (`ABI.md`).
pub fn encode_request(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let put = |out: &mut Vec<u8>, s: &[u8]| {
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s);
    };
    put(&mut out, method.as_bytes());
    put(&mut out, url.as_bytes());
    out.extend_from_slice(&(headers.len() as u32).to_le_bytes());
    for (k, v) in headers {
        put(&mut out, k.as_bytes());
        put(&mut out, v.as_bytes());
    }
    put(&mut out, body);
    out
}

/// A decoded HTTP request (host side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Decodes an HTTP request buffer (host side): `None` if malformed.
pub fn decode_request(buf: &[u8]) -> Option<Request> {
    fn take(buf: &[u8], at: &mut usize) -> Option<Vec<u8>> {
        let len = u32::from_le_bytes(buf.get(*at..*at + 4)?.try_into().ok()?) as usize;
        let v = buf.get(*at + 4..at.checked_add(4 + len)?)?.to_vec();
        *at += 4 + len;
        Some(v)
    }
    let mut at = 0usize;
    let method = String::from_utf8(take(buf, &mut at)?).ok()?;
    let url = String::from_utf8(take(buf, &mut at)?).ok()?;
    let count = u32::from_le_bytes(buf.get(at..at + 4)?.try_into().ok()?) as usize;
    at += 4;
    if count > 256 {
        return None;
    }
    let mut headers = Vec::with_capacity(count);
    for _ in 0..count {
        let k = String::from_utf8(take(buf, &mut at)?).ok()?;
        let v = String::from_utf8(take(buf, &mut at)?).ok()?;
        headers.push((k, v));
    }
    let body = take(buf, &mut at)?;
    Some(Request {
        method,
        url,
        headers,
        body,
    })
}

/// Appends `data` to `path`, relative to the deployment's granted directory (created if missing).
pub fn append_file(path: &str, data: &[u8]) -> Result<(), CapabilityError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::__private::wasm_append_file(path, data).map_err(CapabilityError)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::testing::sink_append_file(path, data).map_err(CapabilityError)
    }
}

/// Sends an HTTP request to a URL under one of the deployment's granted base URLs.
pub fn http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response, CapabilityError> {
    let request = encode_request(method, url, headers, body);
    #[cfg(target_arch = "wasm32")]
    {
        crate::__private::wasm_http(&request).map_err(CapabilityError)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::testing::sink_http(&request).map_err(CapabilityError)
    }
}

/// Runs a sink over an input buffer (the SDK's side of `sluice_on_sink_batch`); returns the
/// sink result buffer.
pub fn run_sink<F>(input: &[u8], sink: &mut F) -> Vec<u8>
where
    F: FnMut(&[Record<'_>]) -> Result<(), SinkError>,
{
    let records = crate::codec::decode_batch_input(input).and_then(|(header, records)| {
        crate::codec::records::RecordReader::new(&header, records).collect::<Result<Vec<_>, _>>()
    });
    let result = match records {
        Ok(records) => sink(&records),
        Err(e) => Err(SinkError::Permanent(format!("malformed input: {e}"))),
    };
    encode_result(&result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_and_requests_round_trip() {
        for r in [
            Ok(()),
            Err(SinkError::Retryable("later".into())),
            Err(SinkError::Permanent("never".into())),
        ] {
            assert_eq!(decode_result(&encode_result(&r)), Some(r));
        }
        assert_eq!(decode_result(&[9, 0, 0, 0, 0]), None);
        let req = encode_request("POST", "http://h/x", &[("a", "b")], b"body");
        let d = decode_request(&req).unwrap();
        assert_eq!(
            (d.method.as_str(), d.url.as_str(), d.body.as_slice()),
            ("POST", "http://h/x", &b"body"[..])
        );
        assert_eq!(d.headers, vec![("a".to_string(), "b".to_string())]);
        assert!(decode_request(&req[..5]).is_none());
    }
}
