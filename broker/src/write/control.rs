//! Stand-in for the log side's control batches (wt-txlog lands the real `append_marker`, which
//! replaces this file on merge): same signature, writes nothing, so the coordinator can be
//! built and tested against it.

use super::{partition_log, Appended};
use crate::broker::Broker;
use crate::log::{AppendError, AppendOutcome};

/// A transaction marker for one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    pub coordinator_epoch: i32,
}

/// Would append `marker` to `topic`/`partition`; the stand-in only checks the partition exists.
pub fn append_marker(
    broker: &Broker,
    topic: &str,
    partition: i32,
    _marker: &Marker,
    _now_ms: i64,
) -> Result<Appended, AppendError> {
    let log = partition_log(broker, topic, partition)?;
    let end = log.high_watermark();
    Ok(Appended {
        outcome: AppendOutcome {
            base_offset: end,
            last_offset: end - 1,
            log_append_time: -1,
            log_start_offset: log.log_start_offset(),
            duplicate: false,
        },
        durable: Vec::new(),
    })
}
