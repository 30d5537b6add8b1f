//! Group commit: client writes that arrive while a proposal is in flight are
//! batched into the next Raft entry, so one log fsync covers many requests.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use cairn_proto::cairnpb::{write_response, WriteRequest, WriteResponse};
use openraft::error::{ClientWriteError, RaftError};
use prost::Message;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::error::EtcdError;
use crate::metrics::METRICS;
use crate::raft::types::{Applied, NodeId, Proposal, Raft, TypeConfig};

/// Upper bound of requests in one entry.
const MAX_BATCH_REQUESTS: usize = 1024;
/// Upper bound of one entry's requests in bytes (a single larger request still
/// goes alone): with `--max-request-bytes` requests of 1.5 MiB, a count bound
/// alone would make entries that no peer message could carry.
pub const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;
/// Proposals in flight at once; the next batch accumulates meanwhile.
const MAX_IN_FLIGHT: usize = 1;
/// Requests waiting for a batch; senders wait beyond this (backpressure).
const QUEUE_DEPTH: usize = 16 * 1024;

/// Why a proposal did not produce a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProposeError {
    /// This member is not the leader; nothing was appended, so a retry is safe.
    NotLeader(Option<NodeId>),
    /// The outcome is unknown or failed for good.
    Failed(EtcdError),
}

type Reply = oneshot::Sender<Result<WriteResponse, ProposeError>>;

#[derive(Clone)]
pub struct Proposer {
    queue: mpsc::Sender<(WriteRequest, Reply)>,
    timeout: Duration,
}

impl Proposer {
    pub fn start(raft: Raft, timeout: Duration) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE_DEPTH);
        tokio::spawn(batch_loop(raft, receiver));
        Self { queue, timeout }
    }

    /// Proposes one write on this member, which must be the leader.
    pub async fn propose(&self, request: WriteRequest) -> Result<WriteResponse, ProposeError> {
        let (reply, response) = oneshot::channel();
        self.queue.send((request, reply)).await.map_err(|_| ProposeError::Failed(EtcdError::Stopped))?;
        match tokio::time::timeout(self.timeout, response).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ProposeError::Failed(EtcdError::Stopped)),
            Err(_) => Err(ProposeError::Failed(EtcdError::Timeout)),
        }
    }
}

async fn batch_loop(raft: Raft, mut receiver: mpsc::Receiver<(WriteRequest, Reply)>) {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    // A request that did not fit the last batch: the first of the next.
    let mut carried = None;
    loop {
        let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
        let first = match carried.take() {
            Some(first) => first,
            None => match receiver.recv().await {
                Some(first) => first,
                None => return,
            },
        };
        let mut bytes = first.0.encoded_len();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_REQUESTS {
            let Ok(next) = receiver.try_recv() else { break };
            bytes += next.0.encoded_len();
            if bytes > MAX_BATCH_BYTES {
                carried = Some(next);
                break;
            }
            batch.push(next);
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            let (requests, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
            let count = requests.len();
            METRICS.batches.fetch_add(1, Ordering::Relaxed);
            METRICS.batch_requests.fetch_add(count as u64, Ordering::Relaxed);
            METRICS.proposals_pending.fetch_add(count as i64, Ordering::Relaxed);
            let proposed = std::time::Instant::now();
            let outcome = raft.client_write(Proposal(requests)).await;
            METRICS.proposal_commit.observe(proposed.elapsed());
            METRICS.proposals_pending.fetch_sub(count as i64, Ordering::Relaxed);
            if outcome.is_err() {
                METRICS.proposals_failed.fetch_add(count as u64, Ordering::Relaxed);
            }
            drop(permit);
            match outcome {
                Ok(written) => {
                    let Applied(responses) = written.data;
                    for (reply, response) in replies.into_iter().zip(responses) {
                        let _ = reply.send(Ok(response));
                    }
                }
                Err(err) => {
                    let err = propose_error(err);
                    for reply in replies {
                        let _ = reply.send(Err(err.clone()));
                    }
                }
            }
        });
    }
}

fn propose_error(err: RaftError<TypeConfig, ClientWriteError<TypeConfig>>) -> ProposeError {
    match err {
        // Not appended (or this member's leader lease lapsed first): a retry is safe.
        RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => ProposeError::NotLeader(forward.leader_id),
        // Appended, then dropped here for another leader's log: it may still commit, so the
        // outcome is unknown, as etcd's "leader changed" says.
        RaftError::APIError(ClientWriteError::LogEntryDiscarded(_)) => ProposeError::Failed(EtcdError::LeaderChanged),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(err)) => {
            ProposeError::Failed(EtcdError::Internal(err.to_string()))
        }
        RaftError::APIError(ClientWriteError::PreconditionFailed(err)) => {
            ProposeError::Failed(EtcdError::Internal(err.to_string()))
        }
        RaftError::Fatal(fatal) => {
            tracing::warn!(error = %fatal, "proposal failed");
            // The entry may have been appended before the leader stepped down.
            ProposeError::Failed(EtcdError::LeaderChanged)
        }
    }
}

/// A write response as the client sees it: success, or etcd's error.
pub fn into_result(response: WriteResponse) -> Result<write_response::Response, tonic::Status> {
    match response.response {
        Some(write_response::Response::Error(err)) => Err(EtcdError::relayed(err).into()),
        Some(other) => Ok(other),
        None => Err(EtcdError::Internal("empty write response".into()).into()),
    }
}
