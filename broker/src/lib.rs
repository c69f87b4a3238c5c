//! Sluice: a Kafka-protocol broker on a durable segmented log.
//!
//! Data flows down; a module calls only the ones below it:
//!
//! - [`cli`]: the `sluice` command line: `serve`, `transform` / `sink` (over the HTTP API),
//!   `topic` / `group` / `cluster` (a small Kafka client, like `rpk`).
//! - [`server`]: the Kafka listeners (PLAINTEXT, SSL, SASL_*), one task per connection, graceful
//!   shutdown, connection limits and queued request bytes.
//! - [`protocol`]: framing, request headers, version negotiation, the connection's session
//!   (pre-authentication gating), dispatch by API key, quota throttling (KIP-219).
//! - [`http`]: the HTTP listener: `/health`, `/metrics`, the web console at `/ui`, the admin
//!   API (`/v1/...`), Kafka Connect's REST API; HTTP Basic, the ACLs and HTTPS in front of them.
//! - [`cluster`]: cluster mode: PostgreSQL as sequencer and metadata store, record batches in
//!   an S3-compatible object store, stateless brokers (only with `--metadata`).
//! - [`connect`]: connectors run in the broker (file source and sink, WASM sinks), Kafka Connect
//!   style; beside the HTTP listener, writing through [`write`].
//! - [`api`]: one file per Kafka API family; request in, response out.
//! - [`txn_markers`]: ending decided transactions: markers on every partition through
//!   [`write`], offsets into their groups; timeouts; completion after a crash.
//! - [`broker`]: the shared state every handler and writer reaches.
//! - [`write`]: the one write path: validation, transforms, appends, outputs, state
//!   changelogs, recovery, and transaction markers (`write::control::append_marker`, what the
//!   transaction coordinator calls).
//! - [`transform`]: transform deployments, their registry and progress, running guests on
//!   records (it appends nothing itself), their state stores and `--table` lookups.
//! - [`group`]: the consumer-group coordinator and durable committed offsets.
//! - [`txn`]: the transaction coordinator: transactional ids, epochs and fencing, the
//!   transaction state machine, durable in `__sluice/transactions.log`.
//! - [`catalog`]: topics, partitions and topic configs, durable across restarts.
//! - [`log`]: storage; a partition is a list of segments with offset and time indexes, its
//!   producer state (sequences, open transactions, the last stable offset, aborted
//!   transactions), and the background cleaner that compacts `cleanup.policy=compact` topics.
//! - [`records`]: v2 record batches: header, validation, codecs, recompression, the topic's
//!   rules for what it stores (`compression.type`, timestamp bounds), transaction markers
//!   (control batches), murmur2 partitioning,
//!   zero-copy record views and batches built around already-encoded records.
//! - [`wasm`]: the wasmtime engine, module validation and cache, the host side of the guest ABI
//!   (v2: records cross in Kafka's own record format; state and table calls), the guest
//!   thread pool.
//! - [`auth`]: SASL mechanisms (PLAIN, SCRAM, OAUTHBEARER), SCRAM credentials, TLS configs and
//!   reloading, certificate principals.
//! - [`acl`]: authorization: Kafka's ACL model, the durable bindings and the authorizer every
//!   handler (and the HTTP listener, and deployments' writes) asks.
//! - [`quota`]: client quotas (per user and/or client id, durable, Kafka's precedence), their
//!   rate measurement and throttle times; `max.connections*` and `queued.max.request.bytes`.
//! - [`producer_ids`]: durable producer id allocation for idempotent producers.
//! - [`meta`]: the one owner of `data/__sluice/`: file names and the atomic write helper.
//! - [`metrics`]: the Prometheus counters and histograms the hot paths bump (a leaf every layer
//!   may call); scrape-time gauges are read by [`http`].
//! - [`config`]: the broker's settings from flags, `SLUICE_*` env vars and a TOML file.
//! - [`alloc`]: the process allocator, which keeps hostile element counts from aborting.

pub mod acl;
pub mod alloc;
pub mod api;
pub mod auth;
pub mod broker;
pub mod catalog;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod connect;
pub mod group;
pub mod http;
pub mod log;
pub mod meta;
pub mod metrics;
pub mod producer_ids;
pub mod protocol;
pub mod quota;
pub mod records;
pub mod server;
pub mod transform;
pub mod txn;
pub mod txn_markers;
pub mod wasm;
pub mod write;
