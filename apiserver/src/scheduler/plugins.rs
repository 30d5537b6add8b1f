//! The scheduling framework's plugins as pure functions over a snapshot of the
//! nodes and the pods on them: filters say whether a pod fits a node and, if
//! not, kube-scheduler's reason; scores rank the nodes that fit (0 to 100,
//! weighted as kube-scheduler's default profile weighs them).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodAffinityTerm, Taint, Toleration,
};

use crate::quantity;
use crate::selector::LabelSelector;

/// Resources a pod requests or a node offers.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Resources {
    pub milli_cpu: i128,
    pub memory: i128,
    pub pods: i128,
}

impl Resources {
    fn add(&mut self, other: &Resources) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.pods += other.pods;
    }
}

fn requests_of(container: &k8s_openapi::api::core::v1::Container, defaults: bool) -> Resources {
    let requests = container.resources.as_ref().and_then(|r| r.requests.as_ref());
    let get = |name: &str| requests.and_then(|r| r.get(name)).and_then(|q| quantity::milli(&q.0));
    // Scoring counts a container without requests as 100m cpu and 200Mi, as kube does.
    let cpu = get("cpu").or(defaults.then_some(100));
    let memory = get("memory").map(|m| m / 1000).or(defaults.then_some(200 << 20));
    Resources { milli_cpu: cpu.unwrap_or(0), memory: memory.unwrap_or(0), pods: 0 }
}

/// A pod's effective request: the sum of its containers, or its largest init container if that is more.
pub fn pod_requests(pod: &Pod, defaults: bool) -> Resources {
    let Some(spec) = &pod.spec else { return Resources { pods: 1, ..Resources::default() } };
    let mut total = Resources::default();
    for container in &spec.containers {
        total.add(&requests_of(container, defaults));
    }
    for init in spec.init_containers.iter().flatten() {
        let r = requests_of(init, defaults);
        total.milli_cpu = total.milli_cpu.max(r.milli_cpu);
        total.memory = total.memory.max(r.memory);
    }
    total.pods = 1;
    total
}

pub fn allocatable(node: &Node) -> Resources {
    let values = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
    let get = |name: &str| values.and_then(|v| v.get(name)).and_then(|q| quantity::milli(&q.0)).unwrap_or(0);
    Resources { milli_cpu: get("cpu"), memory: get("memory") / 1000, pods: get("pods") / 1000 }
}

/// One node and the pods on it (bound or assumed), as the scheduler's cache holds them.
#[derive(Clone)]
pub struct NodeInfo {
    pub node: Arc<Node>,
    pub pods: Vec<Arc<Pod>>,
    pub requested: Resources,
    /// With kube's non-zero defaults, for scoring.
    pub requested_for_score: Resources,
    /// Read from the node once, not once per pod scheduled.
    allocatable: Resources,
    taints: Vec<Taint>,
    images: std::collections::HashSet<String>,
    /// Pods here with required anti-affinity terms, which every pod must respect.
    pub anti_affinity: Vec<Arc<Pod>>,
    /// Pods here per controller (by `controller_key`), for spreading.
    controllers: std::collections::HashMap<u64, u32>,
}

/// A pod's namespace and controller uid, hashed: spreading compares pods by
/// them, and a thousand nodes of thirty pods each are too many to compare strings.
fn controller_key(pod: &Pod) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let owner = pod.metadata.owner_references.iter().flatten().find(|o| o.controller == Some(true))?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (pod.metadata.namespace.as_deref(), owner.uid.as_str()).hash(&mut hasher);
    Some(hasher.finish())
}

impl NodeInfo {
    pub fn new(node: Arc<Node>) -> NodeInfo {
        let images = node.status.iter().flat_map(|s| s.images.iter().flatten()).flat_map(|i| i.names.iter().flatten());
        NodeInfo {
            allocatable: allocatable(&node),
            taints: taints(&node),
            images: images.cloned().collect(),
            node,
            pods: Vec::new(),
            requested: Resources::default(),
            requested_for_score: Resources::default(),
            anti_affinity: Vec::new(),
            controllers: std::collections::HashMap::new(),
        }
    }

