//! Consumer groups in PostgreSQL: the coordinator's fenced lease on each group
//! (`sluice_group_leases`) and the committed offsets it writes under that lease
//! (`sluice_group_offsets`).
//!
//! The lease is [`super::lease`]'s: bound to the holder's broker epoch, free once it expires or
//! its holder's registration lapses, and every write under it locks and checks it in the same
//! transaction, so a commit from a zombie (lapsed, superseded) coordinator stores nothing.
//!
//! All times are the database's (`now()`), so brokers' clocks never have to agree.

use std::time::Duration;

use tokio_postgres::Client;

use super::lease::{millis, LeaseSql};
use crate::cluster::types::{BrokerInfo, BrokerLease};
use crate::group::offsets::GroupOffsets;
use crate::group::{Committed, GroupMeta};

/// Why a group write was not made.
#[derive(Debug, thiserror::Error)]
pub enum GroupDbError {
    /// This broker does not hold the group's lease (expired, taken over, or its own broker
    /// registration lapsed): nothing was written.
    #[error("this broker no longer holds the group's coordinator lease")]
    LeaseLost,
    #[error("metadata database: {0}")]
    Db(#[from] tokio_postgres::Error),
    /// No connection to the database could be had.
    #[error("{0}")]
    Unavailable(#[from] super::DbError),
}

impl super::Db {
    /// A pooled connection for the group queries below (they take the client, so a caller can
    /// run them in a transaction of its own and tests can call them directly).
    pub async fn group_connection(&self) -> Result<deadpool_postgres::Object, GroupDbError> {
        Ok(self.client().await?)
    }
}

/// The group's lease as held: what is kept of the group across coordinators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldLease {
    /// Protocol type and generation of the group's last completed rebalance, if any.
    pub meta: Option<GroupMeta>,
}

/// A group known to the cluster, as ListGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownGroup {
    pub group_id: String,
    pub protocol_type: Option<String>,
    /// The node id of the broker holding a live lease on it, if one does.
    pub coordinator: Option<i32>,
}

/// The statements of the group leases (see [`super::lease`]).
static LEASE: std::sync::LazyLock<LeaseSql> = std::sync::LazyLock::new(|| {
    LeaseSql::new(
        "sluice_group_leases",
        "group_id",
        &[],
        "l.protocol_type, l.generation",
    )
});

/// Takes or renews `broker`'s lease on `group` for `ttl`. Succeeds when the group has no lease,
/// its lease is free (expired, or its holder's registration lapsed or was superseded) or already
/// this broker's; and only while `broker`'s own registration is current. `None`: another broker
/// holds it.
pub async fn acquire_lease(
    db: &Client,
    group: &str,
    broker: BrokerLease,
    ttl: Duration,
) -> Result<Option<HeldLease>, GroupDbError> {
    let ttl_ms = millis(ttl);
    let row = db
        .query_opt(
            LEASE.acquire.as_str(),
            &[&group, &broker.node_id, &broker.epoch, &ttl_ms],
        )
        .await?;
    Ok(row.map(|row| {
        let protocol_type: Option<String> = row.get(0);
        let generation: i32 = row.get(1);
        HeldLease {
            meta: protocol_type.map(|protocol_type| GroupMeta {
                protocol_type,
                generation,
            }),
        }
    }))
}

/// Gives the lease up at once (the group has no members left here), so the next FindCoordinator
/// may place the group on any live broker without waiting for the lease to expire.
pub async fn release_lease(
    db: &Client,
    group: &str,
    broker: BrokerLease,
) -> Result<(), GroupDbError> {
    db.execute(
        LEASE.release.as_str(),
        &[&group, &broker.node_id, &broker.epoch],
    )
    .await?;
    Ok(())
}

