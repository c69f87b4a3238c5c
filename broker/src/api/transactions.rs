//! The transaction coordinator's APIs: AddPartitionsToTxn (v0-v3, and the v4 batch form with
//! KIP-890 `verify_only`), AddOffsetsToTxn, TxnOffsetCommit, EndTxn, DescribeTransactions and
//! ListTransactions. State and durability are [`crate::txn`]'s; markers [`crate::txn_markers`]'.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_transactions_response::{
    TopicData, TransactionState as DescribedTransaction,
};
use kafka_protocol::messages::list_transactions_response::TransactionState as ListedTransaction;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::{now_ms, Broker};
use crate::acl::{Operation, Requester, Resource};
use crate::group::State;
use crate::txn::{PendingOffset, TxnError, TxnState};

/// `offset.metadata.max.bytes`, as for OffsetCommit.
const MAX_METADATA: usize = 4096;

/// Runs a coordinator call (it fsyncs the transaction log) off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, TxnError> + Send + 'static,
) -> Result<T, TxnError> {
    tokio::task::spawn_blocking(call)
        .await
        .unwrap_or_else(|e| Err(TxnError::Storage(e.to_string())))
}

/// The Kafka code of a refusal; `fenced_as_epoch` for request versions from before KIP-588,
/// whose clients know fencing as INVALID_PRODUCER_EPOCH.
pub(crate) fn txn_error_code(error: &TxnError, fenced_as_epoch: bool) -> i16 {
    match error {
        TxnError::ConcurrentTransactions => ResponseError::ConcurrentTransactions,
        TxnError::InvalidTxnState(_) => ResponseError::InvalidTxnState,
        TxnError::ProducerFenced if fenced_as_epoch => ResponseError::InvalidProducerEpoch,
        TxnError::ProducerFenced => ResponseError::ProducerFenced,
        TxnError::InvalidProducerIdMapping => ResponseError::InvalidProducerIdMapping,
        TxnError::TransactionalIdNotFound => ResponseError::TransactionalIdNotFound,
        TxnError::InvalidTransactionTimeout(_) => ResponseError::InvalidTransactionTimeout,
        // Retriable: the client finds the coordinator again and retries.
        TxnError::Storage(_) => ResponseError::CoordinatorNotAvailable,
    }
    .code()
}

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// Per-partition results of one AddPartitionsToTxn transaction. A transactional id the
/// requester may not write gets TRANSACTIONAL_ID_AUTHORIZATION_FAILED everywhere; unknown or
/// unwritable partitions get their error and the rest OPERATION_NOT_ATTEMPTED (as Kafka); else
/// every partition gets the outcome of `apply`.
async fn add_partitions_results(
    broker: &Arc<Broker>,
    who: &Requester,
    transactional_id: &str,
    topics: Vec<AddPartitionsToTxnTopic>,
    apply: impl FnOnce(Vec<(String, i32)>) -> Result<(), TxnError> + Send + 'static,
    fenced_as_epoch: bool,
) -> Vec<AddPartitionsToTxnTopicResult> {
    let mut partitions = Vec::new();
    let mut refused: Vec<(String, i32, i16)> = Vec::new();
    let id_allowed = broker.authorize(
        who,
        Operation::Write,
        Resource::transactional_id(transactional_id),
    );
    for t in &topics {
        let topic = broker.catalog.get(&t.name.0);
        let writable = broker.authorize(who, Operation::Write, Resource::topic(&t.name.0));
        for p in &t.partitions {
            let exists = topic
                .as_ref()
                .is_some_and(|h| *p >= 0 && *p < h.partition_count());
            if !writable {
                refused.push((
                    t.name.0.to_string(),
                    *p,
                    ResponseError::TopicAuthorizationFailed.code(),
                ));
            } else if !exists {
                refused.push((
                    t.name.0.to_string(),
                    *p,
                    ResponseError::UnknownTopicOrPartition.code(),
                ));
            }
            partitions.push((t.name.0.to_string(), *p));
        }
    }
    // One code for every partition, unless some were refused on their own.
    let all = if !id_allowed {
        Some(ResponseError::TransactionalIdAuthorizationFailed.code())
    } else if refused.is_empty() {
        let outcome = blocking(move || apply(partitions)).await;
        Some(
            outcome
                .err()
                .map_or(0, |e| txn_error_code(&e, fenced_as_epoch)),
        )
    } else {
        None
    };
    let code_of = |t: &str, p: i32| {
        all.unwrap_or_else(|| {
            refused
                .iter()
                .find(|(rt, rp, _)| rt == t && *rp == p)
                .map_or(ResponseError::OperationNotAttempted.code(), |r| r.2)
        })
    };
    topics
        .into_iter()
        .map(|t| {
            let results = t
                .partitions
                .iter()
                .map(|p| {
                    AddPartitionsToTxnPartitionResult::default()
                        .with_partition_index(*p)
                        .with_partition_error_code(code_of(&t.name.0, *p))
                })
                .collect();
            AddPartitionsToTxnTopicResult::default()
                .with_name(t.name)
                .with_results_by_partition(results)
        })
        .collect()
}