    pub fn add(&mut self, pod: Arc<Pod>) {
        let requests = (pod_requests(&pod, false), pod_requests(&pod, true));
        self.add_with(pod, requests);
    }

    /// Adds a pod whose requests (plain, and with scoring defaults) are known.
    pub fn add_with(&mut self, pod: Arc<Pod>, (requests, for_score): (Resources, Resources)) {
        self.requested.add(&requests);
        self.requested_for_score.add(&for_score);
        if !required_terms(&pod, true).is_empty() {
            self.anti_affinity.push(pod.clone());
        }
        if let Some(key) = controller_key(&pod) {
            *self.controllers.entry(key).or_default() += 1;
        }
        self.pods.push(pod);
    }

    pub fn name(&self) -> &str {
        self.node.metadata.name.as_deref().unwrap_or_default()
    }

    fn labels(&self) -> &BTreeMap<String, String> {
        static NONE: BTreeMap<String, String> = BTreeMap::new();
        self.node.metadata.labels.as_ref().unwrap_or(&NONE)
    }
}

/// True when a pod's placement depends on other nodes' pods (its own
/// affinity or spread terms, or an existing pod's anti-affinity), so that
/// filtering it needs the whole snapshot.
pub fn needs_snapshot(pod: &Pod, any_anti_affinity: bool) -> bool {
    let spec = pod.spec.as_ref();
    let affinity = spec.and_then(|s| s.affinity.as_ref());
    any_anti_affinity
        || affinity.is_some_and(|a| a.pod_affinity.is_some() || a.pod_anti_affinity.is_some())
        || spec.is_some_and(|s| s.topology_spread_constraints.as_ref().is_some_and(|c| !c.is_empty()))
}

/// Why a node does not fit, and whether evicting pods could change that.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Failure {
    pub reason: String,
    pub resolvable: bool,
}

fn unresolvable(reason: impl Into<String>) -> Failure {
    Failure { reason: reason.into(), resolvable: false }
}

fn resolvable(reason: impl Into<String>) -> Failure {
    Failure { reason: reason.into(), resolvable: true }
}

pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref().filter(|e| !e.is_empty()) {
        if effect != taint.effect {
            return false;
        }
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        _ => {
            key == taint.key
                && toleration.value.as_deref().unwrap_or_default() == taint.value.as_deref().unwrap_or_default()
        }
    }
}

pub fn tolerations(pod: &Pod) -> &[Toleration] {
    pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or_default()
}

pub fn taints(node: &Node) -> Vec<Taint> {
    node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default()
}

fn requirement_matches(requirement: &NodeSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let value = labels.get(&requirement.key);
    let values: &[String] = requirement.values.as_deref().unwrap_or_default();
    let number = |v: &str| v.parse::<i64>().ok();
    match requirement.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => {
            matches!((value.and_then(|v| number(v)), values.first().and_then(|v| number(v))), (Some(a), Some(b)) if a > b)
        }
        "Lt" => {
            matches!((value.and_then(|v| number(v)), values.first().and_then(|v| number(v))), (Some(a), Some(b)) if a < b)
        }
        _ => false,
    }
}

fn term_matches(term: &NodeSelectorTerm, node: &NodeInfo) -> bool {
    let labels = node.labels();
    let expressions = term.match_expressions.iter().flatten().all(|r| requirement_matches(r, labels));
    let name = BTreeMap::from([("metadata.name".to_string(), node.name().to_string())]);
    let fields = term.match_fields.iter().flatten().all(|r| requirement_matches(r, &name));
    (term.match_expressions.is_some() || term.match_fields.is_some()) && expressions && fields
}

