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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::cluster::db::testing::TestDb;
    use crate::cluster::types::{BatchAppend, UploadCommit};

    /// A partition holding batches of 2 records, 100 bytes each, at offsets 0, 2, 4, 6, with
    /// max timestamps 10, 40, 20, 40.
    async fn four_batches(t: &TestDb) -> (Db, Uuid) {
        let db = t.connect().await;
        let topic = db.create_topic("t", 1, &[]).await.unwrap();
        let lease = db
            .register("a", 1, None, Duration::from_secs(30))
            .await
            .unwrap();
        let batches = [10, 40, 20, 40]
            .into_iter()
            .zip(0u64..)
            .map(|(ts, i)| BatchAppend {
                topic_id: topic.topic_id,
                partition: 0,
                byte_offset: i * 100,
                byte_length: 100,
                record_count: 2,
                base_timestamp: ts - 5,
                max_timestamp: ts,
                producer_id: -1,
                producer_epoch: -1,
                base_sequence: -1,
                is_transactional: false,
                is_control: false,
                follows: None,
            })
            .collect();
        let up = UploadCommit {
            object_key: "obj-1".into(),
            object_size: 400,
            batches,
        };
        db.commit_upload(&lease, &up).await.unwrap();
        (db, topic.topic_id)
    }

    fn bases(coords: &[BatchCoord]) -> Vec<i64> {
        coords.iter().map(|c| c.base_offset).collect()
    }

    #[tokio::test]
    async fn batches_are_read_from_the_one_holding_the_offset_within_max_bytes() {
        let Some(t) = TestDb::if_installed().await else {
            return;
        };
        let (db, topic) = four_batches(&t).await;
        let all = db.batches_from(topic, 0, 0, i64::MAX).await.unwrap();
        assert_eq!(bases(&all), [0, 2, 4, 6]);
        assert_eq!(
            all[1],
            BatchCoord {
                base_offset: 2,
                last_offset: 3,
                max_timestamp: 40,
                object_key: "obj-1".into(),
                byte_offset: 100,
                byte_length: 100,
            }
        );
        // Offset 3 is inside the batch at 2.
        assert_eq!(
            bases(&db.batches_from(topic, 0, 3, i64::MAX).await.unwrap()),
            [2, 4, 6]
        );
        // 250 bytes: two whole batches; 1 byte: still the first one.
        assert_eq!(
            bases(&db.batches_from(topic, 0, 0, 250).await.unwrap()),
            [0, 2]
        );
        assert_eq!(bases(&db.batches_from(topic, 0, 4, 1).await.unwrap()), [4]);
        // At the high watermark: nothing yet.
        assert!(db.batches_from(topic, 0, 8, 1000).await.unwrap().is_empty());
        assert!(db.batches_from(topic, 1, 0, 1000).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn timestamps_find_the_first_batch_at_or_after_and_the_maximum() {
        let Some(t) = TestDb::if_installed().await else {
            return;
        };
        let (db, topic) = four_batches(&t).await;
        let at = |ts| {
            let db = db.clone();
            async move {
                db.batch_for_timestamp(topic, 0, ts)
                    .await
                    .unwrap()
                    .map(|c| c.base_offset)
            }
        };
        assert_eq!(at(0).await, Some(0));
        assert_eq!(at(15).await, Some(2));
        assert_eq!(at(40).await, Some(2));
        assert_eq!(at(41).await, None);
        let max = db.max_timestamp(topic, 0).await.unwrap().unwrap();
        assert_eq!((max.base_offset, max.max_timestamp), (2, 40));
        assert_eq!(db.max_timestamp(topic, 1).await.unwrap(), None);
    }
}
