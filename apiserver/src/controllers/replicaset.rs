//! The ReplicaSet controller: as many active pods as `spec.replicas`, each
//! owned by the set; status counts them. Expectations keep a pass from acting
//! again on pods it created or deleted before the cache shows them.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

use super::{by_controller, controller_ref, is_active, is_available, is_ready, Context};
use crate::client::events::Reporter;
use crate::client::informer::Changes;
use crate::client::{self, Write};

/// Creates a pass may make at once, as kube's burst of 500 does.
const BURST: usize = 500;
/// Writes of one set in flight at once.
const PARALLEL: usize = 16;
/// Sets synced at once (kube's --concurrent-replicaset-syncs).
const WORKERS: usize = 5;
/// How long an unmet expectation blocks its owner (kube waits 5 minutes).
const EXPECTATION_TIMEOUT: Duration = Duration::from_secs(60);

/// Writes a controller is waiting to see in its cache, per owner uid.
#[derive(Default)]
pub struct Expectations {
    pending: HashMap<String, (Instant, Vec<String>, Vec<String>)>,
}

impl Expectations {
    /// Records pods created (by name) and deleted (by uid) for an owner.
    pub fn expect(&mut self, owner: &str, created: Vec<String>, deleted: Vec<String>) {
        if !created.is_empty() || !deleted.is_empty() {
            self.pending.insert(owner.to_string(), (Instant::now(), created, deleted));
        }
    }

    /// True once the cache shows every expected write (or they timed out).
    pub fn satisfied(&mut self, owner: &str, pods: &[Arc<Pod>]) -> bool {
        let Some((since, created, deleted)) = self.pending.get(owner) else { return true };
        let seen = created.iter().all(|name| pods.iter().any(|p| p.metadata.name.as_ref() == Some(name)));
        let gone = deleted.iter().all(|uid| {
            pods.iter().all(|p| p.metadata.uid.as_ref() != Some(uid) || p.metadata.deletion_timestamp.is_some())
        });
        let done = (seen && gone) || since.elapsed() > EXPECTATION_TIMEOUT;
        if done {
            self.pending.remove(owner);
        }
        done
    }
}

/// The order in which kube deletes surplus pods: unassigned, pending, not
/// ready, more restarts, newer first.
fn deletion_rank(pod: &Pod) -> (bool, bool, bool, std::cmp::Reverse<i32>, std::cmp::Reverse<Option<jiff::Timestamp>>) {
    let assigned = pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some_and(|n| !n.is_empty());
    let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
    let restarts = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|c| c.iter().map(|c| c.restart_count).max().unwrap_or(0))
        .unwrap_or(0);
    (
        assigned,
        running,
        is_ready(pod),
        std::cmp::Reverse(restarts),
        std::cmp::Reverse(pod.metadata.creation_timestamp.as_ref().map(|t| t.0)),
    )
}

/// A pod from a template, owned by its controller.
pub fn pod_from_template(template: &Value, name_prefix: &str, namespace: &str, owner: &Value) -> Value {
    let mut metadata = template["metadata"].clone();
    if !metadata.is_object() {
        metadata = json!({});
    }
    metadata["generateName"] = json!(format!("{name_prefix}-"));
    metadata["namespace"] = json!(namespace);
    metadata["ownerReferences"] = json!([owner]);
    for field in ["name", "creationTimestamp", "resourceVersion", "uid"] {
        if let Some(m) = metadata.as_object_mut() {
            m.remove(field);
        }
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]})
}

/// What one ReplicaSet needs: pods to create (count), pods to delete, and its status.
pub struct Plan {
    pub create: usize,
    pub delete: Vec<Arc<Pod>>,
    pub status: Value,
}

