//! The schema's versions: `sluice_schema` records the ones applied; [`Db::migrate`] applies the
//! missing ones in order, in one transaction under an advisory lock, so brokers starting
//! together neither race nor see half a schema; a database at a newer version is refused.

use super::{Db, DbError};

/// The migrations this binary knows, in order: index 0 is version 1.
const MIGRATIONS: &[&str] = &[
    include_str!("schema_v1.sql"),
    include_str!("schema_v2.sql"),
    include_str!("schema_v3.sql"),
    include_str!("schema_v4.sql"),
];

/// The key of the transaction-scoped advisory lock that serializes migrations ("sluice" in
/// ASCII): any value works as long as every broker uses the same one.
const MIGRATION_LOCK: i64 = 0x736c_7569_6365;

/// The newest schema version this binary knows.
pub fn known_version() -> i32 {
    // The list is a handful of entries written here, far from i32::MAX.
    MIGRATIONS.len() as i32
}

impl Db {
    /// Brings the schema to [`known_version`]; a no-op when it is there already. Run by
    /// [`Db::connect`].
    pub async fn migrate(&self) -> Result<(), DbError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS sluice_schema (
                 version     INT PRIMARY KEY,
                 applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
             )",
        )
        .await?;
        let current: i32 = tx
            .query_one("SELECT coalesce(max(version), 0) FROM sluice_schema", &[])
            .await?
            .get(0);
        let known = known_version();
        if current > known {
            return Err(DbError::SchemaTooNew {
                found: current,
                known,
            });
        }
        for (version, sql) in (1..).zip(MIGRATIONS).skip(current.max(0) as usize) {
            tx.batch_execute(sql).await?;
            tx.execute(
                "INSERT INTO sluice_schema (version) VALUES ($1)",
                &[&version],
            )
            .await?;
            tracing::info!(version, "metadata database migrated");
        }
        tx.commit().await?;
        Ok(())
    }

    /// The schema version the database is at (0 before any migration).
    pub async fn schema_version(&self) -> Result<i32, DbError> {
        let client = self.client().await?;
        Ok(client
            .query_one("SELECT coalesce(max(version), 0) FROM sluice_schema", &[])
            .await?
            .get(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::db::testing::TestDb;

    #[tokio::test]
    async fn migrating_twice_is_a_no_op() {
        let Some(t) = TestDb::if_installed().await else {
            return;
        };
        let db = t.connect().await;
        assert_eq!(db.schema_version().await.unwrap(), known_version());
        let tables = |db: Db| async move {
            let c = db.client().await.unwrap();
            c.query_one(
                "SELECT count(*) FROM information_schema.tables WHERE table_name LIKE 'sluice%'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
        };
        let before = tables(db.clone()).await;
        // A second broker connecting, and an explicit second run: nothing changes.
        let db2 = t.connect().await;
        db2.migrate().await.unwrap();
        assert_eq!(tables(db2.clone()).await, before);
        let c = db2.client().await.unwrap();
        let rows: i64 = c
            .query_one("SELECT count(*) FROM sluice_schema", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(rows, i64::from(known_version()));
    }

    #[tokio::test]
    async fn brokers_starting_together_migrate_once() {
        let Some(t) = TestDb::if_installed().await else {
            return;
        };
        let (a, b, c) = tokio::join!(t.try_connect(), t.try_connect(), t.try_connect());
        for db in [a, b, c] {
            assert_eq!(db.unwrap().schema_version().await.unwrap(), known_version());
        }
    }

    #[tokio::test]
    async fn a_newer_schema_is_refused_with_an_upgrade_message() {
        let Some(t) = TestDb::if_installed().await else {
            return;
        };
        let db = t.connect().await;
        let newer = known_version() + 1;
        db.client()
            .await
            .unwrap()
            .execute("INSERT INTO sluice_schema (version) VALUES ($1)", &[&newer])
            .await
            .unwrap();
        let e = t.try_connect().await.unwrap_err();
        assert!(matches!(e, DbError::SchemaTooNew { .. }));
        assert!(!e.is_retriable());
        assert_eq!(
            e.to_string(),
            format!(
                "the metadata database is at schema version {newer}, this sluice knows up to {}: \
                 upgrade sluice",
                known_version()
            )
        );
    }
}
