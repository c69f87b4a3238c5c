//! Transform deployments, their registry and progress, and running guests on records.
//!
//! - [`deployment`]: what a deployment is and the rules it follows.
//! - [`registry`]: the deployments, their modules, instances, counters and logs; persisted.
//! - [`progress`]: where each deployment is in each input partition, checkpointed.
//! - [`state`]: a deployment's state stores (rebuilt from its changelog topic) and the
//!   `--table` topics its guest looks up.
//! - [`run`]: running a guest over input records and deciding, by the failure policy, what to
//!   write. Nothing here appends: [`crate::write`] does.

pub mod deployment;
pub mod progress;
pub mod registry;
pub(crate) mod run;
pub mod state;

pub use deployment::{Deployment, OnError};
pub use progress::PartitionProgress;
pub use registry::{DeployError, Running, TransformRegistry};
