//! What a transform deployment is: its module, input, outputs, env and failure policy. Persisted
//! as JSON; validated here so the HTTP API and the registry share one set of rules.

use serde::{Deserialize, Serialize};

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
}

fn reject() -> OnError {
    OnError::Reject
}

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
        Ok(())
    }

    /// The topics this deployment writes to (for cycle checks and auto-creation).
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
    }
}
