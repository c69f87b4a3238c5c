//! Where a transform writes: its default output, or any other output topic of its deployment.
//!
//! Each write is encoded at once, in Kafka's v2 record format, into that output's section buffer
//! (ABI v2): the host copies a section straight into the output batch. The buffers are kept
//! across batches, so writing allocates nothing once they have grown.

use crate::codec::records::write_record;
use crate::{Error, OwnedRecord};

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

    fn push(&mut self, output: usize, r: &OwnedRecord) {
        let timestamp = r.timestamp.unwrap_or(self.input_timestamp);
        let marker = self.input_index + 1;
        let Some(s) = self.sections.get_mut(output) else {
            return;
        };
        if s.marked_for != marker {
            s.mark = (s.records.len(), s.count, s.max_delta);
            s.marked_for = marker;
        }
        if s.count == 0 {
            s.base_timestamp = timestamp;
            s.max_delta = 0;
        }
        let delta = timestamp.wrapping_sub(s.base_timestamp);
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
        s.count += 1;
        s.max_delta = s.max_delta.max(delta);
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
