//! What a transform deployment is: its module, input, outputs, env and failure policy. Persisted
//! as JSON; validated here so the HTTP API and the registry share one set of rules.

use serde::{Deserialize, Serialize};

use crate::acl::{Authorizer, Operation, Requester, Resource};

/// What happens to an input record the transform fails on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum OnError {
    /// The produce fails with the guest's message; nothing of the batch is stored.
    Reject,
    /// The record is dropped (and counted).
    Skip,
    /// The input record is written to this topic with headers saying why.
    DeadLetter(String),
}

impl TryFrom<String> for OnError {
    type Error = String;
    fn try_from(text: String) -> Result<OnError, String> {
        OnError::parse(&text)
    }
}

impl From<OnError> for String {
    fn from(policy: OnError) -> String {
        policy.to_string()
    }
}

impl OnError {
    /// `reject`, `skip` or `dead-letter=TOPIC`.
    pub fn parse(text: &str) -> Result<OnError, String> {
        match text {
            "reject" => Ok(OnError::Reject),
            "skip" => Ok(OnError::Skip),
            other => match other.strip_prefix("dead-letter=") {
                Some(topic) if !topic.is_empty() => Ok(OnError::DeadLetter(topic.to_string())),
                _ => Err(format!(
                    "on_error must be reject, skip or dead-letter=TOPIC, not '{other}'"
                )),
            },
        }
    }
}

impl std::fmt::Display for OnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OnError::Reject => f.write_str("reject"),
            OnError::Skip => f.write_str("skip"),
            OnError::DeadLetter(topic) => write!(f, "dead-letter={topic}"),
        }
    }
}

/// A deployed transform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    pub name: String,
    /// Hex SHA-256 of the module (`__sluice/modules/<hash>.wasm`).
    pub module: String,
    pub input: String,
    /// Output topics; the first is the default output. Empty for in-place transforms.
    #[serde(default)]
    pub outputs: Vec<String>,
    #[serde(default)]
    pub env: Vec<(String, String)>,
    #[serde(default = "reject")]
    pub on_error: OnError,
    /// The output replaces what is stored in the input topic itself.
    #[serde(default)]
    pub in_place: bool,
    #[serde(default)]
    pub paused: bool,
    /// Linear memory one instance may grow to; the broker's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// CPU time one guest call may take, in milliseconds; the broker's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Topics the guest may `table::lookup` (the latest value per key).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<String>,
    /// Cap on the state store (keys plus values, all partitions); 64 MiB when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_max_bytes: Option<u64>,
    /// Who deployed it (`User:NAME`): what the deployment reads and writes is bounded by this
    /// principal's ACLs. Absent for deployments made before Sluice recorded it, which run with
    /// the broker's own rights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployer: Option<String>,
}

/// Why a deployment may not run as its deployer: the right missing, and whether its dead-letter
/// topic may still be written (else failed records are rejected, whatever the policy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub message: String,
    pub may_dead_letter: bool,
}

fn reject() -> OnError {
    OnError::Reject
}

/// Bounds of a deployment's own limits: below these a guest cannot do useful work, above them one
/// deployment could starve the broker (memory) or stall its input partition (CPU time).
pub const MIN_MEMORY_BYTES: u64 = 1 << 20;
pub const MAX_MEMORY_BYTES: u64 = 4 << 30;
pub const MIN_TIMEOUT_MS: u64 = 1;
pub const MAX_TIMEOUT_MS: u64 = 60_000;
/// Bounds of the state store cap: the store is held in the broker's memory.
pub const MIN_STATE_BYTES: u64 = 1 << 10;
pub const MAX_STATE_BYTES: u64 = 16 << 30;
/// Most `--table` topics a deployment may look up.
const MAX_TABLES: usize = 16;

/// Most outputs and env entries a deployment may have.
const MAX_OUTPUTS: usize = 64;
const MAX_ENV: usize = 256;

