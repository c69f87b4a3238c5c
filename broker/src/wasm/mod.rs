//! WebAssembly guests: one wasmtime [`Engine`](wasmtime::Engine) for the process, modules
//! compiled once and cached by content hash, pre-linked [`InstancePre`](wasmtime::InstancePre)s,
//! and the host side of the guest ABI (`sdk/ABI.md`).
//!
//! - [`engine`]: the engine, its epoch ticker (CPU-time caps), module validation and the cache.
//! - [`host`]: the functions a guest may import: `sluice.log`, and the few WASI preview-1 calls
//!   Rust's standard library needs, granting nothing (no files, clock, environment or network).
//! - [`guest`]: a live instance with its limits, called once per batch
//!   ([`Guest::transform`], [`Guest::sink_batch`]).
//! - [`abi`]: the v2 batch buffers on the host side: [`BatchInput`] in (the batch's records as
//!   Kafka encodes them, copied once into guest memory), [`GuestOutput`] out (per output, records
//!   in Kafka's format borrowed from guest memory after their framing is checked).
//! - [`state_host`]: `sluice.state_get/put/delete` and `table_lookup`: a call's writes held
//!   apart until it succeeds, reads through a [`state_host::StateBackend`] the transform layer
//!   provides.
//! - [`pool`]: the bounded set of low-priority threads guests run on.

pub mod abi;
pub mod engine;
pub mod guest;
pub mod host;
pub mod pool;
pub mod state_host;

pub use abi::{BatchInput, GuestOutput, OutputSection};
pub use engine::{CompiledModule, WasmEngine};
pub use guest::{Guest, GuestError, GuestLimits};
pub use pool::{GuestPool, PoolClosed};

/// The ABI version this broker speaks (`sdk/ABI.md`).
pub const ABI_VERSION: i32 = sluice_sdk::ABI_VERSION;
