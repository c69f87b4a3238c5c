//! The seed tutorial's stream processor (`streamProcessor.js`) as a Sluice transform: every
//! record's value upper-cased, key, headers and timestamp kept.

use sluice_sdk::prelude::*;

#[transform]
pub fn uppercase(record: Record<'_>, out: &mut Output) -> Result<(), Error> {
    // Same length out as in: the value is upper-cased where it lands in the output, with no
    // copy of its own.
    out.write_edited(&record, |value| value.make_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::testing::Harness;

    #[test]
    fn values_are_uppercased_and_the_rest_kept() {
        let run = Harness::new().run(
            uppercase,
            [
                OwnedRecord::new()
                    .with_key("k")
                    .with_value("Hello KafkaJS user!")
                    .with_header("h", "v")
                    .with_timestamp(42),
                OwnedRecord::new(),
            ],
        );
        assert!(run.errors.is_empty());
        assert_eq!(run.written.len(), 2);
        let first = &run.written[0].record;
        assert_eq!(first.value.as_deref(), Some(&b"HELLO KAFKAJS USER!"[..]));
        assert_eq!(first.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(first.headers, vec![("h".to_string(), Some(b"v".to_vec()))]);
        assert_eq!(first.timestamp, Some(42));
        assert_eq!(run.written[1].record.value, None, "a null value stays null");
        assert_eq!(run.written[0].topic, "output");
    }
}
