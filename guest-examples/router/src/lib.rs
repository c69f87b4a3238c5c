//! A fan-out router: each JSON record goes to the output topic named by its `"type"` field
//! (`orders` → the output named `orders`), records of unknown types to the default (first) output,
//! and records with `"copy": true` additionally to every output. Its deployment's env may rename
//! the field: `--env FIELD=kind`.

use serde_json::Value;
use sluice_sdk::prelude::*;

#[transform]
pub fn route(record: Record<'_>, out: &mut Output) -> Result<(), Error> {
    let field = sluice_sdk::config::get("FIELD").unwrap_or_else(|| "type".to_string());
    let json: Value = match record.value() {
        Some(v) => {
            serde_json::from_slice(v).map_err(|e| Error::new(format!("value is not JSON: {e}")))?
        }
        None => Value::Null,
    };
    if json.get("copy").and_then(Value::as_bool) == Some(true) {
        let outputs: Vec<String> = out.outputs().to_vec();
        for o in outputs {
            out.write_to(&o, record.to_owned_record())?;
        }
        return Ok(());
    }
    match json.get(&field).and_then(Value::as_str) {
        Some(kind) if out.outputs().iter().any(|o| o == kind) => {
            out.write_to(kind, record.to_owned_record())
        }
        _ => out.write(record.to_owned_record()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::testing::Harness;

    #[test]
    fn records_go_where_their_type_says() {
        let run = Harness::new()
            .outputs(&["other", "orders", "payments"])
            .run(
                route,
                [
                    OwnedRecord::new().with_value(r#"{"type":"orders","id":1}"#),
                    OwnedRecord::new().with_value(r#"{"type":"payments"}"#),
                    OwnedRecord::new().with_value(r#"{"type":"unknown"}"#),
                    OwnedRecord::new().with_value(r#"{"copy":true}"#),
                ],
            );
        let topics: Vec<(usize, &str)> = run
            .written
            .iter()
            .map(|w| (w.input_index, w.topic.as_str()))
            .collect();
        assert_eq!(
            topics,
            vec![
                (0, "orders"),
                (1, "payments"),
                (2, "other"),
                (3, "other"),
                (3, "orders"),
                (3, "payments")
            ]
        );
    }

    #[test]
    fn the_field_name_comes_from_the_deployment() {
        let run = Harness::new()
            .outputs(&["default", "b"])
            .env("FIELD", "kind")
            .run(route, [OwnedRecord::new().with_value(r#"{"kind":"b"}"#)]);
        assert_eq!(run.written[0].topic, "b");
    }
}
