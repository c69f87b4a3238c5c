//! Where a transform writes: its default output, or any other output topic of its deployment.
//!
//! Each write is encoded at once, in Kafka's v2 record format, into that output's section buffer
//! (ABI v2): the host copies a section straight into the output batch. The buffers are kept
//! across batches, so writing allocates nothing once they have grown.

use crate::codec::records::{write_record, write_record_locating_value};
use crate::{Error, OwnedRecord, Record};

/// One output's records of the current batch.
#[derive(Debug, Default)]
pub(crate) struct Section {
    /// Encoded records, offset deltas 0..count, timestamp deltas from `base_timestamp`.
    pub(crate) records: Vec<u8>,
    pub(crate) count: u32,
    /// The first record's timestamp.
    pub(crate) base_timestamp: i64,
    /// The largest timestamp delta: `max_timestamp` is `base_timestamp + max_delta`, computed
    /// the way the host checks it.
    pub(crate) max_delta: i64,
    /// `(records.len(), count, max_delta)` before the current input record first wrote
    /// here, so a record that fails can take back what it wrote.
    mark: (usize, u32, i64),
    /// The input index + 1 the mark was taken for (0: none in this batch).
    marked_for: u32,
}

impl Section {
    /// Readies the section for one more record at `timestamp` from input record `marker - 1`:
    /// remembers how it was before that input's first write here (so a failing record can take
    /// its writes back) and returns the record's timestamp delta.
    fn begin_write(&mut self, marker: u32, timestamp: i64) -> i64 {
        if self.marked_for != marker {
            self.mark = (self.records.len(), self.count, self.max_delta);
            self.marked_for = marker;
        }
        if self.count == 0 {
            self.base_timestamp = timestamp;
            self.max_delta = 0;
        }
        timestamp.wrapping_sub(self.base_timestamp)
    }

    /// Counts the record just written, with timestamp delta `delta`.
    fn end_write(&mut self, delta: i64) {
        self.count += 1;
        self.max_delta = self.max_delta.max(delta);
    }
}

/// Where a transform writes the records for the current input record.
#[derive(Debug, Default)]
pub struct Output {
    /// The deployment's output topics; index 0 is the default output.
    outputs: Vec<String>,
    /// One per output, by index.
    pub(crate) sections: Vec<Section>,
    /// `(input index, message)` for each input record the transform refused in this batch.
    pub(crate) errors: Vec<(u32, String)>,
    /// The current input record: its index in the batch and its timestamp (the default for
    /// what it writes).
    input_index: u32,
    input_timestamp: i64,
    /// `(input index, output)` of every write, for the native test harness only, which reports
    /// writes in the order they were made across outputs.
    pub(crate) trace: Option<Vec<(u32, u32)>>,
    trace_mark: usize,
}

impl Output {
    pub(crate) fn new(outputs: Vec<String>) -> Output {
        let sections = outputs.iter().map(|_| Section::default()).collect();
        Output {
            outputs,
            sections,
            ..Output::default()
        }
    }

    /// Forgets the last batch (keeping the buffers' capacity).
    pub(crate) fn start_batch(&mut self) {
        for s in &mut self.sections {
            s.records.clear();
            s.count = 0;
            s.marked_for = 0;
        }
        self.errors.clear();
        if let Some(trace) = &mut self.trace {
            trace.clear();
        }
    }

    /// Starts input record `index`, whose writes default to `timestamp`.
    pub(crate) fn start_record(&mut self, index: u32, timestamp: i64) {
        self.input_index = index;
        self.input_timestamp = timestamp;
        self.trace_mark = self.trace.as_ref().map_or(0, Vec::len);
    }

    /// Takes back everything the current input record wrote, and lists it as refused.
    pub(crate) fn refuse_record(&mut self, message: String) {
        let marker = self.input_index + 1;
        for s in &mut self.sections {
            if s.marked_for == marker {
                let (len, count, max) = s.mark;
                s.records.truncate(len);
                s.count = count;
                s.max_delta = max;
                s.marked_for = 0;
            }
        }
        if let Some(trace) = &mut self.trace {
            trace.truncate(self.trace_mark);
        }
        self.errors.push((self.input_index, message));
    }

    /// Writes to the default (first) output topic.
    pub fn write(&mut self, record: impl Into<OwnedRecord>) -> Result<(), Error> {
        if self.outputs.is_empty() {
            return Err(Error::new("this deployment has no output topic"));
        }
        self.push(0, &record.into());
        Ok(())
    }

    /// Writes to the output topic named `topic`, which must be one the deployment was given.
    pub fn write_to(&mut self, topic: &str, record: impl Into<OwnedRecord>) -> Result<(), Error> {
        let index = self
            .outputs
            .iter()
            .position(|o| o == topic)
            .ok_or_else(|| {
                Error::new(format!(
                    "'{topic}' is not an output of this deployment (outputs: {})",
                    self.outputs.join(", ")
                ))
            })?;
        self.push(index, &record.into());
        Ok(())
    }

