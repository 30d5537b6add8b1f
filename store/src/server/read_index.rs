//! Linearizable reads by ReadIndex: concurrent reads on the leader share one
//! round of quorum confirmation.

use openraft::error::{LinearizableReadError, RaftError};
use openraft::ReadPolicy;
use tokio::sync::{mpsc, oneshot};

use super::proposer::ProposeError;
use crate::error::EtcdError;
use crate::raft::types::{Raft, TypeConfig};

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
        let outcome = match raft.ensure_linearizable(ReadPolicy::ReadIndex).await {
            Ok(read) => Ok(read.index()),
            Err(err) => Err(read_error(err)),
        };
        for waiter in waiters {
            let _ = waiter.send(outcome.clone());
        }
    }
}

fn read_error(err: RaftError<TypeConfig, LinearizableReadError<TypeConfig>>) -> ProposeError {
    match err {
        RaftError::APIError(LinearizableReadError::ForwardToLeader(forward)) => {
            ProposeError::NotLeader(forward.leader_id)
        }
        RaftError::APIError(LinearizableReadError::QuorumNotEnough(_)) => ProposeError::Failed(EtcdError::Timeout),
        RaftError::Fatal(_) => ProposeError::Failed(EtcdError::Stopped),
    }
}
