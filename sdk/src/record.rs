//! Records: [`Record`] borrows an input record from the batch buffer (key, value and headers are
//! views into it, nothing is copied); [`OwnedRecord`] is what a transform writes.

/// A header: a key and an optional value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    pub key: &'a str,
    pub value: Option<&'a [u8]>,
}

/// One input record, borrowed from the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    pub(crate) topic: &'a str,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) timestamp: i64,
    pub(crate) key: Option<&'a [u8]>,
    pub(crate) value: Option<&'a [u8]>,
    pub(crate) headers: Headers<'a>,
    /// The record as it lies in the batch, so a write that keeps most of it can copy it whole.
    pub(crate) encoded: Encoded<'a>,
}

/// A record's own encoding in the input batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Encoded<'a> {
    /// The whole record, length prefix included (checked when the record was read).
    pub(crate) bytes: &'a [u8],
    pub(crate) offset_delta: i32,
    pub(crate) timestamp_delta: i64,
    /// Where the value's bytes start in `bytes`.
    pub(crate) value_at: usize,
}

/// A record's headers, read in place from the batch buffer (iterate, or look one up by key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headers<'a> {
    /// The encoded headers, whose framing was checked when the record was read.
    raw: &'a [u8],
    count: u32,
}

impl<'a> Headers<'a> {
    pub(crate) fn new(raw: &'a [u8], count: u32) -> Headers<'a> {
        Headers { raw, count }
    }
    /// How many headers the record has.
    pub fn len(&self) -> usize {
        self.count as usize
    }
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
    /// The headers, in order.
    pub fn iter(&self) -> HeaderIter<'a> {
        HeaderIter {
            bytes: self.iter_bytes(),
        }
    }
    /// The headers as `(key bytes, value)`, in order: exactly as encoded, for copying.
    pub fn iter_bytes(&self) -> HeaderBytes<'a> {
        HeaderBytes {
            raw: self.raw,
            left: self.count,
        }
    }
}

impl<'a> IntoIterator for Headers<'a> {
    type Item = Header<'a>;
    type IntoIter = HeaderIter<'a>;
    fn into_iter(self) -> HeaderIter<'a> {
        self.iter()
    }
}

impl<'a> IntoIterator for &Headers<'a> {
    type Item = Header<'a>;
    type IntoIter = HeaderIter<'a>;
    fn into_iter(self) -> HeaderIter<'a> {
        self.iter()
    }
}

/// Iterates a record's [`Headers`].
#[derive(Debug, Clone)]
pub struct HeaderIter<'a> {
    bytes: HeaderBytes<'a>,
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = Header<'a>;
    fn next(&mut self) -> Option<Header<'a>> {
        let (key, value) = self.bytes.next()?;
        Some(crate::codec::records::header_from(key, value))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.bytes.size_hint()
    }
}

/// Iterates a record's [`Headers`] as `(key bytes, value)`.
#[derive(Debug, Clone)]
pub struct HeaderBytes<'a> {
    raw: &'a [u8],
    left: u32,
}

impl<'a> Iterator for HeaderBytes<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        // Checked framing cannot fail here; stopping is the total answer if it ever did.
        let header = crate::codec::records::next_header(&mut self.raw);
        self.left = if header.is_some() { self.left - 1 } else { 0 };
        header
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left as usize, Some(self.left as usize))
    }
}

impl ExactSizeIterator for HeaderBytes<'_> {}

impl ExactSizeIterator for HeaderIter<'_> {}

impl<'a> Record<'a> {
    /// The key, `None` when null.
    pub fn key(&self) -> Option<&'a [u8]> {
        self.key
    }
    /// The value, `None` when null (a tombstone).
    pub fn value(&self) -> Option<&'a [u8]> {
        self.value
    }
    /// The value as UTF-8 text, `None` when null or not UTF-8.
    pub fn value_str(&self) -> Option<&'a str> {
        self.value.and_then(|v| std::str::from_utf8(v).ok())
    }
    /// All headers, in order.
    pub fn headers(&self) -> Headers<'a> {
        self.headers
    }
    /// The first header named `key`: `Some(None)` if present with a null value.
    pub fn header(&self, key: &str) -> Option<Option<&'a [u8]>> {
        self.headers.iter().find(|h| h.key == key).map(|h| h.value)
    }
    /// Milliseconds since the Unix epoch.
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }
    /// The offset this record has in the input topic.
    pub fn offset(&self) -> i64 {
        self.offset
    }
    /// The input partition.
    pub fn partition(&self) -> i32 {
        self.partition
    }
    /// The input topic.
    pub fn topic(&self) -> &'a str {
        self.topic
    }

    fn owned_headers(&self) -> Vec<(String, Option<Vec<u8>>)> {
        self.headers
            .iter()
            .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
            .collect()
    }

    /// A copy to write out, with key, value, headers and timestamp kept.
    pub fn to_owned_record(&self) -> OwnedRecord {
        OwnedRecord {
            key: self.key.map(<[u8]>::to_vec),
            value: self.value.map(<[u8]>::to_vec),
            headers: self.owned_headers(),
            timestamp: Some(self.timestamp),
        }
    }
    /// This record with another value; key, headers and timestamp kept.
    pub fn with_value<V: Into<Vec<u8>>>(&self, value: Option<V>) -> OwnedRecord {
        // Built field by field: the old value is never copied only to be dropped.
        OwnedRecord {
            key: self.key.map(<[u8]>::to_vec),
            value: value.map(Into::into),
            headers: self.owned_headers(),
            timestamp: Some(self.timestamp),
        }
    }
    /// This record with another key; value, headers and timestamp kept.
    pub fn with_key<K: Into<Vec<u8>>>(&self, key: Option<K>) -> OwnedRecord {
        OwnedRecord {
            key: key.map(Into::into),
            value: self.value.map(<[u8]>::to_vec),
            headers: self.owned_headers(),
            timestamp: Some(self.timestamp),
        }
    }
}

/// A record a transform writes (or a test feeds in).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnedRecord {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// `None` takes the input record's timestamp.
    pub timestamp: Option<i64>,
}

impl OwnedRecord {
    /// An empty record: null key and value, no headers.
    pub fn new() -> OwnedRecord {
        OwnedRecord::default()
    }
    /// With this key.
    pub fn with_key(mut self, key: impl Into<Vec<u8>>) -> OwnedRecord {
        self.key = Some(key.into());
        self
    }
    /// With this value.
    pub fn with_value(mut self, value: impl Into<Vec<u8>>) -> OwnedRecord {
        self.value = Some(value.into());
        self
    }
    /// With one more header.
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> OwnedRecord {
        self.headers.push((key.into(), Some(value.into())));
        self
    }
    /// With this timestamp (milliseconds since the Unix epoch).
    pub fn with_timestamp(mut self, timestamp: i64) -> OwnedRecord {
        self.timestamp = Some(timestamp);
        self
    }
}

impl From<&Record<'_>> for OwnedRecord {
    fn from(record: &Record<'_>) -> OwnedRecord {
        record.to_owned_record()
    }
}

impl From<Record<'_>> for OwnedRecord {
    fn from(record: Record<'_>) -> OwnedRecord {
        record.to_owned_record()
    }
}
