//! The API versions this broker serves: the single source for ApiVersions and for refusing a
//! request whose version we do not implement.
//!
//! Built from what our handlers really support, not from `ApiKey::valid_versions()`, which reports
//! versions the message types cannot decode.

use kafka_protocol::messages::ApiKey;

/// `(api, lowest, highest)` for every API we implement.
pub const SERVED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::FindCoordinator, 0, 5),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
    // Transactions. AddPartitionsToTxn v5, AddOffsetsToTxn v4, TxnOffsetCommit v4+ and EndTxn
    // v4+ are KIP-890 part 2 (TRANSACTION_ABORTABLE, implicit adds with Produce v12), which we
    // do not serve; clients use the versions below.
    (ApiKey::AddPartitionsToTxn, 0, 4),
    (ApiKey::AddOffsetsToTxn, 0, 3),
    (ApiKey::TxnOffsetCommit, 0, 3),
    (ApiKey::EndTxn, 0, 3),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 1),
    (ApiKey::DescribeClientQuotas, 0, 1),
    (ApiKey::AlterClientQuotas, 0, 1),
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
    (ApiKey::DescribeCluster, 0, 1),
];

/// The served range of `api`, if we implement it at all.
pub fn served_range(api: ApiKey) -> Option<(i16, i16)> {
    SERVED
        .iter()
        .find(|(key, _, _)| *key == api)
        .map(|(_, min, max)| (*min, *max))
}

/// Whether `version` of `api` is one we serve.
pub fn is_served(api: ApiKey, version: i16) -> bool {
    served_range(api).is_some_and(|(min, max)| (min..=max).contains(&version))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The versions the crate's request and response types both encode and decode.
    fn codec_range(api: ApiKey) -> (i16, i16) {
        use kafka_protocol::messages::*;
        use kafka_protocol::protocol::Message;
        fn both<Q: Message, S: Message>() -> (i16, i16) {
            (
                Q::VERSIONS.min.max(S::VERSIONS.min),
                Q::VERSIONS.max.min(S::VERSIONS.max),
            )
        }
        match api {
            ApiKey::Produce => both::<ProduceRequest, ProduceResponse>(),
            ApiKey::Fetch => both::<FetchRequest, FetchResponse>(),
            ApiKey::ListOffsets => both::<ListOffsetsRequest, ListOffsetsResponse>(),
            ApiKey::Metadata => both::<MetadataRequest, MetadataResponse>(),
            ApiKey::ApiVersions => both::<ApiVersionsRequest, ApiVersionsResponse>(),
            ApiKey::CreateTopics => both::<CreateTopicsRequest, CreateTopicsResponse>(),
            ApiKey::DeleteTopics => both::<DeleteTopicsRequest, DeleteTopicsResponse>(),
            ApiKey::DeleteRecords => both::<DeleteRecordsRequest, DeleteRecordsResponse>(),
            ApiKey::DescribeProducers => {
                both::<DescribeProducersRequest, DescribeProducersResponse>()
            }
            ApiKey::InitProducerId => both::<InitProducerIdRequest, InitProducerIdResponse>(),
            ApiKey::DescribeConfigs => both::<DescribeConfigsRequest, DescribeConfigsResponse>(),
            ApiKey::AlterConfigs => both::<AlterConfigsRequest, AlterConfigsResponse>(),
            ApiKey::CreatePartitions => both::<CreatePartitionsRequest, CreatePartitionsResponse>(),
            ApiKey::IncrementalAlterConfigs => {
                both::<IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse>()
            }
            ApiKey::FindCoordinator => both::<FindCoordinatorRequest, FindCoordinatorResponse>(),
            ApiKey::JoinGroup => both::<JoinGroupRequest, JoinGroupResponse>(),
            ApiKey::SyncGroup => both::<SyncGroupRequest, SyncGroupResponse>(),
            ApiKey::Heartbeat => both::<HeartbeatRequest, HeartbeatResponse>(),
            ApiKey::LeaveGroup => both::<LeaveGroupRequest, LeaveGroupResponse>(),
            ApiKey::OffsetCommit => both::<OffsetCommitRequest, OffsetCommitResponse>(),
            ApiKey::OffsetFetch => both::<OffsetFetchRequest, OffsetFetchResponse>(),
            ApiKey::DescribeGroups => both::<DescribeGroupsRequest, DescribeGroupsResponse>(),
            ApiKey::ListGroups => both::<ListGroupsRequest, ListGroupsResponse>(),
            ApiKey::DeleteGroups => both::<DeleteGroupsRequest, DeleteGroupsResponse>(),
            ApiKey::OffsetDelete => both::<OffsetDeleteRequest, OffsetDeleteResponse>(),
            ApiKey::SaslHandshake => both::<SaslHandshakeRequest, SaslHandshakeResponse>(),
            ApiKey::SaslAuthenticate => both::<SaslAuthenticateRequest, SaslAuthenticateResponse>(),
            ApiKey::DescribeUserScramCredentials => {
                both::<DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse>()
            }
            ApiKey::AlterUserScramCredentials => {
                both::<AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse>()
            }
            ApiKey::AddPartitionsToTxn => {
                both::<AddPartitionsToTxnRequest, AddPartitionsToTxnResponse>()
            }
            ApiKey::AddOffsetsToTxn => both::<AddOffsetsToTxnRequest, AddOffsetsToTxnResponse>(),
            ApiKey::TxnOffsetCommit => both::<TxnOffsetCommitRequest, TxnOffsetCommitResponse>(),
            ApiKey::EndTxn => both::<EndTxnRequest, EndTxnResponse>(),
            ApiKey::DescribeTransactions => {
                both::<DescribeTransactionsRequest, DescribeTransactionsResponse>()
            }
            ApiKey::ListTransactions => both::<ListTransactionsRequest, ListTransactionsResponse>(),
            ApiKey::DescribeClientQuotas => {
                both::<DescribeClientQuotasRequest, DescribeClientQuotasResponse>()
            }
            ApiKey::AlterClientQuotas => {
                both::<AlterClientQuotasRequest, AlterClientQuotasResponse>()
            }
            ApiKey::DescribeAcls => both::<DescribeAclsRequest, DescribeAclsResponse>(),
            ApiKey::CreateAcls => both::<CreateAclsRequest, CreateAclsResponse>(),
            ApiKey::DeleteAcls => both::<DeleteAclsRequest, DeleteAclsResponse>(),
            ApiKey::DescribeCluster => both::<DescribeClusterRequest, DescribeClusterResponse>(),
            other => panic!("{other:?} is served but has no codec range here"),
        }
    }

    #[test]
    fn every_served_range_is_within_what_the_message_types_decode() {
        for (api, min, max) in SERVED {
            let (lo, hi) = codec_range(*api);
            assert!(
                *min >= lo && *max <= hi && min <= max,
                "{api:?} {min}..={max} vs codec {lo}..={hi}"
            );
        }
    }

    #[test]
    fn unserved_versions_are_refused() {
        assert!(is_served(ApiKey::Produce, 9));
        assert!(!is_served(ApiKey::Produce, 2));
        assert!(!is_served(ApiKey::Fetch, 13));
        assert!(!is_served(ApiKey::AddPartitionsToTxn, 5));
        assert!(!is_served(ApiKey::EndTxn, 4));
    }
}
