//! Linearizable reads by ReadIndex: concurrent reads on the leader share one
//! round of quorum confirmation.

use openraft::error::{CheckIsLeaderError, RaftError};
use tokio::sync::{mpsc, oneshot};

use super::proposer::ProposeError;
use crate::error::EtcdError;
use crate::raft::types::{Member, NodeId, Raft};

type Reply = oneshot::Sender<Result<u64, ProposeError>>;

/// Waiters queued while a round is in flight; senders wait beyond this.
const QUEUE_DEPTH: usize = 16 * 1024;

#[derive(Clone)]
pub struct ReadIndex {
    queue: mpsc::Sender<Reply>,
}

impl ReadIndex {
    pub fn start(raft: Raft) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE_DEPTH);
        tokio::spawn(round_loop(raft, receiver));
        Self { queue }
    }

    /// A log index that is applied here once every write acknowledged before
    /// this call is; the leader has confirmed it still leads.
    pub async fn read_index(&self) -> Result<u64, ProposeError> {
        let (reply, index) = oneshot::channel();
        self.queue.send(reply).await.map_err(|_| ProposeError::Failed(EtcdError::Stopped))?;
        index.await.map_err(|_| ProposeError::Failed(EtcdError::Stopped))?
    }
}

async fn round_loop(raft: Raft, mut receiver: mpsc::Receiver<Reply>) {
    while let Some(first) = receiver.recv().await {
        let mut waiters = vec![first];
        while let Ok(next) = receiver.try_recv() {
            waiters.push(next);
        }
        // Every waiter arrived before this round began, so its index covers them.
        let outcome = match raft.ensure_linearizable().await {
            Ok(log_id) => Ok(log_id.map_or(0, |log_id| log_id.index)),
            Err(err) => Err(read_error(err)),
        };
        for waiter in waiters {
            let _ = waiter.send(outcome.clone());
        }
    }
}

fn read_error(err: RaftError<NodeId, CheckIsLeaderError<NodeId, Member>>) -> ProposeError {
    match err {
        RaftError::APIError(CheckIsLeaderError::ForwardToLeader(forward)) => ProposeError::NotLeader(forward.leader_id),
        RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_)) => ProposeError::Failed(EtcdError::Timeout),
        RaftError::Fatal(_) => ProposeError::Failed(EtcdError::Stopped),
    }
}
