//! The Raft transport: openraft's RPCs over gRPC to the peer URLs, and
//! replication, forwarded writes and read-index requests on links of their
//! own to the same URLs ([`link`]).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_proto::cairnpb::raft_peer_client::RaftPeerClient;
use cairn_proto::cairnpb::{ProposeRequest, ProposeResponse, RaftPayload, ReadIndexRequest, ReadIndexResponse};
use futures::future::{BoxFuture, FutureExt};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use openraft::error::decompose::DecomposeResult;
use openraft::error::{
    Infallible, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed, StreamingError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::StreamAppendResult;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest, TransferLeaderResponse,
    VoteRequest, VoteResponse,
};
use openraft::OptionalSend;
use openraft_legacy::network_v1::{InstallSnapshotError, InstallSnapshotRequest, InstallSnapshotResponse};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Status, Streaming};

use super::in_turn::{answers_in_turn, requests_in_turn, Heard, Turns};
use super::link::{self, CallLink};
use super::types::{decode, encode, Member, NodeId, Snapshot, TypeConfig, Vote};
use crate::metrics::METRICS;
use crate::tls::PeerDialer;

/// Peer messages can carry many log entries; allow well past a client request.
pub const MAX_PEER_MESSAGE_BYTES: usize = 256 * 1024 * 1024;
/// A snapshot travels in InstallSnapshot chunks of this size when openraft names none.
const SNAPSHOT_CHUNK_BYTES: usize = 4 * 1024 * 1024;

/// How long a replication stream may wait for the answer to its request.
const STREAM_ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// A failed peer call as openraft takes it: a peer that is not there backs off.
fn rpc_error<E: std::error::Error>(status: Status) -> RPCError<TypeConfig, E> {
    if status.code() == tonic::Code::Unavailable {
        RPCError::Unreachable(Unreachable::new(&status))
    } else {
        RPCError::Network(NetworkError::new(&status))
    }
}

/// Lets the chaos harness route each link through its own proxy: a list of
/// `advertised-peer-url=url-to-dial`, comma-separated. Not for production.
pub const DIAL_OVERRIDE_ENV: &str = "CAIRN_PEER_DIAL_OVERRIDE";

/// Idle streams kept per peer and kind. AppendEntries: heartbeats, one at a
/// time per peer. Forwarded writes and read-index requests: as many as a
/// follower keeps in flight.
const IDLE_STREAMS_PER_PEER: usize = 4;
/// How long a peer that lacks a kind of stream (or the replication link) gets
/// unary calls (or gRPC) before it is tried again.
const ASK_AGAIN_AFTER: Duration = Duration::from_secs(30);

/// gRPC channels to peers, shared by Raft and by request forwarding, and the
/// idle AppendEntries (heartbeat) and forwarding streams on them.
#[derive(Default)]
pub struct PeerClients {
    /// Every member of the latest membership, as Raft knows them.
    members: Mutex<HashMap<NodeId, Member>>,
    channels: Mutex<HashMap<String, Channel>>,
    idle_streams: IdleStreams<ExchangeStream<RaftPayload, RaftPayload>>,
    idle_forwards: IdleStreams<ExchangeStream<ProposeRequest, ProposeResponse>>,
    idle_read_indexes: IdleStreams<ExchangeStream<ReadIndexRequest, ReadIndexResponse>>,
    /// Peers of an older build, which replicate on gRPC streams instead.
    lacking_replication_links: Lacking,
    dial_overrides: HashMap<String, String>,
    /// TLS for `https://` peer URLs.
    dialer: Option<Arc<PeerDialer>>,
}

/// A peer's client, with the URL it dials (the key of its idle streams).
#[derive(Clone)]
pub struct PeerLink {
    url: String,
    client: RaftPeerClient<Channel>,
    /// Where the peer's links are dialed.
    dial: Arc<link::Dial>,
}

impl PeerLink {
    pub fn into_client(self) -> RaftPeerClient<Channel> {
        self.client
    }
}

/// A long-lived stream of exchanges: a request, then its answer, in turn. A
/// stream goes back to the idle pool only after a whole exchange, so an answer
/// can never be taken for the answer to another request. On a link of its
/// own, or on a gRPC stream to a peer of an older build.
enum ExchangeStream<Req, Resp> {
    Link(CallLink, std::marker::PhantomData<fn(Req) -> Resp>),
    Grpc { requests: mpsc::Sender<Req>, answers: Streaming<Resp> },
}

