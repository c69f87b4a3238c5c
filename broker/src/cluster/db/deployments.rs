//! Transform deployments in PostgreSQL, cluster-wide (`sluice_transforms`): one row per
//! deployment, its fields as JSON and a version every change bumps. Every change notifies
//! [`CHANNEL`] in its own transaction, so each broker re-reads the set once it is committed
//! (the notice carries nothing: the table is small and a re-read is always right).

use super::{Db, DbError};
use crate::transform::Deployment;

/// The channel deployment changes notify.
pub const CHANNEL: &str = "sluice_deployments";

const NOTIFY_SQL: &str = "SELECT pg_notify('sluice_deployments', '')";

/// A deployment as the cluster stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDeployment {
    pub deployment: Deployment,
    /// Bumped by every change of the row.
    pub version: i64,
}

/// Why a deployment change was not made.
#[derive(Debug, thiserror::Error)]
pub enum DeploymentDbError {
    #[error("transform '{0}' already exists")]
    Exists(String),
    #[error("no transform named '{0}'")]
    NotFound(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<tokio_postgres::Error> for DeploymentDbError {
    fn from(e: tokio_postgres::Error) -> Self {
        DeploymentDbError::Db(e.into())
    }
}

impl From<deadpool_postgres::PoolError> for DeploymentDbError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        DeploymentDbError::Db(e.into())
    }
}

impl Db {
    /// Every deployment of the cluster, by name. A row that does not parse is left out and
    /// logged (it was not written by this program): the others still apply.
    pub async fn deployments(&self) -> Result<Vec<StoredDeployment>, DbError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT name, deployment, version FROM sluice_transforms ORDER BY name",
                &[],
            )
            .await?;
        let mut found = Vec::with_capacity(rows.len());
        for r in rows {
            let name: String = r.get(0);
            let json: serde_json::Value = r.get(1);
            match serde_json::from_value::<Deployment>(json) {
                Ok(deployment) if deployment.name == name => found.push(StoredDeployment {
                    deployment,
                    version: r.get(2),
                }),
                Ok(d) => {
                    tracing::error!(transform = %name, named = %d.name, "a stored deployment names another transform; ignored")
                }
                Err(e) => {
                    tracing::error!(transform = %name, "a stored deployment does not parse: {e}; ignored")
                }
            }
        }
        Ok(found)
    }

    /// Adds a deployment; [`DeploymentDbError::Exists`] if one of that name is stored.
    pub async fn insert_deployment(&self, d: &Deployment) -> Result<(), DeploymentDbError> {
        let json = serde_json::to_value(d)
            .map_err(|e| DbError::Invalid(format!("deployment {}: {e}", d.name)))?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let inserted = tx
            .execute(
                "INSERT INTO sluice_transforms (name, deployment) VALUES ($1, $2)
                 ON CONFLICT (name) DO NOTHING",
                &[&d.name, &json],
            )
            .await?;
        if inserted == 0 {
            return Err(DeploymentDbError::Exists(d.name.clone()));
        }
        tx.execute(NOTIFY_SQL, &[]).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Pauses or resumes a deployment (a no-op change still bumps its version).
    pub async fn set_deployment_paused(
        &self,
        name: &str,
        paused: bool,
    ) -> Result<(), DeploymentDbError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let changed = tx
            .execute(
                "UPDATE sluice_transforms
                 SET deployment = jsonb_set(deployment, '{paused}', to_jsonb($2::bool)),
                     version = version + 1, updated_at = now()
                 WHERE name = $1",
                &[&name, &paused],
            )
            .await?;
        if changed == 0 {
            return Err(DeploymentDbError::NotFound(name.to_string()));
        }
        tx.execute(NOTIFY_SQL, &[]).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes a deployment.
    pub async fn delete_deployment(&self, name: &str) -> Result<(), DeploymentDbError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let deleted = tx
            .execute("DELETE FROM sluice_transforms WHERE name = $1", &[&name])
            .await?;
        if deleted == 0 {
            return Err(DeploymentDbError::NotFound(name.to_string()));
        }
        tx.execute(NOTIFY_SQL, &[]).await?;
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::cluster::db::testing::TestDb;
    use crate::cluster::types::CommitEvent;
    use crate::transform::OnError;

    fn deployment(name: &str) -> Deployment {
        Deployment {
            name: name.into(),
            module: "ab".repeat(32),
            input: "in".into(),
            outputs: vec!["out".into()],
            env: vec![("K".into(), "v".into())],
            on_error: OnError::DeadLetter("dlq".into()),
            in_place: false,
            paused: false,
            memory_bytes: None,
            timeout_ms: Some(50),
            tables: vec![],
            state_max_bytes: None,
            deployer: Some("User:alice".into()),
        }
    }

    async fn next(events: &mut tokio::sync::broadcast::Receiver<CommitEvent>) -> CommitEvent {
        tokio::time::timeout(Duration::from_secs(30), events.recv())
            .await
            .expect("an event in time")
            .expect("the feed is open")
    }

    #[tokio::test]
    async fn deployments_are_stored_changed_and_removed_with_a_notice_each() {
        let Some(t) = TestDb::if_installed().await else {
            return;
        };
        let db = t.connect().await;
        let feed = db.commit_feed();
        let mut events = feed.subscribe();
        assert_eq!(next(&mut events).await, CommitEvent::Resync);

        let up = deployment("up");
        db.insert_deployment(&up).await.unwrap();
        assert_eq!(next(&mut events).await, CommitEvent::Deployments);
        assert!(matches!(
            db.insert_deployment(&up).await,
            Err(DeploymentDbError::Exists(name)) if name == "up"
        ));
        let stored = db.deployments().await.unwrap();
        assert_eq!(
            stored,
            vec![StoredDeployment {
                deployment: up.clone(),
                version: 1
            }]
        );

        db.set_deployment_paused("up", true).await.unwrap();
        assert_eq!(next(&mut events).await, CommitEvent::Deployments);
        let paused = db.deployments().await.unwrap();
        assert!(paused[0].deployment.paused);
        assert_eq!(paused[0].version, 2);
        assert!(matches!(
            db.set_deployment_paused("nope", true).await,
            Err(DeploymentDbError::NotFound(_))
        ));

        db.delete_deployment("up").await.unwrap();
        assert_eq!(next(&mut events).await, CommitEvent::Deployments);
        assert!(db.deployments().await.unwrap().is_empty());
        assert!(matches!(
            db.delete_deployment("up").await,
            Err(DeploymentDbError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn a_row_that_does_not_parse_is_left_out_not_fatal() {
        let Some(t) = TestDb::if_installed().await else {
            return;
        };
        let db = t.connect().await;
        db.insert_deployment(&deployment("good")).await.unwrap();
        let client = db.client().await.unwrap();
        client
            .execute(
                "INSERT INTO sluice_transforms (name, deployment) VALUES ('bad', '{\"x\": 1}')",
                &[],
            )
            .await
            .unwrap();
        let names: Vec<String> = db
            .deployments()
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.deployment.name)
            .collect();
        assert_eq!(names, ["good"]);
    }
}
