//! A running count per key, kept in the transform's state store: each record is answered with
//! its key and how many records with that key the input partition has seen so far (as decimal
//! text). Records without a key are counted under the key `null`.
//!
//! Deployed, the store lives in the deployment's changelog topic, so the counts survive restarts
//! and crashes, and every input is counted exactly once.

use sluice_sdk::prelude::*;

#[transform]
pub fn count(record: Record<'_>, out: &mut Output) -> Result<(), Error> {
    let key = match record.key() {
        Some(k) if !k.is_empty() => k,
        _ => b"null",
    };
    let n = state::get(key).map_or(0, |v| sluice_sdk::state::decode_u64(&v)) + 1;
    state::put(key, n.to_string())?;
    out.write(
        OwnedRecord::new()
            .with_key(key)
            .with_value(n.to_string())
            .with_timestamp(record.timestamp()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::testing::Harness;

    fn keyed(key: &str) -> OwnedRecord {
        OwnedRecord::new().with_key(key).with_value("x")
    }

    fn counts(run: &sluice_sdk::testing::TestRun) -> Vec<(String, String)> {
        run.written
            .iter()
            .map(|w| {
                let r = &w.record;
                (
                    String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned(),
                    String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn each_key_is_counted_and_the_count_carries_over_to_the_next_batch() {
        let harness = Harness::new();
        let first = harness.run(count, [keyed("a"), keyed("b"), keyed("a")]);
        assert_eq!(
            counts(&first),
            [("a", "1"), ("b", "1"), ("a", "2")].map(|(k, v)| (k.to_string(), v.to_string()))
        );
        let second = harness.run(count, [keyed("a"), OwnedRecord::new()]);
        assert_eq!(
            counts(&second),
            [("a", "3"), ("null", "1")].map(|(k, v)| (k.to_string(), v.to_string()))
        );
        assert_eq!(harness.stored("a").as_deref(), Some(&b"3"[..]));
        assert_eq!(harness.stored("b").as_deref(), Some(&b"1"[..]));
    }

    #[test]
    fn a_count_continues_from_what_the_store_holds() {
        let harness = Harness::new().state("k", "41");
        let run = harness.run(count, [keyed("k")]);
        assert_eq!(run.written[0].record.value.as_deref(), Some(&b"42"[..]));
    }
}
