//! Connectors in PostgreSQL, cluster-wide: their configs and target states
//! (`sluice_connectors`), the fenced lease on each one's task with the status its holder reports
//! (`sluice_connector_tasks`, a [`super::lease`] table), a file source's position
//! (`sluice_source_positions`) and a sink's offsets (group `connect-<name>` in
//! `sluice_group_offsets`), both written only under the task lease.

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::Duration;

use super::groups::{store_offsets, GroupDbError};
use super::lease::{millis, LeaseSql};
use super::{Db, DbError};
use crate::cluster::types::BrokerLease;
use crate::group::Committed;

/// The statements of the task leases.
static LEASE: LazyLock<LeaseSql> = LazyLock::new(|| {
    LeaseSql::new(
        "sluice_connector_tasks",
        "connector",
        &["worker_id", "state", "trace"],
        "",
    )
});

/// Why a connector write was not made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorDbError {
    /// This broker does not hold the connector's task lease: nothing was written.
    #[error("this broker no longer holds the connector's task lease")]
    LeaseLost,
    #[error("connector {0} already exists")]
    Exists(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<tokio_postgres::Error> for ConnectorDbError {
    fn from(e: tokio_postgres::Error) -> Self {
        ConnectorDbError::Db(e.into())
    }
}

impl From<deadpool_postgres::PoolError> for ConnectorDbError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        ConnectorDbError::Db(e.into())
    }
}

impl From<GroupDbError> for ConnectorDbError {
    fn from(e: GroupDbError) -> Self {
        match e {
            GroupDbError::LeaseLost => ConnectorDbError::LeaseLost,
            GroupDbError::Db(e) => e.into(),
            GroupDbError::Unavailable(e) => ConnectorDbError::Db(e),
        }
    }
}

/// A connector as the cluster stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredConnector {
    pub name: String,
    pub config: BTreeMap<String, String>,
    /// RUNNING, PAUSED or STOPPED.
    pub target: String,
    pub deployer: Option<String>,
    /// Changes with every config change and restart.
    pub generation: i64,
    /// Its task's live lease, if a broker holds one.
    pub task: Option<TaskHolder>,
}

/// Who runs a connector's task, and what it last reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskHolder {
    pub node_id: i32,
    pub worker_id: String,
    pub state: String,
    pub trace: Option<String>,
}

/// What the holder of a task lease reports with each renewal.
#[derive(Debug, Clone, Copy)]
pub struct TaskReport<'a> {
    pub worker_id: &'a str,
    pub state: &'a str,
    pub trace: Option<&'a str>,
}

