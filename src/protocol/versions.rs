//! The API versions gregor advertises in ApiVersions. Only what is implemented end to end is listed
//! (reference §9): a client picks min(its max, our max), so an over-claim breaks real clients.
//!
//! Produce starts at v3 and Fetch at v4 because the broker stores and serves only RecordBatch v2
//! (magic 2) and never converts record formats; those are also the versions librdkafka's MsgVer2
//! feature and kafka-python's ≥0.11 inference look for.

use kafka_protocol::messages::ApiKey;

/// (api key, min version, max version).
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 8),
    (ApiKey::Fetch, 4, 11),
    (ApiKey::ListOffsets, 0, 5),
    (ApiKey::Metadata, 0, 8),
    (ApiKey::LeaderAndIsr, 0, 4),
    (ApiKey::StopReplica, 0, 3),
    (ApiKey::UpdateMetadata, 0, 6),
    (ApiKey::ControlledShutdown, 0, 3),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 0, 4),
    (ApiKey::DeleteTopics, 0, 3),
    (ApiKey::DescribeConfigs, 0, 2),
    (ApiKey::OffsetForLeaderEpoch, 0, 3),
    // The group APIs start at 0: librdkafka's balanced consumer needs FindCoordinator,
    // JoinGroup, SyncGroup, Heartbeat and LeaveGroup v0 to overlap.
    (ApiKey::OffsetCommit, 0, 7),
    (ApiKey::OffsetFetch, 0, 7),
    (ApiKey::FindCoordinator, 0, 2),
    (ApiKey::JoinGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 3),
    (ApiKey::LeaveGroup, 0, 3),
    (ApiKey::SyncGroup, 0, 3),
    (ApiKey::DescribeGroups, 0, 4),
    (ApiKey::ListGroups, 0, 3),
    (ApiKey::InitProducerId, 0, 4),
    // Transactions: the producer's APIs, and the coordinator's markers to partition leaders.
    (ApiKey::AddPartitionsToTxn, 0, 3),
    (ApiKey::AddOffsetsToTxn, 0, 3),
    (ApiKey::EndTxn, 0, 3),
    (ApiKey::WriteTxnMarkers, 0, 1),
    (ApiKey::TxnOffsetCommit, 0, 3),
];

/// The supported range for `key`, or `None` if gregor does not implement it.
pub fn supported(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, min, max)| (*min, *max))
}

/// Whether `version` of `key` is served.
pub fn is_supported(key: ApiKey, version: i16) -> bool {
    supported(key).is_some_and(|(min, max)| version >= min && version <= max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_advertised_range_is_valid_for_the_codec() {
        for (key, min, max) in SUPPORTED {
            let valid = key.valid_versions();
            assert!(min <= max, "{key:?}");
            assert!(
                *min >= valid.min && *max <= valid.max,
                "{key:?} {min}..{max} vs {valid}"
            );
        }
    }

    #[test]
    fn client_feature_gates_are_met() {
        // librdkafka MsgVer2: Produce 3 and Fetch 4 must overlap our ranges.
        assert!(is_supported(ApiKey::Produce, 3));
        assert!(is_supported(ApiKey::Fetch, 4));
        // kafka-python infers 2.4 from Produce v8 and then sends v2 batches.
        assert!(is_supported(ApiKey::Produce, 8));
        // Fetch 13+ needs topic ids end to end.
        assert!(!is_supported(ApiKey::Fetch, 13));
    }
}
