//! The member process: opening the data dir, starting Raft, and serving the
//! etcd API on the client URLs and the peer protocol on the peer URLs.

pub mod cluster;
pub mod http;
pub mod kv;
pub mod lease;
pub mod lessor;
pub mod maintenance;
pub mod node;
pub mod peer;
pub mod proposer;
pub mod read_index;
pub mod watch;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use cairn_proto::cairnpb::raft_peer_server::RaftPeerServer;
use cairn_proto::cairnpb::{write_request, MemberAttributes, WriteRequest};
use cairn_proto::etcdserverpb::cluster_server::ClusterServer;
use cairn_proto::etcdserverpb::kv_server::KvServer;
use cairn_proto::etcdserverpb::lease_server::LeaseServer;
use cairn_proto::etcdserverpb::maintenance_server::MaintenanceServer;
use cairn_proto::etcdserverpb::watch_server::WatchServer;
use openraft::SnapshotPolicy;
use tokio::net::TcpListener;
use tokio::sync::watch as signal;
use tokio_stream::wrappers::TcpListenerStream;

use crate::cluster::InitialCluster;
use crate::config::{Config, ConfigError};
use crate::engine::schema::{self, meta};
use crate::engine::{Durability, Engine, EngineError, WriteOp};
use crate::error::StoreError;
use crate::metrics::METRICS;
use crate::raft::log_store::LogStore;
use crate::raft::network::{Network, PeerClients, MAX_PEER_MESSAGE_BYTES};
use crate::raft::state_machine::StateMachine;
use crate::raft::types::Raft;
use crate::state::KvState;
use node::Node;
use proposer::Proposer;
use read_index::ReadIndex;

