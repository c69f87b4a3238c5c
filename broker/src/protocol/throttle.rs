//! Quota throttling on a connection (KIP-219): a response over quota carries `throttle_time_ms`,
//! and the connection's next request is not handled until that time has passed, so a client that
//! ignores the field is held to its quota all the same.

use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

/// Until when a connection is held back.
#[derive(Debug, Default)]
pub struct ThrottleGate {
    until: Mutex<Option<Instant>>,
}

impl ThrottleGate {
    /// Holds the connection for `throttle` from now (never shortening a hold already set).
    pub fn hold(&self, throttle: Duration) {
        if throttle.is_zero() {
            return;
        }
        let end = Instant::now() + throttle;
        let mut until = self.until.lock();
        if until.is_none_or(|u| u < end) {
            *until = Some(end);
        }
    }

    /// Waits out the hold, if any.
    pub async fn wait(&self) {
        loop {
            let until = *self.until.lock();
            match until {
                Some(at) if at > Instant::now() => tokio::time::sleep_until(at).await,
                _ => return,
            }
        }
    }
}

/// A response with a `throttle_time_ms` field (encoded in the versions that have it).
pub trait Throttled {
    fn set_throttle_time_ms(&mut self, ms: i32);
}

macro_rules! throttled {
    ($($t:ident),* $(,)?) => {
        $(impl Throttled for kafka_protocol::messages::$t {
            fn set_throttle_time_ms(&mut self, ms: i32) {
                self.throttle_time_ms = ms;
            }
        })*
    };
}

throttled!(
    ApiVersionsResponse,
    MetadataResponse,
    ProduceResponse,
    FetchResponse,
    ListOffsetsResponse,
    DeleteRecordsResponse,
    InitProducerIdResponse,
    CreateTopicsResponse,
    DeleteTopicsResponse,
    CreatePartitionsResponse,
    DescribeConfigsResponse,
    AlterConfigsResponse,
    IncrementalAlterConfigsResponse,
    FindCoordinatorResponse,
    JoinGroupResponse,
    SyncGroupResponse,
    HeartbeatResponse,
    LeaveGroupResponse,
    DescribeGroupsResponse,
    ListGroupsResponse,
    DeleteGroupsResponse,
    OffsetCommitResponse,
    OffsetFetchResponse,
    OffsetDeleteResponse,
    AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsResponse,
    AlterClientQuotasResponse,
    DescribeClientQuotasResponse,
    AddPartitionsToTxnResponse,
    AddOffsetsToTxnResponse,
    TxnOffsetCommitResponse,
    EndTxnResponse,
    DescribeTransactionsResponse,
    ListTransactionsResponse,
    CreateAclsResponse,
    DescribeAclsResponse,
    DeleteAclsResponse,
    DescribeProducersResponse,
    DescribeClusterResponse,
);

/// The SASL responses have no throttle field (and are exempt from quotas).
macro_rules! unthrottled {
    ($($t:ident),* $(,)?) => {
        $(impl Throttled for kafka_protocol::messages::$t {
            fn set_throttle_time_ms(&mut self, _ms: i32) {}
        })*
    };
}

unthrottled!(SaslHandshakeResponse, SaslAuthenticateResponse);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_held_connection_waits_for_the_longest_hold() {
        let gate = ThrottleGate::default();
        let start = Instant::now();
        gate.wait().await;
        assert_eq!(Instant::now(), start);
        gate.hold(Duration::from_millis(300));
        gate.hold(Duration::from_millis(100));
        gate.wait().await;
        assert_eq!(Instant::now() - start, Duration::from_millis(300));
    }
}