impl Deployment {
    /// The rules every deployment follows; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 128
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !name_ok {
            return Err(format!(
                "name '{}' must be 1-128 characters of letters, digits, '.', '_' or '-'",
                self.name
            ));
        }
        crate::catalog::validate_topic_name(&self.input).map_err(|e| format!("input: {e}"))?;
        for o in &self.outputs {
            crate::catalog::validate_topic_name(o).map_err(|e| format!("output: {e}"))?;
            if o == &self.input {
                return Err(format!("output '{o}' is the input topic; use in_place to transform a topic's own records"));
            }
        }
        if self.in_place && !self.outputs.is_empty() {
            return Err(
                "an in_place transform writes to its input topic and takes no outputs".into(),
            );
        }
        if !self.in_place && self.outputs.is_empty() {
            return Err("at least one output topic is required (or in_place)".into());
        }
        if self.outputs.len() > MAX_OUTPUTS {
            return Err(format!("at most {MAX_OUTPUTS} outputs"));
        }
        if self.env.len() > MAX_ENV {
            return Err(format!("at most {MAX_ENV} env entries"));
        }
        if let OnError::DeadLetter(topic) = &self.on_error {
            crate::catalog::validate_topic_name(topic)
                .map_err(|e| format!("on_error dead-letter topic: {e}"))?;
        }
        if let Some(m) = self.memory_bytes {
            if !(MIN_MEMORY_BYTES..=MAX_MEMORY_BYTES).contains(&m) {
                return Err(format!(
                    "memory limit {m} bytes is out of range: {} MiB to {} GiB",
                    MIN_MEMORY_BYTES >> 20,
                    MAX_MEMORY_BYTES >> 30
                ));
            }
        }
        for t in &self.tables {
            crate::catalog::validate_topic_name(t).map_err(|e| format!("table: {e}"))?;
        }
        if self.tables.len() > MAX_TABLES {
            return Err(format!("at most {MAX_TABLES} tables"));
        }
        if let Some(m) = self.state_max_bytes {
            if !(MIN_STATE_BYTES..=MAX_STATE_BYTES).contains(&m) {
                return Err(format!(
                    "state cap {m} bytes is out of range: {} KiB to {} GiB",
                    MIN_STATE_BYTES >> 10,
                    MAX_STATE_BYTES >> 30
                ));
            }
        }
        if let Some(t) = self.timeout_ms {
            if !(MIN_TIMEOUT_MS..=MAX_TIMEOUT_MS).contains(&t) {
                return Err(format!(
                    "timeout {t} ms is out of range: {MIN_TIMEOUT_MS} ms to {} s",
                    MAX_TIMEOUT_MS / 1000
                ));
            }
        }
        Ok(())
    }

    /// The caps its guests run with: its own where set, else `defaults`.
    pub fn limits(&self, defaults: crate::wasm::GuestLimits) -> crate::wasm::GuestLimits {
        crate::wasm::GuestLimits {
            memory_bytes: self
                .memory_bytes
                .map_or(defaults.memory_bytes, |m| m as usize),
            cpu_per_call: self
                .timeout_ms
                .map_or(defaults.cpu_per_call, std::time::Duration::from_millis),
        }
    }

    /// The topics this deployment writes to (for cycle checks and auto-creation).
    /// The first right the deployer lacks: Read on the input, Write on each output (on the input
    /// too when in place) and on the dead-letter topic. `None` while ACLs are off or for a
    /// deployment without a recorded deployer. Checked with host `*`, since a deployment runs
    /// in the broker, not from a client's address.
    pub fn refused_by(&self, authorizer: &Authorizer) -> Option<Refusal> {
        let deployer = self.deployer.as_ref()?;
        if !authorizer.is_enabled() {
            return None;
        }
        let who = Requester {
            principal: deployer.clone(),
            host: "*".to_string(),
        };
        let may =
            |op: Operation, topic: &str| authorizer.authorize(&who, op, &Resource::topic(topic));
        let dead_letter = match &self.on_error {
            OnError::DeadLetter(t) => Some(t.as_str()),
            _ => None,
        };
        let may_dead_letter = dead_letter.is_none_or(|t| may(Operation::Write, t));
        let refused = |op: &str, topic: &str| Refusal {
            message: format!(
                "deployer {deployer} of transform {} is not authorized to {op} topic {topic}",
                self.name
            ),
            may_dead_letter,
        };
        if !may(Operation::Read, &self.input) {
            return Some(refused("read", &self.input));
        }
        if self.in_place && !may(Operation::Write, &self.input) {
            return Some(refused("write", &self.input));
        }
        for t in self.outputs.iter().map(String::as_str).chain(dead_letter) {
            if !may(Operation::Write, t) {
                return Some(refused("write", t));
            }
        }
        None
    }

    pub fn writes(&self) -> Vec<String> {
        let mut topics = self.outputs.clone();
        if let OnError::DeadLetter(t) = &self.on_error {
            topics.push(t.clone());
        }
        topics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d() -> Deployment {
        Deployment {
            name: "up".into(),
            module: "00".into(),
            input: "in".into(),
            outputs: vec!["out".into()],
            env: vec![],
            on_error: OnError::Reject,
            in_place: false,
            paused: false,
            memory_bytes: None,
            timeout_ms: None,
            tables: vec![],
            state_max_bytes: None,
            deployer: None,
        }
    }

    #[test]
    fn policies_parse_and_print() {
        assert_eq!(
            OnError::parse("dead-letter=dlq").unwrap(),
            OnError::DeadLetter("dlq".into())
        );
        assert_eq!(OnError::parse("skip").unwrap().to_string(), "skip");
        assert!(OnError::parse("dead-letter=").is_err());
        assert!(OnError::parse("ignore")
            .unwrap_err()
            .contains("reject, skip"));
    }

    #[test]
    fn bad_deployments_name_the_problem() {
        assert!(d().validate().is_ok());
        let mut x = d();
        x.outputs = vec!["in".into()];
        assert!(x.validate().unwrap_err().contains("in_place"));
        let mut x = d();
        x.name = "bad name".into();
        assert!(x.validate().unwrap_err().contains("name"));
        let mut x = d();
        x.in_place = true;
        assert!(x.validate().unwrap_err().contains("no outputs"));
        let mut x = d();
        x.outputs.clear();
        assert!(x.validate().is_err());
        let mut x = d();
        x.memory_bytes = Some(1000);
        assert!(x.validate().unwrap_err().contains("memory limit"));
        x.memory_bytes = Some(8 << 20);
        x.timeout_ms = Some(0);
        assert!(x.validate().unwrap_err().contains("timeout"));
        x.timeout_ms = Some(250);
        assert!(x.validate().is_ok());
        x.state_max_bytes = Some(10);
        assert!(x.validate().unwrap_err().contains("state cap"));
        x.state_max_bytes = Some(4096);
        x.tables = vec!["bad name".into()];
        assert!(x.validate().unwrap_err().contains("table"));
        x.tables = vec!["users".into()];
        assert!(x.validate().is_ok());
        let limits = x.limits(crate::wasm::GuestLimits::default());
        assert_eq!(limits.memory_bytes, 8 << 20);
        assert_eq!(limits.cpu_per_call, std::time::Duration::from_millis(250));
    }
}
