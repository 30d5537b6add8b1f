//! `cairn-kube controller-manager`: kube-controller-manager's controllers over
//! shared informers. Each controller is a pure reconcile over the caches that
//! returns the writes to make (`client::Write`); `run_loop` performs them and
//! waits for the next change. Only the leader of the
//! `kube-system/kube-controller-manager` Lease runs them.

pub mod certificates;
pub mod deployment;
pub mod endpoints;
pub mod gc;
pub mod job;
pub mod namespace;
pub mod node_lifecycle;
pub mod replicaset;
pub mod serviceaccount;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Endpoints, Namespace, Node, Pod, Service, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::runtime::watcher;
use kube::{Api, Client};

use crate::client::events::Reporter;
use crate::client::informer::Changes;
use crate::client::leader::LeaderElectionFlags;
use crate::client::{self, ClientError, Informer, Write};
use crate::config::parse_duration;

#[derive(Args, Clone, Debug)]
pub struct ControllerManagerConfig {
    #[arg(long = "kubeconfig")]
    pub kubeconfig: PathBuf,
    #[command(flatten)]
    pub leader_election: LeaderElectionFlags,
    #[arg(long = "node-monitor-period", default_value = "5s", value_parser = parse_duration)]
    pub node_monitor_period: Duration,
    /// 40 s, the reference timeline's value (kube 1.32 moved its default to 50 s).
    #[arg(long = "node-monitor-grace-period", default_value = "40s", value_parser = parse_duration)]
    pub node_monitor_grace_period: Duration,
    /// How often every controller reconciles everything, changed or not.
    #[arg(long = "min-resync-period", default_value = "30s", value_parser = parse_duration)]
    pub min_resync_period: Duration,
    /// The CA that signs kubelets' and API clients' certificates; without it
    /// approved requests wait for another signer.
    #[arg(long = "cluster-signing-cert-file")]
    pub cluster_signing_cert_file: Option<PathBuf>,
    #[arg(long = "cluster-signing-key-file")]
    pub cluster_signing_key_file: Option<PathBuf>,
    /// The longest a signed certificate lasts.
    #[arg(long = "cluster-signing-duration", default_value = "8760h0m0s", value_parser = parse_duration)]
    pub cluster_signing_duration: Duration,
}

impl ControllerManagerConfig {
    /// The cluster CA, when both signing files are given.
    pub fn signer(&self) -> Result<Option<crate::certificates::Signer>, ControllerError> {
        let (Some(cert), Some(key)) = (&self.cluster_signing_cert_file, &self.cluster_signing_key_file) else {
            return Ok(None);
        };
        let read = |path: &PathBuf| {
            std::fs::read_to_string(path)
                .map_err(|e| ControllerError::Signing(format!("reading {}: {e}", path.display())))
        };
        let signer = crate::certificates::Signer::from_pem(&read(cert)?, &read(key)?)
            .map_err(|e| ControllerError::Signing(e.to_string()))?;
        Ok(Some(signer))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("the cluster signing CA: {0}")]
    Signing(String),
    #[error("{0}")]
    Client(#[from] ClientError),
}

/// Every informer the controllers read, started once and shared.
pub struct Caches {
    pub pods: Informer<Pod>,
    pub replica_sets: Informer<ReplicaSet>,
    pub deployments: Informer<Deployment>,
    pub jobs: Informer<Job>,
    pub services: Informer<Service>,
    pub endpoints: Informer<Endpoints>,
    pub endpoint_slices: Informer<EndpointSlice>,
    pub nodes: Informer<Node>,
    pub node_leases: Informer<Lease>,
    pub namespaces: Informer<Namespace>,
    pub service_accounts: Informer<ServiceAccount>,
    pub certificate_requests: Informer<CertificateSigningRequest>,
}

impl Caches {
    pub fn start(client: &Client) -> Caches {
        let all = watcher::Config::default();
        // Each informer its own counter: a controller wakes for what it reads.
        let changes = Changes::default;
        Caches {
            pods: Informer::start(Api::all(client.clone()), all.clone(), changes()),
            replica_sets: Informer::start(Api::all(client.clone()), all.clone(), changes()),
            deployments: Informer::start(Api::all(client.clone()), all.clone(), changes()),
            jobs: Informer::start(Api::all(client.clone()), all.clone(), changes()),
            services: Informer::start(Api::all(client.clone()), all.clone(), changes()),
            endpoints: Informer::start(Api::all(client.clone()), all.clone(), changes()),
            endpoint_slices: Informer::start(Api::all(client.clone()), all.clone(), changes()),
            nodes: Informer::start(Api::all(client.clone()), all.clone(), changes()),
            node_leases: Informer::start(Api::namespaced(client.clone(), "kube-node-lease"), all.clone(), changes()),
            namespaces: Informer::start(Api::all(client.clone()), all.clone(), changes()),
            service_accounts: Informer::start(Api::all(client.clone()), all.clone(), changes()),
            certificate_requests: Informer::start(Api::all(client.clone()), all, changes()),
        }
    }