impl<Req: prost::Message, Resp: prost::Message + Default> ExchangeStream<Req, Resp> {
    /// Opens a gRPC stream with `call`, the client's streaming RPC.
    async fn open_grpc<F, Fut>(call: F) -> Result<Self, Status>
    where
        F: FnOnce(ReceiverStream<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Streaming<Resp>>, Status>>,
    {
        let (requests, outgoing) = mpsc::channel(1);
        let answers = call(ReceiverStream::new(outgoing)).await?.into_inner();
        Ok(ExchangeStream::Grpc { requests, answers })
    }

    async fn exchange(&mut self, request: Req) -> Result<Resp, Status> {
        match self {
            ExchangeStream::Link(link, _) => {
                let answer = link.call(&request.encode_to_vec()).await?;
                Resp::decode(answer).map_err(|err| Status::internal(format!("an answer that does not decode: {err}")))
            }
            ExchangeStream::Grpc { requests, answers } => {
                requests.send(request).await.map_err(|_| Status::unavailable("peer stream closed"))?;
                answers.message().await?.ok_or_else(|| Status::unavailable("peer stream ended"))
            }
        }
    }

    /// Whether an idle stream has ended: its connection closed (the peer
    /// restarted or stopped), or it holds an answer nobody asked for.
    fn has_ended(&mut self) -> bool {
        match self {
            ExchangeStream::Link(link, _) => link.has_ended(),
            ExchangeStream::Grpc { answers, .. } => answers.message().now_or_never().is_some(),
        }
    }
}

/// Idle streams of one kind by peer URL, and the peers found to lack that
/// kind of stream.
struct IdleStreams<S> {
    idle: Mutex<HashMap<String, Vec<S>>>,
    /// Peers that answered the stream with Unimplemented (an older build).
    lacking: Lacking,
    /// Peers that did not take the stream's kind of link (an older build).
    lacking_links: Lacking,
}

impl<S> Default for IdleStreams<S> {
    fn default() -> Self {
        IdleStreams { idle: Mutex::new(HashMap::new()), lacking: Lacking::default(), lacking_links: Lacking::default() }
    }
}

impl<S> IdleStreams<S> {
    fn take(&self, url: &str) -> Option<S> {
        self.idle.lock().get_mut(url).and_then(Vec::pop)
    }

    fn put(&self, url: &str, stream: S) {
        let mut idle = self.idle.lock();
        let streams = match idle.get_mut(url) {
            Some(streams) => streams,
            None => idle.entry(url.to_string()).or_default(),
        };
        if streams.len() < IDLE_STREAMS_PER_PEER {
            streams.push(stream);
        }
    }

    /// Drops what is kept for peers no longer at any of `urls`.
    fn retain_urls(&self, urls: &HashSet<String>) {
        self.idle.lock().retain(|url, _| urls.contains(url));
        self.lacking.retain_urls(urls);
        self.lacking_links.retain_urls(urls);
    }
}

/// Peers found to lack something this build offers (a kind of stream, the
/// replication link), and until when they are not asked again: a peer may
/// be upgraded in place.
#[derive(Default)]
struct Lacking(Mutex<HashMap<String, Instant>>);

impl Lacking {
    fn lacks(&self, url: &str, now: Instant) -> bool {
        self.0.lock().get(url).is_some_and(|until| now < *until)
    }

    fn mark(&self, url: &str, until: Instant) {
        self.0.lock().insert(url.to_string(), until);
    }

    fn retain_urls(&self, urls: &HashSet<String>) {
        self.0.lock().retain(|url, _| urls.contains(url));
    }