pub fn plan(rs: &ReplicaSet, owned: &[Arc<Pod>], now: jiff::Timestamp) -> Plan {
    let spec = rs.spec.clone().unwrap_or_default();
    let wanted = spec.replicas.unwrap_or(1).max(0) as usize;
    let active: Vec<Arc<Pod>> = owned.iter().filter(|p| is_active(p)).cloned().collect();
    let mut create = 0;
    let mut delete = Vec::new();
    if active.len() < wanted {
        create = (wanted - active.len()).min(BURST);
    } else if active.len() > wanted {
        let mut ranked = active.clone();
        ranked.sort_by_key(|p| deletion_rank(p));
        delete = ranked.into_iter().take(active.len() - wanted).collect();
    }
    let template_labels: serde_json::Map<String, Value> = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, json!(v)))
        .collect();
    let fully_labeled = active
        .iter()
        .filter(|p| {
            let labels = p.metadata.labels.clone().unwrap_or_default();
            template_labels.iter().all(|(k, v)| labels.get(k).map(|l| json!(l)) == Some(v.clone()))
        })
        .count();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let status = json!({
        "replicas": active.len(),
        "fullyLabeledReplicas": fully_labeled,
        "readyReplicas": active.iter().filter(|p| is_ready(p)).count(),
        "availableReplicas": active.iter().filter(|p| is_available(p, min_ready, now)).count(),
        "observedGeneration": rs.metadata.generation,
    });
    Plan { create, delete, status }
}

/// True when the written status differs from what the object has.
pub fn status_changed(current: Option<&Value>, wanted: &Value) -> bool {
    let current = current.cloned().unwrap_or(json!({}));
    wanted.as_object().into_iter().flatten().any(|(k, v)| {
        let have = current.get(k).cloned().unwrap_or(Value::Null);
        // kube omits zero counts; a missing field equals 0.
        let zero = |x: &Value| x.is_null() || *x == json!(0);
        !(have == *v || (zero(&have) && zero(v)))
    })
}

/// What the owned pods and the set were when a pass found nothing to do:
/// order-independent, so an unchanged set is skipped without planning.
fn fingerprint(rs: &ReplicaSet, pods: &[Arc<Pod>]) -> u64 {
    let hash = |version: &Option<String>| {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        version.hash(&mut hasher);
        hasher.finish()
    };
    pods.iter()
        .fold(hash(&rs.metadata.resource_version), |sum, pod| sum.wrapping_add(hash(&pod.metadata.resource_version)))
}

pub async fn run(ctx: Arc<Context>) {
    let mut expectations = Expectations::default();
    let reads = Changes::any_of(&[ctx.caches.replica_sets.changes(), ctx.caches.pods.changes()]);
    let mut wake = reads.subscribe();
    let reporter = ctx.reporter("replicaset-controller");
    let mut settled: HashMap<String, u64> = HashMap::new();
    loop {
        client::informer::next_pass(&mut wake, ctx.config.min_resync_period).await;
        let pods = ctx.caches.pods.state();
        let owned = by_controller(&pods);
        let now = client::now();
        let sets = ctx.caches.replica_sets.state();
        let live: std::collections::HashSet<&str> = sets.iter().filter_map(|rs| rs.metadata.uid.as_deref()).collect();
        settled.retain(|uid, _| live.contains(uid.as_str()));
        let mut available_soon = false;
        let mut work = Vec::new();
        for rs in &sets {
            let uid = rs.metadata.uid.clone().unwrap_or_default();
            let mine = owned.get(uid.as_str()).cloned().unwrap_or_default();
            let seen = fingerprint(rs, &mine);
            if settled.get(&uid) == Some(&seen) {
                continue;
            }
            if rs.metadata.deletion_timestamp.is_some() || !expectations.satisfied(&uid, &mine) {
                continue;
            }
            let plan = plan(rs, &mine, now);
            let soon = plan.status["readyReplicas"] != plan.status["availableReplicas"];
            available_soon |= soon;
            let write_status = status_changed(serde_json::to_value(&rs.status).ok().as_ref(), &plan.status);
            if plan.create == 0 && plan.delete.is_empty() && !write_status {
                if !soon {
                    settled.insert(uid, seen);
                }
                continue;
            }
            settled.remove(&uid);
            work.push(sync(&ctx, &reporter, rs.clone(), plan, write_status));
        }
        // A few sets at a time, as kube-controller-manager's five workers.
        let synced: Vec<_> = futures::stream::iter(work).buffer_unordered(WORKERS).collect().await;
        for (uid, created, deleted) in synced {
            expectations.expect(&uid, created, deleted);
        }
        // Pods become available minReadySeconds after ready, with no event to say so.
        if available_soon {
            tokio::time::sleep(Duration::from_millis(500)).await;
            reads.bump();
        }
    }
}

