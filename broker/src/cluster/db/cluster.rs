//! The cluster's identity: the one cluster id every broker of it answers, stored by the first
//! broker that starts on the database.

use super::{Db, DbError};

impl Db {
    /// The cluster id: the one stored, or, on a database that has none yet, `candidate`, stored
    /// now (brokers starting together agree: the first insert wins, the others read it).
    pub async fn cluster_id(&self, candidate: &str) -> Result<String, DbError> {
        if candidate.is_empty() {
            return Err(DbError::Invalid("an empty cluster id".into()));
        }
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO sluice_cluster (id, cluster_id) VALUES (true, $1)
                 ON CONFLICT (id) DO NOTHING",
                &[&candidate],
            )
            .await?;
        Ok(client
            .query_one("SELECT cluster_id FROM sluice_cluster", &[])
            .await?
            .get(0))
    }
}

#[cfg(test)]
mod tests {
    use crate::cluster::db::testing::TestDb;

    #[tokio::test]
    async fn the_first_broker_names_the_cluster_and_the_others_learn_it() {
        let Some(t) = TestDb::if_installed().await else {
            return;
        };
        let (a, b) = (t.connect().await, t.connect().await);
        let (first, second) = tokio::join!(a.cluster_id("one"), b.cluster_id("two"));
        let (first, second) = (first.unwrap(), second.unwrap());
        assert_eq!(first, second);
        assert!(first == "one" || first == "two", "{first}");
        // A broker restarting later keeps it.
        assert_eq!(t.connect().await.cluster_id("three").await.unwrap(), first);
        assert!(a.cluster_id("").await.is_err());
    }
}
