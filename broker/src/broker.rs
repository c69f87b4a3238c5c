//! [`Broker`]: the shared state every request handler and every writer reaches. The connector
//! runtime is not here: it sits beside the HTTP listener and writes through [`crate::write`].

use std::sync::Arc;

use crate::catalog::Catalog;
use crate::group::GroupCoordinator;
use crate::producer_ids::ProducerIds;
use crate::transform::TransformRegistry;
use crate::txn::TransactionCoordinator;
use crate::wasm::GuestPool;

/// What every handler can reach.
#[derive(Debug)]
pub struct Broker {
    /// Topics and their partition logs.
    pub catalog: Catalog,
    /// This broker's node id (Metadata, FindCoordinator); a single node is always 1.
    pub node_id: i32,
    /// The cluster id reported in Metadata; persisted in the data dir so it survives restarts.
    pub cluster_id: String,
    /// Host and port clients are told to connect to (Metadata brokers).
    pub advertised_host: String,
    pub advertised_port: i32,
    /// Producer ids for idempotent producers.
    pub producer_ids: ProducerIds,
    /// Consumer groups and their committed offsets.
    pub groups: Arc<GroupCoordinator>,
    /// WebAssembly transforms run on produce.
    pub transforms: TransformRegistry,
    /// The threads guests run on, off the async workers that serve connections.
    pub guests: GuestPool,
    /// SCRAM credentials (SASL PLAIN and SCRAM, AlterUserScramCredentials).
    pub credentials: Arc<crate::auth::credentials::CredentialStore>,
    /// The transaction coordinator: transactional ids, their epochs and transactions.
    pub transactions: TransactionCoordinator,
    /// Client quotas (AlterClientQuotas) and their measurements.
    pub quotas: crate::quota::Quotas,
    /// ACLs and the decision every handler asks for (allows everything when disabled).
    pub authorizer: crate::acl::Authorizer,
    /// Cluster mode (`--metadata`): topics, produce and fetch go to the shared database and
    /// object store instead of the local catalog. `None`: the single-node broker.
    pub cluster: Option<Arc<crate::cluster::node::Cluster>>,
}

impl Broker {
    /// Whether `who` may do `op` to `resource`: the one check handlers make.
    pub fn authorize(
        &self,
        who: &crate::acl::Requester,
        op: crate::acl::Operation,
        resource: crate::acl::Resource<'_>,
    ) -> bool {
        self.authorizer.authorize(who, op, &resource)
    }
}

/// Milliseconds since the Unix epoch, the clock Kafka timestamps use.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A broker over an empty catalog in a temp dir, for handler tests.
#[cfg(test)]
pub(crate) fn test_broker() -> (tempfile::TempDir, Broker) {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = test_broker_at(dir.path());
    (dir, broker)
}

/// A broker over the catalog and metadata in `dir`: reopening one is a restart.
#[cfg(test)]
pub(crate) fn test_broker_at(dir: &std::path::Path) -> Broker {
    let meta = crate::meta::MetaDir::at(dir);
    meta.create().expect("meta dir");
    let catalog =
        crate::catalog::Catalog::open(dir.to_path_buf(), crate::catalog::TopicDefaults::default())
            .expect("open catalog");
    Broker {
        catalog,
        node_id: 1,
        cluster_id: "test-cluster".into(),
        advertised_host: "127.0.0.1".into(),
        advertised_port: 9092,
        producer_ids: ProducerIds::open(&meta.producer_ids()).expect("producer ids"),
        groups: Arc::new(
            GroupCoordinator::open(dir, crate::group::GroupConfig::default())
                .expect("group coordinator"),
        ),
        transforms: TransformRegistry::open(
            &meta,
            crate::wasm::WasmEngine::new().expect("wasm engine"),
            crate::wasm::GuestLimits::default(),
        )
        .expect("transforms"),
        guests: GuestPool::new(1),
        credentials: Arc::new(
            crate::auth::credentials::CredentialStore::open(dir).expect("credentials"),
        ),
        transactions: TransactionCoordinator::open(
            &meta.transactions(),
            crate::txn::TxnConfig::default(),
        )
        .expect("transaction coordinator"),
        quotas: crate::quota::Quotas::new(
            crate::quota::QuotaStore::open(dir).expect("client quotas"),
            crate::quota::Window::default(),
        ),
        authorizer: crate::acl::Authorizer::open(
            &meta.acls(),
            &crate::acl::AuthorizerSettings::default(),
        )
        .expect("authorizer"),
        cluster: None,
    }
}
