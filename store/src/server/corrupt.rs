//! Corruption checks, as etcd's: members compare their HashKV at one revision.
//!
//! - At start (`--experimental-initial-corrupt-check`), a member that already
//!   had data refuses to serve if a peer at the same compact revision has
//!   another hash.
//! - Periodically (`--experimental-corrupt-check-time`), the leader compares
//!   every member with itself and raises the CORRUPT alarm for a member that
//!   differs; from then on writes fail with "etcdserver: corrupt cluster".
//!
//! The verdicts are pure functions over the hashes; the rest is I/O.

use std::sync::Arc;
use std::time::Duration;

use cairn_proto::cairnpb::{write_request, WriteRequest};
use cairn_proto::etcdserverpb::alarm_request::AlarmAction;
use cairn_proto::etcdserverpb::{AlarmRequest, AlarmType, HashKvRequest, HashKvResponse};
use openraft::async_runtime::WatchReceiver;

use super::node::Node;
use crate::error::{EtcdError, StoreError};
use crate::raft::network::PeerClients;
use crate::raft::types::{Member, NodeId, StoredMembership};
use crate::state::KvState;

/// A member's HashKV answer, in etcd's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberHash {
    pub member_id: u64,
    /// The member's current revision (the response header's).
    pub revision: i64,
    /// -1 before the first compaction, as etcd reports it.
    pub compact_revision: i64,
    pub hash: u32,
}

/// This member's HashKV at `revision` (the current one when 0), off the async workers.
pub async fn local_hash(state: Arc<KvState>, member_id: u64, revision: i64) -> Result<MemberHash, StoreError> {
    let joined = tokio::task::spawn_blocking(move || state.hash_kv(revision)).await;
    let (hash, revision, compacted) = joined.map_err(|err| EtcdError::Internal(err.to_string()))??;
    Ok(MemberHash { member_id, revision, compact_revision: if compacted == 0 { -1 } else { compacted }, hash })
}

/// The HashKV answer of this member, for clients and for peers alike.
pub async fn hash_kv_response(node: &Node, revision: i64) -> Result<HashKvResponse, StoreError> {
    let hashed = local_hash(node.state.clone(), node.id, revision).await?;
    let header = node.header(node.state.current_revision());
    Ok(HashKvResponse { header, hash: hashed.hash, compact_revision: hashed.compact_revision })
}

impl MemberHash {
    pub fn from_response(response: &HashKvResponse) -> Self {
        let header = response.header.unwrap_or_default();
        Self {
            member_id: header.member_id,
            revision: header.revision,
            compact_revision: response.compact_revision,
            hash: response.hash,
        }
    }
}

/// etcd's `CheckInitialHashKV`: the peers that, at our compact revision, hashed
/// our revision differently. Peers at another compact revision prove nothing.
pub fn initial_mismatches(local: &MemberHash, peers: &[MemberHash]) -> Vec<u64> {
    peers
        .iter()
        .filter(|peer| peer.compact_revision == local.compact_revision && peer.hash != local.hash)
        .map(|peer| peer.member_id)
        .collect()
}

/// etcd's `checkHashKV` on the leader, which hashed before (`before`) and after
/// (`after`) asking the peers for their hash at `before.revision`: the members
/// to raise the CORRUPT alarm for.
pub fn periodic_mismatches(before: &MemberHash, after: &MemberHash, peers: &[MemberHash]) -> Vec<u64> {
    let mut corrupt = Vec::new();
    let mut mismatch = |id: u64| {
        if !corrupt.contains(&id) {
            corrupt.push(id);
        }
    };
    // The leader's own data changed under a revision that did not.
    if before.hash != after.hash
        && before.revision == after.revision
        && before.compact_revision == after.compact_revision
    {
        mismatch(after.member_id);
    }
    for peer in peers {
        // A follower is never ahead of its leader, in revision or compaction.
        if peer.revision > after.revision || peer.compact_revision > after.compact_revision {
            mismatch(peer.member_id);
        }
        if peer.compact_revision == before.compact_revision && peer.hash != before.hash {
            mismatch(peer.member_id);
        }
    }
    corrupt
}

/// Every member of `membership` but `own`.
fn peers_of(membership: &StoredMembership, own: NodeId) -> Vec<(NodeId, Member)> {
    let nodes = membership.membership().nodes();
    nodes.filter(|(id, _)| **id != own).map(|(id, member)| (*id, member.clone())).collect()
}

/// Asks each peer for its HashKV at `revision`. Peers that cannot answer are
/// left out, as etcd leaves them out, with the reason logged.
async fn peer_hashes(
    peers: &PeerClients,
    members: Vec<(NodeId, Member)>,
    revision: i64,
    timeout: Duration,
) -> Vec<MemberHash> {
    let mut answers = Vec::new();
    for (id, member) in members {
        let mut client = match peers.client(id, &member) {
            Ok(client) => client,
            Err(err) => {
                tracing::warn!(peer = %format!("{id:x}"), error = %err, "cannot reach peer for its hash");
                continue;
            }
        };
        match tokio::time::timeout(timeout, client.hash_kv(HashKvRequest { revision })).await {
            Ok(Ok(response)) => answers.push(MemberHash::from_response(response.get_ref())),
            // A peer behind this revision, or compacted past it: nothing to compare.
            Ok(Err(status)) => tracing::warn!(peer = %format!("{id:x}"), %status, "cannot fetch hash from remote peer"),
            Err(_) => tracing::warn!(peer = %format!("{id:x}"), "hash kv request timed out"),
        }
    }
    answers
}

