//! InitProducerId: a fresh producer id (epoch 0) for an idempotent producer; for a transactional
//! one, the coordinator's producer id with its epoch bumped, fencing older producers of the same
//! `transactional.id` (an ongoing transaction of theirs is aborted first).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::transactions::{blocking, txn_error_code};
use super::{now_ms, Broker};
use crate::acl::{Operation, Requester, Resource, ResourceType};
use crate::txn::{InitOutcome, TxnError};

/// Aborting a fenced transaction takes one round; more means someone else keeps starting
/// transactions on the id, and the client is told to retry.
const MAX_ROUNDS: usize = 3;

pub(crate) async fn handle(
    broker: Arc<Broker>,
    who: Requester,
    version: i16,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let response = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let Some(id) = request.transactional_id.as_ref().map(|t| t.0.to_string()) else {
        // An idempotent producer needs IdempotentWrite on the cluster or Write on some topic
        // (KIP-679).
        let authorized = broker.authorize(&who, Operation::IdempotentWrite, Resource::cluster())
            || broker
                .authorizer
                .authorize_any(&who, Operation::Write, ResourceType::Topic);
        if !authorized {
            return response.with_error_code(ResponseError::ClusterAuthorizationFailed.code());
        }
        if let Some(cluster) = &broker.cluster {
            // From the database, so that producer ids are unique across the cluster.
            return match cluster.db.allocate_producer_id().await {
                Ok(id) => response
                    .with_producer_id(ProducerId(id))
                    .with_producer_epoch(0),
                Err(e) => {
                    tracing::warn!("cannot allocate a producer id: {e}");
                    // Retriable: the client asks again.
                    response.with_error_code(ResponseError::CoordinatorNotAvailable.code())
                }
            };
        }
        return match broker.producer_ids.allocate() {
            Ok(id) => response
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(0),
            Err(e) => {
                tracing::error!("cannot allocate a producer id: {e}");
                response.with_error_code(ResponseError::KafkaStorageError.code())
            }
        };
    };
    if id.is_empty() {
        return response.with_error_code(ResponseError::InvalidRequest.code());
    }
    if broker.cluster.is_some() {
        tracing::info!(transactional_id = %id, "transactional producer refused: transactions are not supported in cluster mode yet");
        // Fatal for the client, which reports it instead of retrying forever.
        return response.with_error_code(ResponseError::UnsupportedForMessageFormat.code());
    }
    if !broker.authorize(&who, Operation::Write, Resource::transactional_id(&id)) {
        return response.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    // KIP-360: a producer recovering from an abortable error names its current id and epoch.
    let expected =
        (request.producer_id.0 >= 0).then_some((request.producer_id.0, request.producer_epoch));
    let timeout = request.transaction_timeout_ms;
    // PRODUCER_FENCED is v4+ (KIP-588); older clients know it as INVALID_PRODUCER_EPOCH.
    let code = |e: &TxnError| txn_error_code(e, version < 4);
    for _ in 0..MAX_ROUNDS {
        let b = broker.clone();
        let i = id.clone();
        let outcome = blocking(move || {
            b.transactions
                .init_producer_id(&i, timeout, expected, &b.producer_ids, now_ms())
        })
        .await;
        match outcome {
            Ok(InitOutcome::Ready { producer_id, epoch }) => {
                return response
                    .with_producer_id(ProducerId(producer_id))
                    .with_producer_epoch(epoch)
            }
            Ok(InitOutcome::AbortFirst(ending)) => {
                if crate::txn_markers::finish(&broker, ending).await.is_err() {
                    // Retried in the background; the client retries on this retriable code.
                    return response.with_error_code(ResponseError::ConcurrentTransactions.code());
                }
            }
            Err(e) => return response.with_error_code(code(&e)),
        }
    }
    response.with_error_code(ResponseError::ConcurrentTransactions.code())
}
