//! An in-place transform for ingest hygiene: values must be JSON (others are refused, so the
//! deployment's failure policy applies), and every string that looks like an e-mail address is
//! masked before the record is stored — the raw address never reaches the log.

use serde_json::Value;
use sluice_sdk::prelude::*;

#[transform]
pub fn mask_email(record: Record<'_>, out: &mut Output) -> Result<(), Error> {
    let Some(bytes) = record.value() else {
        // Tombstones pass through.
        return out.write(record.to_owned_record());
    };
    let mut json: Value =
        serde_json::from_slice(bytes).map_err(|e| Error::new(format!("value is not JSON: {e}")))?;
    mask(&mut json);
    out.write(record.with_value(Some(json.to_string())))
}

fn mask(value: &mut Value) {
    match value {
        Value::String(s) => {
            if let Some(masked) = masked_email(s) {
                *s = masked;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask),
        Value::Object(map) => map.values_mut().for_each(mask),
        _ => {}
    }
}

/// `jane.doe@example.com` → `j***@example.com`; `None` if `s` is not an address.
fn masked_email(s: &str) -> Option<String> {
    let (local, domain) = s.split_once('@')?;
    let valid = !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.contains(char::is_whitespace);
    if !valid {
        return None;
    }
    let first = local.chars().next()?;
    Some(format!("{first}***@{domain}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::testing::Harness;

    #[test]
    fn addresses_are_masked_everywhere_in_the_document() {
        let run = Harness::new().run(
            mask_email,
            [OwnedRecord::new().with_key("k").with_value(
                r#"{"user":"jane.doe@example.com","cc":["x@y.org","not an address"],"n":1}"#,
            )],
        );
        assert!(run.errors.is_empty());
        let value: Value =
            serde_json::from_slice(run.written[0].record.value.as_deref().unwrap()).unwrap();
        assert_eq!(value["user"], "j***@example.com");
        assert_eq!(value["cc"][0], "x***@y.org");
        assert_eq!(value["cc"][1], "not an address");
        assert_eq!(run.written[0].record.key.as_deref(), Some(&b"k"[..]));
    }

    #[test]
    fn values_that_are_not_json_are_refused() {
        let run = Harness::new().run(
            mask_email,
            [
                OwnedRecord::new().with_value("{broken"),
                OwnedRecord::new().with_value("{}"),
            ],
        );
        assert_eq!(run.errors.len(), 1);
        assert_eq!(run.errors[0].0, 0);
        assert!(run.errors[0].1.contains("not JSON"));
        assert_eq!(run.written.len(), 1, "the good record still goes through");
    }
}
