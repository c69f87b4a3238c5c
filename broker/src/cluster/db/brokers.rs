//! Broker registrations and leases. A broker registers at start (its node id is kept for the
//! same host:port, its epoch bumped, so an older incarnation of it is fenced), heartbeats to
//! keep its lease, and names the lease in every commit; a lapsed lease is not renewed: the
//! broker must register again, under a new epoch.

use std::time::Duration;

use super::{Db, DbError};
use crate::cluster::types::{BrokerInfo, BrokerLease};

impl Db {
    /// Registers the broker advertised at `host:port` with a lease of `lease` from now; the
    /// same host:port keeps its node id and gets the next epoch.
    pub async fn register(
        &self,
        host: &str,
        port: i32,
        rack: Option<&str>,
        lease: Duration,
    ) -> Result<BrokerLease, DbError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "INSERT INTO sluice_brokers (node_id, host, port, rack, epoch, lease_expires)
                 VALUES (nextval('sluice_node_ids'), $1, $2, $3, 1,
                         now() + make_interval(secs => $4))
                 ON CONFLICT (host, port) DO UPDATE
                     SET rack = EXCLUDED.rack,
                         epoch = sluice_brokers.epoch + 1,
                         lease_expires = EXCLUDED.lease_expires
                 RETURNING node_id, epoch",
                &[&host, &port, &rack, &lease.as_secs_f64()],
            )
            .await?;
        Ok(BrokerLease {
            node_id: row.get(0),
            epoch: row.get(1),
        })
    }

    /// Extends the lease to `lease` from now, only while it is current (same epoch, not
    /// lapsed); otherwise [`DbError::Fenced`] and the broker must stop committing and
    /// register again.
    pub async fn heartbeat(&self, lease: &BrokerLease, duration: Duration) -> Result<(), DbError> {
        let client = self.client().await?;
        let renewed = client
            .execute(
                "UPDATE sluice_brokers SET lease_expires = now() + make_interval(secs => $3)
                 WHERE node_id = $1 AND epoch = $2 AND lease_expires > now()",
                &[&lease.node_id, &lease.epoch, &duration.as_secs_f64()],
            )
            .await?;
        if renewed == 1 {
            Ok(())
        } else {
            Err(DbError::Fenced)
        }
    }

    /// The brokers whose lease has not lapsed, by node id.
    pub async fn live_brokers(&self) -> Result<Vec<BrokerInfo>, DbError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT node_id, host, port, rack FROM sluice_brokers
                 WHERE lease_expires > now() ORDER BY node_id",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| BrokerInfo {
                node_id: r.get(0),
                host: r.get(1),
                port: r.get(2),
                rack: r.get(3),
            })
            .collect())
    }

    /// Ends the lease now (a clean shutdown), so the broker leaves Metadata at once. The row
    /// stays, so the same host:port gets its node id back. A superseded lease changes nothing.
    pub async fn deregister(&self, lease: &BrokerLease) -> Result<(), DbError> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE sluice_brokers SET lease_expires = now()
                 WHERE node_id = $1 AND epoch = $2",
                &[&lease.node_id, &lease.epoch],
            )
            .await?;
        Ok(())
    }

    /// Whether `lease` is current: the latest epoch of its node and not lapsed.
    pub async fn lease_is_current(&self, lease: &BrokerLease) -> Result<bool, DbError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT 1 FROM sluice_brokers
                 WHERE node_id = $1 AND epoch = $2 AND lease_expires > now()",
                &[&lease.node_id, &lease.epoch],
            )
            .await?;
        Ok(row.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::db::testing::TestDb;

    const LEASE: Duration = Duration::from_secs(30);

    #[tokio::test]
    async fn re_registering_keeps_the_node_id_and_fences_the_old_epoch() {
        let Some(t) = TestDb::if_installed().await else {
            return;
        };
        let db = t.connect().await;
        let a = db.register("10.0.0.1", 9092, None, LEASE).await.unwrap();
        let b = db
            .register("10.0.0.2", 9092, Some("r1"), LEASE)
            .await
            .unwrap();
        assert_ne!(a.node_id, b.node_id);
        let a2 = db.register("10.0.0.1", 9092, None, LEASE).await.unwrap();
        assert_eq!(a2.node_id, a.node_id);
        assert!(a2.epoch > a.epoch);
        assert!(matches!(
            db.heartbeat(&a, LEASE).await,
            Err(DbError::Fenced)
        ));
        db.heartbeat(&a2, LEASE).await.unwrap();
        let live = db.live_brokers().await.unwrap();
        assert_eq!(live.len(), 2);
        assert_eq!(
            live.iter()
                .find(|x| x.node_id == b.node_id)
                .unwrap()
                .rack
                .as_deref(),
            Some("r1")
        );
    }

    #[tokio::test]
    async fn a_lapsed_lease_is_not_renewed_and_leaves_metadata() {
        let Some(t) = TestDb::if_installed().await else {
            return;
        };
        let db = t.connect().await;
        let a = db
            .register("h", 1, None, Duration::from_millis(1))
            .await
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while db.lease_is_current(&a).await.unwrap() {
            assert!(std::time::Instant::now() < deadline, "lease never lapsed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(matches!(
            db.heartbeat(&a, LEASE).await,
            Err(DbError::Fenced)
        ));
        assert!(db.live_brokers().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn deregistering_leaves_metadata_and_keeps_the_node_id() {
        let Some(t) = TestDb::if_installed().await else {
            return;
        };
        let db = t.connect().await;
        let a = db.register("h", 1, None, LEASE).await.unwrap();
        db.deregister(&a).await.unwrap();
        assert!(db.live_brokers().await.unwrap().is_empty());
        let again = db.register("h", 1, None, LEASE).await.unwrap();
        assert_eq!(again.node_id, a.node_id);
        assert_eq!(db.live_brokers().await.unwrap().len(), 1);
    }
}
