//! kube-apiserver's compactor: every interval, one Txn on `compact_rev_key`
//! decides which replica compacts, at the revision the winner saw one interval ago.

use std::time::Duration;

use super::Storage;

pub async fn run_compactor(storage: Storage, interval: Duration) {
    if interval.is_zero() {
        return;
    }
    let (mut version, mut revision) = (0i64, 0i64);
    loop {
        tokio::time::sleep(interval).await;
        match storage.compact_round(version, revision).await {
            Ok((next_version, next_revision)) => {
                version = next_version;
                revision = next_revision;
            }
            Err(err) => tracing::warn!(%err, "compaction round failed"),
        }
    }
}
