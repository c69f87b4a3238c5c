//! A join with a table: each record's key is looked up in the `--table` topic named by
//! `--env TABLE=...` (default `users`), and the record goes out with the table's latest value
//! for that key in a header `joined` (and `value|joined` as its value). Records whose key the
//! table does not hold go out unchanged, with no header.

use sluice_sdk::prelude::*;

#[transform]
pub fn enrich(record: Record<'_>, out: &mut Output) -> Result<(), Error> {
    let table = sluice_sdk::config::get("TABLE").unwrap_or_else(|| "users".to_string());
    let joined = record.key().and_then(|k| table::lookup(&table, k));
    let Some(joined) = joined else {
        return out.write(record.to_owned_record());
    };
    let mut value = record.value().unwrap_or_default().to_vec();
    value.push(b'|');
    value.extend_from_slice(&joined);
    out.write(record.with_value(Some(value)).with_header("joined", joined))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::testing::Harness;

    #[test]
    fn a_known_key_gets_the_tables_value() {
        let harness = Harness::new().table("users", "u1", "Ada");
        let run = harness.run(
            enrich,
            [
                OwnedRecord::new().with_key("u1").with_value("login"),
                OwnedRecord::new().with_key("u2").with_value("login"),
            ],
        );
        assert!(run.errors.is_empty());
        let first = &run.written[0].record;
        assert_eq!(first.value.as_deref(), Some(&b"login|Ada"[..]));
        assert_eq!(
            first.headers,
            vec![("joined".to_string(), Some(b"Ada".to_vec()))]
        );
        let second = &run.written[1].record;
        assert_eq!(second.value.as_deref(), Some(&b"login"[..]));
        assert!(second.headers.is_empty());
    }
}
