//! The member process: opening the data dir, starting Raft, and serving the
//! etcd API on the client URLs and the peer protocol on the peer URLs.

pub mod auth;
pub mod batch;
pub mod cluster;
pub mod concurrency;
pub mod corrupt;
mod forward;
pub mod gateway;
mod health;
pub mod http;
pub mod kv;
mod learner;
pub mod lease;
pub mod lessor;
mod listeners;
pub mod maintenance;
pub mod membership;
pub mod node;
mod panics;
pub mod peer;
pub mod proposer;
pub mod read_index;
pub mod watch;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn_proto::cairnpb::raft_peer_server::RaftPeerServer;
use cairn_proto::cairnpb::{write_request, MemberAttributes, WriteRequest};
use cairn_proto::etcdserverpb::auth_server::AuthServer;
use cairn_proto::etcdserverpb::cluster_server::ClusterServer;
use cairn_proto::etcdserverpb::kv_server::KvServer;
use cairn_proto::etcdserverpb::lease_server::LeaseServer;
use cairn_proto::etcdserverpb::maintenance_server::MaintenanceServer;
use cairn_proto::etcdserverpb::watch_server::WatchServer;
use cairn_proto::etcdserverpb::MemberListRequest;
use cairn_proto::grpc::health::v1::health_server::HealthServer;
use cairn_proto::v3electionpb::election_server::ElectionServer;
use cairn_proto::v3lockpb::lock_server::LockServer;
use openraft::async_runtime::WatchReceiver;
use openraft::{ServerState, SnapshotPolicy};
use tokio::sync::watch as signal;
use tonic::transport::server::Connected;

use crate::cluster::InitialCluster;
use crate::config::{Config, ConfigError, GRPC_OVERHEAD_BYTES};
use crate::engine::schema::{self, meta};
use crate::engine::{Durability, Engine, EngineError, WriteOp};
use crate::error::StoreError;
use crate::metrics::METRICS;
use crate::raft::log_store::LogStore;
use crate::raft::network::{Network, PeerClients, MAX_PEER_MESSAGE_BYTES};
use crate::raft::state_machine::StateMachine;
use crate::raft::types::{decode, Member, NodeId, Raft};
use crate::state::KvState;
use crate::tls;
use listeners::{bind_all, Bound, Security};
use node::Node;
use proposer::Proposer;
use read_index::ReadIndex;

