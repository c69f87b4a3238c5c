//! Sluice: a Kafka-protocol broker on a durable segmented log.
//!
//! Data flows down; a module calls only the ones below it:
//!
//! - [`cli`]: the `sluice` command line.
//! - [`server`]: the Kafka listener, one task per connection, graceful shutdown.
//! - [`protocol`]: framing, request headers, version negotiation, dispatch by API key.
//! - [`api`]: one file per Kafka API family; request in, response out.
//! - [`http`]: the HTTP listener (`/health`, later admin and Connect REST).
//! - [`group`]: the consumer-group coordinator and durable committed offsets.
//! - [`catalog`]: topics, partitions and topic configs, durable across restarts.
//! - [`log`]: storage; a partition is a list of segments with offset and time indexes.
//! - [`records`]: v2 record batches: header, validation, compression, zero-copy record views,
//!   and batches built around already-encoded records.
//! - [`producer_ids`]: durable producer id allocation for idempotent producers.
//! - [`alloc`]: the process allocator, which keeps hostile element counts from aborting.
//! - [`connect`]: connectors run in the broker (file source and sink), Kafka Connect style.
//! - [`transform`]: transform deployments and their inline execution on produce.
//! - [`wasm`]: the wasmtime engine, module validation and cache, the host side of the guest ABI
//!   (v2: records cross in Kafka's own record format, copied once each way).
//! - [`config`]: the broker's settings from flags, `SLUICE_*` env vars and a TOML file.

pub mod alloc;
pub mod api;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod connect;
pub mod group;
pub mod http;
pub mod log;
pub mod producer_ids;
pub mod protocol;
pub mod records;
pub mod server;
pub mod transform;
pub mod wasm;