fn node_affinity_fits(pod: &Pod, node: &NodeInfo) -> bool {
    let Some(spec) = &pod.spec else { return true };
    let labels = node.labels();
    let selector_fits =
        spec.node_selector.iter().flatten().all(|(key, value)| labels.get(key).is_some_and(|v| v == value));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref());
    selector_fits && required.is_none_or(|r| r.node_selector_terms.iter().any(|t| term_matches(t, node)))
}

fn pod_labels(pod: &Pod) -> serde_json::Map<String, serde_json::Value> {
    pod.metadata.labels.iter().flatten().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect()
}

/// Does `other` match an affinity term of `owner` (its selector and namespaces)?
fn term_selects(term: &PodAffinityTerm, owner: &Pod, other: &Pod) -> bool {
    let own_namespace = owner.metadata.namespace.clone().unwrap_or_default();
    let namespaces = term.namespaces.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| vec![own_namespace]);
    let in_namespace =
        term.namespace_selector.as_ref().is_some_and(|s| s.match_labels.is_none() && s.match_expressions.is_none())
            || namespaces.contains(&other.metadata.namespace.clone().unwrap_or_default());
    let selector = term
        .label_selector
        .as_ref()
        .and_then(|s| serde_json::to_value(s).ok())
        .and_then(|s| LabelSelector::from_object(&s).ok());
    in_namespace && selector.is_some_and(|s| !s.is_empty() && s.matches(Some(&pod_labels(other))))
}

fn topology_value(node: &NodeInfo, key: &str) -> Option<String> {
    node.node.metadata.labels.as_ref().and_then(|l| l.get(key).cloned())
}

fn required_terms(pod: &Pod, anti: bool) -> Vec<PodAffinityTerm> {
    let affinity = pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
    let terms = if anti {
        affinity
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|a| a.required_during_scheduling_ignored_during_execution.clone())
    } else {
        affinity
            .and_then(|a| a.pod_affinity.as_ref())
            .and_then(|a| a.required_during_scheduling_ignored_during_execution.clone())
    };
    terms.unwrap_or_default()
}

/// InterPodAffinity's filter over every node (terms look at topology domains),
/// in kube's order: the pod's affinity, its anti-affinity, then existing pods' anti-affinity.
fn inter_pod_affinity(pod: &Pod, node: &NodeInfo, all: &[NodeInfo]) -> Option<Failure> {
    let in_domain = |term: &PodAffinityTerm| {
        let domain = topology_value(node, &term.topology_key);
        all.iter()
            .filter(|n| domain.is_some() && topology_value(n, &term.topology_key) == domain)
            .flat_map(|n| n.pods.iter())
            .any(|other| term_selects(term, pod, other))
    };
    for term in required_terms(pod, false) {
        if topology_value(node, &term.topology_key).is_none() || !in_domain(&term) {
            // A pod that matches its own term may start the domain when no pod matches anywhere.
            let any = all.iter().flat_map(|n| n.pods.iter()).any(|other| term_selects(&term, pod, other));
            if any || !term_selects(&term, pod, pod) || topology_value(node, &term.topology_key).is_none() {
                return Some(unresolvable("node(s) didn't match pod affinity rules"));
            }
        }
    }
    for term in required_terms(pod, true) {
        if in_domain(&term) {
            return Some(resolvable("node(s) didn't match pod anti-affinity rules"));
        }
    }
    for other_node in all {
        for other in &other_node.anti_affinity {
            for term in required_terms(other, true) {
                let same_domain = topology_value(other_node, &term.topology_key).is_some()
                    && topology_value(other_node, &term.topology_key) == topology_value(node, &term.topology_key);
                if same_domain && term_selects(&term, other, pod) {
                    return Some(resolvable("node(s) didn't satisfy existing pods anti-affinity rules"));
                }
            }
        }
    }
    None
}