/// How long servers and Raft get to stop on SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// How often the leadership metrics look again whether the leader is still heard from.
const LEADER_CHECK_INTERVAL: Duration = Duration::from_millis(100);
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
    #[error("data dir {path} belongs to {found}, but the flags describe {flags}; use another --data-dir")]
    ForeignDataDir { path: PathBuf, found: String, flags: String },
    #[error("data dir {path} has schema version {found}, this cairn reads version {expected}")]
    SchemaVersion { path: PathBuf, found: u64, expected: u64 },
    #[error("joining the existing cluster: {0}")]
    Join(String),
    #[error("listen tcp {addr}: bind: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("raft: {0}")]
    Raft(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("failed to create token provider: {0}")]
    Auth(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Corruption(#[from] corrupt::CorruptionFound),
    #[error("stopped on a fault: {0}")]
    Fault(String),
}

/// Runs a member until `shutdown` resolves, then stops it cleanly.
pub async fn run(config: Config, shutdown: impl std::future::Future<Output = ()>) -> Result<(), StartError> {
    let initial = config.validate()?;
    // Bind first: a port in use must fail before anything touches the data dir.
    let client_listeners = bind_all(&config.client_listens()?).await?;
    let peer_listeners = bind_all(&config.peer_listens()?).await?;
    let metrics_listeners = bind_all(&config.metrics_listens()?).await?;

    let data_dir = config.data_dir();
    let security = Security::new(&config, &data_dir)?;
    let tokens = auth::Tokens::from_config(&config)?;
    let peers = Arc::new(PeerClients::from_env(security.dialer.clone()));
    let (engine, identity, bootstrap) = open_data_dir(&config, &initial, &peers).await?;
    let engine = Arc::new(engine);
    let snapshot_dir = data_dir.join(schema::SNAPSHOT_DIR);
    if crate::state::finish_interrupted_install(&engine, &snapshot_dir)? {
        tracing::info!("finished a snapshot install that a crash had interrupted");
    }
    crate::raft::state_machine::remove_unfinished(&snapshot_dir);
    let min_lease_ttl = crate::lease::min_ttl_seconds(config.election_timeout);
    let state_options = crate::state::StateOptions {
        event_log_capacity: config.watch_event_log_size,
        min_lease_ttl,
        compaction_batch_limit: config.compaction_batch_limit(),
        compaction_sleep: config.compaction_sleep_interval(),
        simple_token_ttl: config.auth.simple_token_ttl(),
    };
    let state = Arc::new(KvState::open(engine.clone(), state_options)?);
    // As etcd: only a member that had data before is checked; a new one has nothing to compare.
    if config.initial_corrupt_check() && bootstrap == Bootstrap::Restart {
        let timeout = Duration::from_secs(5) + 2 * config.election();
        corrupt::initial_check(&state, &peers, identity.member_id, timeout).await?;
    }

    let raft_config = openraft::Config {
        cluster_name: config.initial_cluster_token.clone(),
        heartbeat_interval: config.heartbeat_interval,
        // openraft waits a leader lease (= election_timeout_max) plus a random
        // election timeout before campaigning. These bounds put the whole wait
        // in [1, 1.5) x --election-timeout, close to etcd's randomized timeout.
        election_timeout_min: config.election_timeout / 4,
        election_timeout_max: config.election_timeout * 3 / 4,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_count),
        // Like etcd's catch-up entries: a slightly lagging follower still catches up from the log.
        max_in_snapshot_log_to_keep: config.snapshot_catchup_entries(),
        max_payload_entries: 256,
        // As etcd's --pre-vote (on by default): a member that was cut off asks
        // first whether it could win, and does not depose a healthy leader.
        enable_pre_vote: Some(true),
        // A restarted leader campaigns, as in etcd: its applied state is not
        // fsynced before apply returns, so it must learn the commit index anew.
        enable_leader_restore: Some(false),
        // Replication may read an entry once it is written (before its
        // fsync): waking it then lets the followers' round overlap ours.
        broadcast_submitted_on_append: Some(true),
        ..Default::default()
    }
    .validate()
    .map_err(|err| StartError::Raft(err.to_string()))?;
    let network = Network { cluster_id: identity.cluster_id, peers: peers.clone() };
    let log_store = LogStore::open(engine.clone(), &data_dir.join(schema::WAL_DIR))
        .map_err(|err| StartError::Raft(err.to_string()))?;
    let inline_fsync = log_store.inline_fsync();
    let raft = Raft::new(
        identity.member_id,
        Arc::new(raft_config),
        network,
        log_store,
        StateMachine::new(state.clone(), snapshot_dir, identity.cluster_id, identity.member_id)
            .warn_apply_after(config.warning_apply_duration()),
    )
    .await
    .map_err(|err| StartError::Raft(err.to_string()))?;
    if let Bootstrap::NewCluster(members) = bootstrap {
        raft.initialize(members).await.map_err(|err| StartError::Raft(err.to_string()))?;
        let done = WriteOp::Delete { cf: schema::CF_META, key: meta::BOOTSTRAP_MEMBERS.to_vec() };
        engine
            .write(&[done], Durability::Sync)
            .map_err(|source| StartError::OpenDataDir { path: data_dir.clone(), source })?;
    }

    let proposer = Proposer::start(raft.clone(), Duration::from_secs(5) + 2 * config.election());
    let reads = ReadIndex::start(raft.clone());
    let node = Arc::new(Node::new(
        config.clone(),
        identity.member_id,
        identity.cluster_id,
        raft.clone(),
        state,
        peers,
        proposer,
        reads,
        tokens,
    ));
    tracing::info!(
        name = %config.name,
        member_id = %format!("{:x}", node.id),
        cluster_id = %format!("{:x}", node.cluster_id),
        data_dir = %data_dir.display(),
        "member started"
    );
    if matches!(node.tokens, auth::Tokens::Simple) {
        // Said once a member is up, as etcd does: a refused start prints its one error only.
        tracing::warn!("simple token is not cryptographically signed");
    }

    panics::watch();
    let (stop, stopped) = signal::channel(false);
    let mut servers = Vec::new();
    // Each listener is served plain or through TLS, as its URL's scheme says.
    macro_rules! serve {
        ($serve:ident, $bound:expr, $side:expr) => {
            for Bound { listen, listener } in $bound {
                let server = match Security::for_listen($side, &listen)? {
                    Some(tls) => tokio::spawn($serve(node.clone(), tls::accept(listener, tls), stopped.clone())),
                    None => tokio::spawn($serve(node.clone(), listeners::plain(listener), stopped.clone())),
                };
                servers.push(server);
            }
        };
    }
    serve!(serve_clients, client_listeners, &security.client);
    serve!(serve_peers, peer_listeners, &security.peer);
    serve!(serve_metrics, metrics_listeners, &security.client);
    let publisher = tokio::spawn(publish_attributes(node.clone()));
    let lessor = tokio::spawn(lessor::run(node.clone()));
    let leader_metrics = tokio::spawn(track_leadership(node.clone(), inline_fsync));
    let corrupt_check_time = config.corrupt_check_time();
    let corruption_monitor =
        (!corrupt_check_time.is_zero()).then(|| tokio::spawn(corrupt::monitor(node.clone(), corrupt_check_time)));

    let fault = tokio::select! {
        _ = shutdown => {
            tracing::info!("shutting down");
            None
        }
        _ = removed_from_cluster(&node) => {
            // As etcd does: a removed member stops rather than linger and campaign.
            tracing::warn!("the member has been permanently removed from the cluster; shutting down");
            None
        }
        fault = fault(&node) => {
            tracing::error!(%fault, "the member cannot go on; shutting down");
            Some(fault)
        }
    };
    // A member on its way out must not campaign: while its servers wind down it
    // hears no heartbeats, and a leader elected now would be gone in a moment.
    raft.runtime_config().elect(false);
    publisher.abort();
    lessor.abort();
    leader_metrics.abort();
    if let Some(monitor) = corruption_monitor {
        monitor.abort();
    }
    let _ = stop.send(true);
    // Graceful, but bounded: a peer or client that keeps a stream open does not hold us up.
    for server in servers {
        let abort = server.abort_handle();
        if tokio::time::timeout(SHUTDOWN_GRACE, server).await.is_err() {
            tracing::warn!("a server did not stop in time; its connections are cut");
            abort.abort();
        }
    }
    match tokio::time::timeout(SHUTDOWN_GRACE, raft.shutdown()).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::warn!(error = %err, "raft shutdown"),
        Err(_) => tracing::warn!("raft did not stop in time"),
    }
    fault.map_or(Ok(()), |fault| Err(StartError::Fault(fault)))
}

