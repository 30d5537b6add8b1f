//! `cairn-bench kube`: a density run as ClusterLoader2's density test does
//! it. It starts the whole cluster as real processes (store, API server,
//! controller-manager, scheduler, hollow nodes in a few kubelet processes),
//! saturates the nodes with Deployments at a set rate, then creates latency
//! pods one Deployment at a time, and measures what Kubernetes' SLOs name:
//! pod startup, API call latency from both sides, scheduler throughput, the
//! RSS and CPU of every process, and the store's size. A last phase opens
//! many pod watchers and checks that each got every event.

mod measure;
mod observe;
mod page;
mod usage;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cairn_testkit::kube::{KubeCluster, KubeOptions};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ServiceAccount};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use serde::Serialize;
use serde_json::json;

use measure::{CallKind, Distribution, PodTimes, ServerLatency, SloRow, Startup, Throughput};
use observe::Timelines;
use usage::{ComponentUsage, Usage};

#[derive(clap::Args, Clone, Debug, Serialize)]
pub struct DensityOptions {
    /// Hollow nodes.
    #[arg(long, default_value_t = 1000)]
    pub nodes: usize,
    /// Hollow nodes per kubelet process.
    #[arg(long, default_value_t = 250)]
    pub nodes_per_kubelet: usize,
    /// Saturation pods per node.
    #[arg(long, default_value_t = 30)]
    pub pods_per_node: usize,
    /// Replicas of each saturation Deployment.
    #[arg(long, default_value_t = 100)]
    pub deployment_replicas: usize,
    /// Saturation pods created per second (through Deployments).
    #[arg(long, default_value_t = 100.0)]
    pub pods_per_second: f64,
    /// Latency pods, one Deployment of one replica each, created after saturation.
    #[arg(long, default_value_t = 100)]
    pub latency_pods: usize,
    #[arg(long, default_value_t = 5.0)]
    pub latency_pods_per_second: f64,
    /// Concurrent pod watchers of the last phase.
    #[arg(long, default_value_t = 1000)]
    pub watchers: usize,
    /// Pods created and deleted under the watchers.
    #[arg(long, default_value_t = 100)]
    pub watched_pods: usize,
    #[arg(long, default_value_t = 3)]
    pub store_members: usize,
    /// Single-pod GETs and full lists timed from the client.
    #[arg(long, default_value_t = 200)]
    pub gets: usize,
    #[arg(long, default_value_t = 5)]
    pub lists: usize,
    /// Where results.md, results.json and the charts go.
    #[arg(long, default_value = "docs/benchmarks/kube")]
    pub out: PathBuf,
}

/// Client-side timings of one kind of call.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ClientCalls(BTreeMap<String, Vec<f64>>);

impl ClientCalls {
    fn record(&mut self, name: &str, started: Instant) {
        self.0.entry(name.to_string()).or_default().push(started.elapsed().as_secs_f64());
    }

