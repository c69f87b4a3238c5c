//! Topics, their partitions and topic-level configs, cluster-wide; and producer ids for
//! idempotent producers (one sequence for the whole cluster).

use serde_json::{Map, Value};
use tokio_postgres::error::SqlState;
use tokio_postgres::Row;
use uuid::Uuid;

use super::notify::{topic_changed_payload, NOTIFY_ONE_SQL};
use super::{Db, DbError};
use crate::cluster::types::TopicMeta;

/// The columns [`topic_from_row`] reads, in order.
const TOPIC_COLUMNS: &str = "topic_id, name, partitions, configs";

impl Db {
    /// Creates `name` with `partitions` partitions (all empty) and the given topic configs.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: &[(String, String)],
    ) -> Result<TopicMeta, DbError> {
        if partitions < 1 {
            return Err(DbError::InvalidPartitions {
                topic: name.to_string(),
                reason: format!("{partitions} partitions (at least 1)"),
            });
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let topic_id = Uuid::new_v4();
        let inserted = tx
            .query_one(
                &format!(
                    "INSERT INTO sluice_topics (topic_id, name, partitions, configs)
                     VALUES ($1, $2, $3, $4) RETURNING {TOPIC_COLUMNS}"
                ),
                &[&topic_id, &name, &partitions, &configs_json(configs)],
            )
            .await;
        let row = match inserted {
            Ok(row) => row,
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                return Err(DbError::TopicAlreadyExists(name.to_string()));
            }
            Err(e) => return Err(e.into()),
        };
        tx.execute(
            "INSERT INTO sluice_partitions (topic_id, partition)
             SELECT $1, p FROM generate_series(0, $2 - 1) AS p",
            &[&topic_id, &partitions],
        )
        .await?;
        tx.commit().await?;
        topic_from_row(&row)
    }

    /// Deletes `name` with its partitions, batch coordinates and producer state; the objects
    /// its batches were in become unreferenced and maintenance deletes them. Returns its id.
    pub async fn delete_topic(&self, name: &str) -> Result<Uuid, DbError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let row = tx
            .query_opt(
                "DELETE FROM sluice_topics WHERE name = $1 RETURNING topic_id",
                &[&name],
            )
            .await?;
        let Some(row) = row else {
            return Err(DbError::UnknownTopic(name.to_string()));
        };
        tx.execute(NOTIFY_ONE_SQL, &[&topic_changed_payload(name)])
            .await?;
        tx.commit().await?;
        Ok(row.get(0))
    }

    /// Every topic, by name.
    pub async fn topics(&self) -> Result<Vec<TopicMeta>, DbError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!("SELECT {TOPIC_COLUMNS} FROM sluice_topics ORDER BY name"),
                &[],
            )
            .await?;
        rows.iter().map(topic_from_row).collect()
    }

    /// The topic named `name`, if it exists.
    pub async fn topic(&self, name: &str) -> Result<Option<TopicMeta>, DbError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!("SELECT {TOPIC_COLUMNS} FROM sluice_topics WHERE name = $1"),
                &[&name],
            )
            .await?;
        row.as_ref().map(topic_from_row).transpose()
    }

    /// The topic whose id is `topic_id`, if it exists.
    pub async fn topic_by_id(&self, topic_id: Uuid) -> Result<Option<TopicMeta>, DbError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!("SELECT {TOPIC_COLUMNS} FROM sluice_topics WHERE topic_id = $1"),
                &[&topic_id],
            )
            .await?;
        row.as_ref().map(topic_from_row).transpose()
    }

    /// Sets the `set` configs and removes the `delete` keys of `name`, in one statement
    /// (a key in both ends up deleted). Returns the topic as it now is.
    pub async fn set_configs(
        &self,
        name: &str,
        set: &[(String, String)],
        delete: &[String],
    ) -> Result<TopicMeta, DbError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!(
                    "UPDATE sluice_topics SET configs = (configs || $2) - $3::text[]
                     WHERE name = $1 RETURNING {TOPIC_COLUMNS}"
                ),
                &[&name, &configs_json(set), &delete],
            )
            .await?;
        match row {
            Some(r) => topic_from_row(&r),
            None => Err(DbError::UnknownTopic(name.to_string())),
        }
    }

    /// Changes the configs of `name` atomically: `change` gets the topic as stored (its row
    /// locked) and answers the whole new set of configs, or refuses. Unless `commit` is false
    /// (a `validate_only` request) the new set is stored and every broker is told (a
    /// topic-change notice). The outer error is the database's, the inner one `change`'s.
    pub async fn change_configs<E>(
        &self,
        name: &str,
        commit: bool,
        change: impl FnOnce(&TopicMeta) -> Result<Vec<(String, String)>, E>,
    ) -> Result<Result<TopicMeta, E>, DbError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let Some(row) = tx
            .query_opt(
                &format!("SELECT {TOPIC_COLUMNS} FROM sluice_topics WHERE name = $1 FOR UPDATE"),
                &[&name],
            )
            .await?
        else {
            return Err(DbError::UnknownTopic(name.to_string()));
        };
        let current = topic_from_row(&row)?;
        let next = match change(&current) {
            Ok(next) => next,
            Err(e) => return Ok(Err(e)),
        };
        if !commit {
            return Ok(Ok(TopicMeta {
                configs: next,
                ..current
            }));
        }
        let row = tx
            .query_one(
                &format!(
                    "UPDATE sluice_topics SET configs = $2 WHERE topic_id = $1
                     RETURNING {TOPIC_COLUMNS}"
                ),
                &[&current.topic_id, &configs_json(&next)],
            )
            .await?;
        tx.execute(NOTIFY_ONE_SQL, &[&topic_changed_payload(name)])
            .await?;
        tx.commit().await?;
        Ok(Ok(topic_from_row(&row)?))
    }

    /// Grows `name` to `new_count` partitions (the new ones empty); fewer or as many as it has
    /// is [`DbError::InvalidPartitions`].
    pub async fn create_partitions(
        &self,
        name: &str,
        new_count: i32,
    ) -> Result<TopicMeta, DbError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let Some(row) = tx
            .query_opt(
                "SELECT topic_id, partitions FROM sluice_topics WHERE name = $1 FOR UPDATE",
                &[&name],
            )
            .await?
        else {
            return Err(DbError::UnknownTopic(name.to_string()));
        };
        let topic_id: Uuid = row.get(0);
        let current: i32 = row.get(1);
        if new_count <= current {
            return Err(DbError::InvalidPartitions {
                topic: name.to_string(),
                reason: format!("it has {current} partitions, asked for {new_count}"),
            });
        }
        let row = tx
            .query_one(
                &format!(
                    "UPDATE sluice_topics SET partitions = $2 WHERE topic_id = $1
                     RETURNING {TOPIC_COLUMNS}"
                ),
                &[&topic_id, &new_count],
            )
            .await?;
        tx.execute(
            "INSERT INTO sluice_partitions (topic_id, partition)
             SELECT $1, p FROM generate_series($2, $3 - 1) AS p",
            &[&topic_id, &current, &new_count],
        )
        .await?;
        tx.execute(NOTIFY_ONE_SQL, &[&topic_changed_payload(name)])
            .await?;
        tx.commit().await?;
        topic_from_row(&row)
    }

    /// A new producer id, unique across the cluster.
    pub async fn allocate_producer_id(&self) -> Result<i64, DbError> {
        let client = self.client().await?;
        Ok(client
            .query_one("SELECT nextval('sluice_producer_ids')", &[])
            .await?
            .get(0))
    }
}