/// Returns what stopped Raft's core (a storage error, a panic) or the
/// compactor (an engine error), or the first panic anywhere. The member then
/// exits non-zero, as etcd's fatal errors make it: a supervisor restarts it
/// and recovery replays the log, where a member left running without its
/// core would answer nothing.
async fn fault(node: &Node) -> String {
    let raft = async {
        // Not `metrics()`, which changes with every write: the server metrics
        // change with the leader and the membership, and close when the core ends.
        let mut server_metrics = node.raft.server_metrics();
        while server_metrics.changed().await.is_ok() {}
        match &node.raft.metrics().borrow_watched().running_state {
            Err(fatal) => format!("raft: {fatal}"),
            Ok(()) => "raft: the core has ended".to_string(),
        }
    };
    tokio::select! {
        fault = raft => fault,
        fault = node.state.compactor_fault() => format!("compactor: {fault}"),
        panic = panics::first() => panic,
    }
}

/// Who this member is, as recorded in its data dir.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    member_id: u64,
    cluster_id: u64,
}

/// How this start relates to the data dir.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Bootstrap {
    /// A new cluster: every member initializes Raft with these members
    /// (`--initial-cluster`, or what `cairn snapshot restore` recorded).
    NewCluster(BTreeMap<NodeId, Member>),
    /// A member added with `member add` joins: the leader brings it up to date.
    JoinExisting,
    /// The data dir has been used before: flags about the initial cluster are ignored, as in etcd.
    Restart,
}