/// PodTopologySpread's filter for DoNotSchedule constraints.
fn topology_spread(pod: &Pod, node: &NodeInfo, all: &[NodeInfo]) -> Option<Failure> {
    let constraints = pod.spec.as_ref().and_then(|s| s.topology_spread_constraints.clone()).unwrap_or_default();
    for constraint in constraints.iter().filter(|c| c.when_unsatisfiable == "DoNotSchedule") {
        let selector = constraint
            .label_selector
            .as_ref()
            .and_then(|s| serde_json::to_value(s).ok())
            .and_then(|s| LabelSelector::from_object(&s).ok());
        let Some(selector) = selector else { continue };
        let Some(domain) = topology_value(node, &constraint.topology_key) else {
            return Some(unresolvable("node(s) didn't match pod topology spread constraints (missing required label)"));
        };
        let mut counts: BTreeMap<String, i32> = BTreeMap::new();
        for candidate in all.iter().filter(|n| node_affinity_fits(pod, n)) {
            if let Some(value) = topology_value(candidate, &constraint.topology_key) {
                let matching = candidate
                    .pods
                    .iter()
                    .filter(|p| {
                        p.metadata.namespace == pod.metadata.namespace && selector.matches(Some(&pod_labels(p)))
                    })
                    .count() as i32;
                *counts.entry(value).or_default() += matching;
            }
        }
        let min = counts.values().copied().min().unwrap_or(0);
        let here = counts.get(&domain).copied().unwrap_or(0);
        if here + 1 - min > constraint.max_skew {
            return Some(resolvable("node(s) didn't match pod topology spread constraints"));
        }
    }
    None
}

/// Runs the filters in kube-scheduler's order; the first that fails decides.
pub fn filter(pod: &Pod, node: &NodeInfo, all: &[NodeInfo]) -> Result<(), Vec<Failure>> {
    let node_name = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
    let tolerations = tolerations(pod);
    if node.node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false) {
        let taint =
            Taint { key: "node.kubernetes.io/unschedulable".into(), effect: "NoSchedule".into(), ..Taint::default() };
        if !tolerations.iter().any(|t| tolerates(t, &taint)) {
            return Err(vec![unresolvable("node(s) were unschedulable")]);
        }
    }
    if node_name.is_some_and(|n| !n.is_empty() && n != node.name()) {
        return Err(vec![unresolvable("node(s) didn't match the requested node name")]);
    }
    for taint in node.taints.iter().filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute") {
        if !tolerations.iter().any(|t| tolerates(t, taint)) {
            let value = taint.value.clone().unwrap_or_default();
            return Err(vec![unresolvable(format!("node(s) had untolerated taint {{{}: {value}}}", taint.key))]);
        }
    }
    if !node_affinity_fits(pod, node) {
        return Err(vec![unresolvable("node(s) didn't match Pod's node affinity/selector")]);
    }
    let wanted = pod_requests(pod, false);
    let free = node.allocatable;
    let mut insufficient = Vec::new();
    if node.requested.pods + 1 > free.pods {
        insufficient.push(resolvable("Too many pods"));
    }
    if wanted.milli_cpu > 0 && node.requested.milli_cpu + wanted.milli_cpu > free.milli_cpu {
        insufficient.push(resolvable("Insufficient cpu"));
    }
    if wanted.memory > 0 && node.requested.memory + wanted.memory > free.memory {
        insufficient.push(resolvable("Insufficient memory"));
    }
    if !insufficient.is_empty() {
        return Err(insufficient);
    }
    if let Some(failure) = topology_spread(pod, node, all) {
        return Err(vec![failure]);
    }
    if let Some(failure) = inter_pod_affinity(pod, node, all) {
        return Err(vec![failure]);
    }
    Ok(())
}

/// How NodeResourcesFit scores: spread (LeastAllocated) or pack (MostAllocated).
#[derive(Clone, Copy, Debug, PartialEq, clap::ValueEnum)]
pub enum ScoringStrategy {
    LeastAllocated,
    MostAllocated,
}

