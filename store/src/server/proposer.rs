//! Group commit: client writes that arrive while a proposal is in flight are
//! batched into the next Raft entry, so one log fsync covers many requests.
//! A write that finds nothing in flight and nothing queued is proposed from
//! its own task: a lone client pays no hand-off to the batching task.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use cairn_proto::cairnpb::{write_response, WriteRequest, WriteResponse};
use openraft::error::{ClientWriteError, RaftError};
use prost::Message;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use super::batch::Batches;
use crate::error::EtcdError;
use crate::metrics::METRICS;
use crate::raft::types::{NodeId, Proposal, Raft, TypeConfig};

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

type Answer = Result<WriteResponse, ProposeError>;
type Reply = oneshot::Sender<Answer>;

#[derive(Clone)]
pub struct Proposer {
    raft: Raft,
    queue: mpsc::Sender<(WriteRequest, Reply)>,
    in_flight: Arc<Semaphore>,
    timeout: Duration,
}

impl Proposer {
    pub fn start(raft: Raft, timeout: Duration) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE_DEPTH);
        let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        tokio::spawn(batch_loop(raft.clone(), receiver, in_flight.clone()));
        Self { raft, queue, in_flight, timeout }
    }

    /// Proposes one write on this member, which must be the leader.
    pub async fn propose(&self, request: WriteRequest) -> Result<WriteResponse, ProposeError> {
        if self.queue.capacity() == QUEUE_DEPTH {
            if let Ok(permit) = self.in_flight.clone().try_acquire_owned() {
                return self.propose_alone(request, permit).await;
            }
        }
        let (reply, response) = oneshot::channel();
        self.queue.send((request, reply)).await.map_err(|_| ProposeError::Failed(EtcdError::Stopped))?;
        self.answer(response).await
    }

    /// Proposes writes that a follower forwarded together: they are queued
    /// at once, so that they share an entry. Answers are in request order.
    pub async fn propose_all(&self, requests: Vec<WriteRequest>) -> Vec<Result<WriteResponse, ProposeError>> {
        // A lone write may take the fast path.
        let requests = match <[WriteRequest; 1]>::try_from(requests) {
            Ok([request]) => return vec![self.propose(request).await],
            Err(requests) => requests,
        };
        // Room for all is reserved first, so that no other sender's request
        // comes between them in the queue.
        let Ok(slots) = self.queue.reserve_many(requests.len()).await else {
            return requests.iter().map(|_| Err(ProposeError::Failed(EtcdError::Stopped))).collect();
        };
        let responses: Vec<_> = slots
            .zip(requests)
            .map(|(slot, request)| {
                let (reply, response) = oneshot::channel();
                slot.send((request, reply));
                response
            })
            .collect();
        futures::future::join_all(responses.into_iter().map(|response| self.answer(response))).await
    }

    async fn answer(&self, response: oneshot::Receiver<Answer>) -> Answer {
        match tokio::time::timeout(self.timeout, response).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ProposeError::Failed(EtcdError::Stopped)),
            Err(_) => Err(ProposeError::Failed(EtcdError::Timeout)),
        }
    }

    async fn propose_alone(
        &self,
        request: WriteRequest,
        permit: OwnedSemaphorePermit,
    ) -> Result<WriteResponse, ProposeError> {
        let proposed = tokio::time::timeout(self.timeout, propose_batch(&self.raft, vec![request], permit)).await;
        match proposed {
            Ok(Ok(mut responses)) => {
                responses.pop().ok_or_else(|| ProposeError::Failed(EtcdError::Internal("empty write response".into())))
            }
            Ok(Err(err)) => Err(err),
            Err(_) => Err(ProposeError::Failed(EtcdError::Timeout)),
        }
    }
}

async fn batch_loop(raft: Raft, receiver: mpsc::Receiver<(WriteRequest, Reply)>, in_flight: Arc<Semaphore>) {
    let mut batches = Batches::new(receiver, in_flight, None, |(request, _)| request.encoded_len());
    while let Some((batch, permit)) = batches.next().await {
        let raft = raft.clone();
        tokio::spawn(async move {
            let (requests, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
            match propose_batch(&raft, requests, permit).await {
                Ok(responses) => {
                    for (reply, response) in replies.into_iter().zip(responses) {
                        let _ = reply.send(Ok(response));
                    }
                }
                Err(err) => {
                    for reply in replies {
                        let _ = reply.send(Err(err.clone()));
                    }
                }
            }
        });
    }
}

/// Proposes `requests` as one entry; `permit` is released once it committed.
async fn propose_batch(
    raft: &Raft,
    requests: Vec<WriteRequest>,
    permit: OwnedSemaphorePermit,
) -> Result<Vec<WriteResponse>, ProposeError> {
    let count = requests.len();
    METRICS.batches.fetch_add(1, Ordering::Relaxed);
    METRICS.batch_requests.fetch_add(count as u64, Ordering::Relaxed);
    let pending = Pending::new(count);
    let proposed = std::time::Instant::now();
    let outcome = raft.client_write(Proposal(requests)).await;
    METRICS.proposal_commit.observe(proposed.elapsed());
    drop(pending);
    drop(permit);
    match outcome {
        Ok(written) => Ok(written.data.0),
        Err(err) => {
            METRICS.proposals_failed.fetch_add(count as u64, Ordering::Relaxed);
            Err(propose_error(err))
        }
    }
}

/// Requests counted as pending until committed, failed or abandoned.
struct Pending(usize);

impl Pending {
    fn new(count: usize) -> Self {
        METRICS.proposals_pending.fetch_add(count as i64, Ordering::Relaxed);
        Pending(count)
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        METRICS.proposals_pending.fetch_sub(self.0 as i64, Ordering::Relaxed);
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