/// Opens the engine under `<data-dir>/member`, checking that it is ours, or
/// records who this member is in a new one.
async fn open_data_dir(
    config: &Config,
    initial: &InitialCluster,
    peers: &PeerClients,
) -> Result<(Engine, Identity, Bootstrap), StartError> {
    let data_dir = config.data_dir();
    let db_dir = data_dir.join(schema::DB_DIR);
    let open_err = |source| StartError::OpenDataDir { path: data_dir.clone(), source };
    if db_dir.exists() {
        let engine = Engine::open(&db_dir).map_err(open_err)?;
        let read = |key: &[u8]| engine.get(schema::CF_META, key).map_err(open_err);
        let read_u64 = |key: &[u8]| -> Result<Option<u64>, StartError> {
            let what = String::from_utf8_lossy(key);
            read(key)?.map(|bytes| schema::decode_u64(&what, &bytes)).transpose().map_err(open_err)
        };
        let read_text = |key: &[u8]| -> Result<String, StartError> {
            Ok(String::from_utf8_lossy(&read(key)?.unwrap_or_default()).into_owned())
        };
        if let (Some(member_id), Some(cluster_id)) = (read_u64(meta::MEMBER_ID)?, read_u64(meta::CLUSTER_ID)?) {
            let (token, name) = (read_text(meta::CLUSTER_TOKEN)?, read_text(meta::MEMBER_NAME)?);
            if token != config.initial_cluster_token || name != config.name {
                return Err(StartError::ForeignDataDir {
                    path: data_dir.clone(),
                    found: format!("member {name} ({member_id:x}) of cluster {cluster_id:x}, token {token}"),
                    flags: format!("member {} with token {}", config.name, config.initial_cluster_token),
                });
            }
            let version = read_u64(meta::SCHEMA_VERSION)?.unwrap_or(0);
            if version != schema::SCHEMA_VERSION && !schema::UPGRADABLE_SCHEMA_VERSIONS.contains(&version) {
                return Err(StartError::SchemaVersion {
                    path: data_dir.clone(),
                    found: version,
                    expected: schema::SCHEMA_VERSION,
                });
            }
            // A data dir made by `cairn snapshot restore` holds data, but Raft starts afresh.
            let bootstrap = match read(meta::BOOTSTRAP_MEMBERS)? {
                Some(bytes) => Bootstrap::NewCluster(decode(&bytes).map_err(|err| {
                    open_err(EngineError::Corrupt { what: "bootstrap members".into(), detail: err.to_string() })
                })?),
                None => Bootstrap::Restart,
            };
            return Ok((engine, Identity { member_id, cluster_id }, bootstrap));
        }
        // Created but never stamped: a start that failed early. Treat it as new.
    }
    let (identity, bootstrap) = if config.initial_cluster_state == "existing" {
        (discover_identity(config, initial, peers).await?, Bootstrap::JoinExisting)
    } else {
        let identity = Identity { member_id: initial.local_id, cluster_id: initial.cluster_id };
        (identity, Bootstrap::NewCluster(initial.members.clone()))
    };
    std::fs::create_dir_all(&db_dir).map_err(|source| StartError::CreateDataDir { path: data_dir.clone(), source })?;
    let engine = Engine::open(&db_dir).map_err(open_err)?;
    let stamp =
        schema::identity_records(identity.member_id, identity.cluster_id, &config.initial_cluster_token, &config.name);
    engine.write(&stamp, Durability::Sync).map_err(open_err)?;
    Ok((engine, identity, bootstrap))
}

