//! InitProducerId: a fresh producer id (epoch 0) for each idempotent producer.
//!
//! Transactions are not supported: a transactional id is refused with
//! TRANSACTIONAL_ID_AUTHORIZATION_FAILED, which clients report as fatal rather than retrying.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::Broker;
use crate::acl::{Operation, Requester, Resource, ResourceType};

pub(crate) fn handle(
    broker: &Broker,
    who: &Requester,
    _version: i16,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let response = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if request.transactional_id.is_some() {
        return response.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    // An idempotent producer needs IdempotentWrite on the cluster or Write on some topic
    // (KIP-679).
    let authorized = broker.authorize(who, Operation::IdempotentWrite, Resource::cluster())
        || broker
            .authorizer
            .authorize_any(who, Operation::Write, ResourceType::Topic);
    if !authorized {
        return response.with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    match broker.producer_ids.allocate() {
        Ok(id) => response
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => {
            tracing::error!("cannot allocate a producer id: {e}");
            response.with_error_code(ResponseError::KafkaStorageError.code())
        }
    }
}
