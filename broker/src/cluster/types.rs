//! The contract between the cluster modules: what an upload commits, what a fetch reads, who
//! the brokers are. Plain data, no I/O.

use uuid::Uuid;

/// A broker's registration: its node id and the epoch that fences an older incarnation of it.
/// Every commit a broker makes names its lease; a lapsed or superseded lease commits nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerLease {
    pub node_id: i32,
    pub epoch: i64,
}

/// Where a background job reads this broker's current registration (it changes when the
/// broker registers again after its own lease lapsed), so what it holds is bound to the epoch
/// in force rather than to the one it started under.
pub type LeaseSource = std::sync::Arc<dyn Fn() -> BrokerLease + Send + Sync>;

/// A live broker as Metadata shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

/// A topic as the cluster knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicMeta {
    pub topic_id: Uuid,
    pub name: String,
    pub partitions: i32,
    /// Topic-level configs as set (Kafka names and string values); defaults are not stored.
    pub configs: Vec<(String, String)>,
}

/// One validated v2 batch of an upload, at `byte_offset..byte_offset+byte_length` of its object.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchAppend {
    pub topic_id: Uuid,
    pub partition: i32,
    pub byte_offset: u64,
    pub byte_length: u32,
    /// Records in the batch (last offset delta + 1).
    pub record_count: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    /// -1 for a batch without an idempotent producer.
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub is_transactional: bool,
    pub is_control: bool,
    /// For a batch the broker derived from an earlier batch of the same upload (a transform's
    /// output): that batch's index in the upload. It shares the leader's fate in the commit —
    /// appended only if the leader is, dropped when the leader is a duplicate or refused — so
    /// outputs exist exactly once per stored input. Always a plain batch (producer id -1).
    pub follows: Option<usize>,
}

/// Everything one upload carries, committed in one database transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadCommit {
    pub object_key: String,
    pub object_size: u64,
    /// In the order the broker received them; the commit assigns offsets partition by partition
    /// in this order.
    pub batches: Vec<BatchAppend>,
}

/// What the commit did with one batch of an upload (same index as [`UploadCommit::batches`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Stored at `base_offset..=base_offset+record_count-1`.
    Appended {
        base_offset: i64,
        log_start_offset: i64,
    },
    /// A retry of a batch already stored (same producer, epoch and sequence): the original
    /// offsets, nothing stored again.
    Duplicate {
        base_offset: i64,
        log_start_offset: i64,
    },
    /// Refused with a Kafka error; nothing of it stored.
    Refused(BatchRefusal),
    /// A follower ([`BatchAppend::follows`]) whose leader was not appended: not stored.
    Dropped,
}

/// Why a batch of an upload was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchRefusal {
    UnknownTopicOrPartition,
    OutOfOrderSequence,
    InvalidProducerEpoch,
    UnknownProducerId,
}

/// Where a committed batch lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchCoord {
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    pub object_key: String,
    pub byte_offset: u64,
    pub byte_length: u32,
}

/// A partition's offsets in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub log_start_offset: i64,
    pub high_watermark: i64,
}

/// Sent by every commit (LISTEN/NOTIFY): a partition's new high watermark, so long polls on any
/// broker wake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitNotice {
    pub topic_id: Uuid,
    pub partition: i32,
    pub high_watermark: i64,
}

/// What the commit feed ([`crate::cluster::db::notify`]) broadcasts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitEvent {
    /// A commit grew a partition.
    Commit(CommitNotice),
    /// The cluster's transform deployments changed ([`crate::cluster::db::deployments`]).
    Deployments,
    /// A topic's configs or partition count changed, or it was deleted (an admin call on some
    /// broker): whoever caches it looks it up again.
    TopicChanged(String),
    /// A partition's log start offset moved up (DeleteRecords, retention): reads below it are
    /// out of range from now on.
    LogStartMoved {
        topic_id: Uuid,
        partition: i32,
        log_start_offset: i64,
    },
    /// The listening connection was (re)established: notices may have been missed while it
    /// was down, so whoever waits on a watermark re-reads it. A receiver that lagged behind
    /// the broadcast must do the same.
    Resync,
}
