//! The leader's lessor task: every tick it hands the lease table to
//! [`crate::lease::Lessor`] and revokes, through Raft, what has expired.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_proto::cairnpb::{write_request, WriteRequest};
use cairn_proto::etcdserverpb::LeaseRevokeRequest;
use openraft::async_runtime::WatchReceiver;

use super::node::Node;

/// How often the leader looks for expired leases.
const TICK: Duration = Duration::from_millis(250);

/// Runs for the life of the member; acts only while it leads.
pub async fn run(node: Arc<Node>) {
    let mut ticker = tokio::time::interval(TICK);
    loop {
        ticker.tick().await;
        if crate::failpoint::fires("lessor-panic") {
            panic!("failpoint lessor-panic");
        }
        let leading_term = {
            let metrics = node.raft.metrics();
            let metrics = metrics.borrow_watched();
            (metrics.current_leader == Some(node.id)).then_some(metrics.current_term)
        };
        let expired = node.lessor.tick(leading_term, &node.state.lease_ttls(), Instant::now());
        for id in expired {
            let node = node.clone();
            tokio::spawn(async move { revoke_expired(&node, id).await });
        }
    }
}

/// Revokes a lease this member found expired, as the leader that decided it:
/// leadership is confirmed first and the revoke is proposed here, never
/// forwarded, so a deposed leader's stale deadlines cannot revoke a lease the
/// new leader keeps alive (etcd's `ensureLeadership`). Found by chaos.
async fn revoke_expired(node: &Node, id: i64) {
    if let Err(err) = node.reads.read_index().await {
        tracing::debug!(?err, lease = id, "not revoking: leadership not confirmed");
        return;
    }
    let request =
        WriteRequest { request: Some(write_request::Request::LeaseRevoke(LeaseRevokeRequest { id })), auth_info: None };
    if let Err(err) = node.proposer.propose(request).await {
        tracing::debug!(?err, lease = id, "revoking an expired lease");
    }
}