    /// A link of `kind` to the peer, or `None` if the peer lacks it (now, or
    /// when last asked within [`ASK_AGAIN_AFTER`]).
    async fn dial(
        &self,
        peer: &PeerLink,
        kind: link::Kind,
        cluster_id: u64,
    ) -> Result<Option<Box<dyn link::Io>>, Status> {
        if self.lacks(&peer.url, Instant::now()) {
            return Ok(None);
        }
        match link::dial(&peer.dial, kind, cluster_id).await {
            Ok(io) => {
                opened(kind).1.fetch_add(1, Ordering::Relaxed);
                Ok(Some(io))
            }
            Err(link::DialError::Lacking(reason)) => {
                tracing::info!(peer = %peer.url, ?kind, %reason, "using gRPC streams instead of links");
                self.mark(&peer.url, Instant::now() + ASK_AGAIN_AFTER);
                Ok(None)
            }
            Err(err) => Err(Status::unavailable(err.to_string())),
        }
    }
}

/// The counters of streams opened for a kind of link's messages, and of
/// those, links.
fn opened(kind: link::Kind) -> (&'static AtomicU64, &'static AtomicU64) {
    match kind {
        link::Kind::Replication => (&METRICS.append_streams_opened, &METRICS.link_streams_opened),
        link::Kind::Propose => (&METRICS.forward_streams_opened, &METRICS.forward_link_streams_opened),
        link::Kind::ReadIndex => (&METRICS.read_index_streams_opened, &METRICS.read_index_link_streams_opened),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("member {0} has no peer URL")]
    NoPeerUrl(NodeId),
    #[error("invalid peer URL {url}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error(
        "peer URL {0} is https, but no peer TLS is configured (--peer-cert-file, --peer-key-file or --peer-auto-tls)"
    )]
    NoPeerTls(String),
}

impl PeerClients {
    pub fn from_env(dialer: Option<Arc<PeerDialer>>) -> Self {
        let overrides = std::env::var(DIAL_OVERRIDE_ENV).unwrap_or_default();
        let dial_overrides = overrides
            .split(',')
            .filter_map(|pair| pair.split_once('='))
            .map(|(advertised, dial)| (advertised.to_string(), dial.to_string()))
            .collect::<HashMap<_, _>>();
        if !dial_overrides.is_empty() {
            tracing::warn!(links = dial_overrides.len(), "peer URLs are dialed through {DIAL_OVERRIDE_ENV}");
        }
        PeerClients { dial_overrides, dialer, ..PeerClients::default() }
    }

