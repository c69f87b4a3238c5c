//! Transform deployments and their execution on the write path.
//!
//! - [`deployment`]: what a deployment is and the rules it follows.
//! - [`registry`]: the deployments, their modules, instances, counters and logs; persisted.
//! - [`exec`]: running transforms inline on produced batches.

pub mod deployment;
pub mod exec;
pub mod registry;

pub use deployment::{Deployment, OnError};
pub use registry::{DeployError, Running, TransformRegistry};