/// Carries out one set's plan; the pods it created (by name) and deleted (by uid).
async fn sync(
    ctx: &Context,
    reporter: &Reporter,
    rs: Arc<ReplicaSet>,
    plan: Plan,
    write_status: bool,
) -> (String, Vec<String>, Vec<String>) {
    let uid = rs.metadata.uid.clone().unwrap_or_default();
    let namespace = rs.metadata.namespace.clone().unwrap_or_default();
    let name = rs.metadata.name.clone().unwrap_or_default();
    let owner = json!(controller_ref("apps/v1", "ReplicaSet", &rs.metadata));
    let template = serde_json::to_value(rs.spec.as_ref().and_then(|s| s.template.clone())).unwrap_or_default();
    let mut writes = Vec::new();
    for _ in 0..plan.create {
        writes.push(Write::create::<Pod>(&namespace, pod_from_template(&template, &name, &namespace, &owner)));
    }
    for pod in &plan.delete {
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        writes.push(Write::delete::<Pod>(&namespace, &pod_name, pod.metadata.uid.as_deref()));
    }
    let results = client::writes::perform_concurrently(&ctx.client, "replicaset", writes, PARALLEL).await;
    let created: Vec<String> = results
        .iter()
        .take(plan.create)
        .filter_map(|r| r.as_ref().ok())
        .filter_map(|o| o["metadata"]["name"].as_str().map(String::from))
        .collect();
    let deleted: Vec<String> = plan.delete.iter().filter_map(|p| p.metadata.uid.clone()).collect();
    let rs_json = super::object_json(&*rs);
    let mut events = Vec::new();
    for pod_name in &created {
        events.push(reporter.event(&rs_json, false, "SuccessfulCreate", &format!("Created pod: {pod_name}")));
    }
    for pod in &plan.delete {
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        events.push(reporter.event(&rs_json, false, "SuccessfulDelete", &format!("Deleted pod: {pod_name}")));
    }
    if write_status {
        events.push(Write::merge_status::<ReplicaSet>(&namespace, &name, json!({"status": plan.status})));
    }
    client::writes::perform_concurrently(&ctx.client, "replicaset", events, PARALLEL).await;
    (uid, created, deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(replicas: i32) -> ReplicaSet {
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "default", "uid": "rs1", "generation": 2},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}}))
        .expect("rs")
    }

    fn pod(name: &str, node: Option<&str>, ready: bool) -> Arc<Pod> {
        let mut pod = json!({"metadata": {"name": name, "uid": name, "labels": {"app": "web"}}, "spec": {"containers": []},
                             "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}});
        if let Some(node) = node {
            pod["spec"]["nodeName"] = json!(node);
        }
        Arc::new(serde_json::from_value(pod).expect("pod"))
    }

    #[test]
    fn t10_missing_pods_are_created_and_surplus_ones_deleted_unready_first() {
        let now = client::now();
        let pods = vec![pod("a", Some("n1"), true), pod("b", Some("n1"), false), pod("c", None, false)];
        let more = plan(&rs(5), &pods, now);
        assert_eq!((more.create, more.delete.len()), (2, 0));
        assert_eq!(more.status["readyReplicas"], json!(1));
        assert_eq!(more.status["observedGeneration"], json!(2));
        let fewer = plan(&rs(1), &pods, now);
        let names: Vec<_> = fewer.delete.iter().map(|p| p.metadata.name.clone().unwrap_or_default()).collect();
        assert_eq!(names, vec!["c", "b"]);
    }

    #[test]
    fn t11_expectations_hold_until_the_cache_shows_the_writes() {
        let mut expectations = Expectations::default();
        expectations.expect("rs1", vec!["web-x".into()], vec!["a".into()]);
        assert!(!expectations.satisfied("rs1", &[pod("a", None, true)]));
        assert!(expectations.satisfied("rs1", &[pod("web-x", None, false)]));
        assert!(expectations.satisfied("rs1", &[]));
    }
}