/// gRPC framing on top of `--max-request-bytes`, as etcd allows.
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;
/// How long a new member keeps trying to publish its client URLs.
const PUBLISH_ATTEMPTS: u32 = 3000;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot create data dir {path}: {source}")]
    CreateDataDir { path: PathBuf, source: std::io::Error },
    #[error("cannot open data dir {path}: {source}")]
    OpenDataDir { path: PathBuf, source: EngineError },
    #[error(
        "data dir {path} belongs to member {found_member:x} of cluster {found_cluster:x}, but the flags describe \
         member {member:x} of cluster {cluster:x}; use another --data-dir"
    )]
    ForeignDataDir { path: PathBuf, found_member: u64, found_cluster: u64, member: u64, cluster: u64 },
    #[error("data dir {path} has schema version {found}, this cairn reads version {expected}")]
    SchemaVersion { path: PathBuf, found: u64, expected: u64 },
    #[error(
        "data dir {0} is empty and --initial-cluster-state=existing needs 'member add', which is not supported yet"
    )]
    ExistingUnsupported(PathBuf),
    #[error("listen tcp {addr}: bind: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("raft: {0}")]
    Raft(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Runs a member until `shutdown` resolves, then stops it cleanly.
pub async fn run(config: Config, shutdown: impl std::future::Future<Output = ()>) -> Result<(), StartError> {
    let initial = config.validate()?;
    // Bind first: a port in use must fail before anything touches the data dir.
    let client_listeners = bind_all(&config.client_listen_addrs()?).await?;
    let peer_listeners = bind_all(&config.peer_listen_addrs()?).await?;

    let data_dir = config.data_dir();
    let (engine, fresh) = open_data_dir(&data_dir, &initial, &config.initial_cluster_state)?;
    let engine = Arc::new(engine);
    let min_lease_ttl = crate::lease::min_ttl_seconds(config.election_timeout);
    let state = Arc::new(KvState::open(engine.clone(), config.watch_event_log_size, min_lease_ttl)?);

    let raft_config = openraft::Config {
        cluster_name: config.initial_cluster_token.clone(),
        heartbeat_interval: config.heartbeat_interval,
        // openraft 0.9 waits a leader lease (= election_timeout_max) plus a random
        // election timeout before campaigning. These bounds put the whole wait
        // in [1, 1.5) x --election-timeout, close to etcd's randomized timeout.
        election_timeout_min: config.election_timeout / 4,
        election_timeout_max: config.election_timeout * 3 / 4,
        snapshot_policy: SnapshotPolicy::Never,
        max_payload_entries: 256,
        ..Default::default()
    }
    .validate()
    .map_err(|err| StartError::Raft(err.to_string()))?;
    let peers = Arc::new(PeerClients::default());
    let network = Network { cluster_id: initial.cluster_id, peers: peers.clone() };
    let raft = Raft::new(
        initial.local_id,
        Arc::new(raft_config),
        network,
        LogStore::new(engine.clone()),
        StateMachine::new(state.clone()),
    )
    .await
    .map_err(|err| StartError::Raft(err.to_string()))?;
    if fresh {
        raft.initialize(initial.members.clone()).await.map_err(|err| StartError::Raft(err.to_string()))?;
    }

    let proposer = Proposer::start(raft.clone(), Duration::from_secs(5) + 2 * config.election());
    let reads = ReadIndex::start(raft.clone());
    let node = Arc::new(Node::new(
        config.clone(),
        initial.local_id,
        initial.cluster_id,
        raft.clone(),
        state,
        peers,
        proposer,
        reads,
    ));
    tracing::info!(
        name = %config.name,
        member_id = %format!("{:x}", node.id),
        cluster_id = %format!("{:x}", node.cluster_id),
        data_dir = %data_dir.display(),
        "member started"
    );

    let (stop, stopped) = signal::channel(false);
    let mut servers = Vec::new();
    for listener in client_listeners {
        servers.push(tokio::spawn(serve_clients(node.clone(), listener, stopped.clone())));
    }
    for listener in peer_listeners {
        servers.push(tokio::spawn(serve_peers(node.clone(), listener, stopped.clone())));
    }
    let publisher = tokio::spawn(publish_attributes(node.clone()));
    let lessor = tokio::spawn(lessor::run(node.clone()));
    let leader_metrics = tokio::spawn(track_leadership(node.clone()));

    shutdown.await;
    tracing::info!("shutting down");
    publisher.abort();
    lessor.abort();
    leader_metrics.abort();
    let _ = stop.send(true);
    for server in servers {
        let _ = server.await;
    }
    if let Err(err) = raft.shutdown().await {
        tracing::warn!(error = %err, "raft shutdown");
    }
    Ok(())
}

async fn bind_all(addrs: &[SocketAddr]) -> Result<Vec<TcpListener>, StartError> {
    let mut listeners = Vec::with_capacity(addrs.len());
    for addr in addrs {
        let listener = TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr: *addr, source })?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Opens the engine under `<data-dir>/member`, checking that it is ours.
/// Returns whether the data dir is new.
fn open_data_dir(data_dir: &Path, initial: &InitialCluster, state: &str) -> Result<(Engine, bool), StartError> {
    let db_dir = data_dir.join("member").join("db");
    let fresh = !db_dir.exists();
    if fresh && state == "existing" {
        return Err(StartError::ExistingUnsupported(data_dir.to_path_buf()));
    }
    std::fs::create_dir_all(&db_dir)
        .map_err(|source| StartError::CreateDataDir { path: data_dir.to_path_buf(), source })?;
    let engine =
        Engine::open(&db_dir).map_err(|source| StartError::OpenDataDir { path: data_dir.to_path_buf(), source })?;
    let read_u64 = |key: &[u8]| -> Result<Option<u64>, StartError> {
        let value = engine
            .get(schema::CF_META, key)
            .map_err(|source| StartError::OpenDataDir { path: data_dir.to_path_buf(), source })?;
        Ok(value.and_then(|bytes| bytes.try_into().ok()).map(u64::from_be_bytes))
    };
    match (read_u64(meta::MEMBER_ID)?, read_u64(meta::CLUSTER_ID)?) {
        (Some(member), Some(cluster)) => {
            if member != initial.local_id || cluster != initial.cluster_id {
                return Err(StartError::ForeignDataDir {
                    path: data_dir.to_path_buf(),
                    found_member: member,
                    found_cluster: cluster,
                    member: initial.local_id,
                    cluster: initial.cluster_id,
                });
            }
            let version = read_u64(meta::SCHEMA_VERSION)?.unwrap_or(0);
            if version != schema::SCHEMA_VERSION {
                return Err(StartError::SchemaVersion {
                    path: data_dir.to_path_buf(),
                    found: version,
                    expected: schema::SCHEMA_VERSION,
                });
            }
            Ok((engine, false))
        }
        _ => {
            let identity = [
                (meta::SCHEMA_VERSION, schema::SCHEMA_VERSION),
                (meta::MEMBER_ID, initial.local_id),
                (meta::CLUSTER_ID, initial.cluster_id),
            ]
            .map(|(key, value)| WriteOp::Put {
                cf: schema::CF_META,
                key: key.to_vec(),
                value: value.to_be_bytes().to_vec(),
            });
            engine
                .write(&identity, Durability::Sync)
                .map_err(|source| StartError::OpenDataDir { path: data_dir.to_path_buf(), source })?;
            Ok((engine, true))
        }
    }
}

async fn stopped_signal(mut stopped: signal::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

async fn serve_clients(node: Arc<Node>, listener: TcpListener, stopped: signal::Receiver<bool>) {
    let max_message = node.config.max_request_bytes as usize + GRPC_OVERHEAD_BYTES;
    let kv = KvServer::new(kv::KvService { node: node.clone() }).max_decoding_message_size(max_message);
    let cluster = ClusterServer::new(cluster::ClusterService { node: node.clone() });
    let maintenance = MaintenanceServer::new(maintenance::MaintenanceService { node: node.clone() });
    let watch = WatchServer::new(watch::WatchService { node: node.clone() });
    let lease = LeaseServer::new(lease::LeaseService { node: node.clone() });
    let routes = tonic::service::Routes::new(kv)
        .add_service(cluster)
        .add_service(maintenance)
        .add_service(watch)
        .add_service(lease)
        .into_axum_router()
        .merge(http::router(node.clone()));
    let result = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .accept_http1(true)
        .layer(http::GrpcCounterLayer)
        .add_routes(routes.into())
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), stopped_signal(stopped))
        .await;
    if let Err(err) = result {
        tracing::error!(error = %err, "client server failed");
    }
}

