//! `sluice-sdk`: write a Sluice transform in a few lines of Rust.
//!
//! ```
//! use sluice_sdk::prelude::*;
//!
//! #[transform]
//! fn uppercase(record: Record<'_>, out: &mut Output) -> Result<(), Error> {
//!     out.write(record.with_value(record.value().map(|v| v.to_ascii_uppercase())))
//! }
//!
//! // Natively, in plain `cargo test`: no broker, no wasm.
//! let written = sluice_sdk::testing::run(uppercase, [OwnedRecord::new().with_value("hi")]).unwrap();
//! assert_eq!(written[0].record.value.as_deref(), Some(&b"HI"[..]));
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip1` (or `sluice transform build`) and
//! deploy the `.wasm` with `sluice transform deploy`.
//!
//! Modules:
//! - [`record`]: the input [`Record`] (borrowed from the batch, headers read in place) and the
//!   [`OwnedRecord`] a transform writes.
//! - [`output`]: [`Output`], where a transform writes records, to its default output or by name;
//!   each write is encoded straight into that output's section of the batch's output.
//! - [`error`]: the [`Error`] a transform returns to reject one record.
//! - [`codec`]: the ABI's buffers (documented in `ABI.md`), shared with the broker; records cross
//!   in Kafka's own v2 record format ([`codec::records`]).
//! - [`state`]: the transform's durable key-value store (scoped to the deployment and input
//!   partition) and [`table::lookup`] in `--table` topics.
//! - [`sink`]: sinks: deliver batches to files and HTTP endpoints the deployment grants.
//! - [`testing`]: run a transform or a sink natively on given records.
//! - [`config`] / [`log`](mod@log): the deployment's `--env` values and log lines for the operator.
//!
//! The wasm entry points live in a private module that only exists on `wasm32`; the
//! [`transform`] attribute wires a function to them.

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code, reason = "a global allocator hands out raw memory")]
pub mod alloc;
pub mod codec;
pub mod config;
pub mod error;
pub mod log;
pub mod output;
pub mod record;
pub mod sink;
pub mod state;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

#[doc(hidden)]
pub mod __private;

pub use error::Error;
pub use output::Output;
pub use record::{Header, HeaderBytes, HeaderIter, Headers, OwnedRecord, Record};
pub use sink::SinkError;
pub use sluice_sdk_macros::{sink, transform};
pub use state::table;

#[cfg(all(target_arch = "wasm32", feature = "allocator"))]
#[global_allocator]
static ALLOCATOR: alloc::GuestAllocator = alloc::GuestAllocator::new();

/// The ABI version this SDK speaks (`ABI.md`).
pub const ABI_VERSION: i32 = 2;

/// Everything a transform needs: `use sluice_sdk::prelude::*;`.
pub mod prelude {
    pub use crate::{
        sink, state, table, transform, Error, Header, Output, OwnedRecord, Record, SinkError,
    };
}
