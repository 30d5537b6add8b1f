//! The peer gRPC service: Raft RPCs, and requests forwarded by followers.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use cairn_proto::cairnpb::raft_peer_server::RaftPeer;
use cairn_proto::cairnpb::{
    write_response, MembershipChange, MembershipChangeResult, ProposeRequest, ProposeResponse, RaftPayload,
    ReadIndexRequest, ReadIndexResponse, WriteResponse,
};
use cairn_proto::etcdserverpb::{
    HashKvRequest, HashKvResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse, MemberListRequest, MemberListResponse,
};
use futures::{Stream, StreamExt};
use openraft::error::RaftError;
use openraft::raft::{AppendEntriesResponse, StreamAppendError};
use openraft_legacy::network_v1::ChunkedSnapshotReceiver;
use prost::bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch as signal;
use tonic::{Request, Response, Status, Streaming};

use super::node::Node;
use super::proposer::ProposeError;
use crate::error::EtcdError;
use crate::raft::link;
use crate::raft::types::{decode, encode, TypeConfig};

#[derive(Clone)]
pub struct PeerService {
    pub node: Arc<Node>,
    /// Ends the long-lived AppendEntries streams, so that a graceful stop is not held up by them.
    pub stopped: signal::Receiver<bool>,
}

/// The answers on a long-lived peer stream.
type Answers<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;
type AnswerStream = Answers<RaftPayload>;
type ProposeAnswers = Answers<ProposeResponse>;

impl PeerService {
    fn check_cluster(&self, cluster_id: u64) -> Result<(), Status> {
        if cluster_id != self.node.cluster_id {
            return Err(EtcdError::ClusterIdMismatch { ours: self.node.cluster_id, theirs: cluster_id }.into());
        }
        Ok(())
    }

    async fn raft_call<Req, Resp, Fut>(
        &self,
        payload: RaftPayload,
        call: impl FnOnce(Req) -> Fut,
    ) -> Result<RaftPayload, Status>
    where
        Req: DeserializeOwned,
        Resp: Serialize,
        Fut: std::future::Future<Output = Resp>,
    {
        self.check_cluster(payload.cluster_id)?;
        let request: Req = decode(&payload.data).map_err(|err| EtcdError::BadPeerMessage(err.to_string()))?;
        let result = call(request).await;
        let data = encode(&result).map_err(|err| EtcdError::Internal(err.to_string()))?;
        Ok(RaftPayload { cluster_id: self.node.cluster_id, data: data.into() })
    }

    async fn append_entries_payload(&self, payload: RaftPayload) -> Result<RaftPayload, Status> {
        let node = self.node.clone();
        self.raft_call(payload, |req| async move {
            let answer = node.raft.append_entries(req).await;
            if matches!(&answer, Ok(answer) if !matches!(answer, AppendEntriesResponse::HigherVote(_))) {
                node.leader_contact.touch();
            }
            answer
        })
        .await
    }

    /// Answers each request of a long-lived stream before reading the next, so
    /// the sender keeps one in flight per stream. The first error ends the
    /// stream, and so does this member's stop.
    fn answer_in_turn<Req, Resp, Answer>(
        &self,
        requests: impl Stream<Item = Result<Req, Status>> + Send + 'static,
        answer: fn(PeerService, Req) -> Answer,
    ) -> Answers<Resp>
    where
        Req: Send + 'static,
        Resp: Send + 'static,
        Answer: Future<Output = Result<Resp, Status>> + Send + 'static,
    {
        let requests = Box::pin(requests);
        let answers = futures::stream::unfold((self.clone(), requests), move |(service, mut requests)| async move {
            let answer = match requests.next().await {
                Some(Ok(request)) => answer(service.clone(), request).await,
                None => return None,
                Some(Err(status)) => Err(status),
            };
            Some((answer, (service, requests)))
        });
        Box::pin(answers.take_until(super::stopped_signal(self.stopped.clone())))
    }

    async fn answer_read_index(&self, request: ReadIndexRequest) -> Result<ReadIndexResponse, Status> {
        self.check_cluster(request.cluster_id)?;
        let index = self.node.reads.read_index().await.map_err(status_of)?;
        Ok(ReadIndexResponse { index })
    }

    /// Proposes what a follower forwarded; an answer for each request, in order.
    async fn answer_proposals(&self, request: ProposeRequest) -> ProposeResponse {
        let answers = self.node.proposer.propose_all(request.requests).await;
        // Read after every answer: each applied write is at or below it.
        let applied_index = self.node.state.applied_index();
        let responses = answers
            .into_iter()
            .map(|answer| match answer {
                Ok(response) => response,
                Err(ProposeError::NotLeader(_)) => error_response(&EtcdError::NotLeader),
                Err(ProposeError::Failed(err)) => error_response(&err),
            })
            .collect();
        ProposeResponse { responses, applied_index }
    }
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    type AppendEntriesStream = AnswerStream;