    /// Records the members of a new membership, so that open connections
    /// follow new peer URLs, and drops the channels and idle streams to URLs
    /// that no member has any longer.
    pub fn set_members<'a>(&self, members: impl IntoIterator<Item = (&'a NodeId, &'a Member)>) {
        let members: HashMap<NodeId, Member> = members.into_iter().map(|(id, member)| (*id, member.clone())).collect();
        let urls: HashSet<String> = members
            .values()
            .filter_map(|member| member.peer_urls.first())
            .map(|advertised| self.dial_url(advertised).to_string())
            .collect();
        *self.members.lock() = members;
        self.channels.lock().retain(|url, _| urls.contains(url));
        self.idle_streams.retain_urls(&urls);
        self.idle_forwards.retain_urls(&urls);
        self.idle_read_indexes.retain_urls(&urls);
        self.lacking_replication_links.retain_urls(&urls);
    }

    /// Where a peer URL is dialed.
    fn dial_url<'a>(&'a self, advertised: &'a str) -> &'a str {
        self.dial_overrides.get(advertised).map_or(advertised, String::as_str)
    }

    /// The member as the latest membership has it, if that differs from `known`.
    fn member_if_changed(&self, target: NodeId, known: &Member) -> Option<Member> {
        self.members.lock().get(&target).filter(|current| *current != known).cloned()
    }

    pub fn client(&self, target: NodeId, member: &Member) -> Result<RaftPeerClient<Channel>, PeerError> {
        self.link(target, member).map(PeerLink::into_client)
    }

    pub fn link(&self, target: NodeId, member: &Member) -> Result<PeerLink, PeerError> {
        let advertised = member.peer_urls.first().ok_or(PeerError::NoPeerUrl(target))?;
        let url = self.dial_url(advertised).to_string();
        let bad_url = |url: &str, reason: String| PeerError::BadUrl { url: url.to_string(), reason };
        // The advertised URL says whether the link is TLS and whom to verify;
        // a dial override only changes where to connect.
        let secure = advertised.starts_with("https://");
        let tls = match secure {
            true => {
                let dialer = self.dialer.clone().ok_or_else(|| PeerError::NoPeerTls(advertised.clone()))?;
                let name = http::Uri::try_from(advertised.as_str())
                    .ok()
                    .and_then(|uri| uri.host().map(str::to_string))
                    .ok_or_else(|| bad_url(advertised, "no host".into()))?;
                Some((dialer, name))
            }
            false => None,
        };
        let address = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
        let dialed = http::Uri::try_from(format!("http://{address}")).map_err(|err| bad_url(&url, err.to_string()))?;
        let dial = Arc::new(link::Dial {
            host: dialed.host().ok_or_else(|| bad_url(&url, "no host".into()))?.to_string(),
            port: dialed.port_u16().unwrap_or(if secure { 443 } else { 80 }),
            tls: tls.clone(),
            // A TLS handshake happens inside the connect.
            timeout: Duration::from_millis(if secure { 2000 } else { 500 }),
        });
        let mut channels = self.channels.lock();
        let channel = match channels.get(&url) {
            Some(channel) => channel.clone(),
            None => {
                // tonic adds its own TLS to https:// URIs, so it is given the
                // address as http:// and the dialer's TLS is used instead.
                let endpoint = Endpoint::from_shared(if secure { format!("http://{address}") } else { url.clone() })
                    .map_err(|err| bad_url(&url, err.to_string()))?
                    .connect_timeout(dial.timeout)
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(Duration::from_secs(5));
                let channel = match tls {
                    Some((dialer, name)) => {
                        endpoint.connect_with_connector_lazy(tower::service_fn(move |uri: http::Uri| {
                            let (dialer, name) = (dialer.clone(), name.clone());
                            async move {
                                let host = uri.host().unwrap_or_default().to_string();
                                let stream = dialer.dial(&name, &host, uri.port_u16().unwrap_or(443)).await?;
                                Ok::<_, crate::tls::TlsError>(hyper_util::rt::TokioIo::new(stream))
                            }
                        }))
                    }
                    None => endpoint.connect_lazy(),
                };
                channels.insert(url.clone(), channel.clone());
                channel
            }
        };
        let client = RaftPeerClient::new(channel)
            .max_decoding_message_size(MAX_PEER_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_PEER_MESSAGE_BYTES);
        Ok(PeerLink { url, client, dial })
    }

    /// Opens a replication stream to the peer, sending `requests` and
    /// returning the answers: on a replication link ([`link`]), or on a gRPC
    /// stream to a peer of an older build, which lacks the link.
    async fn open_replication(
        &self,
        peer: &PeerLink,
        cluster_id: u64,
        requests: impl Stream<Item = RaftPayload> + Send + 'static,
    ) -> Result<BoxStream<'static, Result<RaftPayload, Status>>, Status> {
        let replication = link::Kind::Replication;
        if let Some(io) = self.lacking_replication_links.dial(peer, replication, cluster_id).await? {
            return Ok(link::exchange(io, cluster_id, requests).boxed());
        }
        let answers = peer.client.clone().stream_append(requests).await?;
        Ok(answers.into_inner().boxed())
    }

    /// Sends one AppendEntries on an idle stream to the peer, or on a new one.
    async fn append_entries(&self, link: &PeerLink, payload: RaftPayload) -> Result<RaftPayload, Status> {
        if let Some(mut stream) = self.idle_streams.take(&link.url) {
            if let Ok(answer) = stream.exchange(payload.clone()).await {
                self.idle_streams.put(&link.url, stream);
                return Ok(answer);
            }
            // An idle stream may have died with its connection (the peer
            // restarted). AppendEntries is idempotent: resend on a new stream.
        }
        let mut client = link.client.clone();
        let mut stream = ExchangeStream::open_grpc(|requests| client.append_entries(requests)).await?;
        METRICS.append_streams_opened.fetch_add(1, Ordering::Relaxed);
        let answer = stream.exchange(payload).await?;
        self.idle_streams.put(&link.url, stream);
        Ok(answer)
    }

    /// Forwards writes to the leader on a long-lived stream (`exchange`).
    pub async fn propose(
        &self,
        link: &PeerLink,
        cluster_id: u64,
        request: ProposeRequest,
    ) -> Result<ProposeResponse, Status> {
        self.exchange(
            &self.idle_forwards,
            (link::Kind::Propose, cluster_id),
            link,
            request,
            |mut client, requests| async move { client.propose_stream(requests).await },
            |mut client, request| async move { client.propose_batch(request).await },
        )
        .await
    }

    /// Asks the leader for a read index on a long-lived stream (`exchange`).
    pub async fn read_index(&self, link: &PeerLink, request: ReadIndexRequest) -> Result<ReadIndexResponse, Status> {
        self.exchange(
            &self.idle_read_indexes,
            (link::Kind::ReadIndex, request.cluster_id),
            link,
            request,
            |mut client, requests| async move { client.read_index_stream(requests).await },
            |mut client, request| async move { client.read_index(request).await },
        )
        .await
    }

    /// Sends `request` to the leader on an idle stream of `idle`, or on a new
    /// one: a link of `kind`, or, to a leader of an older build, a gRPC stream
    /// that `open` opens. No per-call headers or stream setup, as for
    /// AppendEntries (a unary call took a third longer each way,
    /// docs/benchmarks.md). Unlike an AppendEntries, a request is never sent
    /// twice: an error after sending leaves its outcome unknown. An idle stream
    /// that has ended is not used. A leader of an older build still, which
    /// lacks the stream, gets the request in `unary` instead, and its later
    /// requests too for a while.
    async fn exchange<Req, Resp, Open, Opened, Unary, Answered>(
        &self,
        idle: &IdleStreams<ExchangeStream<Req, Resp>>,
        (kind, cluster_id): (link::Kind, u64),
        link: &PeerLink,
        request: Req,
        open: Open,
        unary: Unary,
    ) -> Result<Resp, Status>
    where
        Open: FnOnce(RaftPeerClient<Channel>, ReceiverStream<Req>) -> Opened,
        Opened: Future<Output = Result<tonic::Response<Streaming<Resp>>, Status>>,
        Unary: FnOnce(RaftPeerClient<Channel>, Req) -> Answered,
        Answered: Future<Output = Result<tonic::Response<Resp>, Status>>,
        Req: prost::Message,
        Resp: prost::Message + Default,
    {
        let answer_unary = move |request: Req| async move {
            unary(link.client.clone(), request).await.map(tonic::Response::into_inner)
        };
        if idle.lacking.lacks(&link.url, Instant::now()) {
            return answer_unary(request).await;
        }
        let idle_stream = std::iter::from_fn(|| idle.take(&link.url)).find_map(|mut stream| {
            // An ended stream is dropped, and the next idle one is tried.
            (!stream.has_ended()).then_some(stream)
        });
        let mut stream = match idle_stream {
            Some(stream) => stream,
            None => {
                let stream = match idle.lacking_links.dial(link, kind, cluster_id).await? {
                    Some(io) => ExchangeStream::Link(CallLink::new(io), std::marker::PhantomData),
                    None => match ExchangeStream::open_grpc(|requests| open(link.client.clone(), requests)).await {
                        Ok(stream) => stream,
                        // Nothing was sent yet.
                        Err(status) if status.code() == tonic::Code::Unimplemented => {
                            idle.lacking.mark(&link.url, Instant::now() + ASK_AGAIN_AFTER);
                            return answer_unary(request).await;
                        }
                        Err(status) => return Err(status),
                    },
                };
                opened(kind).0.fetch_add(1, Ordering::Relaxed);
                stream
            }
        };
        let answer = stream.exchange(request).await?;
        idle.put(&link.url, stream);
        Ok(answer)
    }
}

