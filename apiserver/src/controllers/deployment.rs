//! The Deployment controller: a ReplicaSet per pod template (named by the
//! template's hash), rolled out with RollingUpdate (maxSurge, maxUnavailable)
//! or Recreate, with revisions on the sets for `kubectl rollout history` and
//! `undo`, old sets pruned past `revisionHistoryLimit`, and the Progressing and
//! Available conditions. `plan` is pure; `run` performs it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{json, Value};

use super::{by_controller, controller_ref, Context};
use crate::client::events::Reporter;
use crate::client::informer::Changes;
use crate::client::{self, Write};

pub const REVISION: &str = "deployment.kubernetes.io/revision";
const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
const DESIRED: &str = "deployment.kubernetes.io/desired-replicas";
const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
pub const HASH_LABEL: &str = "pod-template-hash";

/// kube's rand.SafeEncodeString alphabet: no vowels, no confusable digits.
const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The pod-template-hash of a template: FNV-1a over its JSON, then kube's safe encoding.
pub fn template_hash(template: &Value, collision_count: i32) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u32::from(*b);
            hash = hash.wrapping_mul(0x0100_0193);
        }
    };
    feed(template.to_string().as_bytes());
    if collision_count > 0 {
        feed(&collision_count.to_le_bytes());
    }
    hash.to_string().bytes().map(|b| SAFE[usize::from(b) % SAFE.len()] as char).collect()
}

fn without_hash_label(template: &Value) -> Value {
    let mut template = template.clone();
    if let Some(labels) = template["metadata"]["labels"].as_object_mut() {
        labels.remove(HASH_LABEL);
    }
    template
}

fn revision_of(rs: &ReplicaSet) -> i64 {
    rs.metadata.annotations.as_ref().and_then(|a| a.get(REVISION)).and_then(|r| r.parse().ok()).unwrap_or(0)
}

fn replicas_of(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn status_count(rs: &ReplicaSet, field: fn(&k8s_openapi::api::apps::v1::ReplicaSetStatus) -> Option<i32>) -> i32 {
    rs.status.as_ref().and_then(field).unwrap_or(0)
}

fn available_of(rs: &ReplicaSet) -> i32 {
    status_count(rs, |s| s.available_replicas)
}

/// maxSurge (rounded up) and maxUnavailable (rounded down) as pod counts.
pub fn surge_and_unavailable(d: &Deployment) -> (i32, i32) {
    let spec = d.spec.clone().unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1);
    let rolling = spec.strategy.and_then(|s| s.rolling_update).unwrap_or_default();
    let resolve = |value: Option<IntOrString>, up: bool| match value.unwrap_or(IntOrString::String("25%".into())) {
        IntOrString::Int(n) => n,
        IntOrString::String(text) => {
            let percent: i64 = text.trim_end_matches('%').parse().unwrap_or(25);
            let scaled = i64::from(replicas) * percent;
            (if up { (scaled + 99) / 100 } else { scaled / 100 }) as i32
        }
    };
    let surge = resolve(rolling.max_surge, true);
    let unavailable = resolve(rolling.max_unavailable, false);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

/// The writes one pass decides on.
#[derive(Default)]
pub struct Plan {
    pub create: Option<Value>,
    /// (replica set name, new replicas, annotations to set)
    pub scale: Vec<(String, i32, BTreeMap<String, String>)>,
    pub delete: Vec<(String, String)>,
    pub deployment_revision: Option<String>,
    pub status: Value,
    pub events: Vec<(String, String)>,
}

fn copied_annotations(d: &Deployment) -> BTreeMap<String, String> {
    d.metadata
        .annotations
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| {
            !k.starts_with("deployment.kubernetes.io/") && k != "kubectl.kubernetes.io/last-applied-configuration"
        })
        .collect()
}

fn scale_event(name: &str, from: i32, to: i32) -> (String, String) {
    let direction = if to > from { "up" } else { "down" };
    ("ScalingReplicaSet".into(), format!("Scaled {direction} replica set {name} from {from} to {to}"))
}

