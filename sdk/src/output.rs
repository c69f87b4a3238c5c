//! Where a transform writes: its default output, or any other output topic of its deployment.

use crate::{Error, OwnedRecord};

/// The records written for the current input record, with the output each goes to.
#[derive(Debug, Default)]
pub struct Output {
    /// The deployment's output topics; index 0 is the default output.
    outputs: Vec<String>,
    /// `(output index, record)` written so far for the current input record.
    pub(crate) written: Vec<(u32, OwnedRecord)>,
}

impl Output {
    pub(crate) fn new(outputs: Vec<String>) -> Output {
        Output {
            outputs,
            written: Vec::new(),
        }
    }

    /// Writes to the default (first) output topic.
    pub fn write(&mut self, record: impl Into<OwnedRecord>) -> Result<(), Error> {
        if self.outputs.is_empty() {
            return Err(Error::new("this deployment has no output topic"));
        }
        self.written.push((0, record.into()));
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
        // The deployment's output list is bounded far below u32::MAX by the broker.
        self.written.push((index as u32, record.into()));
        Ok(())
    }

    /// The deployment's output topics, the default first.
    pub fn outputs(&self) -> &[String] {
        &self.outputs
    }
}
