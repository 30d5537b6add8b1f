//! Cluster membership: etcd's member add, remove, update and promote, made by
//! the leader through openraft, and the member list as etcd shows it.

use std::collections::{BTreeMap, BTreeSet};

use cairn_proto::cairnpb::{membership_change, MembershipChange, MembershipChangeResult};
use cairn_proto::etcdserverpb::Member as PbMember;
use openraft::async_runtime::WatchReceiver;
use openraft::error::{ClientWriteError, RaftError};
use openraft::ChangeMembers;

use super::node::Node;
use super::proposer::ProposeError;
use crate::config::socket_addr;
use crate::error::EtcdError;
use crate::raft::types::{Member, NodeId};

/// etcd promotes a learner only once its log has reached this share of the leader's.
const LEARNER_READY_PERCENT: u64 = 90;

impl Node {
    /// The members as etcd lists them: published names and client URLs, learners marked.
    pub fn member_list(&self) -> Vec<PbMember> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow_watched();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let attrs = self.state.member_attributes();
        membership
            .nodes()
            .map(|(id, member)| {
                let published = attrs.get(id);
                PbMember {
                    id: *id,
                    // etcd lists a member that has not started yet with an empty name.
                    name: published.map(|attrs| attrs.name.clone()).unwrap_or_default(),
                    peer_ur_ls: member.peer_urls.clone(),
                    client_ur_ls: published.map(|attrs| attrs.client_urls.clone()).unwrap_or_default(),
                    is_learner: !voters.contains(id),
                }
            })
            .collect()
    }

    /// Makes a membership change on the leader, forwarding it if need be.
    pub async fn change_members(&self, change: MembershipChange) -> Result<(), tonic::Status> {
        self.on_leader(
            || self.change_members_here(change.clone()),
            |link| {
                let (mut client, change) = (link.into_client(), change.clone());
                async move {
                    match client.change_members(change).await {
                        Ok(result) => match result.into_inner().error {
                            None => Ok(()),
                            Some(err) if EtcdError::is_not_leader(&err) => Err(ProposeError::NotLeader(None)),
                            Some(err) => Err(ProposeError::Failed(EtcdError::relayed(err))),
                        },
                        // A change may or may not have been made: report, do not repeat it.
                        Err(status) => Err(ProposeError::Failed(EtcdError::Internal(status.message().to_string()))),
                    }
                }
            },
        )
        .await?;
        // Answer with a member list that includes the change.
        self.linearizable_barrier().await
    }

    /// The peer service's answer to a forwarded change.
    pub async fn change_members_result(&self, change: MembershipChange) -> MembershipChangeResult {
        let error = match self.change_members_here(change).await {
            Ok(()) => None,
            Err(ProposeError::NotLeader(_)) => Some(EtcdError::NotLeader.to_write_error()),
            Err(ProposeError::Failed(err)) => Some(err.to_write_error()),
        };
        MembershipChangeResult { error }
    }

    async fn change_members_here(&self, change: MembershipChange) -> Result<(), ProposeError> {
        let (nodes, voters, matched, last_index) = {
            let metrics = self.raft.metrics();
            let metrics = metrics.borrow_watched();
            if metrics.current_leader != Some(self.id) {
                return Err(ProposeError::NotLeader(metrics.current_leader));
            }
            let membership = metrics.membership_config.membership();
            let nodes: BTreeMap<NodeId, Member> = membership.nodes().map(|(id, node)| (*id, node.clone())).collect();
            let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
            let matched: BTreeMap<NodeId, u64> = metrics
                .replication
                .as_ref()
                .map(|replication| {
                    replication.iter().map(|(id, log_id)| (*id, log_id.map_or(0, |log_id| log_id.index))).collect()
                })
                .unwrap_or_default();
            (nodes, voters, matched, metrics.last_log_index.unwrap_or(0))
        };
        let failed = |err: EtcdError| Err(ProposeError::Failed(err));
        let result = match change.change {
            Some(membership_change::Change::Add(add)) => {
                check_urls(&add.peer_urls)?;
                if nodes.contains_key(&add.id) {
                    return failed(EtcdError::MemberExist);
                }
                if nodes.values().any(|node| node.peer_urls.iter().any(|url| add.peer_urls.contains(url))) {
                    return failed(EtcdError::PeerUrlExist);
                }
                if add.is_learner && nodes.len() - voters.len() >= self.config.max_learners {
                    return failed(EtcdError::TooManyLearners);
                }
                let member = Member { name: String::new(), peer_urls: add.peer_urls };
                if add.is_learner {
                    self.raft.add_learner(add.id, member, false).await
                } else {
                    self.raft
                        .change_membership(ChangeMembers::AddVoters(BTreeMap::from([(add.id, member)])), false)
                        .await
                }
            }
            Some(membership_change::Change::Remove(id)) => {
                if !nodes.contains_key(&id) {
                    return failed(EtcdError::MemberNotFound);
                }
                let change = if voters.contains(&id) {
                    ChangeMembers::RemoveVoters(BTreeSet::from([id]))
                } else {
                    ChangeMembers::RemoveNodes(BTreeSet::from([id]))
                };
                self.raft.change_membership(change, false).await
            }
            Some(membership_change::Change::Update(update)) => {
                check_urls(&update.peer_urls)?;
                let Some(existing) = nodes.get(&update.id) else { return failed(EtcdError::MemberNotFound) };
                let clash = nodes.iter().any(|(id, node)| {
                    *id != update.id && node.peer_urls.iter().any(|url| update.peer_urls.contains(url))
                });
                if clash {
                    return failed(EtcdError::PeerUrlExist);
                }
                let member = Member { name: existing.name.clone(), peer_urls: update.peer_urls };
                self.raft.change_membership(ChangeMembers::SetNodes(BTreeMap::from([(update.id, member)])), false).await
            }
            Some(membership_change::Change::Promote(id)) => {
                if !nodes.contains_key(&id) {
                    return failed(EtcdError::MemberNotFound);
                }
                if voters.contains(&id) {
                    return failed(EtcdError::MemberNotLearner);
                }
                let caught_up = matched.get(&id).copied().unwrap_or(0);
                if caught_up * 100 < last_index * LEARNER_READY_PERCENT {
                    return failed(EtcdError::LearnerNotReady);
                }
                self.raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false).await
            }
            None => return failed(EtcdError::Internal("empty membership change".into())),
        };
        match result {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
                Err(ProposeError::NotLeader(forward.leader_id))
            }
            Err(err) => failed(EtcdError::Internal(err.to_string())),
        }
    }
}

fn check_urls(urls: &[String]) -> Result<(), ProposeError> {
    if urls.is_empty() || urls.iter().any(|url| socket_addr("peer-urls", url).is_err()) {
        return Err(ProposeError::Failed(EtcdError::MemberBadUrls));
    }
    Ok(())
}