pub fn plan(d: &Deployment, owned: &[Arc<ReplicaSet>], now: jiff::Timestamp) -> Plan {
    let spec = d.spec.clone().unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1);
    let name = d.metadata.name.clone().unwrap_or_default();
    let namespace = d.metadata.namespace.clone().unwrap_or_default();
    let template = serde_json::to_value(&spec.template).unwrap_or_default();
    let (surge, unavailable) = surge_and_unavailable(d);
    let recreate = spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate");
    let mut plan = Plan::default();

    let new = owned
        .iter()
        .find(|rs| {
            let rs_template = serde_json::to_value(rs.spec.as_ref().map(|s| &s.template)).unwrap_or_default();
            without_hash_label(&rs_template) == template
        })
        .cloned();
    let mut old: Vec<Arc<ReplicaSet>> = owned
        .iter()
        .filter(|rs| Some(rs.metadata.uid.clone()) != new.as_ref().map(|n| n.metadata.uid.clone()))
        .cloned()
        .collect();
    old.sort_by_key(|rs| (revision_of(rs), rs.metadata.creation_timestamp.clone().map(|t| t.0)));
    let max_old_revision = old.iter().map(|rs| revision_of(rs)).max().unwrap_or(0);
    let old_replicas: i32 = old.iter().map(|rs| replicas_of(rs)).sum();
    let old_running: i32 = old.iter().map(|rs| status_count(rs, |s| Some(s.replicas))).sum();

    // Replica counts after this pass, to compute status and the next step from.
    let mut new_replicas = new.as_ref().map(|rs| replicas_of(rs)).unwrap_or(0);
    let mut scaled_old: BTreeMap<String, i32> =
        old.iter().map(|rs| (rs.metadata.name.clone().unwrap_or_default(), replicas_of(rs))).collect();

    let paused = spec.paused.unwrap_or(false);
    let new_revision = (max_old_revision + 1).to_string();
    let mut annotations = copied_annotations(d);
    annotations.insert(DESIRED.into(), replicas.to_string());
    annotations.insert(MAX_REPLICAS.into(), (replicas + if recreate { 0 } else { surge }).to_string());

    let new_name = match &new {
        Some(rs) => rs.metadata.name.clone().unwrap_or_default(),
        None => format!(
            "{name}-{}",
            template_hash(&template, d.status.as_ref().and_then(|s| s.collision_count).unwrap_or(0))
        ),
    };

    if new.is_none() && !paused {
        let initial = if recreate {
            if old_replicas == 0 && old_running == 0 {
                replicas
            } else {
                0
            }
        } else {
            let max_total = replicas + surge;
            (max_total - old_replicas).clamp(0, replicas)
        };
        let hash = new_name.rsplit('-').next().unwrap_or_default().to_string();
        let mut rs_template = template.clone();
        rs_template["metadata"]["labels"][HASH_LABEL] = json!(hash);
        let mut selector = serde_json::to_value(&spec.selector).unwrap_or_default();
        selector["matchLabels"][HASH_LABEL] = json!(hash);
        let mut rs_annotations = annotations.clone();
        rs_annotations.insert(REVISION.into(), new_revision.clone());
        plan.create = Some(json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": new_name, "namespace": namespace, "labels": rs_template["metadata"]["labels"],
                         "annotations": rs_annotations,
                         "ownerReferences": [controller_ref("apps/v1", "Deployment", &d.metadata)]},
            "spec": {"replicas": initial, "minReadySeconds": spec.min_ready_seconds.unwrap_or(0),
                     "selector": selector, "template": rs_template},
        }));
        plan.events.push(scale_event(&new_name, 0, initial));
        new_replicas = initial;
        plan.deployment_revision = Some(new_revision.clone());
    } else if let Some(rs) = &new {
        // A rollback makes an old set new again: it takes the next revision.
        let mut wanted = annotations.clone();
        if revision_of(rs) <= max_old_revision {
            wanted.insert(REVISION.into(), new_revision.clone());
            let history = rs.metadata.annotations.as_ref().and_then(|a| a.get(REVISION)).cloned().unwrap_or_default();
            wanted.insert(REVISION_HISTORY.into(), history);
        }
        let current = rs.metadata.annotations.clone().unwrap_or_default();
        let annotations_stale = wanted.iter().any(|(k, v)| current.get(k) != Some(v));
        let target = if paused {
            new_replicas
        } else if recreate {
            if old_replicas == 0 && old_running == 0 {
                replicas
            } else {
                0
            }
        } else if new_replicas > replicas {
            replicas
        } else {
            let max_total = replicas + surge;
            let current_total = old_replicas + new_replicas;
            new_replicas + (max_total - current_total).clamp(0, replicas - new_replicas)
        };
        if target != new_replicas || annotations_stale {
            if target != new_replicas {
                plan.events.push(scale_event(&new_name, new_replicas, target));
            }
            plan.scale.push((new_name.clone(), target, wanted.clone()));
            new_replicas = target;
        }
        let revision = wanted.get(REVISION).cloned().unwrap_or_else(|| revision_of(rs).to_string());
        if d.metadata.annotations.as_ref().and_then(|a| a.get(REVISION)) != Some(&revision) {
            plan.deployment_revision = Some(revision);
        }
    }

    if !paused
        && plan
            .scale
            .iter()
            .all(|(n, r, _)| *n != new_name || *r <= new.as_ref().map(|rs| replicas_of(rs)).unwrap_or(0))
    {
        if recreate {
            for rs in &old {
                let rs_name = rs.metadata.name.clone().unwrap_or_default();
                if replicas_of(rs) > 0 {
                    plan.events.push(scale_event(&rs_name, replicas_of(rs), 0));
                    plan.scale.push((rs_name.clone(), 0, BTreeMap::new()));
                    scaled_old.insert(rs_name, 0);
                }
            }
        } else if old_replicas > 0 {
            let new_available = new.as_ref().map(|rs| available_of(rs)).unwrap_or(0);
            let all_pods = old_replicas + new_replicas;
            let min_available = replicas - unavailable;
            let new_unavailable = new_replicas - new_available;
            let mut budget = all_pods - min_available - new_unavailable;
            // First the old pods that are not available anyway, then available ones down to the floor.
            for rs in &old {
                let rs_name = rs.metadata.name.clone().unwrap_or_default();
                let current = scaled_old[&rs_name];
                let unhealthy = current - available_of(rs);
                if budget <= 0 || current == 0 || unhealthy <= 0 {
                    continue;
                }
                let down = unhealthy.min(budget);
                budget -= down;
                scaled_old.insert(rs_name, current - down);
            }
            let available: i32 = old
                .iter()
                .map(|rs| available_of(rs).min(scaled_old[rs.metadata.name.as_deref().unwrap_or_default()]))
                .sum::<i32>()
                + new_available;
            let mut excess = (available - min_available).min(budget.max(0));
            for rs in &old {
                let rs_name = rs.metadata.name.clone().unwrap_or_default();
                let current = scaled_old[&rs_name];
                if excess <= 0 || current == 0 {
                    continue;
                }
                let down = current.min(excess);
                excess -= down;
                scaled_old.insert(rs_name, current - down);
            }
            for rs in &old {
                let rs_name = rs.metadata.name.clone().unwrap_or_default();
                let target = scaled_old[&rs_name];
                if target != replicas_of(rs) {
                    plan.events.push(scale_event(&rs_name, replicas_of(rs), target));
                    plan.scale.push((rs_name, target, BTreeMap::new()));
                }
            }
        }
    }

    // Old sets beyond the history limit go, oldest first, once empty.
    let limit = spec.revision_history_limit.unwrap_or(10).max(0) as usize;
    let empty: Vec<&Arc<ReplicaSet>> = old
        .iter()
        .filter(|rs| scaled_old.get(rs.metadata.name.as_deref().unwrap_or_default()) == Some(&0))
        .filter(|rs| status_count(rs, |s| Some(s.replicas)) == 0)
        .collect();
    if empty.len() > limit {
        for rs in &empty[..empty.len() - limit] {
            plan.delete
                .push((rs.metadata.name.clone().unwrap_or_default(), rs.metadata.uid.clone().unwrap_or_default()));
        }
    }

    plan.status = status(d, new.as_deref(), &old, &new_name, plan.create.is_some(), (replicas, unavailable), now);
    plan
}