    pub fn distributions(&self) -> BTreeMap<String, Distribution> {
        self.0.iter().map(|(name, samples)| (name.clone(), Distribution::of(samples))).collect()
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct WatchersResult {
    pub watchers: usize,
    /// Events the store's own watch delivered for the namespace.
    pub expected_events: u64,
    /// Watchers whose events matched the store's, event for event.
    pub complete: usize,
    pub broken: u64,
    /// Until every watcher had every event, after the last write.
    pub drain_seconds: f64,
    pub apiserver_rss_before: u64,
    pub apiserver_rss_with_watchers: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Results {
    pub options: DensityOptions,
    pub nodes_ready: usize,
    pub node_registration_seconds: f64,
    pub saturation_pods: usize,
    pub saturation_running: usize,
    pub saturation_seconds: f64,
    pub saturation_startup: Startup,
    pub latency_startup: Startup,
    pub scheduling: Throughput,
    pub client_calls: BTreeMap<String, Distribution>,
    pub server_latencies: Vec<ServerLatency>,
    pub watchers: Option<WatchersResult>,
    pub usage: BTreeMap<String, ComponentUsage>,
    pub store_db_bytes: i64,
    pub store_keys: i64,
    /// (seconds since saturation began, created, bound, running).
    pub progress: Vec<(f64, usize, usize, usize)>,
    pub slos: Vec<SloRow>,
}

const NAMESPACE: &str = "density";
const WATCH_NAMESPACE: &str = "watchers";

/// Prints a progress line on stderr.
macro_rules! progress {
    ($started:expr, $($arg:tt)*) => {
        eprintln!("[{:>7.1}s] {}", $started.elapsed().as_secs_f64(), format!($($arg)*))
    };
}

pub async fn run(options: &DensityOptions) -> Result<Results> {
    let started = Instant::now();
    let kubelets = options.nodes.div_ceil(options.nodes_per_kubelet.max(1));
    progress!(
        started,
        "starting {} store members, an API server, a controller-manager, a scheduler and {} hollow nodes in {kubelets} kubelet processes",
        options.store_members,
        options.nodes
    );
    let cluster = KubeCluster::start(KubeOptions {
        store_members: options.store_members,
        replicas: 1,
        nodes: options.nodes,
        nodes_per_kubelet: options.nodes_per_kubelet,
        proxy: false,
        kubelet_flags: vec!["--image-pull-delay=0s".into()],
        ..KubeOptions::default()
    })
    .await?;
    let usage = Usage::start(component_pids(&cluster), Duration::from_secs(2));
    let client = cairn_kube::client::connect(&cluster.api.kubeconfig, "cairn-bench/density").await?;

    let registration = Instant::now();
    let nodes_ready = wait_nodes_ready(&client, options.nodes, &started).await?;
    let node_registration_seconds = registration.elapsed().as_secs_f64();
    progress!(started, "{nodes_ready} nodes Ready in {node_registration_seconds:.1}s");

    let mut calls = ClientCalls::default();
    create_namespace(&client, NAMESPACE, &mut calls).await?;
    let timelines = Timelines::start(client.clone(), NAMESPACE);

    // Saturation: Deployments of `deployment_replicas` at `pods_per_second`.
    let saturation_pods = options.nodes * options.pods_per_node;
    let sizes = deployment_sizes(saturation_pods, options.deployment_replicas);
    progress!(
        started,
        "saturation: {saturation_pods} pods in {} Deployments at {} pods/s",
        sizes.len(),
        options.pods_per_second
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    let saturation_started = Instant::now();
    let mut progress_log = Vec::new();
    let mut created = 0usize;
    let mut last_report = Instant::now();
    for (index, replicas) in sizes.iter().enumerate() {
        let due = Duration::from_secs_f64(created as f64 / options.pods_per_second.max(0.001));
        tokio::time::sleep(due.saturating_sub(saturation_started.elapsed())).await;
        let call = Instant::now();
        deployments.create(&PostParams::default(), &deployment(&format!("saturation-{index}"), *replicas)?).await?;
        calls.record("create deployments", call);
        created += replicas;
        if last_report.elapsed() >= Duration::from_secs(5) {
            let (_, bound, running) = timelines.counts("saturation-");
            progress_log.push((saturation_started.elapsed().as_secs_f64(), created, bound, running));
            progress!(started, "created {created}/{saturation_pods}, bound {bound}, running {running}");
            last_report = Instant::now();
        }
    }
    let budget = Duration::from_secs_f64(saturation_pods as f64 / options.pods_per_second.max(0.001) * 2.0 + 300.0);
    let saturation_running =
        wait_running(&timelines, "saturation-", saturation_pods, budget, &started, |bound, running| {
            progress_log.push((saturation_started.elapsed().as_secs_f64(), saturation_pods, bound, running));
        })
        .await;
    let saturation_seconds = saturation_started.elapsed().as_secs_f64();
    progress!(started, "saturation: {saturation_running}/{saturation_pods} running after {saturation_seconds:.1}s");

    // Latency pods: one at a time into the saturated cluster.
    progress!(started, "latency pods: {} at {}/s", options.latency_pods, options.latency_pods_per_second);
    let latency_started = Instant::now();
    for index in 0..options.latency_pods {
        let due = Duration::from_secs_f64(index as f64 / options.latency_pods_per_second.max(0.001));
        tokio::time::sleep(due.saturating_sub(latency_started.elapsed())).await;
        let call = Instant::now();
        deployments.create(&PostParams::default(), &deployment(&format!("latency-{index}"), 1)?).await?;
        calls.record("create deployments", call);
    }
    let latency_budget = Duration::from_secs(120);
    wait_running(&timelines, "latency-", options.latency_pods, latency_budget, &started, |_, _| {}).await;

    // Reads, timed from the client.
    progress!(started, "timing {} GETs and {} lists of every pod", options.gets, options.lists);
    time_reads(&client, options, &mut calls).await?;

    let watchers = if options.watchers > 0 {
        Some(run_watchers(&client, &cluster, &usage, options, &started).await?)
    } else {
        None
    };

    let metrics = client.request_text(http::Request::get("/metrics").body(Vec::new())?).await?;
    let server_latencies = measure::server_latencies(&metrics);
    let (store_db_bytes, store_keys) = store_size(&cluster).await?;
    let pods = timelines.snapshot();
    let (mut saturation, mut latency): (Vec<&PodTimes>, Vec<&PodTimes>) = (Vec::new(), Vec::new());
    for (name, times) in &pods {
        match name.starts_with("saturation-") {
            true => saturation.push(times),
            false => latency.push(times),
        }
    }
    let bindings: Vec<f64> = saturation.iter().filter_map(|t| t.scheduled).collect();
    let mut results = Results {
        options: options.clone(),
        nodes_ready,
        node_registration_seconds,
        saturation_pods,
        saturation_running,
        saturation_seconds,
        saturation_startup: measure::startup(saturation.into_iter()),
        latency_startup: measure::startup(latency.into_iter()),
        scheduling: measure::throughput(&bindings),
        client_calls: calls.distributions(),
        server_latencies,
        watchers,
        usage: usage.report(),
        store_db_bytes,
        store_keys,
        progress: progress_log,
        slos: Vec::new(),
    };
    results.slos = slos(&results);
    page::write(&options.out, &results)?;
    progress!(started, "wrote {}", options.out.join("results.md").display());
    Ok(results)
}

fn component_pids(cluster: &KubeCluster) -> BTreeMap<String, Vec<u32>> {
    let mut groups = BTreeMap::new();
    for (index, member) in cluster.store.members.iter().enumerate() {
        groups.insert(format!("store-{index}"), member.pid().into_iter().collect());
    }
    groups.insert("apiserver".into(), cluster.api.pid().into_iter().collect());
    groups.insert("controller-manager".into(), cluster.controller_managers.iter().filter_map(|c| c.pid()).collect());
    groups.insert("scheduler".into(), cluster.schedulers.iter().filter_map(|c| c.pid()).collect());
    groups.insert("kubelets".into(), cluster.kubelets.iter().filter_map(|c| c.pid()).collect());
    groups.insert("bench".into(), vec![std::process::id()]);
    groups
}

/// Saturation Deployments of `replicas` each, the last one smaller.
fn deployment_sizes(pods: usize, replicas: usize) -> Vec<usize> {
    let replicas = replicas.max(1);
    (0..pods.div_ceil(replicas)).map(|i| replicas.min(pods - i * replicas)).collect()
}

fn deployment(name: &str, replicas: usize) -> Result<Deployment> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"group": "density"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"name": name}},
            "template": {
                "metadata": {"labels": {"name": name, "group": "density"}},
                "spec": {"containers": [{
                    "name": "pause", "image": "registry.k8s.io/pause:3.10",
                    "resources": {"requests": {"cpu": "10m", "memory": "10M"}},
                }]},
            },
        },
    }))?)
}

