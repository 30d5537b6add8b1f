//! A running member: Raft, the state, and the paths every request takes
//! (forwarding to the leader, group commit, ReadIndex).

use std::sync::Arc;
use std::time::Duration;

use cairn_proto::cairnpb::{write_response, ReadIndexRequest, WriteRequest, WriteResponse};
use cairn_proto::etcdserverpb::ResponseHeader;
use tokio::time::Instant;

use super::proposer::{into_result, ProposeError, Proposer};
use super::read_index::ReadIndex;
use crate::config::Config;
use crate::error::EtcdError;
use crate::raft::network::PeerClients;
use crate::raft::types::{Member, NodeId, Raft};
use crate::state::KvState;

/// Pause between attempts while there is no leader or it moved.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

pub struct Node {
    pub config: Config,
    pub id: NodeId,
    pub cluster_id: u64,
    pub raft: Raft,
    pub state: Arc<KvState>,
    pub peers: Arc<PeerClients>,
    pub proposer: Proposer,
    pub reads: ReadIndex,
}

impl Node {
    /// How long a request may wait for a leader and a commit, as etcd's
    /// request timeout: 5 s plus two election timeouts.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(5) + 2 * self.config.election()
    }

    pub fn header(&self, revision: i64) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.id,
            revision,
            raft_term: self.raft.metrics().borrow().current_term,
        })
    }

    fn leader(&self) -> Option<(NodeId, Member)> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let leader = metrics.current_leader?;
        let member = metrics.membership_config.membership().get_node(&leader)?.clone();
        Some((leader, member))
    }

    /// Commits a write through the leader and returns its response.
    pub async fn write(&self, request: WriteRequest) -> Result<write_response::Response, tonic::Status> {
        let deadline = Instant::now() + self.request_timeout();
        let mut saw_leader = false;
        loop {
            let attempt = match self.leader() {
                Some((leader, _)) if leader == self.id => {
                    saw_leader = true;
                    self.proposer.propose(request.clone()).await
                }
                Some((leader, member)) => {
                    saw_leader = true;
                    self.forward_write(leader, &member, request.clone()).await
                }
                None => Err(ProposeError::NotLeader(None)),
            };
            match attempt {
                Ok(response) => return into_result(response),
                Err(ProposeError::Failed(err)) => return Err(err.into()),
                Err(ProposeError::NotLeader(_)) if Instant::now() + RETRY_PAUSE < deadline => {
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(ProposeError::NotLeader(_)) => {
                    let err = if saw_leader { EtcdError::Timeout } else { EtcdError::NoLeader };
                    return Err(err.into());
                }
            }
        }
    }

    async fn forward_write(
        &self,
        leader: NodeId,
        member: &Member,
        request: WriteRequest,
    ) -> Result<WriteResponse, ProposeError> {
        let mut client = self
            .peers
            .client(leader, member)
            .map_err(|err| ProposeError::Failed(EtcdError::Internal(err.to_string())))?;
        match client.propose(request).await {
            Ok(response) => {
                let response = response.into_inner();
                match &response.response {
                    Some(write_response::Response::Error(err)) if err.message == EtcdError::NotLeader.to_string() => {
                        Err(ProposeError::NotLeader(None))
                    }
                    _ => Ok(response),
                }
            }
            // The request may or may not have reached the leader: not safe to retry.
            Err(status) => {
                tracing::debug!(%status, leader, "forwarding a write failed");
                Err(ProposeError::Failed(EtcdError::Timeout))
            }
        }
    }

    /// Returns once this member has applied every write acknowledged before the call.
    pub async fn linearizable_barrier(&self) -> Result<(), tonic::Status> {
        let deadline = Instant::now() + self.request_timeout();
        let index = loop {
            let attempt = match self.leader() {
                Some((leader, _)) if leader == self.id => self.reads.read_index().await,
                Some((leader, member)) => self.forward_read_index(leader, &member).await,
                None => Err(ProposeError::NotLeader(None)),
            };
            match attempt {
                Ok(index) => break index,
                Err(ProposeError::Failed(err)) => return Err(err.into()),
                Err(ProposeError::NotLeader(_)) if Instant::now() + RETRY_PAUSE < deadline => {
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(ProposeError::NotLeader(_)) => return Err(EtcdError::NoLeader.into()),
            }
        };
        let mut applied = self.state.subscribe_applied();
        let caught_up = tokio::time::timeout_at(deadline, applied.wait_for(|applied| *applied >= index))
            .await
            .map(|waited| waited.is_ok());
        match caught_up {
            Ok(true) => Ok(()),
            Ok(false) => Err(EtcdError::Stopped.into()),
            Err(_) => Err(EtcdError::Timeout.into()),
        }
    }

    async fn forward_read_index(&self, leader: NodeId, member: &Member) -> Result<u64, ProposeError> {
        let mut client = self
            .peers
            .client(leader, member)
            .map_err(|err| ProposeError::Failed(EtcdError::Internal(err.to_string())))?;
        match client.read_index(ReadIndexRequest { cluster_id: self.cluster_id }).await {
            Ok(response) => Ok(response.into_inner().index),
            Err(status) if status.message() == EtcdError::NotLeader.to_string() => Err(ProposeError::NotLeader(None)),
            Err(status) => {
                tracing::debug!(%status, leader, "forwarding a read index failed");
                Err(ProposeError::NotLeader(None))
            }
        }
    }
}
