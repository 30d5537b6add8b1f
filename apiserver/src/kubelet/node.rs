//! One hollow node: registration, its Lease, its status, and a pod worker for
//! every pod bound to it.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{GetParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client};
use serde_json::{json, Value};
use tokio::sync::watch;

use super::cri::Runtime;
use super::pod::{NodeContext, Worker};
use super::runtime::{self, SimRuntime};
use super::{KubeletConfig, KubeletError};
use crate::client::events::Reporter;
use crate::client::{self, Informer, Write};

pub const KUBELET_VERSION: &str = "v1.33.7-cairn";

pub struct HollowNode {
    ctx: Arc<NodeContext>,
    pod_cidr: String,
    /// The simulated runtime's CRI server, when it has one.
    _cri_server: Option<tokio::task::JoinHandle<()>>,
    labels: Value,
    taints: Vec<Value>,
    capacity: Value,
    status_every: Duration,
    report_every: Duration,
    lease_seconds: u32,
}

/// `key[=value]:Effect`, as `--register-with-taints` takes them.
fn parse_taint(text: &str) -> Option<Value> {
    let (key_value, effect) = text.rsplit_once(':')?;
    let mut taint = json!({"effect": effect});
    match key_value.split_once('=') {
        Some((key, value)) => {
            taint["key"] = json!(key);
            taint["value"] = json!(value);
        }
        None => taint["key"] = json!(key_value),
    }
    Some(taint)
}

/// The four conditions a healthy kubelet reports.
pub fn healthy_conditions(now: &str, since: &HashMap<String, String>) -> Vec<Value> {
    [
        ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
    ]
    .into_iter()
    .map(|(kind, status, reason, message)| {
        json!({"type": kind, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": now,
               "lastTransitionTime": since.get(kind).cloned().unwrap_or_else(|| now.to_string())})
    })
    .collect()
}

/// The runtime a node's pods run on: `--container-runtime-endpoint` if given;
/// otherwise the built-in simulated runtime, served on a CRI socket under
/// `--root-dir` and reached through it (in-process when built without the CRI API).
fn connect_runtime(
    config: &KubeletConfig,
    node: &str,
    sim: Arc<SimRuntime>,
) -> Result<(Runtime, Option<tokio::task::JoinHandle<()>>), KubeletError> {
    #[cfg(cri_grpc)]
    {
        use super::cri::remote::RemoteRuntime;
        if let Some(endpoint) = &config.container_runtime_endpoint {
            return Ok((Runtime::Remote(Box::new(RemoteRuntime::connect(endpoint)?)), None));
        }
        let socket = config.root_dir().join(node).join("cri.sock");
        let server = super::cri::serve(sim, &socket)
            .map_err(|source| KubeletError::Socket { path: socket.display().to_string(), source })?;
        let runtime = RemoteRuntime::connect(&format!("unix://{}", socket.display()))?;
        Ok((Runtime::Remote(Box::new(runtime)), Some(server)))
    }
    #[cfg(not(cri_grpc))]
    {
        if config.container_runtime_endpoint.is_some() {
            return Err(KubeletError::NoCri);
        }
        let _ = node;
        Ok((Runtime::Local(sim), None))
    }
}

impl HollowNode {
    pub fn new(client: Client, config: &KubeletConfig, index: u32) -> Result<HollowNode, KubeletError> {
        let name = config.node_name(index);
        let pod_cidr = config.pod_cidr(index)?;
        let node_ip = Ipv4Addr::from(u32::from(config.node_ip_base) + index);
        let sim = SimRuntime::new(pod_cidr, node_ip, &config.images, config.image_pull_delay);
        let pod_cidr = sim.pod_cidr().to_string();
        let (runtime, cri_server) = connect_runtime(config, &name, sim)?;
        let mut labels = json!({
            "beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64", "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
        });
        for label in &config.node_labels {
            if let Some((key, value)) = label.split_once('=') {
                labels[key] = json!(value);
            }
        }
        let capacity = json!({
            "cpu": config.cpu, "memory": config.memory, "pods": config.max_pods.to_string(),
            "ephemeral-storage": "100Gi", "hugepages-1Gi": "0", "hugepages-2Mi": "0",
        });
        Ok(HollowNode {
            pod_cidr,
            _cri_server: cri_server,
            ctx: Arc::new(NodeContext {
                client,
                reporter: Reporter::new("kubelet", Some(&name)),
                node_name: name,
                node_ip,
                runtime,
            }),
            labels,
            taints: config.register_with_taints.iter().filter_map(|t| parse_taint(t)).collect(),
            capacity,
            status_every: config.node_status_update_frequency,
            report_every: config.node_status_report_frequency,
            lease_seconds: config.node_lease_duration_seconds,
        })
    }