async fn wait_nodes_ready(client: &Client, want: usize, started: &Instant) -> Result<usize> {
    let nodes: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(120 + want as u64 / 5);
    loop {
        let list = nodes.list(&ListParams::default()).await?;
        let ready = list
            .items
            .iter()
            .filter(|n| {
                let conditions = n.status.as_ref().and_then(|s| s.conditions.as_ref());
                conditions.into_iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True")
            })
            .count();
        if ready >= want {
            return Ok(ready);
        }
        if Instant::now() > deadline {
            bail!("only {ready} of {want} nodes became Ready");
        }
        progress!(started, "nodes Ready {ready}/{want}");
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

async fn create_namespace(client: &Client, name: &str, calls: &mut ClientCalls) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let call = Instant::now();
    namespaces.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": name}}))?).await?;
    calls.record("create namespaces", call);
    // Pods are refused until the namespace's default ServiceAccount exists.
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), name);
    for _ in 0..300 {
        if accounts.get_opt("default").await?.is_some() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("namespace {name} got no default ServiceAccount in 30 s")
}

/// Waits until `want` pods named `prefix…` run, or the budget is spent; how many run.
async fn wait_running(
    timelines: &Timelines,
    prefix: &str,
    want: usize,
    budget: Duration,
    started: &Instant,
    mut on_tick: impl FnMut(usize, usize),
) -> usize {
    let deadline = Instant::now() + budget;
    loop {
        let (seen, bound, running) = timelines.counts(prefix);
        on_tick(bound, running);
        if running >= want || Instant::now() > deadline {
            return running;
        }
        progress!(started, "{prefix}: seen {seen}, bound {bound}, running {running} of {want}");
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

async fn time_reads(client: &Client, options: &DensityOptions, calls: &mut ClientCalls) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let names: Vec<String> = pods
        .list_metadata(&ListParams::default().match_any().limit(options.gets.max(1) as u32))
        .await?
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    for name in names.iter().cycle().take(options.gets) {
        let call = Instant::now();
        pods.get(name).await?;
        calls.record("get pod", call);
    }
    // Whole bodies, unparsed: what the server and the wire cost, not serde's Pod.
    for _ in 0..options.lists {
        for (name, uri) in [
            ("list pods rv=0 (watch cache)", "/api/v1/pods?resourceVersion=0"),
            ("list pods (consistent)", "/api/v1/pods"),
            ("list pods rv=0 in a namespace", "/api/v1/namespaces/density/pods?resourceVersion=0"),
        ] {
            let call = Instant::now();
            let body = client.request_text(http::Request::get(uri).body(Vec::new())?).await?;
            calls.record(name, call);
            if body.len() < 2 {
                bail!("{uri} answered an empty body");
            }
        }
    }
    Ok(())
}

async fn run_watchers(
    client: &Client,
    cluster: &KubeCluster,
    usage: &Usage,
    options: &DensityOptions,
    started: &Instant,
) -> Result<WatchersResult> {
    let mut calls = ClientCalls::default();
    create_namespace(client, WATCH_NAMESPACE, &mut calls).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), WATCH_NAMESPACE);
    let revision = pods.list_metadata(&ListParams::default()).await?.metadata.resource_version.unwrap_or_default();
    let revision_number: i64 = revision.parse().context("a list's resourceVersion")?;
    let truth = observe::store_truth(&cluster.store.endpoints(), WATCH_NAMESPACE, revision_number).await?;
    let apiserver_rss_before = usage.rss_now("apiserver");
    progress!(started, "opening {} pod watchers from resourceVersion {revision}", options.watchers);
    // A client per hundred watchers: each is one connection pool.
    let mut clients = Vec::new();
    for _ in 0..options.watchers.div_ceil(100) {
        clients.push(cairn_kube::client::connect(&cluster.api.kubeconfig, "cairn-bench/watcher").await?);
    }
    let tallies: Vec<_> = (0..options.watchers)
        .map(|i| observe::watch_from(clients[i / 100].clone(), WATCH_NAMESPACE, revision.clone()))
        .collect();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let apiserver_rss_with_watchers = usage.rss_now("apiserver");
    progress!(started, "writing {} pods under the watchers, then deleting them", options.watched_pods);
    let pod = |i: usize| -> Result<Pod> {
        // Pinned to a node that does not exist: no kubelet or scheduler touches it.
        Ok(serde_json::from_value(json!({
            "metadata": {"name": format!("watched-{i}")},
            "spec": {"nodeName": "no-such-node", "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]},
        }))?)
    };
    for i in 0..options.watched_pods {
        pods.create(&PostParams::default(), &pod(i)?).await?;
    }
    for i in 0..options.watched_pods {
        pods.delete(&format!("watched-{i}"), &kube::api::DeleteParams::default().grace_period(0)).await?;
    }
    let written = Instant::now();
    let deadline = written + Duration::from_secs(120);
    let mut drain_seconds = f64::NAN;
    let complete = loop {
        let expected = truth.get();
        let complete = tallies.iter().filter(|t| t.get() == expected).count();
        if complete == tallies.len() && expected.0 >= 2 * options.watched_pods as u64 {
            drain_seconds = written.elapsed().as_secs_f64();
            break complete;
        }
        if Instant::now() > deadline {
            break complete;
        }
        progress!(started, "watchers with every event: {complete}/{} ({} events expected)", tallies.len(), expected.0);
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    Ok(WatchersResult {
        watchers: options.watchers,
        expected_events: truth.get().0,
        complete,
        broken: tallies.iter().map(|t| t.broken.load(std::sync::atomic::Ordering::Relaxed)).sum(),
        drain_seconds,
        apiserver_rss_before,
        apiserver_rss_with_watchers,
    })
}

async fn store_size(cluster: &KubeCluster) -> Result<(i64, i64)> {
    let endpoints = cluster.store.endpoints();
    let mut client = etcd_client::Client::connect(&endpoints[..1], None).await?;
    let status = client.status().await?;
    let keys = client.get("", Some(etcd_client::GetOptions::new().with_all_keys().with_count_only())).await?;
    Ok((status.db_size(), keys.count()))
}

fn slos(results: &Results) -> Vec<SloRow> {
    let mut rows = Vec::new();
    let worst = measure::worst_by_kind(&results.server_latencies, 10);
    for kind in [CallKind::Mutating, CallKind::Get, CallKind::NamespaceList, CallKind::ClusterList] {
        if let Some(series) = worst.get(&kind) {
            let name = format!(
                "{} p99 (server; worst: {} {}{})",
                kind.name(),
                series.verb,
                series.resource,
                if series.subresource.is_empty() { String::new() } else { format!("/{}", series.subresource) }
            );
            rows.push(SloRow::at_most(name, kind.bound(), series.p99, "s"));
        }
    }
    let latency = &results.latency_startup.create_to_running;
    rows.push(SloRow::at_most("pod startup p99, latency pods (Kubernetes SLO)", 5.0, latency.p99, "s"));
    rows.push(SloRow::at_most("pod startup p99, latency pods (target)", 2.0, latency.p99, "s"));
    rows.push(SloRow::at_most(
        "pod startup p99, saturation pods",
        5.0,
        results.saturation_startup.create_to_running.p99,
        "s",
    ));
    rows.push(SloRow::at_least("scheduler throughput (average)", 300.0, results.scheduling.average, "pods/s"));
    if let Some(list) = results.client_calls.get("list pods rv=0 (watch cache)") {
        rows.push(SloRow::at_most(
            format!("list of all {} pods, resourceVersion=0, p99 (client)", results.saturation_running),
            1.0,
            list.p99,
            "s",
        ));
    }
    rows.push(SloRow {
        name: "saturation pods running".into(),
        target: format!("{}", results.saturation_pods),
        measured: format!("{}", results.saturation_running),
        pass: results.saturation_running == results.saturation_pods,
    });
    if let Some(watchers) = &results.watchers {
        rows.push(SloRow {
            name: "watchers that got every event".into(),
            target: format!("{}", watchers.watchers),
            measured: format!("{}", watchers.complete),
            pass: watchers.complete == watchers.watchers,
        });
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturation_is_split_into_deployments_with_a_smaller_last_one() {
        assert_eq!(deployment_sizes(250, 100), vec![100, 100, 50]);
        assert_eq!(deployment_sizes(200, 100), vec![100, 100]);
        assert_eq!(deployment_sizes(5, 0), vec![1; 5]);
        assert!(deployment(&"x".repeat(10), 3).is_ok());
    }
}
