//! The Raft transport: openraft's RPCs over gRPC to the peer URLs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cairn_proto::cairnpb::raft_peer_client::RaftPeerClient;
use cairn_proto::cairnpb::RaftPayload;
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::EntryPayload;
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Status, Streaming};

use super::types::{decode, encode, Entry, Member, NodeId, Proposal, TypeConfig};
use crate::metrics::METRICS;
use crate::tls::PeerDialer;

/// Peer messages can carry many log entries; allow well past a client request.
pub const MAX_PEER_MESSAGE_BYTES: usize = 256 * 1024 * 1024;
/// An AppendEntries carries at most this many bytes of requests, or one entry:
/// openraft takes the entries hint of `PayloadTooLarge` and sends fewer. Like
/// etcd's `MaxSizePerMsg`, it keeps a catch-up message well inside an election
/// timeout, so a follower that is catching up goes on hearing from its leader.
const MAX_APPEND_BYTES: usize = crate::server::proposer::MAX_BATCH_BYTES;

/// Lets the chaos harness route each link through its own proxy: a list of
/// `advertised-peer-url=url-to-dial`, comma-separated. Not for production.
pub const DIAL_OVERRIDE_ENV: &str = "CAIRN_PEER_DIAL_OVERRIDE";

/// Idle AppendEntries streams kept per peer: one for replication, the rest for
/// the leadership checks of linearizable reads, which run beside it.
const IDLE_STREAMS_PER_PEER: usize = 4;

/// gRPC channels to peers, shared by Raft and by request forwarding, and the
/// idle AppendEntries streams on them.
#[derive(Default)]
pub struct PeerClients {
    channels: Mutex<HashMap<String, Channel>>,
    idle_streams: Mutex<HashMap<String, Vec<AppendStream>>>,
    dial_overrides: HashMap<String, String>,
    /// TLS for `https://` peer URLs.
    dialer: Option<Arc<PeerDialer>>,
}

/// A peer's client, with the URL it dials (the key of its idle streams).
pub struct PeerLink {
    url: String,
    client: RaftPeerClient<Channel>,
}

/// One AppendEntries stream: a request, then its answer, in turn. A stream
/// goes back to the idle pool only after a whole exchange, so an answer can
/// never be taken for the answer to another request.
struct AppendStream {
    requests: mpsc::Sender<RaftPayload>,
    answers: Streaming<RaftPayload>,
}

impl AppendStream {
    async fn open(mut client: RaftPeerClient<Channel>) -> Result<Self, Status> {
        let (requests, outgoing) = mpsc::channel(1);
        let answers = client.append_entries(ReceiverStream::new(outgoing)).await?.into_inner();
        Ok(AppendStream { requests, answers })
    }

    async fn exchange(&mut self, payload: RaftPayload) -> Result<RaftPayload, Status> {
        self.requests.send(payload).await.map_err(|_| Status::unavailable("append stream closed"))?;
        self.answers.message().await?.ok_or_else(|| Status::unavailable("append stream ended"))
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

    pub fn client(&self, target: NodeId, member: &Member) -> Result<RaftPeerClient<Channel>, PeerError> {
        self.link(target, member).map(|link| link.client)
    }

    fn link(&self, target: NodeId, member: &Member) -> Result<PeerLink, PeerError> {
        let advertised = member.peer_urls.first().ok_or(PeerError::NoPeerUrl(target))?;
        let url = self.dial_overrides.get(advertised).unwrap_or(advertised);
        let mut channels = self.channels.lock();
        let channel = match channels.get(url) {
            Some(channel) => channel.clone(),
            None => {
                // The advertised URL says whether the link is TLS and whom to
                // verify; a dial override only changes where to connect.
                // tonic adds its own TLS to https:// URIs, so it is given the
                // address as http:// and the dialer's TLS is used instead.
                let secure = advertised.starts_with("https://");
                let address = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
                let endpoint = Endpoint::from_shared(if secure { format!("http://{address}") } else { url.clone() })
                    .map_err(|err| PeerError::BadUrl { url: url.clone(), reason: err.to_string() })?
                    // A TLS handshake happens inside the connect.
                    .connect_timeout(Duration::from_millis(if secure { 2000 } else { 500 }))
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(Duration::from_secs(5));
                let channel = if secure {
                    let dialer = self.dialer.clone().ok_or_else(|| PeerError::NoPeerTls(advertised.clone()))?;
                    let name = http::Uri::try_from(advertised.as_str())
                        .ok()
                        .and_then(|uri| uri.host().map(str::to_string))
                        .ok_or_else(|| PeerError::BadUrl { url: advertised.clone(), reason: "no host".into() })?;
                    endpoint.connect_with_connector_lazy(tower::service_fn(move |uri: http::Uri| {
                        let (dialer, name) = (dialer.clone(), name.clone());
                        async move {
                            let host = uri.host().unwrap_or_default().to_string();
                            let stream = dialer.dial(&name, &host, uri.port_u16().unwrap_or(443)).await?;
                            Ok::<_, crate::tls::TlsError>(hyper_util::rt::TokioIo::new(stream))
                        }
                    }))
                } else {
                    endpoint.connect_lazy()
                };
                channels.insert(url.clone(), channel.clone());
                channel
            }
        };
        let client = RaftPeerClient::new(channel)
            .max_decoding_message_size(MAX_PEER_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_PEER_MESSAGE_BYTES);
        Ok(PeerLink { url: url.clone(), client })
    }

    /// Sends one AppendEntries on an idle stream to the peer, or on a new one.
    async fn append_entries(&self, link: &PeerLink, payload: RaftPayload) -> Result<RaftPayload, Status> {
        let idle = self.idle_streams.lock().get_mut(&link.url).and_then(Vec::pop);
        if let Some(mut stream) = idle {
            if let Ok(answer) = stream.exchange(payload.clone()).await {
                self.put_idle(&link.url, stream);
                return Ok(answer);
            }
            // An idle stream may have died with its connection (the peer
            // restarted). AppendEntries is idempotent: resend on a new stream.
        }
        let mut stream = AppendStream::open(link.client.clone()).await?;
        let answer = stream.exchange(payload).await?;
        self.put_idle(&link.url, stream);
        Ok(answer)
    }

    fn put_idle(&self, url: &str, stream: AppendStream) {
        let mut idle = self.idle_streams.lock();
        let streams = match idle.get_mut(url) {
            Some(streams) => streams,
            None => idle.entry(url.to_string()).or_default(),
        };
        if streams.len() < IDLE_STREAMS_PER_PEER {
            streams.push(stream);
        }
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
            link: self.peers.link(target, node),
            peers: self.peers.clone(),
            cluster_id: self.cluster_id,
        }
    }
}

