//! Connector configs as Kafka Connect has them: a flat string map with `connector.class`,
//! `tasks.max`, and class-specific keys. Classes are accepted by full name, by the `...Connector`
//! name and by short alias, as Connect does.

use std::collections::BTreeMap;

/// A connector's config.
pub type Config = BTreeMap<String, String>;

/// The connector implementations Sluice runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    FileStreamSource,
    FileStreamSink,
    /// A sink written as a WebAssembly module with `sluice-sdk`.
    WasmSink,
}

/// One problem with a config, named by key (Connect's validate shape).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub key: String,
    pub message: String,
}

impl Class {
    /// Resolves `connector.class`.
    pub fn parse(name: &str) -> Option<Class> {
        match name {
            "org.apache.kafka.connect.file.FileStreamSourceConnector"
            | "org.apache.kafka.connect.file.FileStreamSource"
            | "FileStreamSourceConnector"
            | "FileStreamSource" => Some(Class::FileStreamSource),
            "org.apache.kafka.connect.file.FileStreamSinkConnector"
            | "org.apache.kafka.connect.file.FileStreamSink"
            | "FileStreamSinkConnector"
            | "FileStreamSink" => Some(Class::FileStreamSink),
            "sluice.WasmSink" | "sluice.WasmSinkConnector" | "WasmSink" | "WasmSinkConnector" => {
                Some(Class::WasmSink)
            }
            _ => None,
        }
    }

    /// The canonical class name (what `GET /connector-plugins` lists).
    pub fn name(self) -> &'static str {
        match self {
            Class::FileStreamSource => "org.apache.kafka.connect.file.FileStreamSourceConnector",
            Class::FileStreamSink => "org.apache.kafka.connect.file.FileStreamSinkConnector",
            Class::WasmSink => "sluice.WasmSink",
        }
    }

    /// `source` or `sink`.
    pub fn kind(self) -> &'static str {
        match self {
            Class::FileStreamSource => "source",
            Class::FileStreamSink | Class::WasmSink => "sink",
        }
    }

    pub fn all() -> [Class; 3] {
        [
            Class::FileStreamSource,
            Class::FileStreamSink,
            Class::WasmSink,
        ]
    }
}

/// Every problem with `config`; empty when it is valid.
pub fn validate(config: &Config) -> Vec<ConfigIssue> {
    let mut issues = Vec::new();
    let mut issue = |key: &str, message: String| {
        issues.push(ConfigIssue {
            key: key.to_string(),
            message,
        })
    };
    let class = match config.get("connector.class") {
        None => {
            issue(
                "connector.class",
                "Missing required configuration \"connector.class\" which has no default value."
                    .into(),
            );
            None
        }
        Some(c) => match Class::parse(c) {
            Some(class) => Some(class),
            None => {
                issue("connector.class", format!("Failed to find any class that implements Connector and which name matches {c}"));
                None
            }
        },
    };
    if let Some(t) = config.get("tasks.max") {
        if !t.parse::<u32>().is_ok_and(|n| n >= 1) {
            issue("tasks.max", format!("Invalid value {t} for configuration tasks.max: must be an integer of at least 1"));
        }
    }
    match class {
        Some(Class::FileStreamSource) => {
            match config.get("topic") {
                Some(t) if crate::catalog::validate_topic_name(t).is_ok() => {}
                Some(t) => issue("topic", format!("Invalid topic name {t}")),
                None => issue(
                    "topic",
                    "Missing required configuration \"topic\" which has no default value.".into(),
                ),
            }
            if let Some(b) = config.get("batch.size") {
                if !b.parse::<u32>().is_ok_and(|n| n >= 1) {
                    issue(
                        "batch.size",
                        format!("Invalid value {b} for configuration batch.size"),
                    );
                }
            }
        }
        Some(Class::WasmSink) => {
            check_topics(config, &mut issue);
            match config.get("wasm.module") {
                Some(m) if !m.is_empty() && m.chars().all(|c| c.is_ascii_hexdigit()) => {}
                Some(m) => issue(
                    "wasm.module",
                    format!("'{m}' is not a module hash (upload the module with POST /v1/modules)"),
                ),
                None => issue(
                    "wasm.module",
                    "Missing required configuration \"wasm.module\" which has no default value."
                        .into(),
                ),
            }
            if let Some(dir) = config.get("sink.file.dir") {
                if !std::path::Path::new(dir).is_absolute() {
                    issue("sink.file.dir", format!("'{dir}' must be an absolute path"));
                }
            }
            for url in config
                .get("sink.http.allow")
                .into_iter()
                .flat_map(|u| u.split(','))
            {
                let url = url.trim();
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    issue("sink.http.allow", format!("'{url}' is not an http(s) URL"));
                }
            }
            if let Some(b) = config.get("batch.size") {
                if !b.parse::<u32>().is_ok_and(|n| n >= 1) {
                    issue(
                        "batch.size",
                        format!("Invalid value {b} for configuration batch.size"),
                    );
                }
            }
        }
        Some(Class::FileStreamSink) => {
            check_topics(config, &mut issue);
            if config.get("file").is_none_or(|f| f.is_empty()) {
                issue(
                    "file",
                    "Missing required configuration \"file\" which has no default value.".into(),
                );
            }
        }
        None => {}
    }
    if let Some(t) = config.get("errors.tolerance") {
        if t != "none" && t != "all" {
            issue("errors.tolerance", format!("Invalid value {t} for configuration errors.tolerance: String must be one of: none, all"));
        }
    }
    issues
}

/// `topics` or `topics.regex`, exactly one, as Connect requires of sinks.
fn check_topics(config: &Config, issue: &mut impl FnMut(&str, String)) {
    let topics = config.get("topics").filter(|t| !t.trim().is_empty());
    let regex = config.get("topics.regex").filter(|t| !t.trim().is_empty());
    match (topics, regex) {
        (None, None) => issue(
            "topics",
            "Must configure one of topics or topics.regex".into(),
        ),
        (Some(_), Some(_)) => issue(
            "topics",
            "topics and topics.regex are mutually exclusive".into(),
        ),
        (None, Some(r)) => {
            if let Err(e) = regex_lite::Regex::new(r) {
                issue(
                    "topics.regex",
                    format!("Invalid regular expression {r}: {e}"),
                );
            }
        }
        (Some(_), None) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Config {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn classes_resolve_by_every_name_connect_accepts() {
        for name in [
            "org.apache.kafka.connect.file.FileStreamSource",
            "org.apache.kafka.connect.file.FileStreamSourceConnector",
            "FileStreamSource",
            "FileStreamSourceConnector",
        ] {
            assert_eq!(Class::parse(name), Some(Class::FileStreamSource), "{name}");
        }
        assert_eq!(Class::parse("FileStreamSink"), Some(Class::FileStreamSink));
        assert_eq!(Class::parse("com.example.Nope"), None);
    }

    #[test]
    fn problems_name_their_key() {
        let issues = validate(&cfg(&[
            ("connector.class", "FileStreamSink"),
            ("tasks.max", "0"),
        ]));
        let keys: Vec<&str> = issues.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys, vec!["tasks.max", "topics", "file"]);
        assert!(validate(&cfg(&[
            ("connector.class", "FileStreamSource"),
            ("topic", "t"),
            ("file", "/x")
        ]))
        .is_empty());
    }
}