fn configs_json(configs: &[(String, String)]) -> Value {
    Value::Object(
        configs
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect::<Map<_, _>>(),
    )
}

fn topic_from_row(row: &Row) -> Result<TopicMeta, DbError> {
    let name: String = row.get(1);
    let configs = match row.get::<_, Value>(3) {
        Value::Object(map) => map
            .into_iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k, s)),
                other => Err(DbError::Corrupt(format!(
                    "topic {name:?}: config {k} is {other}, not a string"
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?,
        other => {
            return Err(DbError::Corrupt(format!(
                "topic {name:?}: configs are {other}, not an object"
            )));
        }
    };
    Ok(TopicMeta {
        topic_id: row.get(0),
        name,
        partitions: row.get(2),
        configs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::db::testing::TestDb;
    use crate::cluster::types::CommitEvent;

    fn kv(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[tokio::test]
    async fn topics_are_created_listed_configured_grown_and_deleted() {
        let Some(t) = TestDb::if_installed().await else {
            return;
        };
        let db = t.connect().await;
        let a = db
            .create_topic("a", 3, &[kv("retention.ms", "1000")])
            .await
            .unwrap();
        assert_eq!(a.partitions, 3);
        assert_eq!(a.configs, vec![kv("retention.ms", "1000")]);
        assert!(matches!(
            db.create_topic("a", 1, &[]).await,
            Err(DbError::TopicAlreadyExists(n)) if n == "a"
        ));
        db.create_topic("b", 1, &[]).await.unwrap();
        let names: Vec<_> = db
            .topics()
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, ["a", "b"]);

        let a2 = db
            .set_configs(
                "a",
                &[kv("cleanup.policy", "compact")],
                &["retention.ms".into()],
            )
            .await
            .unwrap();
        assert_eq!(a2.configs, vec![kv("cleanup.policy", "compact")]);
        assert_eq!(db.topic("a").await.unwrap().unwrap(), a2);
        assert_eq!(db.topic_by_id(a.topic_id).await.unwrap().unwrap(), a2);

        assert!(matches!(
            db.create_partitions("a", 3).await,
            Err(DbError::InvalidPartitions { .. })
        ));
        assert_eq!(db.create_partitions("a", 5).await.unwrap().partitions, 5);
        let offsets = db.partition_offsets(a.topic_id, 4).await.unwrap().unwrap();
        assert_eq!(offsets.high_watermark, 0);
        assert!(db.partition_offsets(a.topic_id, 5).await.unwrap().is_none());

        assert_eq!(db.delete_topic("a").await.unwrap(), a.topic_id);
        assert!(db.topic("a").await.unwrap().is_none());
        assert!(matches!(
            db.delete_topic("a").await,
            Err(DbError::UnknownTopic(_))
        ));
        assert!(matches!(
            db.set_configs("a", &[], &[]).await,
            Err(DbError::UnknownTopic(_))
        ));
    }

    async fn next(events: &mut tokio::sync::broadcast::Receiver<CommitEvent>) -> CommitEvent {
        tokio::time::timeout(std::time::Duration::from_secs(30), events.recv())
            .await
            .expect("an event in time")
            .expect("the feed is open")
    }

    #[tokio::test]
    async fn configs_change_under_the_row_lock_and_every_broker_is_told() {
        let Some(t) = TestDb::if_installed().await else {
            return;
        };
        let db = t.connect().await;
        db.create_topic("a", 1, &[kv("retention.ms", "1000")])
            .await
            .unwrap();
        let feed = db.commit_feed();
        let mut events = feed.subscribe();
        assert_eq!(next(&mut events).await, CommitEvent::Resync);

        // Refused: nothing stored.
        let refused = db
            .change_configs("a", true, |_| Err::<Vec<(String, String)>, _>("no"))
            .await
            .unwrap();
        assert_eq!(refused.unwrap_err(), "no");
        // Validated only: answered as it would be, nothing stored.
        let preview = db
            .change_configs("a", false, |_| Ok::<_, ()>(vec![kv("retention.ms", "5")]))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(preview.configs, vec![kv("retention.ms", "5")]);
        assert_eq!(
            db.topic("a").await.unwrap().unwrap().configs,
            vec![kv("retention.ms", "1000")]
        );
        // Stored: the change sees the configs as they were, and the others hear of it.
        let changed = db
            .change_configs("a", true, |current| {
                assert_eq!(current.configs, vec![kv("retention.ms", "1000")]);
                Ok::<_, ()>(vec![kv("max.message.bytes", "100")])
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(changed.configs, vec![kv("max.message.bytes", "100")]);
        assert_eq!(db.topic("a").await.unwrap().unwrap(), changed);
        assert_eq!(
            next(&mut events).await,
            CommitEvent::TopicChanged("a".into())
        );
        db.create_partitions("a", 2).await.unwrap();
        assert_eq!(
            next(&mut events).await,
            CommitEvent::TopicChanged("a".into())
        );
        db.delete_topic("a").await.unwrap();
        assert_eq!(
            next(&mut events).await,
            CommitEvent::TopicChanged("a".into())
        );
        assert!(matches!(
            db.change_configs("a", true, |_| Ok::<_, ()>(vec![])).await,
            Err(DbError::UnknownTopic(_))
        ));
    }

    #[tokio::test]
    async fn producer_ids_are_unique() {
        let Some(t) = TestDb::if_installed().await else {
            return;
        };
        let db = t.connect().await;
        let a = db.allocate_producer_id().await.unwrap();
        let b = db.allocate_producer_id().await.unwrap();
        assert!(a >= 0 && b > a);
    }
}
