//! A sink writing each record as one JSON line (`{"topic","partition","offset","timestamp",
//! "key","value","headers"}`) to a file in the directory its deployment grants. The file name
//! comes from `env.FILE` (default `records.jsonl`).

use serde_json::{json, Value};
use sluice_sdk::prelude::*;

fn text(bytes: Option<&[u8]>) -> Value {
    bytes.map_or(Value::Null, |b| {
        Value::String(String::from_utf8_lossy(b).into_owned())
    })
}

/// One record as a JSON line.
pub fn line(r: &Record<'_>) -> String {
    let headers: serde_json::Map<String, Value> = r
        .headers()
        .iter()
        .map(|h| (h.key.to_string(), text(h.value)))
        .collect();
    let mut s = json!({
        "topic": r.topic(),
        "partition": r.partition(),
        "offset": r.offset(),
        "timestamp": r.timestamp(),
        "key": text(r.key()),
        "value": text(r.value()),
        "headers": headers,
    })
    .to_string();
    s.push('\n');
    s
}

#[sink]
pub fn jsonl(records: &[Record<'_>]) -> Result<(), SinkError> {
    let file = sluice_sdk::config::get("FILE").unwrap_or_else(|| "records.jsonl".into());
    let lines: String = records.iter().map(line).collect();
    // The whole batch in one append: a retry rewrites at most this batch.
    sluice_sdk::sink::append_file(&file, lines.as_bytes()).map_err(SinkError::retryable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::testing::SinkHarness;

    #[test]
    fn records_become_json_lines_in_the_configured_file() {
        let run = SinkHarness::new().env("FILE", "out.jsonl").run(
            jsonl,
            [
                OwnedRecord::new()
                    .with_key("k")
                    .with_value("v")
                    .with_header("h", "1"),
                OwnedRecord::new(),
            ],
        );
        assert_eq!(run.result, Ok(()));
        assert_eq!(run.files.len(), 1);
        assert_eq!(run.files[0].0, "out.jsonl");
        let text = String::from_utf8(run.files[0].1.clone()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["value"], "v");
        assert_eq!(lines[0]["headers"]["h"], "1");
        assert_eq!(lines[1]["key"], Value::Null);
        assert_eq!(lines[1]["offset"], 1);
    }
}
