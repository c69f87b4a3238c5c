//! Drops records whose id was seen before: the id is the `id` header if the record has one
//! (the header is named by `--env ID_HEADER=...`), else its key. The first record with an id
//! goes to the output unchanged; records with neither header nor key pass through.
//!
//! The ids seen are kept in the transform's state store (its changelog topic), so duplicates
//! are dropped across restarts too. Each id costs its length plus nothing for the value: size
//! the deployment's `--state-max-bytes` for the ids it must remember.

use sluice_sdk::prelude::*;

#[transform]
pub fn dedup(record: Record<'_>, out: &mut Output) -> Result<(), Error> {
    let header = sluice_sdk::config::get("ID_HEADER").unwrap_or_else(|| "id".to_string());
    let id = match record.header(&header) {
        Some(Some(v)) if !v.is_empty() => Some(v),
        _ => record.key().filter(|k| !k.is_empty()),
    };
    if let Some(id) = id {
        if state::get(id).is_some() {
            return Ok(());
        }
        state::put(id, b"")?;
    }
    out.write(record.to_owned_record())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::testing::Harness;

    fn values(run: &sluice_sdk::testing::TestRun) -> Vec<String> {
        run.written
            .iter()
            .map(|w| {
                String::from_utf8_lossy(w.record.value.as_deref().unwrap_or_default()).into_owned()
            })
            .collect()
    }

    #[test]
    fn a_repeated_id_is_dropped_within_and_across_batches() {
        let harness = Harness::new();
        let run = harness.run(
            dedup,
            [
                OwnedRecord::new().with_key("1").with_value("a"),
                OwnedRecord::new().with_key("2").with_value("b"),
                OwnedRecord::new().with_key("1").with_value("a again"),
                OwnedRecord::new().with_value("no id"),
                OwnedRecord::new().with_value("no id"),
            ],
        );
        assert_eq!(values(&run), ["a", "b", "no id", "no id"]);
        let run = harness.run(
            dedup,
            [OwnedRecord::new().with_key("2").with_value("b again")],
        );
        assert!(run.written.is_empty());
    }

    #[test]
    fn the_id_header_wins_over_the_key() {
        let harness = Harness::new();
        let run = harness.run(
            dedup,
            [
                OwnedRecord::new()
                    .with_key("k")
                    .with_header("id", "x")
                    .with_value("1"),
                OwnedRecord::new()
                    .with_key("k")
                    .with_header("id", "y")
                    .with_value("2"),
                OwnedRecord::new()
                    .with_key("other")
                    .with_header("id", "x")
                    .with_value("3"),
            ],
        );
        assert_eq!(values(&run), ["1", "2"]);
    }
}
