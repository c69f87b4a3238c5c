//! What fetches and ListOffsets read: a partition's offsets and the coordinates of its
//! committed batches (by offset, by timestamp).

use tokio_postgres::Row;
use uuid::Uuid;

use super::{Db, DbError};
use crate::cluster::types::{BatchCoord, PartitionOffsets};

/// The most batches one [`Db::batches_from`] call returns, whatever `max_bytes` allows, so one
/// fetch of tiny batches cannot pull a whole partition's index.
pub const MAX_BATCHES_PER_READ: i64 = 1000;

/// The columns [`coord_from_row`] reads, in order.
const COORD_COLUMNS: &str =
    "base_offset, last_offset, max_timestamp, object_key, byte_offset, byte_length";

impl Db {
    /// The log start offset and high watermark of a partition; `None` if it does not exist.
    pub async fn partition_offsets(
        &self,
        topic_id: Uuid,
        partition: i32,
    ) -> Result<Option<PartitionOffsets>, DbError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT log_start_offset, high_watermark FROM sluice_partitions
                 WHERE topic_id = $1 AND partition = $2",
            )
            .await?;
        let row = client.query_opt(&stmt, &[&topic_id, &partition]).await?;
        Ok(row.map(|r| PartitionOffsets {
            log_start_offset: r.get(0),
            high_watermark: r.get(1),
        }))
    }

    /// The committed batches holding `offset` and after, in offset order: the first one always
    /// (however big, as Kafka does, so a consumer is never stuck), then more while their total
    /// size stays within `max_bytes` (and at most [`MAX_BATCHES_PER_READ`]). Empty when
    /// `offset` is at or past the high watermark.
    pub async fn batches_from(
        &self,
        topic_id: Uuid,
        partition: i32,
        offset: i64,
        max_bytes: i64,
    ) -> Result<Vec<BatchCoord>, DbError> {
        let client = self.client().await?;
        // The batch holding `offset` is the last one starting at or before it (an index scan
        // backwards); from there on the primary key gives the batches in order.
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {COORD_COLUMNS} FROM (
                     SELECT {COORD_COLUMNS},
                            sum(byte_length) OVER (ORDER BY base_offset) AS upto,
                            row_number() OVER (ORDER BY base_offset) AS n
                     FROM (
                         SELECT {COORD_COLUMNS} FROM sluice_batches
                         WHERE topic_id = $1 AND partition = $2 AND last_offset >= $3
                           AND base_offset >= coalesce((
                               SELECT max(base_offset) FROM sluice_batches
                               WHERE topic_id = $1 AND partition = $2 AND base_offset <= $3
                           ), 0)
                         ORDER BY base_offset LIMIT $5
                     ) AS firsts
                 ) AS sized
                 WHERE n = 1 OR upto <= $4
                 ORDER BY base_offset"
            ))
            .await?;
        let rows = client
            .query(
                &stmt,
                &[
                    &topic_id,
                    &partition,
                    &offset,
                    &max_bytes,
                    &MAX_BATCHES_PER_READ,
                ],
            )
            .await?;
        rows.iter().map(coord_from_row).collect()
    }

    /// The first batch (in offset order) with a record at or after timestamp `ts`: where
    /// ListOffsets by timestamp starts looking. `None` when no record is that recent.
    pub async fn batch_for_timestamp(
        &self,
        topic_id: Uuid,
        partition: i32,
        ts: i64,
    ) -> Result<Option<BatchCoord>, DbError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {COORD_COLUMNS} FROM sluice_batches
                 WHERE topic_id = $1 AND partition = $2 AND max_timestamp >= $3
                 ORDER BY base_offset LIMIT 1"
            ))
            .await?;
        let row = client
            .query_opt(&stmt, &[&topic_id, &partition, &ts])
            .await?;
        row.as_ref().map(coord_from_row).transpose()
    }

    /// The batch holding the partition's largest timestamp (the first such batch if several),
    /// for ListOffsets' MAX_TIMESTAMP; `None` for an empty partition.
    pub async fn max_timestamp(
        &self,
        topic_id: Uuid,
        partition: i32,
    ) -> Result<Option<BatchCoord>, DbError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {COORD_COLUMNS} FROM sluice_batches
                 WHERE topic_id = $1 AND partition = $2
                 ORDER BY max_timestamp DESC, base_offset LIMIT 1"
            ))
            .await?;
        let row = client.query_opt(&stmt, &[&topic_id, &partition]).await?;
        row.as_ref().map(coord_from_row).transpose()
    }
}

fn coord_from_row(row: &Row) -> Result<BatchCoord, DbError> {
    let byte_offset: i64 = row.get(4);
    let byte_length: i32 = row.get(5);
    let base_offset: i64 = row.get(0);
    Ok(BatchCoord {
        base_offset,
        last_offset: row.get(1),
        max_timestamp: row.get(2),
        object_key: row.get(3),
        byte_offset: u64::try_from(byte_offset).map_err(|_| {
            DbError::Corrupt(format!("batch at {base_offset}: byte offset {byte_offset}"))
        })?,
        byte_length: u32::try_from(byte_length).map_err(|_| {
            DbError::Corrupt(format!("batch at {base_offset}: byte length {byte_length}"))
        })?,
    })
}
