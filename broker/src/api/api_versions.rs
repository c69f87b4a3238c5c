//! ApiVersions: which APIs and versions this broker serves (from [`crate::protocol::versions`]).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use super::Broker;
use crate::protocol::versions::SERVED;

/// The served table. The v3 tagged fields (features) stay empty on purpose: librdkafka 2.0.2
/// (Debian's kcat) misreads a non-empty tagged-field section here and fails with "Read underflow".
pub(crate) fn handle(
    _broker: &Broker,
    _version: i16,
    _request: ApiVersionsRequest,
) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(served())
}

/// The KIP-511 answer to a version newer than we serve, encoded as v0 by the caller.
pub(crate) fn unsupported_version() -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(served())
}

fn served() -> Vec<ApiVersion> {
    SERVED
        .iter()
        .map(|(api, min, max)| {
            ApiVersion::default()
                .with_api_key(*api as i16)
                .with_min_version(*min)
                .with_max_version(*max)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::protocol::Encodable;

    #[test]
    fn v3_response_has_an_empty_tagged_field_section() {
        let response = ApiVersionsResponse::default().with_api_keys(served());
        let mut buf = BytesMut::new();
        response.encode(&mut buf, 3).unwrap();
        // error_code(2) + compact array len(1) + per key 2+2+2+1(tags) + throttle(4) + tags(1)
        let expected = 2 + 1 + SERVED.len() * 7 + 4 + 1;
        assert_eq!(buf.len(), expected);
        assert_eq!(
            buf[buf.len() - 1],
            0,
            "no tagged fields after throttle_time_ms"
        );
    }
}