/// The broker holding a live lease on `group`, if any.
pub async fn lease_holder(db: &Client, group: &str) -> Result<Option<BrokerInfo>, GroupDbError> {
    let row = db.query_opt(LEASE.holder.as_str(), &[&group]).await?;
    Ok(row.map(|r| BrokerInfo {
        node_id: r.get(0),
        host: r.get(1),
        port: r.get(2),
        rack: r.get(3),
    }))
}

/// Records the group's protocol type and generation (a rebalance completed), under the lease.
pub async fn record_meta(
    db: &mut Client,
    group: &str,
    broker: BrokerLease,
    meta: &GroupMeta,
) -> Result<(), GroupDbError> {
    let tx = db.transaction().await?;
    lock_lease(&tx, group, broker).await?;
    tx.execute(
        "UPDATE sluice_group_leases SET protocol_type = $2, generation = $3 WHERE group_id = $1",
        &[&group, &meta.protocol_type, &meta.generation],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Stores committed offsets, all or none, only while `broker` holds the group's lease. Per
/// entry: stored, or `false` for a partition no topic of the cluster has (nothing stored for it).
pub async fn commit_offsets(
    db: &mut Client,
    group: &str,
    broker: BrokerLease,
    offsets: &[(String, i32, Committed)],
) -> Result<Vec<bool>, GroupDbError> {
    let tx = db.transaction().await?;
    lock_lease(&tx, group, broker).await?;
    let stored = store_offsets(&tx, group, offsets).await?;
    tx.commit().await?;
    Ok(stored)
}

/// Upserts committed offsets in the caller's transaction, which holds the lease the writer
/// needs (the group's, or a connector task's, see [`super::connectors`]). Per entry: stored,
/// or `false` for a partition no topic of the cluster has.
pub(crate) async fn store_offsets(
    tx: &tokio_postgres::Transaction<'_>,
    group: &str,
    offsets: &[(String, i32, Committed)],
) -> Result<Vec<bool>, GroupDbError> {
    let partitions_of = tx
        .prepare("SELECT partitions FROM sluice_topics WHERE name = $1")
        .await?;
    let mut partitions: std::collections::HashMap<&str, Option<i32>> = Default::default();
    let upsert = tx
        .prepare(
            "INSERT INTO sluice_group_offsets
                    (group_id, topic, partition, committed_offset, leader_epoch, metadata,
                     committed_at)
             VALUES ($1, $2, $3, $4, $5, $6, to_timestamp($7::bigint / 1000.0))
             ON CONFLICT (group_id, topic, partition) DO UPDATE
                SET committed_offset = EXCLUDED.committed_offset,
                    leader_epoch = EXCLUDED.leader_epoch,
                    metadata = EXCLUDED.metadata,
                    committed_at = EXCLUDED.committed_at",
        )
        .await?;
    let mut stored = Vec::with_capacity(offsets.len());
    for (topic, partition, c) in offsets {
        let count = match partitions.get(topic.as_str()) {
            Some(count) => *count,
            None => {
                let row = tx.query_opt(&partitions_of, &[topic]).await?;
                let count = row.map(|r| r.get::<_, i32>(0));
                partitions.insert(topic, count);
                count
            }
        };
        if !count.is_some_and(|n| (0..n).contains(partition)) {
            stored.push(false);
            continue;
        }
        tx.execute(
            &upsert,
            &[
                &group,
                topic,
                partition,
                &c.offset,
                &c.leader_epoch,
                &c.metadata,
                &c.commit_timestamp,
            ],
        )
        .await?;
        stored.push(true);
    }
    Ok(stored)
}

/// The group's committed offsets.
pub async fn fetch_offsets(db: &Client, group: &str) -> Result<GroupOffsets, GroupDbError> {
    let rows = db
        .query(
            "SELECT topic, partition, committed_offset, leader_epoch, metadata,
                    (extract(epoch FROM committed_at) * 1000)::bigint
               FROM sluice_group_offsets WHERE group_id = $1",
            &[&group],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                (r.get::<_, String>(0), r.get::<_, i32>(1)),
                Committed {
                    offset: r.get(2),
                    leader_epoch: r.get(3),
                    metadata: r.get(4),
                    commit_timestamp: r.get(5),
                },
            )
        })
        .collect())
}