/// The start-time check; an error names the member whose data differs.
pub async fn initial_check(
    state: &Arc<KvState>,
    peers: &PeerClients,
    member_id: u64,
    timeout: Duration,
) -> Result<(), CorruptionFound> {
    tracing::info!(member_id = %format!("{member_id:x}"), "starting initial corruption check");
    let local = local_hash(state.clone(), member_id, 0).await.map_err(|err| CorruptionFound::Check(err.to_string()))?;
    let others = peers_of(&state.applied_state().membership, member_id);
    let answers = peer_hashes(peers, others, local.revision, timeout).await;
    let mismatched = initial_mismatches(&local, &answers);
    if !mismatched.is_empty() {
        for peer in &mismatched {
            tracing::error!(peer = %format!("{peer:x}"), revision = local.revision, "found different hash values from remote peer");
        }
        return Err(CorruptionFound::Inconsistent { member_id });
    }
    tracing::info!(peers_checked = answers.len(), "initial corruption checking passed; no corruption");
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum CorruptionFound {
    /// etcd's words for it.
    #[error("{member_id:x} found data inconsistency with peers")]
    Inconsistent { member_id: u64 },
    #[error("initial corruption check failed: {0}")]
    Check(String),
}

/// The leader's periodic check, every `every`, for as long as the member runs.
pub async fn monitor(node: Arc<Node>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        if !node.is_leader() {
            continue;
        }
        if let Err(err) = check_once(&node).await {
            tracing::warn!(error = %err, "periodic corruption check failed");
        }
    }
}

async fn check_once(node: &Arc<Node>) -> Result<(), StoreError> {
    let before = local_hash(node.state.clone(), node.id, 0).await?;
    let others = peers_of(&node.raft.metrics().borrow_watched().membership_config, node.id);
    let timeout = Duration::from_secs(5) + 2 * node.config.election();
    let answers = peer_hashes(&node.peers, others, before.revision, timeout).await;
    // As etcd: applied up to what the peers may have seen before hashing again,
    // or a follower that applies faster than this leader would look ahead of it.
    if let Err(status) = node.linearizable_barrier().await {
        tracing::debug!(%status, "corruption check skipped: no read barrier");
        return Ok(());
    }
    let after = local_hash(node.state.clone(), node.id, 0).await?;
    let mismatched = periodic_mismatches(&before, &after, &answers);
    for member_id in &mismatched {
        tracing::error!(member = %format!("{member_id:x}"), "found hash mismatch");
    }
    // etcd raises one alarm per check, for the first member found.
    if let Some(&member_id) = mismatched.first() {
        let alarm = AlarmRequest { action: AlarmAction::Activate as i32, member_id, alarm: AlarmType::Corrupt as i32 };
        let request = WriteRequest { request: Some(write_request::Request::Alarm(alarm)), auth_info: None };
        if let Err(status) = node.write(request).await {
            tracing::warn!(%status, "raising the CORRUPT alarm failed");
        }
    }
    tracing::debug!(peers_checked = answers.len(), "finished peer corruption check");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(member_id: u64, revision: i64, compact_revision: i64, hash: u32) -> MemberHash {
        MemberHash { member_id, revision, compact_revision, hash }
    }

    #[test]
    fn at_start_only_peers_at_the_same_compact_revision_can_disagree() {
        let local = hash(1, 10, -1, 0xaa);
        let peers = [hash(2, 12, -1, 0xaa), hash(3, 12, -1, 0xbb), hash(4, 12, 5, 0xcc)];
        assert_eq!(initial_mismatches(&local, &peers), vec![3]);
        assert!(initial_mismatches(&local, &[]).is_empty(), "no peer answered: nothing to accuse");
    }

    #[test]
    fn the_leader_accuses_followers_that_differ_or_run_ahead_and_itself_if_it_changed() {
        let before = hash(1, 10, 4, 0xaa);
        let peers = [
            hash(2, 10, 4, 0xaa), // agrees
            hash(3, 10, 4, 0xbb), // another hash at the same compaction
            hash(4, 11, 4, 0xaa), // ahead of its leader
            hash(5, 10, 6, 0xcc), // compacted past its leader
            hash(6, 9, 2, 0xdd),  // behind: another compaction proves nothing
        ];
        assert_eq!(periodic_mismatches(&before, &before, &peers), vec![3, 4, 5]);
        let changed = hash(1, 10, 4, 0xee);
        assert_eq!(periodic_mismatches(&before, &changed, &[]), vec![1]);
        let moved_on = hash(1, 11, 4, 0xee);
        assert!(periodic_mismatches(&before, &moved_on, &[]).is_empty(), "a new revision explains a new hash");
    }
}
