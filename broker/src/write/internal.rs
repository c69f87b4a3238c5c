//! Records the broker writes on its own behalf — a file source's lines, a sink's dead letters —
//! built into a batch in the topic's codec and written through the one write path.

use bytes::Bytes;

use super::{append, codec_for, Appended};
use crate::broker::Broker;
use crate::log::AppendError;
use crate::records::record::{build_batch, BatchMeta};
use crate::records::{Compression, NewRecord};

/// Appends `records` (at least one) to `topic`/`partition` as one batch, creating the topic with
/// the broker defaults if it is missing and auto-creation is allowed.
///
/// Guests may run here (when the topic has transforms): call it from a blocking context.
pub fn append_records(
    broker: &Broker,
    topic: &str,
    partition: i32,
    records: &[NewRecord],
    now: i64,
) -> Result<Appended, AppendError> {
    broker
        .catalog
        .get_or_auto_create(topic)
        .map_err(|e| AppendError::InvalidRecord(format!("topic {topic}: {e}")))?;
    let batch = build_batch(
        records,
        codec_for(broker, topic, Compression::None),
        &BatchMeta::default(),
    );
    append(broker, topic, partition, Bytes::from(batch), now)
}
