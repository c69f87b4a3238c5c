//! The Kafka error codes a response carries, so every answered error is counted in
//! `sluice_request_errors_total` by API and code, whatever handler produced it. Produce and Fetch
//! count in their handlers (per partition, and for `acks=0` produces that are never answered).

use kafka_protocol::messages::*;

/// A response whose error codes can be listed (top level, per resource, per partition).
pub trait ErrorCodes {
    fn error_codes(&self, each: &mut dyn FnMut(i16));
}

/// `ErrorCodes` for each response type from a body that calls `each` on every code field.
macro_rules! error_codes {
    ($($t:ty => |$r:ident, $each:ident| $body:block)*) => {
        $(impl ErrorCodes for $t {
            fn error_codes(&self, $each: &mut dyn FnMut(i16)) {
                let $r = self;
                $body
            }
        })*
    };
}

error_codes! {
    ApiVersionsResponse => |r, each| { each(r.error_code) }
    MetadataResponse => |r, each| {
        each(r.error_code);
        for t in &r.topics {
            each(t.error_code);
            t.partitions.iter().for_each(|p| each(p.error_code));
        }
    }
    ListOffsetsResponse => |r, each| {
        r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| each(p.error_code));
    }
    DeleteRecordsResponse => |r, each| {
        r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| each(p.error_code));
    }
    InitProducerIdResponse => |r, each| { each(r.error_code) }
    CreateTopicsResponse => |r, each| { r.topics.iter().for_each(|t| each(t.error_code)) }
    DeleteTopicsResponse => |r, each| { r.responses.iter().for_each(|t| each(t.error_code)) }
    CreatePartitionsResponse => |r, each| { r.results.iter().for_each(|t| each(t.error_code)) }
    DescribeConfigsResponse => |r, each| { r.results.iter().for_each(|t| each(t.error_code)) }
    AlterConfigsResponse => |r, each| { r.responses.iter().for_each(|t| each(t.error_code)) }
    IncrementalAlterConfigsResponse => |r, each| {
        r.responses.iter().for_each(|t| each(t.error_code))
    }
    FindCoordinatorResponse => |r, each| {
        each(r.error_code);
        r.coordinators.iter().for_each(|c| each(c.error_code));
    }
    JoinGroupResponse => |r, each| { each(r.error_code) }
    SyncGroupResponse => |r, each| { each(r.error_code) }
    HeartbeatResponse => |r, each| { each(r.error_code) }
    LeaveGroupResponse => |r, each| {
        each(r.error_code);
        r.members.iter().for_each(|m| each(m.error_code));
    }
    DescribeGroupsResponse => |r, each| { r.groups.iter().for_each(|g| each(g.error_code)) }
    ListGroupsResponse => |r, each| { each(r.error_code) }
    DeleteGroupsResponse => |r, each| { r.results.iter().for_each(|g| each(g.error_code)) }
    OffsetCommitResponse => |r, each| {
        r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| each(p.error_code));
    }
    OffsetFetchResponse => |r, each| {
        each(r.error_code);
        r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| each(p.error_code));
        for g in &r.groups {
            each(g.error_code);
            g.topics.iter().flat_map(|t| &t.partitions).for_each(|p| each(p.error_code));
        }
    }
    OffsetDeleteResponse => |r, each| {
        each(r.error_code);
        r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| each(p.error_code));
    }
    SaslHandshakeResponse => |r, each| { each(r.error_code) }
    SaslAuthenticateResponse => |r, each| { each(r.error_code) }
    AlterUserScramCredentialsResponse => |r, each| {
        r.results.iter().for_each(|u| each(u.error_code))
    }
    DescribeUserScramCredentialsResponse => |r, each| {
        each(r.error_code);
        r.results.iter().for_each(|u| each(u.error_code));
    }
    AlterClientQuotasResponse => |r, each| { r.entries.iter().for_each(|e| each(e.error_code)) }
    DescribeClientQuotasResponse => |r, each| { each(r.error_code) }
    DescribeClusterResponse => |r, each| { each(r.error_code) }
    CreateAclsResponse => |r, each| { r.results.iter().for_each(|a| each(a.error_code)) }
    DescribeAclsResponse => |r, each| { each(r.error_code) }
    DeleteAclsResponse => |r, each| {
        for f in &r.filter_results {
            each(f.error_code);
            f.matching_acls.iter().for_each(|a| each(a.error_code));
        }
    }
    DescribeProducersResponse => |r, each| {
        r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| each(p.error_code));
    }
    AddPartitionsToTxnResponse => |r, each| {
        each(r.error_code);
        r.results_by_topic_v3_and_below
            .iter()
            .chain(r.results_by_transaction.iter().flat_map(|t| &t.topic_results))
            .flat_map(|t| &t.results_by_partition)
            .for_each(|p| each(p.partition_error_code));
    }
    AddOffsetsToTxnResponse => |r, each| { each(r.error_code) }
    TxnOffsetCommitResponse => |r, each| {
        r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| each(p.error_code));
    }
    EndTxnResponse => |r, each| { each(r.error_code) }
    DescribeTransactionsResponse => |r, each| {
        r.transaction_states.iter().for_each(|t| each(t.error_code))
    }
    ListTransactionsResponse => |r, each| { each(r.error_code) }
    // Counted per partition by their handlers (acks=0 produces are never encoded).
    ProduceResponse => |_r, _each| {}
    FetchResponse => |_r, _each| {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::metadata_response::{
        MetadataResponsePartition, MetadataResponseTopic,
    };

    #[test]
    fn nested_codes_are_all_listed() {
        let partition = MetadataResponsePartition::default().with_error_code(5);
        let topic = MetadataResponseTopic::default()
            .with_error_code(3)
            .with_partitions(vec![partition]);
        let response = MetadataResponse::default().with_topics(vec![topic]);
        let mut codes = Vec::new();
        response.error_codes(&mut |c| codes.push(c));
        assert_eq!(codes, vec![0, 3, 5]);
    }
}
