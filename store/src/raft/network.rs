//! The Raft transport: openraft's RPCs over gRPC to the peer URLs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cairn_proto::cairnpb::raft_peer_client::RaftPeerClient;
use cairn_proto::cairnpb::RaftPayload;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};

use super::types::{decode, encode, Member, NodeId, TypeConfig};
use crate::metrics::METRICS;

/// Peer messages can carry many log entries; allow well past a client request.
pub const MAX_PEER_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// Lets the chaos harness route each link through its own proxy: a list of
/// `advertised-peer-url=url-to-dial`, comma-separated. Not for production.
pub const DIAL_OVERRIDE_ENV: &str = "CAIRN_PEER_DIAL_OVERRIDE";

/// gRPC channels to peers, shared by Raft and by request forwarding.
#[derive(Default)]
pub struct PeerClients {
    channels: Mutex<HashMap<String, Channel>>,
    dial_overrides: HashMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("member {0} has no peer URL")]
    NoPeerUrl(NodeId),
    #[error("invalid peer URL {url}: {reason}")]
    BadUrl { url: String, reason: String },
}

impl PeerClients {
    pub fn from_env() -> Self {
        let overrides = std::env::var(DIAL_OVERRIDE_ENV).unwrap_or_default();
        let dial_overrides = overrides
            .split(',')
            .filter_map(|pair| pair.split_once('='))
            .map(|(advertised, dial)| (advertised.to_string(), dial.to_string()))
            .collect::<HashMap<_, _>>();
        if !dial_overrides.is_empty() {
            tracing::warn!(links = dial_overrides.len(), "peer URLs are dialed through {DIAL_OVERRIDE_ENV}");
        }
        PeerClients { channels: Mutex::default(), dial_overrides }
    }

    pub fn client(&self, target: NodeId, member: &Member) -> Result<RaftPeerClient<Channel>, PeerError> {
        let advertised = member.peer_urls.first().ok_or(PeerError::NoPeerUrl(target))?;
        let url = self.dial_overrides.get(advertised).unwrap_or(advertised);
        let mut channels = self.channels.lock();
        let channel = match channels.get(url) {
            Some(channel) => channel.clone(),
            None => {
                let endpoint = Endpoint::from_shared(url.clone())
                    .map_err(|err| PeerError::BadUrl { url: url.clone(), reason: err.to_string() })?
                    .connect_timeout(Duration::from_millis(500))
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(Duration::from_secs(5));
                let channel = endpoint.connect_lazy();
                channels.insert(url.clone(), channel.clone());
                channel
            }
        };
        Ok(RaftPeerClient::new(channel)
            .max_decoding_message_size(MAX_PEER_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_PEER_MESSAGE_BYTES))
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
        Connection { target, client: self.peers.client(target, node), cluster_id: self.cluster_id }
    }
}

pub struct Connection {
    target: NodeId,
    client: Result<RaftPeerClient<Channel>, PeerError>,
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
        let client = match &self.client {
            Ok(client) => client.clone(),
            Err(err) => return Err(RPCError::Unreachable(Unreachable::new(err))),
        };
        let data = encode(req).map_err(|err| RPCError::Network(NetworkError::new(&err)))?;
        let payload = RaftPayload { cluster_id: self.cluster_id, data };
        let mut client = client;
        let call = async move {
            match rpc {
                Rpc::AppendEntries => client.append_entries(payload).await,
                Rpc::Vote => client.vote(payload).await,
                Rpc::InstallSnapshot => client.install_snapshot(payload).await,
            }
        };
        let started = std::time::Instant::now();
        let response = match tokio::time::timeout(option.hard_ttl(), call).await {
            Ok(Ok(response)) => {
                METRICS.observe_peer_rtt(self.target, started.elapsed());
                response.into_inner()
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

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        req: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
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