pub(crate) async fn add_partitions_to_txn(
    broker: Arc<Broker>,
    who: Requester,
    version: i16,
    request: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    let fenced_as_epoch = version < 2;
    if version <= 3 {
        let id = request.v3_and_below_transactional_id.0.to_string();
        let producer_id = request.v3_and_below_producer_id.0;
        let epoch = request.v3_and_below_producer_epoch;
        let b = broker.clone();
        let i = id.clone();
        let results = add_partitions_results(
            &broker,
            &who,
            &id,
            request.v3_and_below_topics,
            move |partitions| {
                if i.is_empty() {
                    return Err(TxnError::InvalidProducerIdMapping);
                }
                b.transactions
                    .add_partitions(&i, producer_id, epoch, &partitions, now_ms())
            },
            fenced_as_epoch,
        )
        .await;
        return AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results);
    }
    // v4: the batch form brokers send (KIP-890); `verify_only` asks without adding.
    if !broker.authorize(&who, Operation::ClusterAction, Resource::cluster()) {
        return AddPartitionsToTxnResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    let mut results = Vec::with_capacity(request.transactions.len());
    for txn in request.transactions {
        let id = txn.transactional_id.0.to_string();
        let producer_id = txn.producer_id.0;
        let epoch = txn.producer_epoch;
        let b = broker.clone();
        let verify_only = txn.verify_only;
        let i = id.clone();
        let topic_results = add_partitions_results(
            &broker,
            &who,
            &id,
            txn.topics,
            move |partitions| {
                if verify_only {
                    partitions.iter().try_for_each(|(t, p)| {
                        b.transactions.verify_write(&i, producer_id, epoch, t, *p)
                    })
                } else {
                    b.transactions
                        .add_partitions(&i, producer_id, epoch, &partitions, now_ms())
                }
            },
            false,
        )
        .await;
        results.push(
            AddPartitionsToTxnResult::default()
                .with_transactional_id(txn.transactional_id)
                .with_topic_results(topic_results),
        );
    }
    AddPartitionsToTxnResponse::default().with_results_by_transaction(results)
}

pub(crate) async fn add_offsets_to_txn(
    broker: Arc<Broker>,
    who: Requester,
    version: i16,
    request: AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    let id = request.transactional_id.0.to_string();
    let group = request.group_id.0.to_string();
    let refused = if !broker.authorize(&who, Operation::Write, Resource::transactional_id(&id)) {
        Some(ResponseError::TransactionalIdAuthorizationFailed)
    } else if group.is_empty() {
        Some(ResponseError::InvalidGroupId)
    } else if !broker.authorize(&who, Operation::Read, Resource::group(&group)) {
        Some(ResponseError::GroupAuthorizationFailed)
    } else {
        None
    };
    if let Some(e) = refused {
        return AddOffsetsToTxnResponse::default().with_error_code(e.code());
    }
    let b = broker.clone();
    let outcome = blocking(move || {
        b.transactions.add_offsets(
            &id,
            request.producer_id.0,
            request.producer_epoch,
            &group,
            now_ms(),
        )
    })
    .await;
    AddOffsetsToTxnResponse::default()
        .with_error_code(outcome.err().map_or(0, |e| txn_error_code(&e, version < 2)))
}

/// KIP-447: a TxnOffsetCommit naming a member or generation must come from a current member.
fn group_error(
    broker: &Broker,
    who: &Requester,
    request: &TxnOffsetCommitRequest,
) -> Option<ResponseError> {
    let group_id = request.group_id.0.as_str();
    if !broker.authorize(
        who,
        Operation::Write,
        Resource::transactional_id(&request.transactional_id.0),
    ) {
        return Some(ResponseError::TransactionalIdAuthorizationFailed);
    }
    if group_id.is_empty() {
        return Some(ResponseError::InvalidGroupId);
    }
    if !broker.authorize(who, Operation::Read, Resource::group(group_id)) {
        return Some(ResponseError::GroupAuthorizationFailed);
    }
    let member = request.member_id.as_str();
    let instance = request.group_instance_id.as_deref();
    if request.generation_id < 0 && member.is_empty() && instance.is_none() {
        return None;
    }
    let group = broker.groups.existing(group_id)?;
    let g = group.lock();
    if g.state == State::Dead {
        return Some(ResponseError::CoordinatorNotAvailable);
    }
    if g.members.is_empty() {
        return Some(
            g.fenced(member, instance)
                .unwrap_or(ResponseError::UnknownMemberId),
        );
    }
    g.check_member(member, instance, request.generation_id)
        .err()
}

