//! The whole cluster on Cairn: controller-manager, scheduler, hollow kubelets
//! and the proxy as real processes, driven by the real kubectl. Timings are
//! shortened where a test waits on the node-death timeline or leader election.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cairn_testkit::kube::{KubeCluster, KubeOptions};
use serde_json::Value;

use crate::eventually;

/// An echo Deployment: its pods serve HTTP on their pod IP with their own name.
fn echo_deployment(name: &str, replicas: u32, extra_spec: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
{extra_spec}      containers:
      - name: echo
        image: cairn.io/echo
        ports: [{{containerPort: 8080, name: http}}]
        readinessProbe:
          httpGet: {{path: /, port: http}}
          periodSeconds: 1
"
    )
}

fn json(cluster: &KubeCluster, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    match cluster.kubectl_ok(&all) {
        Ok(text) => serde_json::from_str(&text).unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

fn apply(cluster: &KubeCluster, manifest: &str) {
    let out = cluster.api.kubectl_stdin(&["apply", "-f", "-"], Some(manifest));
    assert!(out.status.success(), "apply: {}", String::from_utf8_lossy(&out.stderr));
}

fn must(cluster: &KubeCluster, args: &[&str]) -> String {
    match cluster.kubectl_ok(args) {
        Ok(out) => out,
        Err(error) => panic!("{error}\n{}", cluster.logs()),
    }
}

/// Pods of an app that are not being deleted.
fn live_pods(cluster: &KubeCluster, app: &str) -> Vec<Value> {
    let list = json(cluster, &["get", "pods", "-l", &format!("app={app}")]);
    list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .collect()
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().into_iter().flatten().any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// How many of the app's pods run on each node.
fn spread(cluster: &KubeCluster, app: &str) -> Vec<usize> {
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for pod in live_pods(cluster, app) {
        *per_node.entry(pod["spec"]["nodeName"].as_str().unwrap_or("-").to_string()).or_default() += 1;
    }
    per_node.into_values().collect()
}

async fn nodes_ready(cluster: &KubeCluster, count: usize) {
    let ready = eventually(Duration::from_secs(60), || {
        let nodes = json(cluster, &["get", "nodes"]);
        let ready = nodes["items"].as_array().into_iter().flatten().filter(|n| {
            let taints = n["spec"]["taints"].as_array().map_or(0, Vec::len);
            taints == 0
                && n["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
        });
        ready.count() == count
    })
    .await;
    assert!(ready, "{count} nodes Ready and untainted\n{}", cluster.logs());
}

fn rollout(cluster: &KubeCluster, deployment: &str) {
    must(cluster, &["rollout", "status", &format!("deployment/{deployment}"), "--timeout=90s"]);
}

/// GET through the Service's ClusterIP; the answering pod's name.
fn curl(url: &str) -> Option<String> {
    let out = std::process::Command::new("curl").args(["-s", "--max-time", "3", url]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn events_of(cluster: &KubeCluster, name: &str) -> Vec<Value> {
    let events = json(cluster, &["get", "events", "--field-selector", &format!("involvedObject.name={name}")]);
    let mut list = events["items"].as_array().cloned().unwrap_or_default();
    list.sort_by_key(|e| e["metadata"]["creationTimestamp"].as_str().unwrap_or_default().to_string());
    list
}

#[tokio::test]
async fn t70_pods_deployments_jobs_and_services_run_on_hollow_nodes() {
    let cluster = KubeCluster::start(KubeOptions::default()).await.expect("cluster");
    nodes_ready(&cluster, 3).await;

    // The seed's flow: created unbound, scheduled, pulled, started, Running.
    let started = Instant::now();
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: seed\nspec:\n  containers:\n  - name: nginx\n    image: nginx:1.27\n";
    let created = cluster.api.kubectl_stdin(&["create", "-f", "-", "-o", "json"], Some(pod));
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let created: Value = serde_json::from_slice(&created.stdout).expect("pod json");
    assert!(created["spec"]["nodeName"].is_null(), "a new pod is not bound: {created}");
    assert_eq!(created["status"]["phase"], "Pending");
    let running =
        eventually(Duration::from_secs(30), || json(&cluster, &["get", "pod", "seed"])["status"]["phase"] == "Running")
            .await;
    assert!(running, "the seed pod runs\n{}", cluster.logs());
    eprintln!("seed pod Running after {:?}", started.elapsed());
    let events = events_of(&cluster, "seed");
    for event in &events {
        let text = |field: &str| event[field].as_str().unwrap_or_default().to_string();
        eprintln!("seed pod: {} {} {}", text("firstTimestamp"), text("reason"), text("message"));
    }
    let reasons: Vec<String> = events.iter().map(|e| e["reason"].as_str().unwrap_or_default().to_string()).collect();
    for (step, reason) in ["Scheduled", "Pulling", "Pulled", "Created", "Started"].iter().enumerate() {
        assert!(reasons.contains(&reason.to_string()), "step {step} {reason} in {reasons:?}");
    }
    let described = must(&cluster, &["describe", "pod", "seed"]);
    assert!(described.contains("Successfully assigned default/seed to hollow-node-"), "{described}");
    assert!(described.contains("Started container nginx"), "{described}");

    // A Deployment spreads 2, 2, 2, and 3, 3, 3 after a scale.
    apply(&cluster, &echo_deployment("web", 6, ""));
    rollout(&cluster, "web");
    assert_eq!(spread(&cluster, "web"), vec![2, 2, 2]);
    // The kubelets run pods through the CRI: crictl sees the same pods and containers.
    let on_node_0: std::collections::BTreeSet<String> = live_pods(&cluster, "web")
        .iter()
        .filter(|p| p["spec"]["nodeName"] == "hollow-node-0")
        .filter_map(|p| p["metadata"]["name"].as_str().map(String::from))
        .collect();
    let sandboxes: Value = serde_json::from_str(
        &cluster.crictl("hollow-node-0", &["pods", "--label", "app=web", "-o", "json"]).expect("crictl pods"),
    )
    .expect("json");
    let crictl_names: std::collections::BTreeSet<String> = sandboxes["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["state"] == "SANDBOX_READY")
        .filter_map(|s| s["metadata"]["name"].as_str().map(String::from))
        .collect();
    assert_eq!(crictl_names, on_node_0, "crictl pods lists the node's pods");
    let containers = cluster.crictl("hollow-node-0", &["ps", "-o", "json"]).expect("crictl ps");
    let containers: Value = serde_json::from_str(&containers).expect("json");
    let listed = containers["containers"].as_array().cloned().unwrap_or_default();
    assert!(listed.len() >= 2, "crictl ps shows the running containers: {containers}");
    let every_pod_on_node_0 = json(&cluster, &["get", "pods", "--field-selector", "spec.nodeName=hollow-node-0"]);
    let every_pod_on_node_0: Vec<&str> = every_pod_on_node_0["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["metadata"]["name"].as_str())
        .collect();
    for container in &listed {
        let pod = container["labels"]["io.kubernetes.pod.name"].as_str().unwrap_or_default();
        assert!(
            every_pod_on_node_0.contains(&pod),
            "each container names its pod as the kubelet labels it: {container}"
        );
    }
    let images = cluster.crictl("hollow-node-0", &["images"]).expect("crictl images");
    assert!(images.contains("cairn.io/echo"), "{images}");
    let version = cluster.crictl("hollow-node-0", &["version"]).expect("crictl version");
    assert!(version.contains("RuntimeName:  cairn-sim"), "{version}");

    must(&cluster, &["scale", "deployment/web", "--replicas=9"]);
    rollout(&cluster, "web");
    assert_eq!(spread(&cluster, "web"), vec![3, 3, 3]);

    // A rolling update keeps at least replicas - maxUnavailable (9 - 2) ready.
    let watcher = {
        let kubeconfig = cluster.api.kubeconfig.clone();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut fewest = usize::MAX;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let out = std::process::Command::new(cairn_testkit::kube::kubectl_binary())
                    .arg(format!("--kubeconfig={}", kubeconfig.display()))
                    .args(["get", "pods", "-l", "app=web", "-o", "json"])
                    .output();
                if let Ok(out) = out {
                    if let Ok(list) = serde_json::from_slice::<Value>(&out.stdout) {
                        let ready = list["items"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter(|p| p["metadata"]["deletionTimestamp"].is_null() && is_ready(p))
                            .count();
                        fewest = fewest.min(ready);
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            fewest
        });
        (stop, handle)
    };
    must(&cluster, &["set", "image", "deployment/web", "echo=cairn.io/echo:v2"]);
    rollout(&cluster, "web");
    watcher.0.store(true, std::sync::atomic::Ordering::Relaxed);
    let fewest = watcher.1.join().expect("watcher thread");
    assert!(fewest >= 7, "at most maxUnavailable pods missing during the rollout; fewest ready was {fewest}");
    let image = |c: &KubeCluster| {
        json(c, &["get", "deployment", "web"])["spec"]["template"]["spec"]["containers"][0]["image"].clone()
    };
    assert_eq!(image(&cluster), "cairn.io/echo:v2");
    must(&cluster, &["rollout", "undo", "deployment/web"]);
    rollout(&cluster, "web");
    assert_eq!(image(&cluster), "cairn.io/echo");
    let history = must(&cluster, &["rollout", "history", "deployment/web"]);
    assert!(history.contains("2 ") && history.contains("3 "), "{history}");
    assert!(live_pods(&cluster, "web").iter().all(|p| p["spec"]["containers"][0]["image"] == "cairn.io/echo"));

    // A Service reaches the pods through the proxy, and follows a scale-down.
    must(&cluster, &["expose", "deployment/web", "--port=80", "--target-port=http"]);
    let ip = json(&cluster, &["get", "service", "web"])["spec"]["clusterIP"].as_str().unwrap_or_default().to_string();
    let url = format!("http://{ip}/");
    let mut answered = std::collections::HashSet::new();
    let reached = eventually(Duration::from_secs(30), || {
        if let Some(name) = curl(&url) {
            answered.insert(name);
        }
        answered.len() >= 3
    })
    .await;
    assert!(reached, "the Service spreads over its pods: {answered:?}\n{}", cluster.logs());
    must(&cluster, &["scale", "deployment/web", "--replicas=1"]);
    // `rollout status` may return before a scale-down's pods are deleted, as against kube.
    let one = eventually(Duration::from_secs(30), || live_pods(&cluster, "web").len() == 1).await;
    assert!(one, "the scale-down leaves one pod");
    let left = live_pods(&cluster, "web");
    let survivor = left[0]["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let followed =
        eventually(Duration::from_secs(30), || (0..10).all(|_| curl(&url).as_deref() == Some(survivor.as_str()))).await;
    assert!(followed, "after the scale-down only {survivor} answers");

    // A Job runs to its completions.
    let job = "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: count\nspec:\n  completions: 3\n  parallelism: 2\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: c\n        image: busybox\n        command: [sh, -c, 'sleep 0.5']\n";
    apply(&cluster, job);
    must(&cluster, &["wait", "--for=condition=complete", "job/count", "--timeout=60s"]);
    assert_eq!(json(&cluster, &["get", "job", "count"])["status"]["succeeded"], 3);

    // Deleting a Deployment deletes its ReplicaSets and pods; a namespace takes its content with it.
    must(&cluster, &["delete", "deployment", "web"]);
    let collected = eventually(Duration::from_secs(30), || {
        live_pods(&cluster, "web").is_empty()
            && json(&cluster, &["get", "rs"])["items"].as_array().is_some_and(Vec::is_empty)
    })
    .await;
    assert!(collected, "the garbage collector removes the deployment's sets and pods");
    // Orphan deletion leaves the ReplicaSet without its owner; foreground deletion removes the
    // Deployment only after its ReplicaSet and pods are gone.
    must(&cluster, &["create", "deployment", "kept", "--image=nginx", "--replicas=1"]);
    rollout(&cluster, "kept");
    must(&cluster, &["delete", "deployment", "kept", "--cascade=orphan"]);
    let sets = json(&cluster, &["get", "rs", "-l", "app=kept"]);
    assert_eq!(sets["items"].as_array().map(Vec::len), Some(1), "the orphaned set stays");
    assert!(
        sets["items"][0]["metadata"]["ownerReferences"].as_array().is_none_or(Vec::is_empty),
        "and has no owner: {sets}"
    );
    must(&cluster, &["delete", "rs", "-l", "app=kept"]);
    must(&cluster, &["create", "deployment", "front", "--image=nginx", "--replicas=2"]);
    rollout(&cluster, "front");
    must(&cluster, &["delete", "deployment", "front", "--cascade=foreground", "--wait=true", "--timeout=60s"]);
    assert!(live_pods(&cluster, "front").is_empty(), "foreground deletion finished the pods before the deployment");
    assert!(json(&cluster, &["get", "rs", "-l", "app=front"])["items"].as_array().is_some_and(Vec::is_empty));

    // A container that ignores SIGTERM is killed when the grace period runs out.
    let stubborn = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: stubborn\nspec:\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: c\n    image: nginx\n    env: [{name: CAIRN_IGNORE_SIGTERM, value: \"true\"}]\n";
    apply(&cluster, stubborn);
    let up = eventually(Duration::from_secs(20), || {
        json(&cluster, &["get", "pod", "stubborn"])["status"]["phase"] == "Running"
    })
    .await;
    assert!(up, "the stubborn pod runs");
    let deleting = Instant::now();
    must(&cluster, &["delete", "pod", "stubborn", "--timeout=30s"]);
    let took = deleting.elapsed();
    assert!(took >= Duration::from_secs(2), "the kubelet waited out the 2 s grace period: {took:?}");

    must(&cluster, &["create", "namespace", "doomed"]);
    must(&cluster, &["-n", "doomed", "create", "deployment", "d", "--image=nginx", "--replicas=2"]);
    must(&cluster, &["-n", "doomed", "create", "configmap", "c"]);
    let sa = eventually(Duration::from_secs(20), || {
        json(&cluster, &["-n", "doomed", "get", "serviceaccount", "default"])["metadata"]["name"] == "default"
    })
    .await;
    assert!(sa, "every namespace gets a default ServiceAccount");
    must(&cluster, &["delete", "namespace", "doomed", "--timeout=60s"]);
    let gone = cluster.api.kubectl(&["get", "namespace", "doomed"]);
    assert!(!gone.status.success() && String::from_utf8_lossy(&gone.stderr).contains("not found"));
}

/// The latest FailedScheduling message of a pod, waiting for one to appear.
async fn failed_scheduling(cluster: &KubeCluster, name: &str) -> String {
    let mut message = String::new();
    eventually(Duration::from_secs(20), || {
        message = events_of(cluster, name)
            .iter()
            .rfind(|e| e["reason"] == "FailedScheduling")
            .and_then(|e| e["message"].as_str().map(String::from))
            .unwrap_or_default();
        !message.is_empty()
    })
    .await;
    message
}

#[tokio::test]
async fn t71_the_scheduler_filters_scores_and_preempts_as_kube_scheduler_does() {
    let mut options = KubeOptions::default();
    options.kubelet_flags.push("--cpu=2".into());
    options.proxy = false;
    let cluster = KubeCluster::start(options).await.expect("cluster");
    nodes_ready(&cluster, 3).await;
    let pod = |name: &str, spec: &str| {
        format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{app: {name}}}\nspec:\n{spec}  containers:\n  - name: c\n    image: nginx\n")
    };
    let with_cpu = |name: &str, cpu: &str, spec: &str| {
        format!("{}    resources: {{requests: {{cpu: \"{cpu}\"}}}}\n", pod(name, spec))
    };
    let node_of = |name: &str| json(&cluster, &["get", "pod", name])["spec"]["nodeName"].as_str().map(String::from);

    apply(&cluster, &with_cpu("big", "3", ""));
    assert_eq!(
        failed_scheduling(&cluster, "big").await,
        "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."
    );
    assert_eq!(node_of("big"), None);
    must(&cluster, &["delete", "pod", "big"]);

    must(&cluster, &["taint", "nodes", "hollow-node-0", "dedicated=gpu:NoSchedule"]);
    apply(&cluster, &pod("tainted", "  nodeSelector: {kubernetes.io/hostname: hollow-node-0}\n"));
    assert_eq!(
        failed_scheduling(&cluster, "tainted").await,
        "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    );
    apply(&cluster, &pod("tolerant", "  nodeSelector: {kubernetes.io/hostname: hollow-node-0}\n  tolerations: [{key: dedicated, operator: Exists}]\n"));
    let placed = eventually(Duration::from_secs(20), || node_of("tolerant").as_deref() == Some("hollow-node-0")).await;
    assert!(placed, "a toleration lets the pod onto the tainted node");
    must(&cluster, &["taint", "nodes", "hollow-node-0", "dedicated-"]);
    let untainted =
        eventually(Duration::from_secs(20), || node_of("tainted").as_deref() == Some("hollow-node-0")).await;
    assert!(untainted, "the pending pod is scheduled once the taint is gone");

    let affinity = "  affinity:\n    nodeAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n        nodeSelectorTerms:\n        - matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [hollow-node-2]}]\n";
    apply(&cluster, &pod("picky", affinity));
    let placed = eventually(Duration::from_secs(20), || node_of("picky").as_deref() == Some("hollow-node-2")).await;
    assert!(placed, "required node affinity holds");

    let anti = "      affinity:\n        podAntiAffinity:\n          requiredDuringSchedulingIgnoredDuringExecution:\n          - labelSelector: {matchLabels: {app: lonely}}\n            topologyKey: kubernetes.io/hostname\n";
    apply(&cluster, &echo_deployment("lonely", 4, anti));
    let three = eventually(Duration::from_secs(30), || {
        let pods = live_pods(&cluster, "lonely");
        let placed: Vec<&Value> = pods.iter().filter(|p| p["spec"]["nodeName"].is_string()).collect();
        let nodes: std::collections::HashSet<&str> =
            placed.iter().filter_map(|p| p["spec"]["nodeName"].as_str()).collect();
        pods.len() == 4 && placed.len() == 3 && nodes.len() == 3
    })
    .await;
    assert!(three, "anti-affinity puts one pod per node and leaves the fourth Pending\n{}", cluster.logs());
    let pending =
        live_pods(&cluster, "lonely").into_iter().find(|p| p["spec"]["nodeName"].is_null()).expect("a pending pod");
    let message = failed_scheduling(&cluster, pending["metadata"]["name"].as_str().unwrap_or_default()).await;
    assert!(
        message.starts_with("0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules."),
        "{message}"
    );
    must(&cluster, &["delete", "deployment", "lonely"]);
    must(&cluster, &["delete", "pod", "tainted", "tolerant", "picky", "seed", "--ignore-not-found"]);

    // Fill every node with low-priority pods; a high-priority pod preempts one.
    must(&cluster, &["create", "priorityclass", "low", "--value=10"]);
    must(&cluster, &["create", "priorityclass", "high", "--value=1000"]);
    for i in 0..3 {
        apply(&cluster, &with_cpu(&format!("low-{i}"), "1500m", "  priorityClassName: low\n"));
    }
    let filled = eventually(Duration::from_secs(30), || (0..3).all(|i| node_of(&format!("low-{i}")).is_some())).await;
    assert!(filled, "the low-priority pods fill the nodes");
    apply(&cluster, &with_cpu("vip", "1500m", "  priorityClassName: high\n"));
    let preempted =
        eventually(Duration::from_secs(60), || json(&cluster, &["get", "pod", "vip"])["status"]["phase"] == "Running")
            .await;
    assert!(preempted, "the high-priority pod runs after preempting\n{}", cluster.logs());
    let victims: Vec<String> = (0..3)
        .map(|i| format!("low-{i}"))
        .filter(|name| events_of(&cluster, name).iter().any(|e| e["reason"] == "Preempted"))
        .collect();
    assert_eq!(victims.len(), 1, "exactly one low-priority pod was preempted: {victims:?}");
}

fn lease_holder(cluster: &KubeCluster, name: &str) -> String {
    json(cluster, &["-n", "kube-system", "get", "lease", name])["spec"]["holderIdentity"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn node_condition(cluster: &KubeCluster, node: &str) -> (String, Vec<String>) {
    let node = json(cluster, &["get", "node", node]);
    let ready = node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .and_then(|c| c["status"].as_str())
        .unwrap_or_default()
        .to_string();
    let taints = node["spec"]["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| format!("{}:{}", t["key"].as_str().unwrap_or_default(), t["effect"].as_str().unwrap_or_default()))
        .collect();
    (ready, taints)
}

/// The node-death timeline with a 4 s grace and 5 s tolerations, then the
/// loss of the leading controller-manager and scheduler.
#[tokio::test]
async fn t72_a_dead_node_goes_unknown_and_its_pods_move_and_standbys_take_over() {
    let election =
        ["--leader-elect-lease-duration=4s", "--leader-elect-renew-deadline=3s", "--leader-elect-retry-period=500ms"];
    let mut options = KubeOptions { replicas: 2, proxy: false, ..KubeOptions::default() };
    options.controller_flags = election.iter().map(|f| f.to_string()).collect();
    options
        .controller_flags
        .extend(["--node-monitor-grace-period=4s".to_string(), "--node-monitor-period=1s".to_string()]);
    options.scheduler_flags = election.iter().map(|f| f.to_string()).collect();
    options.kubelet_flags.push("--node-lease-duration-seconds=4".into());
    let mut cluster = KubeCluster::start(options).await.expect("cluster");
    nodes_ready(&cluster, 3).await;

    let tolerations = "      tolerations:\n      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 5}\n";
    apply(&cluster, &echo_deployment("spread", 3, tolerations));
    rollout(&cluster, "spread");
    assert_eq!(spread(&cluster, "spread"), vec![1, 1, 1]);
    let doomed: Vec<String> = live_pods(&cluster, "spread")
        .iter()
        .filter(|p| p["spec"]["nodeName"] == "hollow-node-2")
        .filter_map(|p| p["metadata"]["name"].as_str().map(String::from))
        .collect();
    assert_eq!(doomed.len(), 1);

    let t0 = Instant::now();
    cluster.kubelets[2].kill();
    // The taint came after the start of the last look that did not see it.
    let mut not_yet = Duration::ZERO;
    let unknown = eventually(Duration::from_secs(20), || {
        let look = t0.elapsed();
        let (ready, taints) = node_condition(&cluster, "hollow-node-2");
        let tainted = ready == "Unknown" && taints.contains(&"node.kubernetes.io/unreachable:NoExecute".to_string());
        if !tainted {
            not_yet = look;
        }
        tainted
    })
    .await;
    let to_unknown = t0.elapsed();
    assert!(unknown, "the node goes Unknown with the unreachable taints\n{}", cluster.logs());
    eprintln!("node Unknown and tainted {to_unknown:?} after its kubelet died");
    // Grace (4 s) after the last renewal (at most 1 s before the kill), checked every second.
    assert!(to_unknown >= Duration::from_secs(2) && to_unknown <= Duration::from_secs(9), "{to_unknown:?}");
    let node = json(&cluster, &["get", "node", "hollow-node-2"]);
    let ready = node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .cloned()
        .unwrap_or_default();
    assert_eq!(ready["reason"], "NodeStatusUnknown");
    assert_eq!(ready["message"], "Kubelet stopped posting node status.");

    let evicted = eventually(Duration::from_secs(20), || {
        json(&cluster, &["get", "pod", &doomed[0]])["metadata"]["deletionTimestamp"].is_string()
    })
    .await;
    let to_eviction = t0.elapsed();
    assert!(evicted, "the pod is evicted once its toleration runs out");
    eprintln!("pod evicted {to_eviction:?} after the kubelet died");
    // The full 5 s toleration, counted from no earlier than the taint.
    assert!(to_eviction >= not_yet + Duration::from_secs(5), "{to_eviction:?} vs tainted after {not_yet:?}");
    assert!(to_eviction <= to_unknown + Duration::from_secs(2 * 5), "{to_eviction:?} vs {to_unknown:?}");
    let replaced = eventually(Duration::from_secs(30), || {
        let pods = live_pods(&cluster, "spread");
        pods.len() == 3
            && pods.iter().all(|p| p["spec"]["nodeName"] != "hollow-node-2" && p["status"]["phase"] == "Running")
    })
    .await;
    assert!(replaced, "replacements run on the live nodes\n{}", cluster.logs());

    // Leader failover: kill each leader; the standby holds the lease within a lease duration.
    for (lease, group) in [("kube-controller-manager", "controller-manager"), ("kube-scheduler", "scheduler")] {
        let holder = lease_holder(&cluster, lease);
        let index: usize = holder.trim_start_matches(&format!("{group}-")).parse().expect("holder index");
        let killed = Instant::now();
        match group {
            "scheduler" => cluster.schedulers[index].kill(),
            _ => cluster.controller_managers[index].kill(),
        }
        let other = format!("{group}-{}", 1 - index);
        let took_over = eventually(Duration::from_secs(15), || lease_holder(&cluster, lease) == other).await;
        let after = killed.elapsed();
        assert!(took_over, "{other} takes {lease} over\n{}", cluster.logs());
        eprintln!("{other} took {lease} over {after:?} after the leader died");
        assert!(
            after <= Duration::from_secs(4) + Duration::from_secs(2),
            "within a lease duration (and a retry): {after:?}"
        );
    }
    must(&cluster, &["scale", "deployment/spread", "--replicas=5"]);
    rollout(&cluster, "spread");
    for pod in json(&cluster, &["get", "pods"])["items"].as_array().into_iter().flatten() {
        let name = pod["metadata"]["name"].as_str().unwrap_or_default();
        let bound = events_of(&cluster, name).iter().filter(|e| e["reason"] == "Scheduled").count();
        assert!(bound <= 1, "{name} was bound {bound} times");
    }
}

/// With two of three store members down, writes fail with a clear error while
/// reads and open watches go on; with the quorum back, the cluster continues.
#[tokio::test]
async fn t73_losing_the_store_quorum_freezes_the_cluster_until_it_returns() {
    let mut cluster =
        KubeCluster::start(KubeOptions { proxy: false, ..KubeOptions::default() }).await.expect("cluster");
    nodes_ready(&cluster, 3).await;
    apply(&cluster, &echo_deployment("steady", 2, ""));
    rollout(&cluster, "steady");
    let watch = std::process::Command::new("curl")
        .args([
            "-sk",
            "-N",
            "--max-time",
            "60",
            "-H",
            &format!("Authorization: Bearer {}", cairn_testkit::kube::ADMIN_TOKEN),
        ])
        .arg(format!("{}/api/v1/namespaces/default/configmaps?watch=1", cluster.api.url))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("watch");

    cluster.store.members[1].kill();
    cluster.store.members[2].kill();
    let refused = cluster.api.kubectl(&["create", "configmap", "frozen", "--request-timeout=20s"]);
    let error = String::from_utf8_lossy(&refused.stderr).to_string();
    assert!(!refused.status.success(), "a write without quorum fails");
    assert!(error.contains("etcdserver: request timed out"), "the store's error reaches the client: {error}");
    eprintln!("write without quorum: {}", error.trim());
    // Reads at resourceVersion=0 (what informers list with) come from the watch cache.
    let cached = must(
        &cluster,
        &["get", "--raw", "/api/v1/namespaces/default/pods?labelSelector=app%3Dsteady&resourceVersion=0"],
    );
    let cached: Value = serde_json::from_str(&cached).expect("pod list");
    assert_eq!(cached["items"].as_array().map(Vec::len), Some(2), "reads are served from the watch cache");

    cluster.store.restart(1).expect("restart member 1");
    cluster.store.restart(2).expect("restart member 2");
    cluster.store.wait_healthy(Duration::from_secs(60)).await.expect("quorum back");
    let writes =
        eventually(Duration::from_secs(60), || cluster.kubectl_ok(&["create", "configmap", "thawed"]).is_ok()).await;
    assert!(writes, "writes work again");
    must(&cluster, &["scale", "deployment/steady", "--replicas=3"]);
    rollout(&cluster, "steady");

    // The watch opened before the outage saw the write made after it.
    let _ = std::process::Command::new("kill").arg(watch.id().to_string()).status();
    let output = watch.wait_with_output().expect("watch output");
    let seen = String::from_utf8_lossy(&output.stdout);
    assert!(seen.contains("\"name\":\"thawed\""), "the open watch continued across the outage: {seen}");
}

/// `cairn-kube up` as a process of its own, in a process group so that the
/// test can always stop the whole cluster.
struct Up {
    child: std::process::Child,
    dir: std::path::PathBuf,
}

impl Up {
    fn start(dir: &std::path::Path, flags: &[String]) -> Up {
        use std::os::unix::process::CommandExt;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("up.log")).expect("up log");
        let child = std::process::Command::new(cairn_testkit::binaries::workspace_tool("cairn-kube"))
            .arg("up")
            .arg(format!("--dir={}", dir.join("cluster").display()))
            .args(flags)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("cairn-kube up");
        Up { child, dir: dir.join("cluster") }
    }

    fn kubectl(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(cairn_testkit::kube::kubectl_binary())
            .arg(format!("--kubeconfig={}", self.dir.join("kubeconfig").display()))
            .args(["--request-timeout=20s"])
            .args(args)
            .output()
            .expect("kubectl")
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_slice(&self.kubectl(&all).stdout).unwrap_or(Value::Null)
    }

    /// SIGTERM, as Ctrl-C; true if `up` and every process it started exited.
    fn stop(&mut self) -> bool {
        let _ = std::process::Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let pids: Vec<String> = std::fs::read_dir(self.dir.join("logs"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "pid"))
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .collect();
        let alive = pids.iter().filter(|pid| std::path::Path::new(&format!("/proc/{}", pid.trim())).exists()).count();
        matches!(self.child.try_wait(), Ok(Some(_))) && alive == 0
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(std::process::Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

/// `up`'s flags on this test's loopback address and ports (the store's first
/// port given, 3 members' worth and up to 3 API servers after it), with a pod
/// and Service block from `block`.
fn up_flags(ip: &str, store_port: u16, block: u32, extra: &[&str]) -> Vec<String> {
    for _ in 0..6 {
        cairn_testkit::net::next_port();
    }
    let api_port = cairn_testkit::net::next_port();
    for _ in 0..3 {
        cairn_testkit::net::next_port();
    }
    let proxy_port = cairn_testkit::net::next_port();
    let block = block + std::process::id() % 4;
    let mut flags = vec![
        format!("--address={ip}"),
        format!("--store-port={store_port}"),
        format!("--apiserver-port={api_port}"),
        format!("--proxy-port={proxy_port}"),
        format!("--cluster-cidr=127.{}.0.0/16", 64 + block),
        format!("--service-cluster-ip-range=127.{}.0.0/16", 96 + block),
        "--image-pull-delay=100ms".to_string(),
    ];
    flags.extend(extra.iter().map(|f| f.to_string()));
    flags
}

fn log_tail(dir: &std::path::Path) -> String {
    let text = std::fs::read_to_string(dir.join("up.log")).unwrap_or_default();
    text.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// kubectl with another of `up`'s kubeconfigs.
fn kubectl_with(up: &Up, kubeconfig: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(cairn_testkit::kube::kubectl_binary())
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .args(["--request-timeout=20s"])
        .args(args)
        .current_dir(&up.dir)
        .output()
        .expect("kubectl");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// `cairn-kube up` is TLS and RBAC throughout: every component talks as its
/// own user, and each kubelet joins by TLS bootstrapping. The bootstrap
/// token can only ask for certificates; the controller-manager approves and
/// signs each node's request; the node then talks as `system:node:<name>` and
/// reaches only its own objects. A user's request stays pending until an
/// admin approves it with `kubectl certificate approve`, then its certificate works.
#[tokio::test]
async fn t76_up_secures_every_link_and_nodes_join_by_tls_bootstrapping() {
    let temp = tempfile::tempdir().expect("temp dir");
    let (ip, store_port) = (cairn_testkit::net::loopback_ip(), cairn_testkit::net::next_port());
    let flags = up_flags(&ip, store_port, 20, &["--nodes=2", "--replicas=1"]);
    let up = Up::start(temp.path(), &flags);
    let ready = eventually(Duration::from_secs(90), || {
        up.json(&["get", "nodes"])["items"].as_array().is_some_and(|n| n.len() == 2)
    })
    .await;
    assert!(ready, "both nodes join\n{}", log_tail(temp.path()));

    let token = std::fs::read_to_string(up.dir.join("pki").join("bootstrap-token")).expect("token");
    let token_id = token.trim().split('.').next().unwrap_or_default().to_string();
    let requests = up.json(&["get", "csr"]);
    let requests = requests["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(requests.len(), 2, "one request a node: {requests:?}");
    for request in &requests {
        assert_eq!(request["spec"]["username"], format!("system:bootstrap:{token_id}"), "{request}");
        assert_eq!(request["spec"]["signerName"], "kubernetes.io/kube-apiserver-client-kubelet");
        let groups = request["spec"]["groups"].as_array().cloned().unwrap_or_default();
        assert!(groups.contains(&serde_json::json!("system:bootstrappers:kubeadm:default-node-token")), "{request}");
        let approved = &request["status"]["conditions"][0];
        assert_eq!((approved["type"].as_str(), approved["reason"].as_str()), (Some("Approved"), Some("AutoApproved")));
        assert!(request["status"]["certificate"].as_str().is_some_and(|c| !c.is_empty()), "issued: {request}");
    }
    let table = String::from_utf8_lossy(&up.kubectl(&["get", "csr"]).stdout).to_string();
    assert!(table.starts_with("NAME"), "{table}");
    assert_eq!(table.matches("Approved,Issued").count(), 2, "{table}");

    let node0 = up.dir.join("kubelet").join("kubelet-0.kubeconfig");
    let (ok, whoami) = kubectl_with(&up, &node0, &["auth", "whoami"]);
    assert!(ok && whoami.contains("system:node:hollow-node-0") && whoami.contains("system:nodes"), "{whoami}");
    let (ok, secrets) = kubectl_with(&up, &node0, &["get", "secrets", "-n", "kube-system"]);
    assert!(
        !ok && secrets.contains(r#"User "system:node:hollow-node-0" cannot list resource "secrets""#),
        "a node reads no secrets: {secrets}"
    );
    let (ok, other) = kubectl_with(&up, &node0, &["label", "node", "hollow-node-1", "stolen=yes"]);
    assert!(!ok && other.contains("Forbidden"), "a node changes only its own Node: {other}");
    let (ok, own) = kubectl_with(&up, &node0, &["label", "node", "hollow-node-0", "mine=yes"]);
    assert!(ok, "a node changes its own Node: {own}");

    let bootstrap = up.dir.join("bootstrap-kubelet.kubeconfig");
    let (ok, pods) = kubectl_with(&up, &bootstrap, &["get", "pods", "-A"]);
    assert!(!ok && pods.contains(&format!("system:bootstrap:{token_id}")), "the token reads nothing: {pods}");
    let (ok, can) = kubectl_with(&up, &bootstrap, &["auth", "can-i", "create", "certificatesigningrequests"]);
    assert!(ok && can.starts_with("yes"), "{can}");
    for (kubeconfig, user) in [
        ("controller-manager.kubeconfig", "system:kube-controller-manager"),
        ("scheduler.kubeconfig", "system:kube-scheduler"),
        ("proxy.kubeconfig", "system:kube-proxy"),
    ] {
        let (ok, whoami) = kubectl_with(&up, &up.dir.join(kubeconfig), &["auth", "whoami"]);
        assert!(ok && whoami.contains(user), "{kubeconfig}: {whoami}");
    }

    // A user's request, filed with the bootstrap token: not a kubelet's, so it waits for an admin.
    let key = temp.path().join("alice.key");
    let csr = temp.path().join("alice.csr");
    let made = std::process::Command::new("openssl")
        .args(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
        .args(["-subj", "/CN=alice/O=dev", "-keyout", &key.display().to_string(), "-out", &csr.display().to_string()])
        .output()
        .expect("openssl");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    use base64::Engine;
    let request = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&csr).expect("csr"));
    let manifest = format!(
        "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata:\n  name: alice\nspec:\n  request: {request}\n  signerName: kubernetes.io/kube-apiserver-client\n  usages: [\"client auth\"]\n  username: someone-else\n  uid: forged\n  groups: [system:masters]\n"
    );
    let manifest_path = temp.path().join("alice.yaml");
    std::fs::write(&manifest_path, manifest).expect("manifest");
    let (ok, created) = kubectl_with(&up, &bootstrap, &["create", "-f", &manifest_path.display().to_string()]);
    assert!(ok, "{created}");
    let alice = up.json(&["get", "csr", "alice"]);
    assert_eq!(alice["spec"]["username"], format!("system:bootstrap:{token_id}"), "the server names the requester");
    let groups = alice["spec"]["groups"].as_array().cloned().unwrap_or_default();
    assert!(!groups.contains(&serde_json::json!("system:masters")) && alice["spec"]["uid"].is_null(), "{alice}");
    // Server-side apply creates too, and is stamped the same.
    let applied_path = temp.path().join("applied.yaml");
    let applied = std::fs::read_to_string(&manifest_path).expect("manifest").replace("name: alice", "name: applied");
    std::fs::write(&applied_path, applied).expect("manifest");
    assert!(up.kubectl(&["apply", "--server-side", "-f", &applied_path.display().to_string()]).status.success());
    assert_eq!(up.json(&["get", "csr", "applied"])["spec"]["username"], "kubernetes-admin");
    // No masters through the client signer (CertificateSubjectRestriction).
    let masters_csr = temp.path().join("masters.csr");
    let made = std::process::Command::new("openssl")
        .args(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
        .args(["-subj", "/CN=mallory/O=system:masters", "-keyout", &temp.path().join("m.key").display().to_string()])
        .args(["-out", &masters_csr.display().to_string()])
        .output()
        .expect("openssl");
    assert!(made.status.success());
    let masters = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&masters_csr).expect("csr"));
    let masters_path = temp.path().join("masters.yaml");
    let masters_manifest = std::fs::read_to_string(&manifest_path)
        .expect("manifest")
        .replace("name: alice", "name: mallory")
        .replace(&request, &masters);
    std::fs::write(&masters_path, masters_manifest).expect("manifest");
    let admin = up.dir.join("kubeconfig");
    let (ok, refused) = kubectl_with(&up, &admin, &["create", "-f", &masters_path.display().to_string()]);
    assert!(!ok && refused.contains("system:masters group is not allowed"), "{refused}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(up.json(&["get", "csr", "alice"])["status"]["conditions"].is_null(), "not approved by the controller");
    let (ok, approve) = kubectl_with(&up, &bootstrap, &["certificate", "approve", "alice"]);
    assert!(!ok && approve.contains("Forbidden"), "the token cannot approve: {approve}");
    let (ok, approve) = kubectl_with(&up, &up.dir.join("kubeconfig"), &["certificate", "approve", "alice"]);
    assert!(ok, "{approve}");
    let issued = eventually(Duration::from_secs(30), || {
        up.json(&["get", "csr", "alice"])["status"]["certificate"].as_str().is_some_and(|c| !c.is_empty())
    })
    .await;
    assert!(issued, "the signer issues an approved request\n{}", log_tail(temp.path()));
    let certificate =
        up.json(&["get", "csr", "alice"])["status"]["certificate"].as_str().unwrap_or_default().to_string();
    let cert_path = temp.path().join("alice.crt");
    std::fs::write(&cert_path, base64::engine::general_purpose::STANDARD.decode(certificate).expect("base64"))
        .expect("cert");
    let out = up.kubectl(&[
        "auth",
        "whoami",
        "-o",
        "json",
        &format!("--client-certificate={}", cert_path.display()),
        &format!("--client-key={}", key.display()),
    ]);
    let review: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let info = &review["status"]["userInfo"];
    assert_eq!(info["username"], "alice", "{}", String::from_utf8_lossy(&out.stderr));
    assert!(info["groups"].as_array().is_some_and(|g| g.contains(&serde_json::json!("dev"))), "{review}");
}

/// `cairn-kube up`, a snapshot of its store, the cluster stopped and its data
/// deleted, a restore, and `up` again: every object is back and the pods run again.
#[tokio::test]
async fn t74_up_runs_the_cluster_and_comes_back_from_a_restored_snapshot() {
    let temp = tempfile::tempdir().expect("temp dir");
    let (ip, store_port) = (cairn_testkit::net::loopback_ip(), cairn_testkit::net::next_port());
    let flags = up_flags(&ip, store_port, 28, &["--nodes=2", "--replicas=1"]);
    let started = Instant::now();
    let mut up = Up::start(temp.path(), &flags);
    let ready = eventually(Duration::from_secs(90), || {
        let nodes = up.json(&["get", "nodes"]);
        nodes["items"].as_array().is_some_and(|n| n.len() == 2)
    })
    .await;
    assert!(ready, "up starts the cluster\n{}", log_tail(temp.path()));
    eprintln!("up: 2 nodes registered {:?} after the start", started.elapsed());
    let manifest = echo_deployment("kept", 3, "");
    let manifest_path = temp.path().join("kept.yaml");
    std::fs::write(&manifest_path, &manifest).expect("manifest");
    let applied = up.kubectl(&["apply", "-f", &manifest_path.display().to_string()]).status.success();
    assert!(applied, "apply");
    assert!(up.kubectl(&["create", "configmap", "settings", "--from-literal=mode=kept"]).status.success());
    let running = eventually(Duration::from_secs(60), || {
        up.json(&["get", "deployment", "kept"])["status"]["availableReplicas"] == 3
    })
    .await;
    assert!(running, "the deployment runs under up\n{}", log_tail(temp.path()));
    let accounts = eventually(Duration::from_secs(30), || {
        up.json(&["get", "serviceaccounts", "-A"])["items"].as_array().is_some_and(|a| a.len() == 4)
    })
    .await;
    assert!(accounts, "each of the 4 namespaces gets its default ServiceAccount\n{}", log_tail(temp.path()));
    let names = |up: &Up| -> Vec<String> {
        let out = up.kubectl(&[
            "get",
            "deployments,replicasets,pods,services,configmaps,serviceaccounts,namespaces",
            "-A",
            "-o",
            "name",
        ]);
        let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect();
        names.sort();
        names
    };
    let before = names(&up);

    // Kubernetes' reference backup command: the store takes only TLS clients with the cluster's certificates.
    let snapshot = temp.path().join("snapshot.db");
    let endpoint = format!("https://{ip}:{store_port}");
    let pki = up.dir.join("pki");
    let flag = |name: &str, file: &str| format!("--{name}={}", pki.join(file).display());
    let (cacert, cert, key) =
        (flag("cacert", "ca.crt"), flag("cert", "apiserver-etcd-client.crt"), flag("key", "apiserver-etcd-client.key"));
    let save = ["snapshot", "save", &snapshot.display().to_string(), &cacert, &cert, &key];
    let saved = cairn_testkit::etcdctl::etcdctl(&[&endpoint], &save).expect("etcdctl");
    assert!(saved.status.success(), "snapshot save: {}", String::from_utf8_lossy(&saved.stderr));
    let get = |extra: &[&str]| {
        let mut args = vec!["get", "/registry/namespaces/default", "--command-timeout=3s", &cacert];
        args.extend(extra);
        cairn_testkit::etcdctl::etcdctl(&[&endpoint], &args).expect("etcdctl").status.success()
    };
    assert!(get(&[&cert, &key]) && !get(&[]), "the same read succeeds with the client certificate only");
    assert!(up.stop(), "up stops every process it started\n{}", log_tail(temp.path()));

    let store = up.dir.join("store");
    std::fs::remove_dir_all(&store).expect("delete the store's data");
    let peer = |i: u16| format!("https://{ip}:{}", store_port + 1 + 2 * i);
    let initial = (0..3).map(|i| format!("store-{i}={}", peer(i))).collect::<Vec<_>>().join(",");
    for i in 0..3u16 {
        let restored = std::process::Command::new(cairn_testkit::binaries::cairn())
            .args(["snapshot", "restore", &snapshot.display().to_string()])
            .arg(format!("--name=store-{i}"))
            .arg(format!("--data-dir={}", store.join(format!("store-{i}")).display()))
            .arg(format!("--initial-cluster={initial}"))
            .arg(format!("--initial-advertise-peer-urls={}", peer(i)))
            .output()
            .expect("cairn snapshot restore");
        assert!(restored.status.success(), "restore: {}", String::from_utf8_lossy(&restored.stderr));
    }

    let restarted_at = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(1);
    let started = Instant::now();
    let mut up = Up::start(temp.path(), &flags);
    let back = eventually(Duration::from_secs(90), || names(&up) == before).await;
    assert_eq!(names(&up), before, "every object is back\n{}", log_tail(temp.path()));
    assert!(back);
    assert_eq!(up.json(&["get", "configmap", "settings"])["data"]["mode"], "kept");
    let converged = eventually(Duration::from_secs(60), || {
        let pods = up.json(&["get", "pods", "-l", "app=kept"]);
        let items = pods["items"].as_array().cloned().unwrap_or_default();
        items.len() == 3
            && items.iter().all(|p| {
                let started = p["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]
                    .as_str()
                    .and_then(|t| t.parse::<jiff::Timestamp>().ok());
                is_ready(p) && started.is_some_and(|t| t >= restarted_at)
            })
    })
    .await;
    assert!(converged, "the restored pods run again on the restarted nodes\n{}", log_tail(temp.path()));
    eprintln!(
        "restored cluster converged {:?} after the second start; {} objects back",
        started.elapsed(),
        before.len()
    );
    assert!(up.stop(), "up stops cleanly");
}

/// `up --apiservers 3` behind its load balancer, with leader-elected
/// controller-managers and schedulers: kill one API server, one store member,
/// the controller-manager leader and the scheduler leader in turn; kubectl
/// keeps working through the balancer, and the cluster keeps converging.
#[tokio::test]
async fn t75_the_ha_cluster_survives_the_kill_of_any_one_component() {
    let temp = tempfile::tempdir().expect("temp dir");
    let (ip, store_port) = (cairn_testkit::net::loopback_ip(), cairn_testkit::net::next_port());
    let election =
        ["--leader-elect-lease-duration=4s", "--leader-elect-renew-deadline=3s", "--leader-elect-retry-period=500ms"];
    let mut extra = vec!["--apiservers=3", "--nodes=2", "--replicas=2"];
    extra.extend(election);
    let flags = up_flags(&ip, store_port, 24, &extra);
    let mut up = Up::start(temp.path(), &flags);
    let ready = eventually(Duration::from_secs(90), || {
        up.json(&["get", "nodes"])["items"].as_array().is_some_and(|n| n.len() == 2)
    })
    .await;
    assert!(ready, "up starts the HA cluster\n{}", log_tail(temp.path()));
    let manifest_path = temp.path().join("ha.yaml");
    std::fs::write(&manifest_path, echo_deployment("ha", 2, "")).expect("manifest");
    assert!(up.kubectl(&["apply", "-f", &manifest_path.display().to_string()]).status.success());
    let converged =
        |up: &Up, replicas: i64| up.json(&["get", "deployment", "ha"])["status"]["availableReplicas"] == replicas;
    let available = eventually(Duration::from_secs(60), || converged(&up, 2)).await;
    assert!(available, "the deployment runs\n{}", log_tail(temp.path()));

    let holder = |up: &Up, lease: &str| -> String {
        up.json(&["-n", "kube-system", "get", "lease", lease])["spec"]["holderIdentity"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let mut replicas = 2;
    for victim in ["apiserver-0", "store-0", "controller-manager", "scheduler"] {
        let process = match victim {
            "controller-manager" => holder(&up, "kube-controller-manager"),
            "scheduler" => holder(&up, "kube-scheduler"),
            other => other.to_string(),
        };
        let pid = std::fs::read_to_string(up.dir.join("logs").join(format!("{process}.pid"))).expect("pid file");
        assert!(std::process::Command::new("kill").args(["-KILL", pid.trim()]).status().expect("kill").success());
        // kubectl goes through the balancer the whole time.
        let started = Instant::now();
        let mut failures = Vec::new();
        while started.elapsed() < Duration::from_secs(6) {
            let out = up.kubectl(&["get", "pods", "-o", "name"]);
            if !out.status.success() {
                failures.push(String::from_utf8_lossy(&out.stderr).to_string());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(failures.is_empty(), "kubectl failed after {process} was killed: {failures:?}");
        replicas += 1;
        let scaled = up.kubectl(&["scale", "deployment/ha", &format!("--replicas={replicas}")]);
        assert!(scaled.status.success(), "scale after {process}: {}", String::from_utf8_lossy(&scaled.stderr));
        let again = eventually(Duration::from_secs(60), || converged(&up, replicas)).await;
        assert!(again, "the cluster converges after {process} was killed\n{}", log_tail(temp.path()));
        eprintln!(
            "killed {process}: kubectl never failed, and {replicas} replicas converged after {:?}",
            started.elapsed()
        );
    }
    assert!(up.stop(), "up stops cleanly");
}