#[derive(Clone)]
pub struct Network {
    pub cluster_id: u64,
    pub peers: Arc<PeerClients>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> Self::Network {
        Connection {
            target,
            member: node.clone(),
            link: self.peers.link(target, node),
            peers: self.peers.clone(),
            cluster_id: self.cluster_id,
        }
    }
}

pub struct Connection {
    target: NodeId,
    /// The member as this connection knows it; `link` dials its peer URL.
    member: Member,
    link: Result<PeerLink, PeerError>,
    peers: Arc<PeerClients>,
    cluster_id: u64,
}

#[derive(Clone, Copy)]
enum Rpc {
    AppendEntries,
    Vote,
    PreVote,
    TransferLeader,
    InstallSnapshot,
}

impl Connection {
    /// The link to the target's peer URL as the latest membership has it:
    /// openraft keeps a replication stream (and its connection) across a
    /// membership change that only gives a member new peer URLs.
    fn refresh_link(&mut self) {
        if let Some(member) = self.peers.member_if_changed(self.target, &self.member) {
            self.link = self.peers.link(self.target, &member);
            self.member = member;
        }
    }

    async fn call<Req, Resp, E>(
        &mut self,
        rpc: Rpc,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<TypeConfig, RaftError<TypeConfig, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        self.refresh_link();
        let link = match &self.link {
            Ok(link) => link,
            Err(err) => return Err(RPCError::Unreachable(Unreachable::new(err))),
        };
        let data = encode(req).map_err(|err| RPCError::Network(NetworkError::new(&err)))?;
        let payload = RaftPayload { cluster_id: self.cluster_id, data: data.into() };
        let peers = &self.peers;
        let call = async move {
            match rpc {
                Rpc::AppendEntries => peers.append_entries(link, payload).await,
                Rpc::Vote => link.client.clone().vote(payload).await.map(tonic::Response::into_inner),
                Rpc::PreVote => link.client.clone().pre_vote(payload).await.map(tonic::Response::into_inner),
                Rpc::TransferLeader => {
                    link.client.clone().transfer_leader(payload).await.map(tonic::Response::into_inner)
                }
                Rpc::InstallSnapshot => {
                    link.client.clone().install_snapshot(payload).await.map(tonic::Response::into_inner)
                }
            }
        };
        let started = std::time::Instant::now();
        let response = match tokio::time::timeout(option.hard_ttl(), call).await {
            Ok(Ok(response)) => {
                METRICS.observe_peer_rtt(self.target, started.elapsed());
                response
            }
            Ok(Err(status)) => return Err(rpc_error(status)),
            Err(elapsed) => return Err(RPCError::Network(NetworkError::new(&elapsed))),
        };
        let result: Result<Resp, RaftError<TypeConfig, E>> =
            decode(&response.data).map_err(|err| RPCError::Network(NetworkError::new(&err)))?;
        result.map_err(|err| RPCError::RemoteError(RemoteError::new(self.target, err)))
    }
}