fn status(
    d: &Deployment,
    new: Option<&ReplicaSet>,
    old: &[Arc<ReplicaSet>],
    new_name: &str,
    created: bool,
    (replicas, unavailable): (i32, i32),
    now: jiff::Timestamp,
) -> Value {
    let all: Vec<&ReplicaSet> = new.into_iter().chain(old.iter().map(|rs| &**rs)).collect();
    let sum = |f: &dyn Fn(&ReplicaSet) -> i32| all.iter().map(|rs| f(rs)).sum::<i32>();
    let actual = sum(&|rs| status_count(rs, |s| Some(s.replicas)));
    let total = sum(&|rs| replicas_of(rs));
    let ready = sum(&|rs| status_count(rs, |s| s.ready_replicas));
    let available = sum(&|rs| available_of(rs));
    let updated = new.map(|rs| status_count(rs, |s| Some(s.replicas))).unwrap_or(0);
    let generation = d.metadata.generation.unwrap_or(0);
    let previous = client::json_items(d.status.as_ref().and_then(|s| s.conditions.as_ref()));
    let stamp = client::time_text(now);
    let condition = |kind: &str, ok: bool, reason: &str, message: String| {
        let before = previous.iter().find(|c| c["type"] == kind);
        let status = if ok { "True" } else { "False" };
        let same_status = before.is_some_and(|b| b["status"] == status);
        let same_reason = before.is_some_and(|b| b["reason"] == reason && b["message"] == message.as_str());
        let kept = |field: &str| before.and_then(|b| b[field].as_str()).unwrap_or(&stamp).to_string();
        json!({
            "type": kind, "status": status, "reason": reason, "message": message,
            "lastUpdateTime": if same_reason { kept("lastUpdateTime") } else { stamp.clone() },
            "lastTransitionTime": if same_status { kept("lastTransitionTime") } else { stamp.clone() },
        })
    };
    let complete = updated == replicas && actual == replicas && available == replicas;
    let deadline = d.spec.as_ref().and_then(|s| s.progress_deadline_seconds).unwrap_or(600);
    let last_progress = previous
        .iter()
        .find(|c| c["type"] == "Progressing")
        .and_then(|c| c["lastUpdateTime"].as_str())
        .and_then(|t| t.parse::<jiff::Timestamp>().ok());
    let progressing = if complete {
        condition(
            "Progressing",
            true,
            "NewReplicaSetAvailable",
            format!("ReplicaSet {new_name:?} has successfully progressed."),
        )
    } else if created {
        condition("Progressing", true, "NewReplicaSetCreated", format!("Created new replica set {new_name:?}"))
    } else if last_progress.is_some_and(|t| now.duration_since(t).as_secs() > i64::from(deadline))
        && d.status
            .as_ref()
            .is_some_and(|s| s.updated_replicas == Some(updated) && s.available_replicas == Some(available))
    {
        condition(
            "Progressing",
            false,
            "ProgressDeadlineExceeded",
            format!("ReplicaSet {new_name:?} has timed out progressing."),
        )
    } else {
        let mut c =
            condition("Progressing", true, "ReplicaSetUpdated", format!("ReplicaSet {new_name:?} is progressing."));
        // Progress moves lastUpdateTime forward, which is what the deadline measures from.
        let moved = d
            .status
            .as_ref()
            .is_none_or(|s| s.updated_replicas != Some(updated) || s.available_replicas != Some(available));
        if moved {
            c["lastUpdateTime"] = json!(stamp);
        }
        c
    };
    let available_condition = if available >= replicas - unavailable {
        condition("Available", true, "MinimumReplicasAvailable", "Deployment has minimum availability.".into())
    } else {
        condition(
            "Available",
            false,
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".into(),
        )
    };
    json!({
        "observedGeneration": generation,
        "replicas": actual,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": available,
        "unavailableReplicas": (total - available).max(0),
        "conditions": [available_condition, progressing],
    })
}

