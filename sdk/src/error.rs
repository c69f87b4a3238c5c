//! The error a transform returns for a record it cannot handle; the deployment's failure policy
//! (reject, skip, dead-letter) decides what happens to that record.

use std::fmt;

/// A transform's refusal of one record, with a message for the operator and the producer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
}

impl Error {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Error {
        Error {
            message: message.into(),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Any standard error converts, so `?` works on parsers, UTF-8 checks and the like.
impl<E: std::error::Error> From<E> for Error {
    fn from(error: E) -> Error {
        Error::new(error.to_string())
    }
}
