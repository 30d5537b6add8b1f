//! The node lifecycle controller and the taint eviction controller.
//!
//! It notes each node's Lease in `kube-node-lease` (and its Ready heartbeat)
//! four times a second, and every `--node-monitor-period` decides: a node not
//! heard from for `--node-monitor-grace-period`, as measured by this
//! controller's own clock since it saw the heartbeat change, has its
//! conditions set to Unknown, its taints set at once, and its pods marked not
//! ready. The node's Ready condition decides its
//! `not-ready` or `unreachable` NoSchedule and NoExecute taints. Taint
//! eviction deletes the pods on a node with NoExecute taints once their
//! tolerations run out.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use serde_json::{json, Value};

use super::Context;
use crate::client::informer::Changes;
use crate::client::{self, Write};
use crate::scheduler::plugins::{taints, tolerates, tolerations};

pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// The heartbeat a node last showed, and when this controller first saw it.
#[derive(Clone, Debug)]
struct Heartbeat {
    seen: String,
    at: Instant,
}

fn heartbeat_of(node: &Node, lease_renew: Option<String>) -> String {
    let ready_beat = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| c.last_heartbeat_time.as_ref().map(|t| t.0.to_string()));
    format!("{}|{}", lease_renew.unwrap_or_default(), ready_beat.unwrap_or_default())
}

fn ready_status(node: &Node) -> String {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.clone())
        .unwrap_or_else(|| "Unknown".into())
}

/// The node's taints with the condition taints made to match its Ready status.
pub fn wanted_taints(node: &Node, now: &str) -> Option<Vec<Value>> {
    let current = taints(node);
    let key = match ready_status(node).as_str() {
        "True" => None,
        "False" => Some(NOT_READY),
        _ => Some(UNREACHABLE),
    };
    let mut wanted: Vec<Value> = current
        .iter()
        .filter(|t| t.key != NOT_READY && t.key != UNREACHABLE || Some(t.key.as_str()) == key)
        .filter_map(|t| serde_json::to_value(t).ok())
        .collect();
    if let Some(key) = key {
        for effect in ["NoSchedule", "NoExecute"] {
            if !current.iter().any(|t| t.key == key && t.effect == effect) {
                let mut taint = json!({"key": key, "effect": effect});
                if effect == "NoExecute" {
                    taint["timeAdded"] = json!(now);
                }
                wanted.push(taint);
            }
        }
    }
    let unchanged = wanted.len() == current.len()
        && current.iter().all(|t| serde_json::to_value(t).is_ok_and(|v| wanted.contains(&v)));
    (!unchanged).then_some(wanted)
}

/// Every condition Unknown, as kube writes it for a silent kubelet.
fn unknown_conditions(node: &Node, now: &str) -> Vec<Value> {
    let mut conditions = client::json_items(node.status.as_ref().and_then(|s| s.conditions.as_ref()));
    for kind in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
        if !conditions.iter().any(|c| c["type"] == kind) {
            conditions.push(json!({"type": kind}));
        }
    }
    for condition in &mut conditions {
        if condition["status"] != "Unknown" {
            condition["lastTransitionTime"] = json!(now);
        }
        condition["status"] = json!("Unknown");
        condition["reason"] = json!("NodeStatusUnknown");
        condition["message"] = json!("Kubelet stopped posting node status.");
    }
    conditions
}

/// The node as it reads once `conditions` are written.
fn marked_unknown(node: &Node, conditions: Vec<Value>) -> Node {
    let mut marked = node.clone();
    marked.status.get_or_insert_with(Default::default).conditions = serde_json::from_value(json!(conditions)).ok();
    marked
}

fn pod_json(pod: &Pod) -> Value {
    let mut value = serde_json::to_value(pod).unwrap_or_default();
    value["apiVersion"] = json!("v1");
    value["kind"] = json!("Pod");
    value
}

/// Marks a pod's Ready condition False, as kube does for pods on a lost node.
fn not_ready_patch(pod: &Pod, now: &str) -> Option<Write> {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    if !conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True") {
        return None;
    }
    let conditions: Vec<Value> = client::json_items(Some(&conditions))
        .into_iter()
        .map(|mut c| {
            if c["type"] == "Ready" {
                c["status"] = json!("False");
                c["lastTransitionTime"] = json!(now);
            }
            c
        })
        .collect();
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    Some(Write::merge_status::<Pod>(&namespace, &name, json!({"status": {"conditions": conditions}})))
}