fn status_differs(d: &Deployment, wanted: &Value) -> bool {
    let current = serde_json::to_value(&d.status).unwrap_or_default();
    let counts = [
        "observedGeneration",
        "replicas",
        "updatedReplicas",
        "readyReplicas",
        "availableReplicas",
        "unavailableReplicas",
    ];
    let zero = |v: &Value| v.is_null() || *v == json!(0);
    let counts_differ = counts.iter().any(|k| !(current[k] == wanted[k] || (zero(&current[k]) && zero(&wanted[k]))));
    let strip = |conditions: &Value| -> Vec<Value> {
        conditions
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| json!([c["type"], c["status"], c["reason"], c["message"], c["lastUpdateTime"]]))
            .collect()
    };
    counts_differ || strip(&current["conditions"]) != strip(&wanted["conditions"])
}

/// Replica counts a pass wrote, per deployment: the next pass waits until the
/// cache shows them, so that it neither repeats a step nor its event.
#[derive(Default)]
struct Expectations {
    pending: HashMap<String, (Instant, Vec<(String, i32)>)>,
}

impl Expectations {
    fn satisfied(&mut self, deployment: &str, sets: &[Arc<ReplicaSet>]) -> bool {
        let Some((since, wanted)) = self.pending.get(deployment) else { return true };
        let seen = wanted.iter().all(|(name, replicas)| {
            sets.iter().any(|rs| rs.metadata.name.as_ref() == Some(name) && replicas_of(rs) == *replicas)
        });
        let done = seen || since.elapsed() > Duration::from_secs(30);
        if done {
            self.pending.remove(deployment);
        }
        done
    }
}