pub(crate) async fn txn_offset_commit(
    broker: Arc<Broker>,
    who: Requester,
    _version: i16,
    request: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let group = request.group_id.0.to_string();
    let refused = group_error(&broker, &who, &request);
    let mut codes: Vec<Vec<i16>> = Vec::with_capacity(request.topics.len());
    let mut offsets = Vec::new();
    for t in &request.topics {
        let topic = broker.catalog.get(&t.name.0);
        let readable = broker.authorize(&who, Operation::Read, Resource::topic(&t.name.0));
        codes.push(
            t.partitions
                .iter()
                .map(|p| {
                    if let Some(e) = refused {
                        e.code()
                    } else if !readable {
                        ResponseError::TopicAuthorizationFailed.code()
                    } else if !topic.as_ref().is_some_and(|h| {
                        p.partition_index >= 0 && p.partition_index < h.partition_count()
                    }) {
                        ResponseError::UnknownTopicOrPartition.code()
                    } else if p
                        .committed_metadata
                        .as_ref()
                        .is_some_and(|m| m.len() > MAX_METADATA)
                    {
                        ResponseError::OffsetMetadataTooLarge.code()
                    } else {
                        offsets.push(PendingOffset {
                            group: group.clone(),
                            topic: t.name.0.to_string(),
                            partition: p.partition_index,
                            offset: p.committed_offset,
                            leader_epoch: p.committed_leader_epoch,
                            metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                        });
                        0
                    }
                })
                .collect(),
        );
    }
    if !offsets.is_empty() {
        let id = request.transactional_id.0.to_string();
        let (producer_id, epoch) = (request.producer_id.0, request.producer_epoch);
        let b = broker.clone();
        let outcome = blocking(move || {
            b.transactions
                .commit_offsets(&id, producer_id, epoch, &group, offsets, now_ms())
        })
        .await;
        if let Err(e) = outcome {
            // The group coordinator's own check in Kafka answers fencing with
            // INVALID_PRODUCER_EPOCH at every version; every client treats it as fenced.
            let code = txn_error_code(&e, true);
            for c in codes.iter_mut().flatten().filter(|c| **c == 0) {
                *c = code;
            }
        }
    }
    let topics = request
        .topics
        .into_iter()
        .zip(codes)
        .map(|(t, codes)| {
            let partitions = t
                .partitions
                .iter()
                .zip(codes)
                .map(|(p, code)| {
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            TxnOffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}

/// EndTxn: answered once the end is decided durably and (normally) its markers are durable
/// too; if a marker cannot be written now the decision still stands and the background task
/// completes it, so the answer is still success.
pub(crate) async fn end_txn(
    broker: Arc<Broker>,
    who: Requester,
    version: i16,
    request: EndTxnRequest,
) -> EndTxnResponse {
    let id = request.transactional_id.0.to_string();
    if !broker.authorize(&who, Operation::Write, Resource::transactional_id(&id)) {
        return EndTxnResponse::default()
            .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
    }
    let (producer_id, epoch, commit) = (
        request.producer_id.0,
        request.producer_epoch,
        request.committed,
    );
    let b = broker.clone();
    let decided = blocking(move || {
        b.transactions
            .end(&id, producer_id, epoch, commit, now_ms())
    })
    .await;
    let code = match decided {
        Ok(Some(ending)) => {
            let _ = crate::txn_markers::finish(&broker, ending).await;
            0
        }
        Ok(None) => 0,
        Err(e) => txn_error_code(&e, version < 2),
    };
    EndTxnResponse::default()
        .with_error_code(code)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
}

pub(crate) fn describe_transactions(
    broker: &Broker,
    who: &Requester,
    _version: i16,
    request: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let ids: Vec<String> = request
        .transactional_ids
        .iter()
        .map(|t| t.0.to_string())
        .collect();
    let states = broker
        .transactions
        .describe(&ids)
        .into_iter()
        .zip(request.transactional_ids)
        .map(|((_, meta), id)| {
            let described = DescribedTransaction::default();
            let allowed =
                broker.authorize(who, Operation::Describe, Resource::transactional_id(&id));
            let described = described.with_transactional_id(id);
            let meta = match (allowed, meta) {
                (true, Some(meta)) => meta,
                (allowed, _) => {
                    let code = if allowed {
                        ResponseError::TransactionalIdNotFound
                    } else {
                        ResponseError::TransactionalIdAuthorizationFailed
                    };
                    return described
                        .with_error_code(code.code())
                        .with_transaction_state(s(""))
                        .with_transaction_start_time_ms(-1)
                        .with_producer_id(ProducerId(-1))
                        .with_producer_epoch(-1);
                }
            };
            // The producer's own partitions and those its writes' transform outputs joined
            // (they end with the transaction too), once each.
            let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
            let derived = meta.derived.iter().map(|(t, p, _)| (t, p));
            for (t, p) in meta.partitions.iter().map(|(t, p)| (t, p)).chain(derived) {
                // As Kafka: only topics the requester may describe are listed.
                if broker.authorize(who, Operation::Describe, Resource::topic(t)) {
                    let partitions = topics.entry(t).or_default();
                    if !partitions.contains(p) {
                        partitions.push(*p);
                    }
                }
            }
            let topics = topics
                .into_iter()
                .map(|(t, partitions)| {
                    TopicData::default()
                        .with_topic(TopicName(s(t)))
                        .with_partitions(partitions)
                })
                .collect();
            described
                .with_transaction_state(s(meta.state.name()))
                .with_transaction_timeout_ms(meta.timeout_ms)
                .with_transaction_start_time_ms(meta.start_ms)
                .with_producer_id(ProducerId(meta.producer_id))
                .with_producer_epoch(meta.producer_epoch)
                .with_topics(topics)
        })
        .collect();
    DescribeTransactionsResponse::default().with_transaction_states(states)
}

pub(crate) fn list_transactions(
    broker: &Broker,
    who: &Requester,
    _version: i16,
    request: ListTransactionsRequest,
) -> ListTransactionsResponse {
    let mut states = Vec::new();
    let mut unknown = Vec::new();
    for name in &request.state_filters {
        match TxnState::from_name(name) {
            Some(state) => states.push(state),
            None => unknown.push(name.clone()),
        }
    }
    let now = now_ms();
    let listed = broker
        .transactions
        .list()
        .into_iter()
        .filter(|t| {
            broker.authorize(
                who,
                Operation::Describe,
                Resource::transactional_id(&t.transactional_id),
            ) && (request.state_filters.is_empty() || states.contains(&t.meta.state))
                && (request.producer_id_filters.is_empty()
                    || request
                        .producer_id_filters
                        .contains(&ProducerId(t.meta.producer_id)))
                && (request.duration_filter < 0
                    || (t.meta.start_ms >= 0
                        && now.saturating_sub(t.meta.start_ms) > request.duration_filter))
        })
        .map(|t| {
            ListedTransaction::default()
                .with_transactional_id(TransactionalId(s(&t.transactional_id)))
                .with_producer_id(ProducerId(t.meta.producer_id))
                .with_transaction_state(s(t.meta.state.name()))
        })
        .collect();
    ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown)
        .with_transaction_states(listed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::InitOutcome;

    #[test]
    fn describe_lists_the_partitions_transform_outputs_joined() {
        let (_dir, broker) = crate::broker::test_broker();
        let c = &broker.transactions;
        let Ok(InitOutcome::Ready { producer_id, epoch }) =
            c.init_producer_id("tx", 60_000, None, &broker.producer_ids, 0)
        else {
            panic!("expected a producer id");
        };
        c.add_partitions("tx", producer_id, epoch, &[("in".to_string(), 0)], 1)
            .unwrap();
        let derived = [
            ("out".to_string(), 2, 1_i64 << 61),
            ("out".to_string(), 2, (1_i64 << 61) + 1),
            ("in".to_string(), 0, (1_i64 << 61) + 2),
        ];
        c.add_derived("tx", producer_id, epoch, &derived, 1)
            .unwrap();
        let request = DescribeTransactionsRequest::default()
            .with_transactional_ids(vec![TransactionalId(StrBytes::from_static_str("tx"))]);
        let response = describe_transactions(&broker, &Requester::broker(), 0, request);
        let topics: Vec<(String, Vec<i32>)> = response.transaction_states[0]
            .topics
            .iter()
            .map(|t| (t.topic.0.to_string(), t.partitions.clone()))
            .collect();
        // Each partition once, though two output streams share out-2 and one is an input too.
        assert_eq!(
            topics,
            vec![("in".to_string(), vec![0]), ("out".to_string(), vec![2])]
        );
    }
}
