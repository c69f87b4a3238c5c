//! Transaction markers and the transactional-write gate: what the transaction coordinator calls
//! to end a transaction on a partition, and the one place a transactional Produce is checked
//! against the coordinator's view (KIP-890) before anything is appended.

use kafka_protocol::error::ResponseError;

use super::{partition_log, Appended, Durable};
use crate::broker::Broker;
use crate::log::AppendError;
use crate::records::BatchHeader;

/// A commit or abort marker for one producer's transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// Commit (true) or abort (false).
    pub commit: bool,
    /// The coordinator's epoch, carried in the marker's value.
    pub coordinator_epoch: i32,
}

/// Appends a commit/abort control batch to one partition through the write path, ends the
/// producer's ongoing transaction there (LSO moves), records an abort in the aborted index.
/// Idempotent: writing the same marker twice for a transaction that is no longer open is Ok
/// (nothing is written the second time; `Appended::durable` then covers the log end, so waiting
/// on it also waits for the first copy).
///
/// Markers are durable per the fsync policy like any append: wait for `Appended::durable`
/// before answering EndTxn. Transforms do not run on markers.
pub fn append_marker(
    broker: &Broker,
    topic: &str,
    partition: i32,
    marker: &Marker,
    now_ms: i64,
) -> Result<Appended, AppendError> {
    let log = partition_log(broker, topic, partition)?;
    let outcome = log.append_marker(
        marker.producer_id,
        marker.producer_epoch,
        marker.commit,
        marker.coordinator_epoch,
        now_ms,
    )?;
    Ok(Appended {
        outcome,
        durable: vec![Durable {
            log,
            last_offset: outcome.last_offset,
        }],
    })
}

/// KIP-890 verification: was `topic`/`partition` added to the producer's transaction before this
/// transactional batch is written? Called by the write path for every transactional batch,
/// before anything is appended; an error refuses the partition's write with that code.
///
/// Asks the transaction coordinator: the batch's producer id and epoch must be the transactional
/// id's current ones, its transaction ongoing, and the partition in it. This is what stops a
/// write that arrives after EndTxn decided (or a timeout aborted) the transaction.
pub fn verify_transactional_write(
    broker: &Broker,
    transactional_id: Option<&str>,
    topic: &str,
    partition: i32,
    header: &BatchHeader,
) -> Result<(), ResponseError> {
    let Some(id) = transactional_id else {
        // Transactional batches come with the transactional id they belong to.
        return Err(ResponseError::InvalidTxnState);
    };
    broker
        .transactions
        .verify_write(
            id,
            header.producer_id,
            header.producer_epoch,
            topic,
            partition,
        )
        .map_err(|e| txn_error_code(&e))
}

/// The code a write refused by the coordinator is answered with.
pub(super) fn txn_error_code(e: &crate::txn::TxnError) -> ResponseError {
    use crate::txn::TxnError;
    match e {
        // A produce from an older epoch is answered as Kafka's partition leader does.
        TxnError::ProducerFenced => ResponseError::InvalidProducerEpoch,
        TxnError::InvalidProducerIdMapping => ResponseError::InvalidProducerIdMapping,
        // Retriable: the transaction log could not be written.
        TxnError::Storage(_) => ResponseError::KafkaStorageError,
        _ => ResponseError::InvalidTxnState,
    }
}