fn resource_score(wanted: Resources, node: &NodeInfo, strategy: ScoringStrategy) -> i64 {
    let capacity = node.allocatable;
    let score_one = |requested: i128, capacity: i128| -> i64 {
        if capacity <= 0 {
            return 0;
        }
        let requested = requested.min(capacity);
        let value = match strategy {
            ScoringStrategy::LeastAllocated => (capacity - requested) * 100 / capacity,
            ScoringStrategy::MostAllocated => requested * 100 / capacity,
        };
        value as i64
    };
    let cpu = score_one(node.requested_for_score.milli_cpu + wanted.milli_cpu, capacity.milli_cpu);
    let memory = score_one(node.requested_for_score.memory + wanted.memory, capacity.memory);
    (cpu + memory) / 2
}

fn preferred_node_affinity(pod: &Pod, node: &NodeInfo) -> i64 {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref())
        .map(|terms| terms.iter().filter(|t| term_matches(&t.preference, node)).map(|t| i64::from(t.weight)).sum())
        .unwrap_or(0)
}

/// The share of the pod's images (normalized once per pod) the node has.
fn image_locality(images: &[String], node: &NodeInfo) -> i64 {
    if images.is_empty() {
        return 0;
    }
    let present = images.iter().filter(|image| node.images.contains(*image)).count();
    (present * 100 / images.len()) as i64
}

fn prefer_no_schedule_taints(pod: &Pod, node: &NodeInfo) -> i64 {
    let tolerations = tolerations(pod);
    node.taints
        .iter()
        .filter(|t| t.effect == "PreferNoSchedule" && !tolerations.iter().any(|tol| tolerates(tol, t)))
        .count() as i64
}

/// Pods that spreading counts with this pod: same namespace and same controller.
fn spread_peers(controller: Option<u64>, node: &NodeInfo) -> i64 {
    controller.and_then(|key| node.controllers.get(&key)).map_or(0, |count| i64::from(*count))
}

/// Normalizes raw plugin values to 0..=100 across the feasible nodes.
fn normalize(raw: &[i64], reverse: bool) -> Vec<i64> {
    let max = raw.iter().copied().max().unwrap_or(0);
    raw.iter()
        .map(|&v| match (max, reverse) {
            (0, true) => 100,
            (0, false) => 0,
            (max, true) => 100 - v * 100 / max,
            (max, false) => v * 100 / max,
        })
        .collect()
}

/// The total score of each feasible node, kube's default weights.
pub fn score(pod: &Pod, feasible: &[&NodeInfo], strategy: ScoringStrategy) -> Vec<i64> {
    let raw = |f: &dyn Fn(&NodeInfo) -> i64| feasible.iter().map(|n| f(n)).collect::<Vec<_>>();
    let wanted = pod_requests(pod, true);
    let resources = raw(&|n| resource_score(wanted, n, strategy));
    let containers = pod.spec.iter().flat_map(|s| s.containers.iter());
    let images: Vec<String> =
        containers.map(|c| crate::kubelet::runtime::normalize_image(c.image.as_deref().unwrap_or_default())).collect();
    let affinity = normalize(&raw(&|n| preferred_node_affinity(pod, n)), false);
    let taints = normalize(&raw(&|n| prefer_no_schedule_taints(pod, n)), true);
    let controller = controller_key(pod);
    let spread = normalize(&raw(&|n| spread_peers(controller, n)), true);
    let locality = raw(&|n| image_locality(&images, n));
    (0..feasible.len()).map(|i| resources[i] + 2 * affinity[i] + 3 * taints[i] + 2 * spread[i] + locality[i]).collect()
}