    async fn append_entries(&self, request: Request<Streaming<RaftPayload>>) -> Result<Response<AnswerStream>, Status> {
        let answers = self.answer_in_turn(request.into_inner(), |service, payload| async move {
            service.append_entries_payload(payload).await
        });
        Ok(Response::new(answers))
    }

    type StreamAppendStream = AnswerStream;

    /// Replication: requests are handed to openraft as they arrive (the leader
    /// makes each once the last is answered, `raft::in_turn`), and each answer
    /// goes back, in order, once its entries are durable here.
    /// A message that does not decode, or is from another cluster, ends the stream.
    async fn stream_append(&self, request: Request<Streaming<RaftPayload>>) -> Result<Response<AnswerStream>, Status> {
        Ok(Response::new(replication_answers(self.node.clone(), self.stopped.clone(), request.into_inner())))
    }

    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let raft = self.node.raft.clone();
        self.raft_call(request.into_inner(), |req| async move { raft.vote(req).await }).await.map(Response::new)
    }

    async fn pre_vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let raft = self.node.raft.clone();
        self.raft_call(request.into_inner(), |req| async move { raft.pre_vote(req).await }).await.map(Response::new)
    }

    /// Answered as the other Raft RPCs are: a `Result` with a `RaftError`.
    async fn transfer_leader(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let raft = self.node.raft.clone();
        self.raft_call(request.into_inner(), |req| async move {
            raft.handle_transfer_leader(req).await.map_err(RaftError::<TypeConfig>::Fatal)
        })
        .await
        .map(Response::new)
    }

    async fn install_snapshot(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let raft = self.node.raft.clone();
        self.raft_call(request.into_inner(), |req| async move { raft.install_snapshot(req).await })
            .await
            .map(Response::new)
    }

    type ProposeStreamStream = ProposeAnswers;

    /// Forwarded writes on a long-lived stream, as AppendEntries are.
    async fn propose_stream(
        &self,
        request: Request<Streaming<ProposeRequest>>,
    ) -> Result<Response<ProposeAnswers>, Status> {
        let answers = self.answer_in_turn(request.into_inner(), |service, request| async move {
            Ok(service.answer_proposals(request).await)
        });
        Ok(Response::new(answers))
    }

    async fn propose_batch(&self, request: Request<ProposeRequest>) -> Result<Response<ProposeResponse>, Status> {
        Ok(Response::new(self.answer_proposals(request.into_inner()).await))
    }

    async fn lease_keep_alive(
        &self,
        request: Request<LeaseKeepAliveRequest>,
    ) -> Result<Response<LeaseKeepAliveResponse>, Status> {
        if !self.node.is_leader() {
            return Err(EtcdError::NotLeader.into());
        }
        let id = request.into_inner().id;
        let ttl = self.node.keep_alive_here(id).await.map_err(status_of)?;
        Ok(Response::new(LeaseKeepAliveResponse { header: None, id, ttl }))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        if !self.node.is_leader() {
            return Err(EtcdError::NotLeader.into());
        }
        Ok(Response::new(self.node.time_to_live_here(&request.into_inner())))
    }

    async fn change_members(
        &self,
        request: Request<MembershipChange>,
    ) -> Result<Response<MembershipChangeResult>, Status> {
        Ok(Response::new(self.node.change_members_result(request.into_inner()).await))
    }

    async fn members(&self, _: Request<MemberListRequest>) -> Result<Response<MemberListResponse>, Status> {
        let header = self.node.header(self.node.state.current_revision());
        Ok(Response::new(MemberListResponse { header, members: self.node.member_list() }))
    }

    async fn hash_kv(&self, request: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        let revision = request.into_inner().revision;
        Ok(Response::new(super::corrupt::hash_kv_response(&self.node, revision).await?))
    }

    async fn read_index(&self, request: Request<ReadIndexRequest>) -> Result<Response<ReadIndexResponse>, Status> {
        self.answer_read_index(request.into_inner()).await.map(Response::new)
    }

    type ReadIndexStreamStream = Answers<ReadIndexResponse>;

    /// Read-index requests on a long-lived stream, as forwarded writes. An
    /// error (this member no longer leads) ends the stream.
    async fn read_index_stream(
        &self,
        request: Request<Streaming<ReadIndexRequest>>,
    ) -> Result<Response<Answers<ReadIndexResponse>>, Status> {
        let answers = self.answer_in_turn(request.into_inner(), |service, request| async move {
            service.answer_read_index(request).await
        });
        Ok(Response::new(answers))
    }
}