    async fn synced(&self) -> bool {
        let wait = Duration::from_secs(10);
        self.pods.synced(wait).await
            && self.replica_sets.synced(wait).await
            && self.deployments.synced(wait).await
            && self.jobs.synced(wait).await
            && self.services.synced(wait).await
            && self.endpoints.synced(wait).await
            && self.endpoint_slices.synced(wait).await
            && self.nodes.synced(wait).await
            && self.node_leases.synced(wait).await
            && self.namespaces.synced(wait).await
            && self.service_accounts.synced(wait).await
            && self.certificate_requests.synced(wait).await
    }
}

/// What each controller gets.
pub struct Context {
    pub client: Client,
    pub caches: Caches,
    pub config: ControllerManagerConfig,
}

impl Context {
    pub fn reporter(&self, component: &str) -> Reporter {
        Reporter::new(component, None).instance(&self.config.leader_election.identity())
    }
}

/// The ownerReference a controller puts on what it creates.
pub fn controller_ref(api_version: &str, kind: &str, meta: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The uid of the object's controller, if it has one.
pub fn controller_uid(meta: &ObjectMeta) -> Option<&str> {
    meta.owner_references.iter().flatten().find(|o| o.controller == Some(true)).map(|o| o.uid.as_str())
}

/// Groups objects by their controller's uid (borrowed: this runs over every
/// pod on every pass).
pub fn by_controller<K: kube::Resource>(objects: &[Arc<K>]) -> HashMap<&str, Vec<Arc<K>>> {
    let mut groups: HashMap<&str, Vec<Arc<K>>> = HashMap::new();
    for object in objects {
        if let Some(uid) = controller_uid(object.meta()) {
            groups.entry(uid).or_default().push(object.clone());
        }
    }
    groups
}

/// A kube object as JSON with its apiVersion and kind, for Events.
pub fn object_json<K: kube::Resource<DynamicType = ()> + serde::Serialize>(object: &K) -> serde_json::Value {
    let mut value = serde_json::to_value(object).unwrap_or_default();
    value["apiVersion"] = serde_json::json!(K::api_version(&()));
    value["kind"] = serde_json::json!(K::kind(&()));
    value
}

/// A pod counts for its controller until it ends or is being deleted.
pub fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    pod.metadata.deletion_timestamp.is_none() && !matches!(phase, Some("Succeeded") | Some("Failed"))
}

pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Ready for at least `min_ready_seconds`.
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: jiff::Timestamp) -> bool {
    let ready_since = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready" && c.status == "True"))
        .map(|c| c.last_transition_time.as_ref().map(|t| t.0));
    match ready_since {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(None) => false,
        Some(Some(since)) => now.duration_since(since).as_secs() >= i64::from(min_ready_seconds),
    }
}

/// Runs one controller: wait for a change to what it reads (or the resync), reconcile, write.
pub async fn run_loop<F, Fut>(ctx: Arc<Context>, name: &'static str, reads: Changes, resync: Duration, mut pass: F)
where
    F: FnMut(Arc<Context>) -> Fut,
    Fut: Future<Output = Vec<Write>>,
{
    let mut wake = reads.subscribe();
    loop {
        client::informer::next_pass(&mut wake, resync).await;
        let writes = pass(ctx.clone()).await;
        if !writes.is_empty() {
            client::writes::perform_all(&ctx.client, name, writes).await;
        }
    }
}

pub async fn run(config: ControllerManagerConfig) -> Result<(), ControllerError> {
    // A CA that does not load stops the start, not the first signing.
    let signer = config.signer()?.map(Arc::new);
    let election = config.leader_election.clone();
    let kubeconfig = config.kubeconfig.clone();
    let user_agent = "kube-controller-manager/v1.33.7-cairn";
    let start = |client| controllers(client, config, signer);
    Ok(election.run(&kubeconfig, user_agent, "kube-controller-manager", start).await?)
}

async fn controllers(
    client: Client,
    config: ControllerManagerConfig,
    signer: Option<Arc<crate::certificates::Signer>>,
) -> Result<(), ClientError> {
    let caches = Caches::start(&client);
    while !caches.synced().await {
        tracing::info!("waiting for the controller caches to sync");
    }
    let ctx = Arc::new(Context { client, caches, config });
    tracing::info!("controller caches synced; starting controllers");
    let resync = ctx.config.min_resync_period;
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(replicaset::run(ctx.clone()));
    tasks.spawn(deployment::run(ctx.clone()));
    tasks.spawn(job::run(ctx.clone()));
    tasks.spawn(node_lifecycle::run(ctx.clone()));
    tasks.spawn(node_lifecycle::run_taint_eviction(ctx.clone()));
    let c = &ctx.caches;
    let endpoint_reads =
        Changes::any_of(&[c.services.changes(), c.pods.changes(), c.endpoints.changes(), c.endpoint_slices.changes()]);
    tasks.spawn(run_loop(ctx.clone(), "endpoints", endpoint_reads, resync, endpoints::pass));
    let account_reads = Changes::any_of(&[c.namespaces.changes(), c.service_accounts.changes()]);
    tasks.spawn(run_loop(ctx.clone(), "serviceaccount", account_reads, resync, serviceaccount::pass));
    let requests = || Changes::any_of(&[c.certificate_requests.changes()]);
    tasks.spawn(run_loop(ctx.clone(), "csrapproving", requests(), resync, certificates::approve_pass));
    if let Some(signer) = signer {
        let longest = ctx.config.cluster_signing_duration;
        let sign = move |ctx: Arc<Context>| {
            let signer = signer.clone();
            async move { certificates::sign(&ctx.caches.certificate_requests.state(), &signer, client::now(), longest) }
        };
        tasks.spawn(run_loop(ctx.clone(), "csrsigning", requests(), resync, sign));
    }
    tasks.spawn(namespace::run(ctx.clone()));
    tasks.spawn(gc::run(ctx.clone()));
    while let Some(done) = tasks.join_next().await {
        if let Err(error) = done {
            tracing::error!(%error, "a controller stopped");
        }
    }
    Ok(())
}