impl Db {
    /// Every connector, by name, with its task's holder.
    pub async fn connectors(&self) -> Result<Vec<StoredConnector>, DbError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT c.name, c.config, c.target, c.deployer, c.generation,
                        t.node_id, t.worker_id, t.state, t.trace
                   FROM sluice_connectors c
                   LEFT JOIN (sluice_connector_tasks t
                              JOIN sluice_brokers b
                                ON b.node_id = t.node_id AND b.epoch = t.broker_epoch
                               AND b.lease_expires > now())
                     ON t.connector = c.name AND t.lease_expires > now()
                  ORDER BY c.name",
                &[],
            )
            .await?;
        rows.into_iter()
            .map(|r| {
                let name: String = r.get(0);
                let config: serde_json::Value = r.get(1);
                let config = serde_json::from_value(config).map_err(|e| {
                    DbError::Corrupt(format!("the config of connector {name}: {e}"))
                })?;
                let task = r.get::<_, Option<i32>>(5).map(|node_id| TaskHolder {
                    node_id,
                    worker_id: r.get(6),
                    state: r.get(7),
                    trace: r.get(8),
                });
                Ok(StoredConnector {
                    name,
                    config,
                    target: r.get(2),
                    deployer: r.get(3),
                    generation: r.get(4),
                    task,
                })
            })
            .collect()
    }

    /// Creates the connector (running) or, unless `create_only`, replaces its config; `true` if
    /// it was created.
    pub async fn put_connector(
        &self,
        name: &str,
        config: &BTreeMap<String, String>,
        deployer: &str,
        create_only: bool,
    ) -> Result<bool, ConnectorDbError> {
        let client = self.client().await?;
        let config = serde_json::to_value(config)
            .map_err(|e| DbError::Invalid(format!("connector config: {e}")))?;
        if create_only {
            let row = client
                .query_opt(
                    "INSERT INTO sluice_connectors (name, config, target, deployer)
                     VALUES ($1, $2, 'RUNNING', $3)
                     ON CONFLICT (name) DO NOTHING RETURNING 1",
                    &[&name, &config, &deployer],
                )
                .await?;
            return match row {
                Some(_) => Ok(true),
                None => Err(ConnectorDbError::Exists(name.to_string())),
            };
        }
        let row = client
            .query_one(
                "INSERT INTO sluice_connectors AS c (name, config, target, deployer)
                 VALUES ($1, $2, 'RUNNING', $3)
                 ON CONFLICT (name) DO UPDATE
                    SET config = EXCLUDED.config, deployer = EXCLUDED.deployer,
                        generation = c.generation + 1
                 RETURNING c.generation = 0",
                &[&name, &config, &deployer],
            )
            .await?;
        Ok(row.get(0))
    }

    /// Sets what the connector should do; `false` if there is no such connector.
    pub async fn set_connector_target(&self, name: &str, target: &str) -> Result<bool, DbError> {
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE sluice_connectors SET target = $2 WHERE name = $1",
                &[&name, &target],
            )
            .await?;
        Ok(n > 0)
    }

    /// Asks the task's holder to start it afresh; `false` if there is no such connector.
    pub async fn restart_connector(&self, name: &str) -> Result<bool, DbError> {
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE sluice_connectors SET generation = generation + 1 WHERE name = $1",
                &[&name],
            )
            .await?;
        Ok(n > 0)
    }

    /// Deletes the connector with its task lease and source position; `false` if there was none.
    pub async fn delete_connector(&self, name: &str) -> Result<bool, DbError> {
        let client = self.client().await?;
        let n = client
            .execute("DELETE FROM sluice_connectors WHERE name = $1", &[&name])
            .await?;
        Ok(n > 0)
    }

    /// Takes or renews `broker`'s lease on the connector's task for `ttl`, recording `report`;
    /// `Some(how long it is good for)` when held (the sooner of the lease's and the broker
    /// registration's expiry), `None` when another broker holds it or the connector is gone.
    pub async fn acquire_task(
        &self,
        name: &str,
        broker: BrokerLease,
        ttl: Duration,
        report: TaskReport<'_>,
    ) -> Result<Option<Duration>, DbError> {
        let client = self.client().await?;
        let outcome = client
            .query_opt(
                LEASE.acquire.as_str(),
                &[
                    &name,
                    &broker.node_id,
                    &broker.epoch,
                    &millis(ttl),
                    &report.worker_id,
                    &report.state,
                    &report.trace,
                ],
            )
            .await;
        match outcome {
            Ok(row) => Ok(row.map(|r| {
                let left: Option<i64> = r.get(0);
                Duration::from_millis(left.unwrap_or(0).max(0).unsigned_abs())
            })),
            // The connector was deleted since it was listed: nothing to hold.
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION) => {
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Gives the task lease up at once (shutdown, or the task moved), so another broker may
    /// take it without waiting for it to expire.
    pub async fn release_task(&self, name: &str, broker: BrokerLease) -> Result<(), DbError> {
        let client = self.client().await?;
        client
            .execute(
                LEASE.release.as_str(),
                &[&name, &broker.node_id, &broker.epoch],
            )
            .await?;
        Ok(())
    }

    /// Stores a sink's committed offsets (its group `connect-<name>`), all or none, only while
    /// `broker` holds the connector's task lease.
    pub async fn commit_sink_offsets(
        &self,
        name: &str,
        broker: BrokerLease,
        group: &str,
        offsets: &[(String, i32, Committed)],
    ) -> Result<(), ConnectorDbError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        lock_task(&tx, name, broker).await?;
        store_offsets(&tx, group, offsets).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A file source's saved position: the file it was reading and the byte after the last
    /// line committed.
    pub async fn source_position(&self, name: &str) -> Result<Option<(String, u64)>, DbError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT filename, position FROM sluice_source_positions WHERE connector = $1",
                &[&name],
            )
            .await?;
        Ok(row.map(|r| (r.get(0), r.get::<_, i64>(1).max(0).unsigned_abs())))
    }

    /// Saves a file source's position, only while `broker` holds the task lease.
    pub async fn save_source_position(
        &self,
        name: &str,
        broker: BrokerLease,
        filename: &str,
        position: u64,
    ) -> Result<(), ConnectorDbError> {
        let position = i64::try_from(position)
            .map_err(|_| DbError::Invalid(format!("file position {position}")))?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        lock_task(&tx, name, broker).await?;
        tx.execute(
            "INSERT INTO sluice_source_positions (connector, filename, position)
             VALUES ($1, $2, $3)
             ON CONFLICT (connector) DO UPDATE
                SET filename = EXCLUDED.filename, position = EXCLUDED.position",
            &[&name, &filename, &position],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

async fn lock_task(
    tx: &tokio_postgres::Transaction<'_>,
    name: &str,
    broker: BrokerLease,
) -> Result<(), ConnectorDbError> {
    tx.query_opt(
        LEASE.lock_held.as_str(),
        &[&name, &broker.node_id, &broker.epoch],
    )
    .await?
    .map(|_| ())
    .ok_or(ConnectorDbError::LeaseLost)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::db::testing::TestDb;

    const TTL: Duration = Duration::from_secs(30);

    fn report(worker: &str) -> TaskReport<'_> {
        TaskReport {
            worker_id: worker,
            state: "RUNNING",
            trace: None,
        }
    }

    async fn register(db: &Db, n: i32) -> BrokerLease {
        db.register("127.0.0.1", 9000 + n, None, Duration::from_secs(60))
            .await
            .unwrap()
    }

    fn config(file: &str) -> BTreeMap<String, String> {
        [
            ("connector.class", "FileStreamSink"),
            ("topics", "t"),
            ("file", file),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn at(offset: i64) -> Committed {
        Committed {
            offset,
            leader_epoch: -1,
            metadata: None,
            commit_timestamp: 1_700_000_000_000,
        }
    }

    async fn offsets(db: &Db, group: &str) -> Vec<((String, i32), i64)> {
        let client = db.group_connection().await.unwrap();
        super::super::groups::fetch_offsets(&client, group)
            .await
            .unwrap()
            .into_iter()
            .map(|(k, c)| (k, c.offset))
            .collect()
    }

    #[tokio::test]
    async fn connectors_are_created_once_updated_and_deleted_for_every_broker() {
        let Some(t) = TestDb::if_installed().await else {
            return;
        };
        let (a, b) = (t.connect().await, t.connect().await);
        assert!(a
            .put_connector("s", &config("/a"), "User:x", true)
            .await
            .unwrap());
        assert!(matches!(
            b.put_connector("s", &config("/b"), "User:y", true).await,
            Err(ConnectorDbError::Exists(_))
        ));
        let seen = b.connectors().await.unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].config, config("/a"));
        assert_eq!(seen[0].target, "RUNNING");
        assert_eq!(seen[0].task, None);
        let first = seen[0].generation;

        assert!(!b
            .put_connector("s", &config("/b"), "User:y", false)
            .await
            .unwrap());
        assert!(b.set_connector_target("s", "PAUSED").await.unwrap());
        let seen = a.connectors().await.unwrap();
        assert_eq!(seen[0].config, config("/b"));
        assert_eq!(seen[0].deployer.as_deref(), Some("User:y"));
        assert_eq!(seen[0].target, "PAUSED");
        assert!(
            seen[0].generation > first,
            "a new config is a new generation"
        );
        assert!(a.restart_connector("s").await.unwrap());
        assert!(a.connectors().await.unwrap()[0].generation > seen[0].generation);

        assert!(a.delete_connector("s").await.unwrap());
        assert!(!a.delete_connector("s").await.unwrap());
        assert!(!a.set_connector_target("s", "RUNNING").await.unwrap());
        assert!(b.connectors().await.unwrap().is_empty());
        assert!(
            a.put_connector("n", &config("/n"), "User:x", false)
                .await
                .unwrap(),
            "PUT of a new name creates it"
        );
    }

    #[tokio::test]
    async fn a_task_runs_under_one_brokers_lease_and_only_it_commits_progress() {
        let Some(t) = TestDb::if_installed().await else {
            return;
        };
        let db = t.connect().await;
        db.create_topic("t", 1, &[]).await.unwrap();
        let one = register(&db, 1).await;
        let two = register(&db, 2).await;
        db.put_connector("s", &config("/f"), "User:x", true)
            .await
            .unwrap();
        let left = db
            .acquire_task("s", one, TTL, report("one:8083"))
            .await
            .unwrap()
            .expect("a free task lease is taken");
        assert!(left <= TTL && left > Duration::from_secs(20), "{left:?}");
        assert_eq!(
            db.acquire_task("s", two, TTL, report("two:8083"))
                .await
                .unwrap(),
            None,
            "held by broker one"
        );
        let listed = db.connectors().await.unwrap();
        assert_eq!(
            listed[0].task,
            Some(TaskHolder {
                node_id: one.node_id,
                worker_id: "one:8083".into(),
                state: "RUNNING".into(),
                trace: None,
            })
        );

        db.commit_sink_offsets("s", one, "connect-s", &[("t".into(), 0, at(4))])
            .await
            .unwrap();
        assert!(matches!(
            db.commit_sink_offsets("s", two, "connect-s", &[("t".into(), 0, at(9))])
                .await,
            Err(ConnectorDbError::LeaseLost)
        ));
        db.save_source_position("s", one, "/in", 10).await.unwrap();
        assert!(matches!(
            db.save_source_position("s", two, "/in", 99).await,
            Err(ConnectorDbError::LeaseLost)
        ));
        assert_eq!(offsets(&db, "connect-s").await, vec![(("t".into(), 0), 4)]);
        assert_eq!(
            db.source_position("s").await.unwrap(),
            Some(("/in".into(), 10))
        );

        // Broker one dies: once its registration lapses, its task is free for broker two, and
        // one's late writes store nothing.
        let client = db.group_connection().await.unwrap();
        client
            .execute(
                "UPDATE sluice_brokers SET lease_expires = now() - interval '1 second'
                  WHERE node_id = $1",
                &[&one.node_id],
            )
            .await
            .unwrap();
        assert_eq!(db.connectors().await.unwrap()[0].task, None);
        assert!(db
            .acquire_task("s", two, TTL, report("two:8083"))
            .await
            .unwrap()
            .is_some());
        assert!(matches!(
            db.commit_sink_offsets("s", one, "connect-s", &[("t".into(), 0, at(5))])
                .await,
            Err(ConnectorDbError::LeaseLost)
        ));
        db.commit_sink_offsets("s", two, "connect-s", &[("t".into(), 0, at(6))])
            .await
            .unwrap();
        assert_eq!(offsets(&db, "connect-s").await, vec![(("t".into(), 0), 6)]);

        // A released lease is free at once; a deleted connector has no lease to take.
        db.release_task("s", two).await.unwrap();
        let three = register(&db, 3).await;
        assert!(db
            .acquire_task("s", three, TTL, report("three:8083"))
            .await
            .unwrap()
            .is_some());
        db.delete_connector("s").await.unwrap();
        assert_eq!(db.source_position("s").await.unwrap(), None);
        assert_eq!(
            db.acquire_task("s", three, TTL, report("three:8083"))
                .await
                .unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn a_task_lease_is_good_only_as_long_as_its_brokers_registration() {
        let Some(t) = TestDb::if_installed().await else {
            return;
        };
        let db = t.connect().await;
        let one = db
            .register("127.0.0.1", 9001, None, Duration::from_secs(3))
            .await
            .unwrap();
        db.put_connector("s", &config("/f"), "User:x", true)
            .await
            .unwrap();
        let left = db
            .acquire_task("s", one, TTL, report("one:8083"))
            .await
            .unwrap()
            .expect("held");
        assert!(
            left <= Duration::from_secs(3),
            "bounded by the registration: {left:?}"
        );
    }
}