    /// Writes `record` to the default output with its value edited in place: the input value
    /// is copied straight into the output's section and `edit` changes it there, keeping its
    /// length. Key, headers and timestamp are kept; a null value stays null (`edit` is not
    /// called). Unlike `out.write(record.with_value(...))` nothing is allocated or copied twice,
    /// which is what a same-length rewrite (upper-casing, masking) wants.
    pub fn write_edited(
        &mut self,
        record: &Record<'_>,
        edit: impl FnOnce(&mut [u8]),
    ) -> Result<(), Error> {
        let marker = self.input_index + 1;
        let Some(s) = self.sections.first_mut() else {
            return Err(Error::new("this deployment has no output topic"));
        };
        let timestamp = record.timestamp();
        let e = record.encoded;
        let delta = s.begin_write(marker, timestamp);
        // A batch's records, and so its offset deltas, stay far below i32::MAX (the host bounds
        // batch sizes).
        let offset_delta = s.count as i32;
        let value_at = if e.offset_delta == offset_delta && e.timestamp_delta == delta {
            // The record as the input encoded it is right here too (so it is while each input
            // writes one record): one copy instead of encoding it field by field.
            let start = s.records.len() + e.value_at;
            s.records.extend_from_slice(e.bytes);
            record.value().map(|v| start..start + v.len())
        } else {
            write_record_locating_value(
                &mut s.records,
                offset_delta,
                delta,
                record.key(),
                record.value(),
                record.headers().iter_bytes(),
            )
        };
        s.end_write(delta);
        if let Some(value) = value_at.and_then(|at| s.records.get_mut(at)) {
            edit(value);
        }
        self.traced(0);
        Ok(())
    }

    fn push(&mut self, output: usize, r: &OwnedRecord) {
        let timestamp = r.timestamp.unwrap_or(self.input_timestamp);
        let marker = self.input_index + 1;
        let Some(s) = self.sections.get_mut(output) else {
            return;
        };
        let delta = s.begin_write(marker, timestamp);
        // A batch's records, and so its offset deltas, stay far below i32::MAX (the host bounds
        // batch sizes).
        write_record(
            &mut s.records,
            s.count as i32,
            delta,
            r.key.as_deref(),
            r.value.as_deref(),
            r.headers.iter().map(|(k, v)| (k.as_bytes(), v.as_deref())),
        );
        s.end_write(delta);
        self.traced(output);
    }

    /// Notes a write to `output` for the native test harness.
    fn traced(&mut self, output: usize) {
        if let Some(trace) = &mut self.trace {
            // The deployment's output list is bounded far below u32::MAX by the broker.
            trace.push((self.input_index, output as u32));
        }
    }

    /// The deployment's output topics, the default first.
    pub fn outputs(&self) -> &[String] {
        &self.outputs
    }
}

#[cfg(test)]
mod tests {
    use crate::codec::records::{next_record, write_record};
    use crate::codec::{encode_batch_input, InputHeader};
    use crate::prelude::*;
    use crate::testing::Harness;

    fn uppercase_all_but_bad(r: Record<'_>, out: &mut Output) -> Result<(), Error> {
        if r.value() == Some(&b"bad"[..]) {
            return Err(Error::new("refused"));
        }
        out.write_edited(&r, |v| v.make_ascii_uppercase())
    }

    fn inputs() -> Vec<OwnedRecord> {
        vec![
            OwnedRecord::new()
                .with_key("k")
                .with_value("ab")
                .with_header("h", "v")
                .with_timestamp(10),
            OwnedRecord::new().with_value("bad").with_timestamp(11),
            // After a refused record the input's encoding no longer fits the section (its
            // offset delta is one ahead): this one is encoded afresh.
            OwnedRecord::new()
                .with_value("cd")
                .with_header("n", "1")
                .with_timestamp(15),
            OwnedRecord::new().with_key("null value").with_timestamp(12),
        ]
    }

    #[test]
    fn edited_writes_keep_key_headers_and_timestamp_around_a_refused_record() {
        let run = Harness::new().run(uppercase_all_but_bad, inputs());
        assert_eq!(run.errors, vec![(1, "refused".to_string())]);
        let written: Vec<_> = run.written.iter().map(|w| &w.record).collect();
        assert_eq!(
            written,
            [
                &OwnedRecord::new()
                    .with_key("k")
                    .with_value("AB")
                    .with_header("h", "v")
                    .with_timestamp(10),
                &OwnedRecord::new()
                    .with_value("CD")
                    .with_header("n", "1")
                    .with_timestamp(15),
                &OwnedRecord::new().with_key("null value").with_timestamp(12),
            ]
        );
    }

    #[test]
    fn edited_sections_frame_as_the_host_checks_them() {
        let mut area = Vec::new();
        for (i, r) in inputs().iter().enumerate() {
            write_record(
                &mut area,
                i as i32,
                r.timestamp.unwrap_or(0) - 10,
                r.key.as_deref(),
                r.value.as_deref(),
                r.headers.iter().map(|(k, v)| (k.as_bytes(), v.as_deref())),
            );
        }
        let header = InputHeader {
            topic: "in",
            partition: 0,
            base_offset: 100,
            base_timestamp: 10,
            record_count: 4,
        };
        let input = encode_batch_input(&header, &area);
        let mut out = crate::__private::new_output(vec!["out".into()]);
        crate::__private::run_batch(&mut out, &input, &mut uppercase_all_but_bad).unwrap();
        let sections: Vec<_> = crate::__private::sections(&out).collect();
        assert_eq!(sections.len(), 1);
        let s = sections[0];
        assert_eq!(
            (s.record_count, s.base_timestamp, s.max_timestamp),
            (3, 10, 15)
        );
        let mut rest = s.records;
        let mut deltas = Vec::new();
        while !rest.is_empty() {
            let r = next_record(&mut rest).unwrap();
            deltas.push((r.offset_delta, r.timestamp_delta));
        }
        assert_eq!(deltas, vec![(0, 0), (1, 5), (2, 2)]);
    }
}