/// Deletes some of the group's committed offsets (OffsetDelete), under the lease.
pub async fn delete_offsets(
    db: &mut Client,
    group: &str,
    broker: BrokerLease,
    partitions: &[(String, i32)],
) -> Result<(), GroupDbError> {
    let tx = db.transaction().await?;
    lock_lease(&tx, group, broker).await?;
    for (topic, partition) in partitions {
        tx.execute(
            "DELETE FROM sluice_group_offsets
              WHERE group_id = $1 AND topic = $2 AND partition = $3",
            &[&group, topic, partition],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Deletes the group (DeleteGroups): its offsets and its lease, so its generations start over.
pub async fn delete_group(
    db: &mut Client,
    group: &str,
    broker: BrokerLease,
) -> Result<(), GroupDbError> {
    let tx = db.transaction().await?;
    lock_lease(&tx, group, broker).await?;
    tx.execute(
        "DELETE FROM sluice_group_offsets WHERE group_id = $1",
        &[&group],
    )
    .await?;
    tx.execute(
        "DELETE FROM sluice_group_leases WHERE group_id = $1",
        &[&group],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Deletes every group's offsets of a deleted topic, so a topic created again under the same name
/// is not read from its predecessor's positions.
pub async fn delete_topic_offsets(db: &Client, topic: &str) -> Result<(), GroupDbError> {
    db.execute(
        "DELETE FROM sluice_group_offsets WHERE topic = $1",
        &[&topic],
    )
    .await?;
    Ok(())
}

/// Every group with a lease row or committed offsets, by id.
pub async fn list_groups(db: &Client) -> Result<Vec<KnownGroup>, GroupDbError> {
    let rows = db
        .query(
            "SELECT g.group_id, l.protocol_type,
                    CASE WHEN l.lease_expires > now() AND b.lease_expires > now()
                         THEN l.node_id END
               FROM (SELECT group_id FROM sluice_group_leases
                     UNION SELECT DISTINCT group_id FROM sluice_group_offsets) g
               LEFT JOIN sluice_group_leases l ON l.group_id = g.group_id
               LEFT JOIN sluice_brokers b ON b.node_id = l.node_id AND b.epoch = l.broker_epoch
              ORDER BY g.group_id",
            &[],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| KnownGroup {
            group_id: r.get(0),
            protocol_type: r.get(1),
            coordinator: r.get(2),
        })
        .collect())
}

async fn lock_lease(
    tx: &tokio_postgres::Transaction<'_>,
    group: &str,
    broker: BrokerLease,
) -> Result<(), GroupDbError> {
    tx.query_opt(
        LEASE.lock_held.as_str(),
        &[&group, &broker.node_id, &broker.epoch],
    )
    .await?
    .map(|_| ())
    .ok_or(GroupDbError::LeaseLost)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::cluster::db::testing::TestDb;
    use crate::cluster::db::Db;

    /// A migrated database of its own, a connection on it, and topics `t` (2 partitions) and
    /// `u` (1).
    async fn fresh_db() -> (TestDb, Db, deadpool_postgres::Object) {
        let t = TestDb::new().await;
        let db = t.connect().await;
        let client = db.group_connection().await.unwrap();
        client
            .batch_execute(
                "INSERT INTO sluice_topics (topic_id, name, partitions) VALUES
                   ('00000000-0000-0000-0000-000000000001', 't', 2),
                   ('00000000-0000-0000-0000-000000000002', 'u', 1)",
            )
            .await
            .unwrap();
        (t, db, client)
    }

    /// Registers broker `n` (or registers it again: a new epoch, its old one fenced).
    async fn register(db: &Db, n: i32) -> BrokerLease {
        db.register("127.0.0.1", 9000 + n, None, Duration::from_secs(60))
            .await
            .unwrap()
    }

    fn at(offset: i64) -> Committed {
        Committed {
            offset,
            leader_epoch: -1,
            metadata: Some("m".into()),
            commit_timestamp: 1_700_000_000_123,
        }
    }

    async fn committed(db: &Client, group: &str) -> Vec<((String, i32), i64)> {
        fetch_offsets(db, group)
            .await
            .unwrap()
            .into_iter()
            .map(|(k, c)| (k, c.offset))
            .collect()
    }

    const TTL: Duration = Duration::from_secs(30);

    #[tokio::test]
    async fn a_group_lease_is_held_by_one_broker_and_its_offsets_round_trip() {
        let (_t, brokers, mut db) = fresh_db().await;
        let one = register(&brokers, 1).await;
        let two = register(&brokers, 2).await;
        assert_eq!(
            acquire_lease(&db, "g", one, TTL).await.unwrap(),
            Some(HeldLease { meta: None })
        );
        assert!(
            acquire_lease(&db, "g", one, TTL).await.unwrap().is_some(),
            "renewed"
        );
        assert_eq!(acquire_lease(&db, "g", two, TTL).await.unwrap(), None);
        assert_eq!(
            lease_holder(&db, "g").await.unwrap().map(|b| b.node_id),
            Some(1)
        );
        assert_eq!(
            brokers
                .live_brokers()
                .await
                .unwrap()
                .iter()
                .map(|b| b.node_id)
                .collect::<Vec<_>>(),
            vec![1, 2]
        );

        commit_offsets(
            &mut db,
            "g",
            one,
            &[("t".into(), 0, at(5)), ("t".into(), 1, at(7))],
        )
        .await
        .unwrap();
        let stored = commit_offsets(
            &mut db,
            "g",
            one,
            &[
                ("t".into(), 0, at(9)),
                ("t".into(), 2, at(1)),
                ("nope".into(), 0, at(1)),
            ],
        )
        .await
        .unwrap();
        assert_eq!(
            stored,
            vec![true, false, false],
            "only partitions that exist"
        );
        let stored = fetch_offsets(&db, "g").await.unwrap();
        assert_eq!(stored[&("t".to_string(), 0)], at(9));
        assert_eq!(stored[&("t".to_string(), 1)], at(7));
        assert!(matches!(
            commit_offsets(&mut db, "g", two, &[("t".into(), 0, at(100))]).await,
            Err(GroupDbError::LeaseLost)
        ));
        assert_eq!(
            committed(&db, "g").await,
            vec![(("t".into(), 0), 9), (("t".into(), 1), 7)],
            "the broker without the lease stored nothing"
        );

        let meta = GroupMeta {
            protocol_type: "consumer".into(),
            generation: 4,
        };
        record_meta(&mut db, "g", one, &meta).await.unwrap();
        assert_eq!(
            list_groups(&db).await.unwrap(),
            vec![KnownGroup {
                group_id: "g".into(),
                protocol_type: Some("consumer".into()),
                coordinator: Some(one.node_id),
            }]
        );
        release_lease(&db, "g", one).await.unwrap();
        assert_eq!(
            acquire_lease(&db, "g", two, TTL).await.unwrap(),
            Some(HeldLease { meta: Some(meta) }),
            "a released lease is taken at once, with the group's generation"
        );
    }

    #[tokio::test]
    async fn an_expired_lease_commits_nothing_and_passes_to_another_broker() {
        let (_t, brokers, mut db) = fresh_db().await;
        let one = register(&brokers, 1).await;
        let two = register(&brokers, 2).await;
        acquire_lease(&db, "g", one, TTL).await.unwrap().unwrap();
        commit_offsets(&mut db, "g", one, &[("t".into(), 0, at(3))])
            .await
            .unwrap();
        // The lease runs out (the database's clock is the only one that counts).
        db.execute(
            "UPDATE sluice_group_leases SET lease_expires = now() - interval '1 second'",
            &[],
        )
        .await
        .unwrap();
        assert!(matches!(
            commit_offsets(&mut db, "g", one, &[("t".into(), 0, at(4))]).await,
            Err(GroupDbError::LeaseLost)
        ));
        assert_eq!(lease_holder(&db, "g").await.unwrap(), None);
        assert!(acquire_lease(&db, "g", two, TTL).await.unwrap().is_some());
        assert!(matches!(
            commit_offsets(&mut db, "g", one, &[("t".into(), 0, at(5))]).await,
            Err(GroupDbError::LeaseLost)
        ));
        assert!(
            acquire_lease(&db, "g", one, TTL).await.unwrap().is_none(),
            "the old holder cannot take it back while the new one holds it"
        );
        assert_eq!(committed(&db, "g").await, vec![(("t".into(), 0), 3)]);
    }

    #[tokio::test]
    async fn a_superseded_or_lapsed_broker_registration_frees_its_groups() {
        let (_t, brokers, mut db) = fresh_db().await;
        let old = register(&brokers, 1).await;
        let two = register(&brokers, 2).await;
        acquire_lease(&db, "a", old, TTL).await.unwrap().unwrap();
        acquire_lease(&db, "b", old, TTL).await.unwrap().unwrap();
        // Broker 1 restarts: a new incarnation, a new epoch. Its old self is a zombie.
        let new = register(&brokers, 1).await;
        assert!(matches!(
            commit_offsets(&mut db, "a", old, &[("t".into(), 0, at(1))]).await,
            Err(GroupDbError::LeaseLost)
        ));
        assert!(
            acquire_lease(&db, "a", old, TTL).await.unwrap().is_none(),
            "a superseded epoch cannot take a lease"
        );
        assert!(acquire_lease(&db, "a", new, TTL).await.unwrap().is_some());
        // Broker 1's registration lapses: its groups are free for broker 2.
        db.execute(
            "UPDATE sluice_brokers SET lease_expires = now() - interval '1 second'
              WHERE node_id = $1",
            &[&new.node_id],
        )
        .await
        .unwrap();
        assert!(acquire_lease(&db, "b", two, TTL).await.unwrap().is_some());
        assert!(acquire_lease(&db, "a", two, TTL).await.unwrap().is_some());
        assert!(matches!(
            commit_offsets(&mut db, "a", new, &[("t".into(), 0, at(2))]).await,
            Err(GroupDbError::LeaseLost)
        ));
        assert!(committed(&db, "a").await.is_empty());
    }

    #[tokio::test]
    async fn deleting_a_group_or_topic_deletes_their_offsets() {
        let (_t, brokers, mut db) = fresh_db().await;
        let one = register(&brokers, 1).await;
        let two = register(&brokers, 2).await;
        for g in ["a", "b"] {
            acquire_lease(&db, g, one, TTL).await.unwrap().unwrap();
            commit_offsets(
                &mut db,
                g,
                one,
                &[("t".into(), 0, at(1)), ("u".into(), 0, at(2))],
            )
            .await
            .unwrap();
        }
        assert!(matches!(
            delete_group(&mut db, "a", two).await,
            Err(GroupDbError::LeaseLost)
        ));
        delete_group(&mut db, "a", one).await.unwrap();
        assert!(committed(&db, "a").await.is_empty());
        delete_offsets(&mut db, "b", one, &[("u".into(), 0)])
            .await
            .unwrap();
        assert_eq!(committed(&db, "b").await, vec![(("t".into(), 0), 1)]);
        delete_topic_offsets(&db, "t").await.unwrap();
        assert!(committed(&db, "b").await.is_empty());
        let listed: Vec<String> = list_groups(&db)
            .await
            .unwrap()
            .into_iter()
            .map(|g| g.group_id)
            .collect();
        assert_eq!(
            listed,
            vec!["b".to_string()],
            "a deleted group is not listed"
        );
    }
}