impl RaftNetworkV2<TypeConfig> for Connection {
    type SnapshotData = tokio::fs::File;

    async fn append_entries(
        &mut self,
        req: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call::<_, _, Infallible>(Rpc::AppendEntries, &req, &option).await.decompose_infallible()
    }

    async fn vote(
        &mut self,
        req: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call::<_, _, Infallible>(Rpc::Vote, &req, &option).await.decompose_infallible()
    }

    async fn pre_vote(
        &mut self,
        req: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call::<_, _, Infallible>(Rpc::PreVote, &req, &option).await.decompose_infallible()
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call::<_, _, Infallible>(Rpc::TransferLeader, &req, &option).await.decompose_infallible()
    }

    /// Replication on one gRPC stream, one AppendEntries at a time, each made
    /// once openraft has taken in the answer to the last (`super::in_turn` says
    /// why). A stream that owes an answer and hears nothing for
    /// [`STREAM_ANSWER_TIMEOUT`] fails, and openraft opens a new one.
    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<
        's,
        Result<BoxStream<'s, Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>>, RPCError<TypeConfig>>,
    >
    where
        S: Stream<Item = AppendEntriesRequest<TypeConfig>> + OptionalSend + Unpin + 'static,
    {
        // A heartbeat (one request) goes on an idle AppendEntries stream: a
        // stream of its own would cost both members a stream's setup for each
        // heartbeat, and a ReadIndex round sends one to every follower.
        if input.size_hint() == (1, Some(1)) {
            return openraft::network::stream_append_sequential(self, input, option);
        }
        Box::pin(async move {
            self.refresh_link();
            let link = match &self.link {
                Ok(link) => link,
                Err(err) => return Err(RPCError::Unreachable(Unreachable::new(err))),
            };
            let cluster_id = self.cluster_id;
            let turns = Arc::new(Turns::default());
            let requests = requests_in_turn(input, turns.clone())
                // An entry that does not encode ends the stream: a gap would only be refused.
                .scan((), move |_, request| {
                    let payload = encode(&request).ok().map(|data| RaftPayload { cluster_id, data: data.into() });
                    std::future::ready(payload)
                });
            let answers = self.peers.open_replication(link, cluster_id, requests).await.map_err(rpc_error)?;
            METRICS.append_streams_opened.fetch_add(1, Ordering::Relaxed);
            let target = self.target;
            let answers = answers_in_turn(answers, turns, STREAM_ANSWER_TIMEOUT).map(move |heard| match heard {
                Heard::Answer(payload) => decode::<StreamAppendResult<TypeConfig>>(&payload.data)
                    .map_err(|err| RPCError::Network(NetworkError::new(&err))),
                Heard::Failed(status) => Err(rpc_error(status)),
                Heard::Silent => {
                    tracing::debug!(target, "no answer on the replication stream");
                    let silent =
                        std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer on the replication stream");
                    Err(RPCError::Network(NetworkError::new(&silent)))
                }
            });
            // The first error, or refusal (a conflict, a higher vote), ends the
            // stream, as openraft's sequential stream does.
            let answers = answers.scan(false, |ended, answer| {
                let item = (!*ended).then(|| {
                    *ended = !matches!(answer, Ok(Ok(_)));
                    answer
                });
                std::future::ready(item)
            });
            Ok(Box::pin(answers) as BoxStream<'s, _>)
        })
    }

    /// Sends the snapshot file in InstallSnapshot chunks, each answered before
    /// the next. Any failure ends the transfer: openraft sends it again later.
    async fn full_snapshot(
        &mut self,
        vote: Vote,
        mut snapshot: Snapshot,
        cancel: impl std::future::Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        fn network<E: std::error::Error + 'static>(err: &E) -> StreamingError<TypeConfig> {
            StreamingError::Network(NetworkError::new(err))
        }
        let chunk_bytes = option.snapshot_chunk_size().unwrap_or(SNAPSHOT_CHUNK_BYTES).max(1);
        // One id per transfer: a follower must not take a new transfer for the rest of an old one.
        let id = format!(
            "{}-{}-{}",
            snapshot.meta.last_log_id.map_or(0, |log_id| log_id.index),
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_nanos())
        );
        let meta = openraft_legacy::network_v1::SnapshotMeta::<TypeConfig>::new(snapshot.meta.clone(), id);
        let size = snapshot.snapshot.seek(std::io::SeekFrom::End(0)).await.map_err(|err| network(&err))?;
        snapshot.snapshot.seek(std::io::SeekFrom::Start(0)).await.map_err(|err| network(&err))?;
        let mut cancel = std::pin::pin!(cancel);
        let mut offset = 0;
        loop {
            if let Some(closed) = futures::FutureExt::now_or_never(cancel.as_mut()) {
                return Err(closed.into());
            }
            let mut data = Vec::with_capacity(chunk_bytes);
            (&mut snapshot.snapshot)
                .take(chunk_bytes as u64)
                .read_to_end(&mut data)
                .await
                .map_err(|err| network(&err))?;
            let sent = data.len() as u64;
            let done = offset + sent >= size;
            let request = InstallSnapshotRequest { vote, meta: meta.clone(), offset, data, done };
            let answer: InstallSnapshotResponse<TypeConfig> =
                match self.call::<_, _, InstallSnapshotError>(Rpc::InstallSnapshot, &request, &option).await {
                    Ok(answer) => answer,
                    Err(RPCError::Timeout(err)) => return Err(err.into()),
                    Err(RPCError::Unreachable(err)) => return Err(err.into()),
                    Err(RPCError::Network(err)) => return Err(err.into()),
                    Err(RPCError::RemoteError(err)) => return Err(network(&err)),
                };
            // A higher vote means this leader is stale; openraft steps down on it.
            if answer.vote != vote || done {
                return Ok(SnapshotResponse::new(answer.vote));
            }
            offset += sent;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(list: &[&str]) -> HashSet<String> {
        list.iter().map(|url| url.to_string()).collect()
    }

    #[test]
    fn idle_streams_are_bounded_per_peer_and_dropped_with_the_peer_url() {
        let pool = IdleStreams::<u32>::default();
        for stream in 0..10 {
            pool.put("http://a", stream);
        }
        pool.put("http://b", 100);
        pool.retain_urls(&urls(&["http://a"]));
        assert_eq!(pool.take("http://b"), None, "b left the membership");
        let kept: Vec<u32> = std::iter::from_fn(|| pool.take("http://a")).collect();
        assert_eq!(kept, vec![3, 2, 1, 0], "at most {IDLE_STREAMS_PER_PEER} kept, the newest taken first");
    }

    #[test]
    fn a_peer_without_the_stream_gets_unary_calls_until_the_retry() {
        let pool = IdleStreams::<u32>::default();
        let now = Instant::now();
        assert!(!pool.lacking.lacks("http://a", now));
        pool.lacking.mark("http://a", now + ASK_AGAIN_AFTER);
        assert!(pool.lacking.lacks("http://a", now));
        assert!(!pool.lacking.lacks("http://b", now), "only the peer that lacked it");
        assert!(!pool.lacking.lacks("http://a", now + ASK_AGAIN_AFTER), "tried again after the retry time");
        pool.retain_urls(&urls(&[]));
        assert!(!pool.lacking.lacks("http://a", now), "forgotten with the peer URL");
    }
}