/// A member added with `member add` asks the others which ID it was given,
/// matching its peer URLs, as etcd does.
async fn discover_identity(
    config: &Config,
    initial: &InitialCluster,
    peers: &PeerClients,
) -> Result<Identity, StartError> {
    let mut own_urls = config.initial_advertise_peer_urls.clone();
    own_urls.sort();
    let mut last_error = String::from("no other member in --initial-cluster");
    for (id, member) in &initial.members {
        if *id == initial.local_id {
            continue;
        }
        let mut client = peers.client(*id, member).map_err(|err| StartError::Join(err.to_string()))?;
        let request = tonic::Request::new(MemberListRequest { linearizable: false });
        let response = match tokio::time::timeout(Duration::from_secs(5), client.members(request)).await {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) => {
                last_error = format!("{}: {}", member.peer_urls.join(","), status.message());
                continue;
            }
            Err(_) => {
                last_error = format!("{}: timed out", member.peer_urls.join(","));
                continue;
            }
        };
        let cluster_id = response.header.map_or(0, |header| header.cluster_id);
        let found = response.members.iter().find(|candidate| {
            let mut urls = candidate.peer_ur_ls.clone();
            urls.sort();
            urls == own_urls
        });
        return match found {
            Some(found) => Ok(Identity { member_id: found.id, cluster_id }),
            None => Err(StartError::Join(format!(
                "no member with peer URLs {} in the cluster; add it first with 'member add'",
                own_urls.join(",")
            ))),
        };
    }
    Err(StartError::Join(format!("cannot reach the cluster: {last_error}")))
}