    async fn status(&self, conditions: Vec<Value>) -> Value {
        let images: Vec<Value> = self
            .ctx
            .runtime
            .images()
            .await
            .iter()
            .map(|image| json!({"names": [runtime::image_id(image), image], "sizeBytes": 10_000_000}))
            .collect();
        let ip = self.ctx.node_ip.to_string();
        json!({
            "capacity": self.capacity,
            "allocatable": self.capacity,
            "conditions": conditions,
            "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": self.ctx.node_name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": format!("{:032x}", u32::from(self.ctx.node_ip)),
                "systemUUID": format!("{:032x}", u32::from(self.ctx.node_ip)),
                "bootID": format!("{:032x}", u32::from(self.ctx.node_ip)),
                "kernelVersion": "6.1.0-cairn", "osImage": "Cairn hollow node",
                "containerRuntimeVersion": "cairn-sim://0.1.0", "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64",
            },
            "images": images,
        })
    }

    /// Creates the Node, or takes over the one a previous run registered.
    async fn register(&self) -> Result<(), kube::Error> {
        let nodes: Api<Node> = Api::all(self.ctx.client.clone());
        let now = client::time_text(client::now());
        let node = json!({
            "metadata": {"name": self.ctx.node_name, "labels": self.labels,
                         "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
            "spec": {"podCIDR": self.pod_cidr, "podCIDRs": [self.pod_cidr],
                     "taints": self.taints},
            "status": self.status(healthy_conditions(&now, &HashMap::new())).await,
        });
        match nodes.create(&PostParams::default(), &crate::client::from_json(node)?).await {
            Ok(_) => {}
            Err(e) if client::is_conflict(&e) => {
                let patch = json!({"metadata": {"labels": self.labels}});
                Write::merge::<Node>("", &self.ctx.node_name, patch).perform(&self.ctx.client).await?;
            }
            Err(e) => return Err(e),
        }
        self.post_status(&mut None).await;
        let event = self.ctx.reporter.event(
            &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.ctx.node_name, "uid": self.ctx.node_name}}),
            false,
            "Starting",
            "Starting kubelet.",
        );
        client::writes::perform_all(&self.ctx.client, "kubelet", vec![event]).await;
        Ok(())
    }

    /// Posts the node's status when the server's copy is not healthy, the
    /// images changed, or `--node-status-report-frequency` has passed; the
    /// Lease is the heartbeat in between, as with the kubelet.
    async fn post_status(&self, last_report: &mut Option<Instant>) {
        let nodes: Api<Node> = Api::all(self.ctx.client.clone());
        // From the API server's cache, as the kubelet reads it (resourceVersion=0).
        let current = nodes.get_with(&self.ctx.node_name, &GetParams::any()).await.ok();
        let status = current.as_ref().and_then(|n| n.status.as_ref());
        let conditions = status.and_then(|s| s.conditions.clone()).unwrap_or_default();
        let healthy = |c: &k8s_openapi::api::core::v1::NodeCondition| {
            let want = if c.type_ == "Ready" { "True" } else { "False" };
            c.status == want
        };
        let all_healthy = conditions.len() >= 4 && conditions.iter().all(healthy);
        let images_posted = status.and_then(|s| s.images.as_ref()).map_or(0, Vec::len);
        let due = last_report.is_none_or(|at| at.elapsed() >= self.report_every);
        if all_healthy && images_posted == self.ctx.runtime.images().await.len() && !due {
            return;
        }
        let since: HashMap<String, String> = conditions
            .into_iter()
            .filter(healthy)
            .filter_map(|c| c.last_transition_time.map(|t| (c.type_, client::time_text(t.0))))
            .collect();
        let now = client::time_text(client::now());
        let patch = json!({"status": self.status(healthy_conditions(&now, &since)).await});
        let write = Write::merge_status::<Node>("", &self.ctx.node_name, patch);
        if client::writes::perform_all(&self.ctx.client, "kubelet", vec![write]).await.iter().all(Result::is_ok) {
            *last_report = Some(Instant::now());
        }
    }

    /// Renews the Lease by a patch, and creates it only when it is missing.
    async fn renew_lease(&self, owner_uid: &Option<String>) {
        let now = client::micro_time_text(client::now());
        let name = &self.ctx.node_name;
        let spec = json!({"holderIdentity": name, "leaseDurationSeconds": self.lease_seconds, "renewTime": now});
        let renew = Write::merge::<Lease>("kube-node-lease", name, json!({"spec": spec}));
        let renewed = client::writes::perform_all(&self.ctx.client, "kubelet", vec![renew]).await;
        if !renewed.iter().any(|r| r.as_ref().err().is_some_and(client::is_not_found)) {
            return;
        }
        let mut lease = json!({"metadata": {"name": name, "namespace": "kube-node-lease"}, "spec": spec});
        if let Some(uid) = owner_uid {
            lease["metadata"]["ownerReferences"] =
                json!([{"apiVersion": "v1", "kind": "Node", "name": name, "uid": uid}]);
        }
        let write = Write::create::<Lease>("kube-node-lease", lease);
        client::writes::perform_all(&self.ctx.client, "kubelet", vec![write]).await;
    }

    pub async fn run(self) -> Result<(), KubeletError> {
        let mut attempt = 0u32;
        while let Err(error) = self.register().await {
            attempt += 1;
            tracing::warn!(%error, node = %self.ctx.node_name, "registering the node failed; retrying");
            tokio::time::sleep(Duration::from_secs(u64::from(attempt.min(5)))).await;
        }
        let this = Arc::new(self);
        let heartbeat = this.clone();
        tokio::spawn(async move {
            let nodes: Api<Node> = Api::all(heartbeat.ctx.client.clone());
            let uid = nodes.get_opt(&heartbeat.ctx.node_name).await.ok().flatten().and_then(|n| n.metadata.uid);
            let lease_every = Duration::from_secs(u64::from(heartbeat.lease_seconds / 4).max(1));
            let mut lease_tick = tokio::time::interval(lease_every);
            let mut status_tick = tokio::time::interval(heartbeat.status_every);
            let mut last_report = Some(Instant::now());
            loop {
                tokio::select! {
                    _ = lease_tick.tick() => heartbeat.renew_lease(&uid).await,
                    _ = status_tick.tick() => heartbeat.post_status(&mut last_report).await,
                }
            }
        });
        this.run_pods().await
    }

    /// Keeps one worker per pod bound to this node.
    async fn run_pods(&self) -> Result<(), KubeletError> {
        let changed = crate::client::informer::Changes::default();
        let mut wake = changed.subscribe();
        let pods: Api<Pod> = Api::all(self.ctx.client.clone());
        let selector = format!("spec.nodeName={}", self.ctx.node_name);
        let informer = Informer::start(pods, watcher::Config::default().fields(&selector), changed.clone());
        let mut workers: HashMap<String, watch::Sender<Option<Arc<Pod>>>> = HashMap::new();
        loop {
            crate::client::informer::next_pass(&mut wake, Duration::from_secs(30)).await;
            let current = informer.state();
            let mut seen = std::collections::HashSet::new();
            for pod in current {
                let Some(uid) = pod.metadata.uid.clone() else { continue };
                seen.insert(uid.clone());
                match workers.get(&uid) {
                    Some(sender) => {
                        let newer = sender.borrow().as_ref().map(|p| p.metadata.resource_version.clone())
                            != Some(pod.metadata.resource_version.clone());
                        if newer {
                            let _ = sender.send(Some(pod));
                        }
                    }
                    None => {
                        let (sender, receiver) = watch::channel(Some(pod.clone()));
                        let worker = Worker::new(self.ctx.clone(), pod);
                        tokio::spawn(worker.run(receiver));
                        workers.insert(uid, sender);
                    }
                }
            }
            // A pod gone from the node (deleted, or force-deleted) ends its worker.
            workers.retain(|uid, sender| {
                let keep = seen.contains(uid);
                if !keep {
                    let _ = sender.send(None);
                }
                keep
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t10_taints_parse_as_the_kubelet_flag_takes_them() {
        assert_eq!(
            parse_taint("dedicated=gpu:NoSchedule"),
            Some(json!({"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}))
        );
        assert_eq!(parse_taint("spot:NoExecute"), Some(json!({"key": "spot", "effect": "NoExecute"})));
        assert_eq!(parse_taint("nothing"), None);
    }
}