/// kube-scheduler's FitError text: `0/3 nodes are available: 3 Insufficient cpu.`
pub fn fit_error(total_nodes: usize, failures: &[Vec<Failure>], preemption: Option<&str>) -> String {
    let mut histogram: BTreeMap<String, usize> = BTreeMap::new();
    for node in failures {
        for failure in node {
            *histogram.entry(failure.reason.clone()).or_default() += 1;
        }
    }
    let mut reasons: Vec<String> = histogram.iter().map(|(reason, count)| format!("{count} {reason}")).collect();
    reasons.sort();
    let mut message = format!("0/{total_nodes} nodes are available");
    message.push(':');
    if !reasons.is_empty() {
        message.push_str(&format!(" {}.", reasons.join(", ")));
    }
    if let Some(preemption) = preemption {
        message.push_str(&format!(" {preemption}."));
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, cpu: &str, extra: serde_json::Value) -> NodeInfo {
        let mut object = json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
                                "status": {"allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"}}});
        if let Some(spec) = extra.get("spec") {
            object["spec"] = spec.clone();
        }
        if let Some(labels) = extra.get("labels").and_then(|l| l.as_object()) {
            for (k, v) in labels {
                object["metadata"]["labels"][k] = v.clone();
            }
        }
        NodeInfo::new(Arc::new(serde_json::from_value(object).expect("node")))
    }

    fn pod(spec: serde_json::Value) -> Pod {
        let mut spec = spec;
        if spec.get("containers").is_none() {
            spec["containers"] = json!([{"name": "c", "image": "nginx"}]);
        }
        serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "default", "labels": {"app": "web"}}, "spec": spec}),
        )
        .expect("pod")
    }

    #[test]
    fn t10_resources_taints_affinity_and_unschedulable_filter_with_kubes_reasons() {
        let small = node("a", "1", json!({}));
        let big_pod =
            pod(json!({"containers": [{"name": "c", "image": "nginx", "resources": {"requests": {"cpu": "2"}}}]}));
        let failures = filter(&big_pod, &small, std::slice::from_ref(&small)).expect_err("too big");
        assert_eq!(fit_error(1, &[failures], None), "0/1 nodes are available: 1 Insufficient cpu.");

        let tainted =
            node("b", "4", json!({"spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}}));
        let plain = pod(json!({}));
        let failures = filter(&plain, &tainted, &[]).expect_err("taint");
        assert_eq!(failures[0].reason, "node(s) had untolerated taint {dedicated: gpu}");
        let tolerant = pod(json!({"tolerations": [{"key": "dedicated", "operator": "Exists"}]}));
        assert!(filter(&tolerant, &tainted, &[]).is_ok());

        let cordoned = node("c", "4", json!({"spec": {"unschedulable": true}}));
        assert_eq!(filter(&plain, &cordoned, &[]).expect_err("cordoned")[0].reason, "node(s) were unschedulable");

        let zoned = node("d", "4", json!({"labels": {"zone": "z1"}}));
        let wants_z2 = pod(json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z2"]}]}]}}}}));
        assert_eq!(
            filter(&wants_z2, &zoned, &[]).expect_err("zone")[0].reason,
            "node(s) didn't match Pod's node affinity/selector"
        );
    }

    #[test]
    fn t11_anti_affinity_keeps_matching_pods_apart() {
        let mut a = node("a", "4", json!({}));
        let b = node("b", "4", json!({}));
        let anti = pod(json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            [{"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}}}));
        a.add(Arc::new(anti.clone()));
        let all = vec![a.clone(), b.clone()];
        assert!(filter(&anti, &a, &all).is_err());
        assert!(filter(&anti, &b, &all).is_ok());
    }

    #[test]
    fn t12_least_allocated_prefers_the_emptier_node_and_most_allocated_the_fuller() {
        let mut busy = node("busy", "4", json!({}));
        let idle = node("idle", "4", json!({}));
        busy.add(Arc::new(pod(
            json!({"containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "2"}}}]}),
        )));
        let p = pod(json!({}));
        let spread = score(&p, &[&busy, &idle], ScoringStrategy::LeastAllocated);
        assert!(spread[1] > spread[0], "{spread:?}");
        let pack = score(&p, &[&busy, &idle], ScoringStrategy::MostAllocated);
        assert!(pack[0] > pack[1], "{pack:?}");
    }
}