pub async fn run(ctx: Arc<Context>) {
    let reporter: Reporter = ctx.reporter("deployment-controller");
    let c = &ctx.caches;
    let mut wake = Changes::any_of(&[c.deployments.changes(), c.replica_sets.changes()]).subscribe();
    let mut expectations = Expectations::default();
    loop {
        client::informer::next_pass(&mut wake, ctx.config.min_resync_period).await;
        let sets = ctx.caches.replica_sets.state();
        let owned = by_controller(&sets);
        let now = client::now();
        for d in ctx.caches.deployments.state() {
            let uid = d.metadata.uid.clone().unwrap_or_default();
            if d.metadata.deletion_timestamp.is_some() || !expectations.satisfied(&uid, &sets) {
                continue;
            }
            let namespace = d.metadata.namespace.clone().unwrap_or_default();
            let name = d.metadata.name.clone().unwrap_or_default();
            let mine = owned.get(d.metadata.uid.as_deref().unwrap_or_default()).cloned().unwrap_or_default();
            let plan = plan(&d, &mine, now);
            let mut writes = Vec::new();
            if let Some(rs) = plan.create.clone() {
                writes.push(Write::create::<ReplicaSet>(&namespace, rs));
            }
            for (rs_name, replicas, annotations) in &plan.scale {
                let mut patch = json!({"spec": {"replicas": replicas}});
                if !annotations.is_empty() {
                    patch["metadata"] = json!({"annotations": annotations});
                }
                writes.push(Write::merge::<ReplicaSet>(&namespace, rs_name, patch));
            }
            for (rs_name, uid) in &plan.delete {
                writes.push(Write::delete::<ReplicaSet>(&namespace, rs_name, Some(uid)));
            }
            if let Some(revision) = &plan.deployment_revision {
                writes.push(Write::merge::<Deployment>(
                    &namespace,
                    &name,
                    json!({"metadata": {"annotations": {REVISION: revision}}}),
                ));
            }
            let object = super::object_json(&*d);
            for (reason, message) in &plan.events {
                writes.push(reporter.event(&object, false, reason, message));
            }
            if status_differs(&d, &plan.status) {
                writes.push(Write::merge_status::<Deployment>(&namespace, &name, json!({"status": plan.status})));
            }
            let mut wanted: Vec<(String, i32)> = plan.scale.iter().map(|(n, r, _)| (n.clone(), *r)).collect();
            if let Some(created) = &plan.create {
                let created_name = created["metadata"]["name"].as_str().unwrap_or_default().to_string();
                wanted.push((created_name, created["spec"]["replicas"].as_i64().unwrap_or(0) as i32));
            }
            if !wanted.is_empty() {
                expectations.pending.insert(uid, (Instant::now(), wanted));
            }
            if !writes.is_empty() {
                client::writes::perform_all(&ctx.client, "deployment", writes).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(replicas: i32, image: &str, extra: Value) -> Deployment {
        let mut d = json!({"metadata": {"name": "web", "namespace": "default", "uid": "d1", "generation": 1},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": image}]}}}});
        if let Some(strategy) = extra.get("strategy") {
            d["spec"]["strategy"] = strategy.clone();
        }
        serde_json::from_value(d).expect("deployment")
    }

    /// The sets the API server would hold after the plan's creates and scales,
    /// with every pod of a set available at once.
    fn apply(plan: &Plan, sets: &mut Vec<Arc<ReplicaSet>>) {
        if let Some(created) = &plan.create {
            let mut rs = created.clone();
            rs["metadata"]["uid"] = rs["metadata"]["name"].clone();
            sets.push(Arc::new(serde_json::from_value(rs).expect("rs")));
        }
        for (name, replicas, annotations) in &plan.scale {
            for rs in sets.iter_mut() {
                if rs.metadata.name.as_deref() == Some(name) {
                    let mut changed = (**rs).clone();
                    if let Some(spec) = changed.spec.as_mut() {
                        spec.replicas = Some(*replicas);
                    }
                    changed.metadata.annotations.get_or_insert_with(Default::default).extend(annotations.clone());
                    *rs = Arc::new(changed);
                }
            }
        }
        for rs in sets.iter_mut() {
            let mut settled = (**rs).clone();
            let n = replicas_of(&settled);
            settled.status = Some(k8s_openapi::api::apps::v1::ReplicaSetStatus {
                replicas: n,
                ready_replicas: Some(n),
                available_replicas: Some(n),
                ..Default::default()
            });
            *rs = Arc::new(settled);
        }
    }

    #[test]
    fn t10_a_rolling_update_never_drops_below_max_unavailable_and_ends_on_the_new_set() {
        let now = client::now();
        let mut sets = Vec::new();
        let v1 = deployment(6, "nginx:1", json!({}));
        for _ in 0..3 {
            let p = plan(&v1, &sets, now);
            apply(&p, &mut sets);
        }
        assert_eq!(sets.len(), 1);
        assert_eq!(replicas_of(&sets[0]), 6);
        assert_eq!(sets[0].metadata.annotations.as_ref().and_then(|a| a.get(REVISION)).map(String::as_str), Some("1"));

        let v2 = deployment(6, "nginx:2", json!({}));
        let (surge, unavailable) = surge_and_unavailable(&v2);
        assert_eq!((surge, unavailable), (2, 1));
        for _ in 0..20 {
            let p = plan(&v2, &sets, now);
            apply(&p, &mut sets);
            let total: i32 = sets.iter().map(|rs| replicas_of(rs)).sum();
            assert!(total <= 6 + surge, "surge exceeded: {total}");
            assert!(total >= 6 - unavailable, "too few: {total}");
        }
        let new = sets.iter().find(|rs| replicas_of(rs) == 6).expect("new set");
        assert_eq!(new.metadata.annotations.as_ref().and_then(|a| a.get(REVISION)).map(String::as_str), Some("2"));
        assert_eq!(sets.iter().map(|rs| replicas_of(rs)).sum::<i32>(), 6);

        // Back to v1: its set becomes new again, with the next revision.
        for _ in 0..20 {
            let p = plan(&v1, &sets, now);
            apply(&p, &mut sets);
        }
        let back = sets.iter().find(|rs| replicas_of(rs) == 6).expect("rolled back");
        assert_eq!(back.metadata.annotations.as_ref().and_then(|a| a.get(REVISION)).map(String::as_str), Some("3"));
        assert_eq!(sets.len(), 2);
    }

    #[test]
    fn t11_recreate_scales_old_sets_to_zero_before_starting_the_new_one() {
        let now = client::now();
        let mut sets = Vec::new();
        let recreate = json!({"strategy": {"type": "Recreate"}});
        for _ in 0..2 {
            let p = plan(&deployment(3, "a", recreate.clone()), &sets, now);
            apply(&p, &mut sets);
        }
        let p = plan(&deployment(3, "b", recreate.clone()), &sets, now);
        let created = p.create.as_ref().expect("new set");
        assert_eq!(created["spec"]["replicas"], json!(0));
        assert!(p.scale.iter().any(|(_, r, _)| *r == 0));
    }

    #[test]
    fn t12_template_hashes_are_stable_and_safe() {
        let a = template_hash(&json!({"spec": {"containers": [{"image": "a"}]}}), 0);
        assert_eq!(a, template_hash(&json!({"spec": {"containers": [{"image": "a"}]}}), 0));
        assert_ne!(a, template_hash(&json!({"spec": {"containers": [{"image": "b"}]}}), 0));
        assert!(a.bytes().all(|b| SAFE.contains(&b)));
    }
}