/// How often heartbeats are looked at between monitor passes, so that a
/// node's silence is timed from its last renewal, not from the pass that
/// noticed it: Unknown comes a grace period after the renewal, within one
/// monitor period, instead of within two.
const OBSERVE_PERIOD: Duration = Duration::from_millis(250);

/// Evictions sent at once.
const EVICTION_WORKERS: usize = 8;

/// Notes, for each node, when this controller first saw its current heartbeat.
fn observe(ctx: &Context, heartbeats: &mut HashMap<String, Heartbeat>) -> Vec<Arc<Node>> {
    let leases: HashMap<String, Option<String>> = ctx
        .caches
        .node_leases
        .state()
        .iter()
        .map(|l| {
            let renew = l.spec.as_ref().and_then(|s| s.renew_time.as_ref()).map(|t| t.0.to_string());
            (l.metadata.name.clone().unwrap_or_default(), renew)
        })
        .collect();
    let nodes = ctx.caches.nodes.state();
    heartbeats.retain(|name, _| nodes.iter().any(|n| n.metadata.name.as_ref() == Some(name)));
    for node in &nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        let beat = heartbeat_of(node, leases.get(&name).cloned().flatten());
        let entry = heartbeats.entry(name).or_insert_with(|| Heartbeat { seen: beat.clone(), at: Instant::now() });
        if entry.seen != beat {
            *entry = Heartbeat { seen: beat, at: Instant::now() };
        }
    }
    nodes
}

pub async fn run(ctx: Arc<Context>) {
    let reporter = ctx.reporter("node-controller");
    let mut heartbeats: HashMap<String, Heartbeat> = HashMap::new();
    let grace = ctx.config.node_monitor_grace_period;
    let mut tick = tokio::time::interval(ctx.config.node_monitor_period);
    let mut look = tokio::time::interval(OBSERVE_PERIOD.min(ctx.config.node_monitor_period));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = look.tick() => {
                observe(&ctx, &mut heartbeats);
                continue;
            }
        }
        let nodes = observe(&ctx, &mut heartbeats);
        let pods = ctx.caches.pods.state();
        let now = client::time_text(client::now());
        let mut writes = Vec::new();
        for node in &nodes {
            let name = node.metadata.name.clone().unwrap_or_default();
            let Some(entry) = heartbeats.get(&name) else { continue };
            let silent = entry.at.elapsed() > grace;
            let node_json = super::object_json(&**node);
            if silent && ready_status(node) != "Unknown" {
                tracing::info!(node = %name, "node stopped posting status; marking it Unknown");
                let conditions = unknown_conditions(node, &now);
                writes.push(Write::merge_status::<Node>(
                    "",
                    &name,
                    json!({"status": {"conditions": conditions.clone()}}),
                ));
                // Tainted at once, as kube's tainting loop does right after, not
                // a monitor period later: tolerations count from here.
                if let Some(taints) = wanted_taints(&marked_unknown(node, conditions), &now) {
                    writes.push(Write::merge::<Node>("", &name, json!({"spec": {"taints": taints}})));
                }
                writes.push(reporter.event(
                    &node_json,
                    false,
                    "NodeNotReady",
                    &format!("Node {name} status is now: NodeNotReady"),
                ));
                for pod in
                    pods.iter().filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name.as_str()))
                {
                    writes.extend(not_ready_patch(pod, &now));
                }
                continue;
            }
            if let Some(taints) = wanted_taints(node, &now) {
                writes.push(Write::merge::<Node>("", &name, json!({"spec": {"taints": taints}})));
            }
        }
        client::writes::perform_all(&ctx.client, "node-lifecycle", writes).await;
    }
}

/// When a pod must go from a node with these NoExecute taints: now, later, or never.
pub fn eviction_deadline(pod: &Pod, node_taints: &[Taint]) -> Option<jiff::Timestamp> {
    let tolerations = tolerations(pod);
    let mut deadline: Option<jiff::Timestamp> = None;
    for taint in node_taints.iter().filter(|t| t.effect == "NoExecute") {
        let added = taint.time_added.as_ref().map(|t| t.0).unwrap_or_else(jiff::Timestamp::now);
        let matching: Vec<_> = tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        let this = if matching.is_empty() {
            Some(added)
        } else if matching.iter().any(|t| t.toleration_seconds.is_none()) {
            None
        } else {
            let seconds = matching.iter().filter_map(|t| t.toleration_seconds).min().unwrap_or(0).max(0);
            Some(added + jiff::SignedDuration::from_secs(seconds))
        };
        if let Some(this) = this {
            deadline = Some(deadline.map_or(this, |d| d.min(this)));
        }
    }
    deadline
}