pub struct Connection {
    target: NodeId,
    link: Result<PeerLink, PeerError>,
    peers: Arc<PeerClients>,
    cluster_id: u64,
}

#[derive(Clone, Copy)]
enum Rpc {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

impl Connection {
    async fn call<Req, Resp, E>(
        &mut self,
        rpc: Rpc,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, Member, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
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
            Ok(Err(status)) if status.code() == tonic::Code::Unavailable => {
                return Err(RPCError::Unreachable(Unreachable::new(&status)))
            }
            Ok(Err(status)) => return Err(RPCError::Network(NetworkError::new(&status))),
            Err(elapsed) => return Err(RPCError::Network(NetworkError::new(&elapsed))),
        };
        let result: Result<Resp, RaftError<NodeId, E>> =
            decode(&response.data).map_err(|err| RPCError::Network(NetworkError::new(&err)))?;
        result.map_err(|err| RPCError::RemoteError(RemoteError::new(self.target, err)))
    }
}

/// How many leading entries fit in `limit` bytes of requests; at least one.
fn entries_within(entries: &[Entry], limit: usize) -> usize {
    let mut bytes = 0;
    let fitting = entries.iter().take_while(|entry| {
        if let EntryPayload::Normal(Proposal(requests)) = &entry.payload {
            bytes += requests.iter().map(prost::Message::encoded_len).sum::<usize>();
        }
        bytes <= limit
    });
    fitting.count().max(1)
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        req: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        // One entry (the usual case under load) goes whole: nothing to measure.
        let fitting = if req.entries.len() > 1 { entries_within(&req.entries, MAX_APPEND_BYTES) } else { 1 };
        if fitting < req.entries.len() {
            return Err(RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(fitting as u64)));
        }
        self.call(Rpc::AppendEntries, &req, &option).await
    }

    async fn install_snapshot(
        &mut self,
        req: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId, InstallSnapshotError>>>
    {
        self.call(Rpc::InstallSnapshot, &req, &option).await
    }

    async fn vote(
        &mut self,
        req: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        self.call(Rpc::Vote, &req, &option).await
    }
}

#[cfg(test)]
mod tests {
    use cairn_proto::cairnpb::{write_request, WriteRequest};
    use cairn_proto::etcdserverpb::PutRequest;
    use openraft::{CommittedLeaderId, LogId};

    use super::*;

    fn entry(index: u64, value_bytes: usize) -> Entry {
        let put = PutRequest { key: b"k".to_vec(), value: vec![0; value_bytes], ..Default::default() };
        let request = WriteRequest { request: Some(write_request::Request::Put(put)), auth_info: None };
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Proposal(vec![request])),
        }
    }

    #[test]
    fn append_entries_are_bounded_by_bytes_but_carry_at_least_one_entry() {
        let small: Vec<Entry> = (1..=5).map(|index| entry(index, 100)).collect();
        assert_eq!(entries_within(&small, 1024), 5);
        let large: Vec<Entry> = (1..=5).map(|index| entry(index, 3 << 20)).collect();
        assert_eq!(entries_within(&large, MAX_APPEND_BYTES), 2, "two 3 MiB entries fit in 8 MiB");
        assert_eq!(entries_within(&large[..1], 1024), 1, "an entry larger than the bound still goes");
        let blank = Entry { log_id: LogId::new(CommittedLeaderId::new(1, 1), 9), payload: EntryPayload::Blank };
        assert_eq!(entries_within(&[blank], 0), 1);
    }
}