async fn serve_peers(node: Arc<Node>, listener: TcpListener, stopped: signal::Receiver<bool>) {
    let peer = RaftPeerServer::new(peer::PeerService { node })
        .max_decoding_message_size(MAX_PEER_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_PEER_MESSAGE_BYTES);
    let result = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(peer)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), stopped_signal(stopped))
        .await;
    if let Err(err) = result {
        tracing::error!(error = %err, "peer server failed");
    }
}

/// Keeps the leadership metrics current.
async fn track_leadership(node: Arc<Node>) {
    let mut metrics = node.raft.metrics();
    let mut last_leader = None;
    loop {
        let leader = metrics.borrow_and_update().current_leader;
        METRICS.has_leader.store(i64::from(leader.is_some()), Ordering::Relaxed);
        METRICS.is_leader.store(i64::from(leader == Some(node.id)), Ordering::Relaxed);
        if leader.is_some() && leader != last_leader {
            METRICS.leader_changes.fetch_add(1, Ordering::Relaxed);
        }
        if leader.is_some() {
            last_leader = leader;
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// Publishes this member's name and client URLs through Raft, as etcd does at start.
async fn publish_attributes(node: Arc<Node>) {
    let attributes = MemberAttributes {
        member_id: node.id,
        name: node.config.name.clone(),
        client_urls: node.config.advertise_client_urls.clone(),
    };
    if node.state.member_attributes().get(&node.id) == Some(&attributes) {
        return;
    }
    let request = WriteRequest { request: Some(write_request::Request::Publish(attributes)) };
    for _ in 0..PUBLISH_ATTEMPTS {
        match node.write(request.clone()).await {
            Ok(_) => return,
            Err(status) => tracing::debug!(%status, "publishing member attributes"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tracing::warn!("gave up publishing member attributes");
}