/// openraft's answers to the requests of a replication stream, on gRPC or on
/// a link. A request that does not decode, or is from another cluster, ends
/// the requests; this member's stop ends both.
fn replication_answers(
    node: Arc<Node>,
    stopped: signal::Receiver<bool>,
    requests: impl Stream<Item = Result<RaftPayload, Status>> + Send + 'static,
) -> AnswerStream {
    let cluster_id = node.cluster_id;
    // openraft reads the requests on a task of its own, which would keep the
    // stream (and a stopping server) open after the answers end: stop both.
    let requests = requests.take_until(super::stopped_signal(stopped.clone()));
    let requests = requests.scan((), move |_, message| {
        let request = match message {
            Ok(payload) if payload.cluster_id == cluster_id => decode(&payload.data)
                .map_err(|err| tracing::warn!(error = %err, "a replication request did not decode"))
                .ok(),
            Ok(payload) => {
                tracing::warn!(theirs = payload.cluster_id, "a replication request from another cluster");
                None
            }
            Err(_) => None,
        };
        std::future::ready(request)
    });
    let answers = node.raft.stream_append(requests).map(move |answer| match answer {
        Ok(result) => {
            if !matches!(result, Err(StreamAppendError::HigherVote(_))) {
                node.leader_contact.touch();
            }
            encode(&result)
                .map(|data| RaftPayload { cluster_id, data: data.into() })
                .map_err(|err| Status::from(EtcdError::Internal(err.to_string())))
        }
        Err(fatal) => Err(EtcdError::PeerUnavailable(fatal.to_string()).into()),
    });
    Box::pin(answers.take_until(super::stopped_signal(stopped)))
}

/// How long a link's dialer has to send its cluster id.
const LINK_HELLO_TIMEOUT: Duration = Duration::from_secs(10);

impl PeerService {
    /// Serves a link ([`link`]) whose magic has been read: the answers of the
    /// kind's gRPC stream, on a connection of its own. A stopping member closes
    /// it unanswered, which a replication link's dialer takes as unreachable
    /// (and backs off), where a link taken would end at once and be dialed
    /// again at once.
    pub async fn serve_link(self, kind: link::Kind, mut io: impl link::Io) {
        let node = self.node.clone();
        let theirs = match tokio::time::timeout(LINK_HELLO_TIMEOUT, link::read_cluster_id(&mut io)).await {
            Ok(Ok(theirs)) => theirs,
            _ => return,
        };
        if *self.stopped.borrow() {
            return;
        }
        let answer = if theirs == node.cluster_id { link::ACCEPTED } else { link::OTHER_CLUSTER };
        if io.write_all(&[answer]).await.is_err() || io.flush().await.is_err() || answer != link::ACCEPTED {
            if answer == link::OTHER_CLUSTER {
                tracing::warn!(theirs, ?kind, "a peer link from another cluster");
            }
            return;
        }
        let (reader, writer) = tokio::io::split(io);
        let requests = link::frames(reader);
        let answers: Answers<Bytes> = match kind {
            link::Kind::Replication => {
                let cluster_id = node.cluster_id;
                let requests = requests.map(move |data| data.map(|data| RaftPayload { cluster_id, data }));
                let answers = replication_answers(node, self.stopped.clone(), requests);
                Box::pin(answers.map(|answer| answer.map(|payload| payload.data)))
            }
            link::Kind::Propose => encoded(self.answer_in_turn(decoded(requests), |service, request| async move {
                Ok(service.answer_proposals(request).await)
            })),
            link::Kind::ReadIndex => encoded(self.answer_in_turn(decoded(requests), |service, request| async move {
                service.answer_read_index(request).await
            })),
        };
        // A dialer that does not read its answers must not hold this task past the stop.
        tokio::select! {
            _ = super::stopped_signal(self.stopped.clone()) => {}
            _ = link::write_frames(writer, answers) => {}
        }
    }
}

/// A link's frames as the messages of a gRPC stream; one that does not
/// decode ends the link.
fn decoded<M: prost::Message + Default>(
    frames: impl Stream<Item = Result<Bytes, Status>> + Send + 'static,
) -> impl Stream<Item = Result<M, Status>> + Send + 'static {
    frames.map(|frame| {
        frame.and_then(|data| M::decode(data).map_err(|err| EtcdError::BadPeerMessage(err.to_string()).into()))
    })
}

fn encoded<M: prost::Message + 'static>(answers: Answers<M>) -> Answers<Bytes> {
    Box::pin(answers.map(|answer| answer.map(|message| Bytes::from(message.encode_to_vec()))))
}

fn status_of(err: ProposeError) -> Status {
    match err {
        ProposeError::NotLeader(_) => EtcdError::NotLeader.into(),
        ProposeError::Failed(err) => err.into(),
    }
}

fn error_response(err: &EtcdError) -> WriteResponse {
    WriteResponse { response: Some(write_response::Response::Error(err.to_write_error())) }
}