pub async fn run_taint_eviction(ctx: Arc<Context>) {
    let reporter = ctx.reporter("taint-eviction-controller");
    let mut wake = Changes::any_of(&[ctx.caches.nodes.changes(), ctx.caches.pods.changes()]).subscribe();
    loop {
        client::informer::next_pass(&mut wake, Duration::from_secs(1)).await;
        let nodes: HashMap<String, Vec<Taint>> =
            ctx.caches.nodes.state().iter().map(|n| (n.metadata.name.clone().unwrap_or_default(), taints(n))).collect();
        let now = client::now();
        let mut writes = Vec::new();
        for pod in ctx.caches.pods.state() {
            let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_ref()) else { continue };
            let Some(node_taints) = nodes.get(node) else { continue };
            if pod.metadata.deletion_timestamp.is_some() || !node_taints.iter().any(|t| t.effect == "NoExecute") {
                continue;
            }
            if eviction_deadline(&pod, node_taints).is_some_and(|d| d <= now) {
                let namespace = pod.metadata.namespace.clone().unwrap_or_default();
                let name = pod.metadata.name.clone().unwrap_or_default();
                writes.push(reporter.event(
                    &pod_json(&pod),
                    false,
                    "TaintManagerEviction",
                    &format!("Marking for deletion Pod {namespace}/{name}"),
                ));
                writes.push(Write::delete::<Pod>(&namespace, &name, pod.metadata.uid.as_deref()));
            }
        }
        // Concurrently, as kube's taint manager's workers do: a node's hundred
        // pods are all due at once, and none should wait on the others.
        client::writes::perform_concurrently(&ctx.client, "taint-eviction", writes, EVICTION_WORKERS).await;
        // Tolerations count in seconds; one look a second over every pod is enough.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(ready: &str, taints: Value) -> Node {
        serde_json::from_value(json!({"metadata": {"name": "n"}, "spec": {"taints": taints},
            "status": {"conditions": [{"type": "Ready", "status": ready}]}}))
        .expect("node")
    }

    #[test]
    fn t10_the_ready_condition_decides_the_condition_taints() {
        let unknown = node("Unknown", json!([{"key": "dedicated", "effect": "NoSchedule"}]));
        let taints = wanted_taints(&unknown, "2026-01-01T00:00:00Z").expect("taints change");
        let keys: Vec<_> = taints
            .iter()
            .map(|t| format!("{}:{}", t["key"].as_str().unwrap_or_default(), t["effect"].as_str().unwrap_or_default()))
            .collect();
        assert_eq!(
            keys,
            vec![
                "dedicated:NoSchedule",
                "node.kubernetes.io/unreachable:NoSchedule",
                "node.kubernetes.io/unreachable:NoExecute"
            ]
        );
        let recovered = node("True", json!(taints));
        assert_eq!(wanted_taints(&recovered, "t"), Some(vec![json!({"key": "dedicated", "effect": "NoSchedule"})]));
        let fresh = node("True", json!([{"key": NOT_READY, "effect": "NoSchedule"}]));
        assert_eq!(wanted_taints(&fresh, "t"), Some(vec![]));
        assert_eq!(wanted_taints(&node("True", json!([])), "t"), None);
    }

    #[test]
    fn t11_pods_go_when_their_toleration_of_a_noexecute_taint_runs_out() {
        let added = jiff::Timestamp::from_second(1_000_000).expect("time");
        let taint: Taint = serde_json::from_value(
            json!({"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": "1970-01-12T13:46:40Z"}),
        )
        .expect("taint");
        let pod = |tolerations: Value| -> Pod {
            serde_json::from_value(
                json!({"metadata": {"name": "p"}, "spec": {"containers": [], "tolerations": tolerations}}),
            )
            .expect("pod")
        };
        let admitted =
            pod(json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]));
        assert_eq!(
            eviction_deadline(&admitted, std::slice::from_ref(&taint)),
            Some(added + jiff::SignedDuration::from_secs(300))
        );
        assert_eq!(eviction_deadline(&pod(json!([])), std::slice::from_ref(&taint)), Some(added));
        assert_eq!(eviction_deadline(&pod(json!([{"operator": "Exists"}])), &[taint]), None);
    }
}
