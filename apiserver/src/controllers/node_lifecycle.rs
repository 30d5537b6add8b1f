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
//! tolerations run out, counted as kube's taint manager counts them: from
//! when it first sees the taint, so a new leader starts every count anew.

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

/// The longest taint eviction waits between passes over every pod.
const EVICTION_PASS: Duration = Duration::from_secs(1);

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

/// How long a pod may stay on a node with these taints: `None` while no
/// NoExecute taint is there that it does not tolerate for good, zero when it
/// tolerates one not at all.
pub fn toleration_left(pod: &Pod, node_taints: &[Taint]) -> Option<Duration> {
    let tolerations = tolerations(pod);
    node_taints
        .iter()
        .filter(|t| t.effect == "NoExecute")
        .filter_map(|taint| {
            let matching: Vec<_> = tolerations.iter().filter(|t| tolerates(t, taint)).collect();
            if matching.iter().any(|t| t.toleration_seconds.is_none()) {
                return None;
            }
            let seconds = matching.iter().filter_map(|t| t.toleration_seconds).min().unwrap_or(0).max(0);
            Some(Duration::from_secs(seconds.unsigned_abs()))
        })
        .min()
}

/// When each pod's toleration started to run: at the first pass that saw
/// it must go some day. kube's taint manager counts from when it sees the
/// taint too, not from the taint's `timeAdded`, which is whole seconds and
/// would let a pod go up to a second early.
#[derive(Debug, Default)]
pub struct EvictionClock {
    since: HashMap<String, Instant>,
}

impl EvictionClock {
    /// Takes every pod that must go some day, each with its toleration;
    /// forgets the others (their taint went, or they did). Returns the pods
    /// whose toleration has run out, and when the next one's will.
    pub fn pass(
        &mut self,
        pods: impl IntoIterator<Item = (String, Duration)>,
        now: Instant,
    ) -> (Vec<String>, Option<Instant>) {
        let mut since = HashMap::new();
        let mut due = Vec::new();
        let mut next: Option<Instant> = None;
        for (pod, toleration) in pods {
            let start = self.since.get(&pod).copied().unwrap_or(now);
            let deadline = start + toleration;
            if deadline <= now {
                due.push(pod.clone());
            } else {
                next = Some(next.map_or(deadline, |n| n.min(deadline)));
            }
            since.insert(pod, start);
        }
        self.since = since;
        (due, next)
    }
}

pub async fn run_taint_eviction(ctx: Arc<Context>) {
    let reporter = ctx.reporter("taint-eviction-controller");
    let mut wake = Changes::any_of(&[ctx.caches.nodes.changes(), ctx.caches.pods.changes()]).subscribe();
    let mut clock = EvictionClock::default();
    let mut next: Option<Instant> = None;
    let until_next = |next: Option<Instant>| {
        next.map_or(EVICTION_PASS, |n| n.saturating_duration_since(Instant::now()).min(EVICTION_PASS))
    };
    loop {
        client::informer::next_pass(&mut wake, until_next(next)).await;
        let nodes: HashMap<String, Vec<Taint>> =
            ctx.caches.nodes.state().iter().map(|n| (n.metadata.name.clone().unwrap_or_default(), taints(n))).collect();
        let mut pods = HashMap::new();
        let mut leaving = Vec::new();
        for pod in ctx.caches.pods.state() {
            let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_ref()) else { continue };
            let Some(node_taints) = nodes.get(node) else { continue };
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let Some(uid) = pod.metadata.uid.clone() else { continue };
            if let Some(toleration) = toleration_left(&pod, node_taints) {
                leaving.push((uid.clone(), toleration));
                pods.insert(uid, pod);
            }
        }
        let due;
        (due, next) = clock.pass(leaving, Instant::now());
        let mut writes = Vec::new();
        for pod in due.iter().filter_map(|uid| pods.get(uid)) {
            let namespace = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            writes.push(reporter.event(
                &pod_json(pod),
                false,
                "TaintManagerEviction",
                &format!("Marking for deletion Pod {namespace}/{name}"),
            ));
            writes.push(Write::delete::<Pod>(&namespace, &name, pod.metadata.uid.as_deref()));
        }
        // Concurrently, as kube's taint manager's workers do: a node's hundred
        // pods are all due at once, and none should wait on the others.
        client::writes::perform_concurrently(&ctx.client, "taint-eviction", writes, EVICTION_WORKERS).await;
        // A pass looks at every pod: at most one a second, unless a toleration runs out sooner.
        tokio::time::sleep(until_next(next)).await;
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
    fn t11_a_toleration_is_the_shortest_for_any_noexecute_taint_and_none_lasts_for_good() {
        let taint = |key: &str, effect: &str| -> Taint {
            serde_json::from_value(json!({"key": key, "effect": effect, "timeAdded": "1970-01-12T13:46:40Z"}))
                .expect("taint")
        };
        let pod = |tolerations: Value| -> Pod {
            serde_json::from_value(
                json!({"metadata": {"name": "p"}, "spec": {"containers": [], "tolerations": tolerations}}),
            )
            .expect("pod")
        };
        let unreachable = [taint(UNREACHABLE, "NoExecute")];
        let admitted =
            pod(json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]));
        assert_eq!(toleration_left(&admitted, &unreachable), Some(Duration::from_secs(300)));
        assert_eq!(toleration_left(&pod(json!([])), &unreachable), Some(Duration::ZERO));
        assert_eq!(toleration_left(&pod(json!([{"operator": "Exists"}])), &unreachable), None);
        assert_eq!(toleration_left(&pod(json!([])), &[taint("dedicated", "NoSchedule")]), None);
        let both = [taint(UNREACHABLE, "NoExecute"), taint(NOT_READY, "NoExecute")];
        assert_eq!(toleration_left(&admitted, &both), Some(Duration::ZERO), "not-ready is not tolerated");
        let short = pod(json!([{"operator": "Exists", "tolerationSeconds": 5},
            {"key": UNREACHABLE, "operator": "Exists", "tolerationSeconds": 300}]));
        assert_eq!(toleration_left(&short, &both), Some(Duration::from_secs(5)));
        let negative = pod(json!([{"operator": "Exists", "tolerationSeconds": -3}]));
        assert_eq!(toleration_left(&negative, &unreachable), Some(Duration::ZERO));
    }

    #[test]
    fn t12_a_toleration_runs_from_the_first_pass_that_saw_it_until_the_pod_is_let_be() {
        let mut clock = EvictionClock::default();
        let start = Instant::now();
        let at = |seconds: f64| start + Duration::from_secs_f64(seconds);
        let five = Duration::from_secs(5);
        assert_eq!(
            clock.pass([("a".to_string(), five), ("now".to_string(), Duration::ZERO)], at(0.0)),
            (vec!["now".to_string()], Some(at(5.0)))
        );
        assert_eq!(clock.pass([("a".to_string(), five), ("b".to_string(), five)], at(4.9)), (vec![], Some(at(5.0))));
        assert_eq!(clock.pass([("a".to_string(), five), ("b".to_string(), five)], at(5.0)).0, vec!["a".to_string()]);
        // b's taint goes, then comes back: its toleration starts again.
        assert_eq!(clock.pass([], at(6.0)), (vec![], None));
        assert_eq!(clock.pass([("b".to_string(), five)], at(7.0)), (vec![], Some(at(12.0))));
        assert_eq!(clock.pass([("b".to_string(), five)], at(11.9)).0, Vec::<String>::new());
        assert_eq!(clock.pass([("b".to_string(), five)], at(12.0)).0, vec!["b".to_string()]);
    }
}