pub(super) async fn stopped_signal(mut stopped: signal::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// What tonic serves: a stream of connections, plain or TLS.
trait Incoming<IO>: tokio_stream::Stream<Item = std::io::Result<IO>> + Send + 'static {}
impl<S, IO> Incoming<IO> for S where S: tokio_stream::Stream<Item = std::io::Result<IO>> + Send + 'static {}

/// A connection tonic can serve.
trait Connection:
    tokio::io::AsyncRead
    + tokio::io::AsyncWrite
    + Connected<ConnectInfo: Clone + Send + Sync + 'static>
    + Unpin
    + Send
    + 'static
{
}
impl<IO> Connection for IO where
    IO: tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + Connected<ConnectInfo: Clone + Send + Sync + 'static>
        + Unpin
        + Send
        + 'static
{
}

async fn serve_clients<IO: Connection>(node: Arc<Node>, incoming: impl Incoming<IO>, stopped: signal::Receiver<bool>) {
    let max_message = (node.config.max_request_bytes + GRPC_OVERHEAD_BYTES) as usize;
    let kv = KvServer::new(kv::KvService { node: node.clone() }).max_decoding_message_size(max_message);
    let cluster = ClusterServer::new(cluster::ClusterService { node: node.clone() });
    let maintenance = MaintenanceServer::new(maintenance::MaintenanceService { node: node.clone() });
    let watch = WatchServer::new(watch::WatchService { node: node.clone() });
    let lease = LeaseServer::new(lease::LeaseService { node: node.clone() });
    let auth = AuthServer::new(auth::AuthService { node: node.clone() });
    let lock = LockServer::new(concurrency::LockService { node: node.clone() });
    let election = ElectionServer::new(concurrency::ElectionService { node: node.clone() });
    let health = HealthServer::new(health::HealthService { stopped: stopped.clone() });
    let services = tonic::service::Routes::new(kv)
        .add_service(cluster)
        .add_service(maintenance)
        .add_service(watch)
        .add_service(lease)
        .add_service(auth)
        .add_service(lock)
        .add_service(election)
        .add_service(health);
    let counter = http::GrpcCounterLayer { slow: node.config.warning_unary_request_duration() };
    let learner_gate = learner::LearnerGateLayer { node: node.clone() };
    let mut web = http::router(node.clone());
    if node.config.enable_grpc_gateway {
        let counted = tower::Layer::layer(&counter, tower::Layer::layer(&learner_gate, services.clone()));
        web = web.merge(gateway::router(counted, gateway::body_limit(max_message)));
    }
    let routes = services
        .into_axum_router()
        .layer(learner_gate)
        .merge(web)
        .fallback(gateway::not_found)
        .layer(axum::middleware::from_fn(gateway::cors));
    let result = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .accept_http1(true)
        .layer(counter)
        .add_routes(routes.into())
        .serve_with_incoming_shutdown(incoming, stopped_signal(stopped))
        .await;
    if let Err(err) = result {
        tracing::error!(error = %err, "client server failed");
    }
}

/// `--listen-metrics-urls`: the HTTP endpoints alone, as etcd serves them there.
async fn serve_metrics<IO: Connection>(node: Arc<Node>, incoming: impl Incoming<IO>, stopped: signal::Receiver<bool>) {
    let result = tonic::transport::Server::builder()
        .accept_http1(true)
        .add_routes(http::router(node).into())
        .serve_with_incoming_shutdown(incoming, stopped_signal(stopped))
        .await;
    if let Err(err) = result {
        tracing::error!(error = %err, "metrics server failed");
    }
}

async fn serve_peers<IO: Connection>(node: Arc<Node>, incoming: impl Incoming<IO>, stopped: signal::Receiver<bool>) {
    let service = peer::PeerService { node, stopped: stopped.clone() };
    let linked = service.clone();
    let incoming = listeners::sort_peer_connections(incoming, move |kind, io| linked.clone().serve_link(kind, io));
    let peer = RaftPeerServer::new(service)
        .max_decoding_message_size(MAX_PEER_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_PEER_MESSAGE_BYTES);
    let result = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(peer)
        .serve_with_incoming_shutdown(incoming, stopped_signal(stopped))
        .await;
    if let Err(err) = result {
        tracing::error!(error = %err, "peer server failed");
    }
}

/// Keeps the leadership metrics current, the peer clients' members those of
/// the latest membership, and the log's fsync inline unless this member leads peers.
async fn track_leadership(node: Arc<Node>, inline_fsync: Arc<AtomicBool>) {
    // The server metrics change with the leader and the membership, not with every write.
    let mut metrics = node.raft.server_metrics();
    let mut last_leader = None;
    let mut last_membership = None;
    loop {
        {
            let current = metrics.borrow_and_update();
            let membership = &current.membership_config;
            if last_membership.as_ref() != Some(membership.log_id()) {
                node.peers.set_members(membership.membership().nodes());
                last_membership = Some(*membership.log_id());
            }
            let leads_peers = current.state == ServerState::Leader && membership.membership().voter_ids().count() > 1;
            inline_fsync.store(!leads_peers, Ordering::Relaxed);
        }
        // Also when nothing changed: a leader not heard from for long is none.
        let leader = node.known_leader();
        METRICS.has_leader.store(i64::from(leader.is_some()), Ordering::Relaxed);
        METRICS.is_leader.store(i64::from(leader == Some(node.id)), Ordering::Relaxed);
        if leader.is_some() && leader != last_leader {
            METRICS.leader_changes.fetch_add(1, Ordering::Relaxed);
        }
        if leader.is_some() {
            last_leader = leader;
        }
        tokio::select! {
            changed = metrics.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = tokio::time::sleep(LEADER_CHECK_INTERVAL) => {}
        }
    }
}

/// Returns once this member has applied a membership without itself, having
/// applied one with itself before (a joining member starts with none).
async fn removed_from_cluster(node: &Node) {
    let mut membership = node.state.subscribe_membership();
    let mut was_member = false;
    loop {
        let is_member = membership.borrow_and_update().membership().nodes().any(|(id, _)| *id == node.id);
        if was_member && !is_member {
            return;
        }
        was_member |= is_member;
        if membership.changed().await.is_err() {
            std::future::pending::<()>().await;
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
    let request = WriteRequest { request: Some(write_request::Request::Publish(attributes)), auth_info: None };
    for _ in 0..PUBLISH_ATTEMPTS {
        match node.write(request.clone()).await {
            Ok(_) => return,
            Err(status) => tracing::debug!(%status, "publishing member attributes"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tracing::warn!("gave up publishing member attributes");
}
