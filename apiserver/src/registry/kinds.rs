//! What each kind's strategy does on create, update and delete, as
//! kube-apiserver's per-kind `strategy.go` files do. Pure: the clock is the
//! only thing read, through `meta::now`.

use serde_json::{json, Value};

use super::{Propagation, Step};
use crate::meta;
use crate::resources::{Kind, Resource, Subresource};
use crate::selector::LabelSelector;

/// Kinds whose `metadata.generation` tracks spec changes.
fn has_generation(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Deployment | Kind::ReplicaSet | Kind::Job | Kind::Pod | Kind::PriorityClass | Kind::EndpointSlice
    )
}

/// Kinds that a PUT may create (kube-apiserver's AllowCreateOnUpdate).
pub fn allow_create_on_update(kind: Kind) -> bool {
    matches!(kind, Kind::Endpoints | Kind::Event | Kind::Lease | Kind::EndpointSlice | Kind::Service)
}

const NAME_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// `generateName`: five random characters from kube's alphabet.
pub fn generate_name(object: &mut Value) {
    if !meta::name(object).is_empty() {
        return;
    }
    let Some(base) = meta::str_at(object, &["metadata", "generateName"]).map(String::from) else { return };
    if base.is_empty() {
        return;
    }
    let random = uuid::Uuid::new_v4();
    let suffix: String =
        random.as_bytes()[..5].iter().map(|b| NAME_CHARS[*b as usize % NAME_CHARS.len()] as char).collect();
    let base: String = base.chars().take(58).collect();
    meta::set(object, "name", json!(format!("{base}{suffix}")));
}

pub fn fill_system_fields(resource: &Resource, object: &mut Value) {
    meta::set(object, "uid", json!(uuid::Uuid::new_v4().to_string()));
    meta::set(object, "creationTimestamp", json!(meta::now()));
    meta::remove(object, "resourceVersion");
    meta::remove(object, "deletionTimestamp");
    meta::remove(object, "deletionGracePeriodSeconds");
    meta::remove(object, "selfLink");
    if has_generation(resource.kind) {
        meta::set(object, "generation", json!(1));
    } else {
        meta::remove(object, "generation");
    }
}

pub fn prepare_for_create(kind: Kind, object: &mut Value) {
    match kind {
        Kind::Namespace => {
            object["status"] = json!({"phase": "Active"});
            let name = meta::name(object).to_string();
            let labels = meta::metadata_mut(object).entry("labels").or_insert_with(|| json!({}));
            if let Some(labels) = labels.as_object_mut() {
                labels.insert("kubernetes.io/metadata.name".into(), json!(name));
            }
            if object["spec"]["finalizers"].is_null() {
                object["spec"] = json!({"finalizers": ["kubernetes"]});
            }
        }
        Kind::Pod => {
            let qos = qos_class(object);
            object["status"] = json!({"phase": "Pending", "qosClass": qos});
        }
        Kind::Job => {
            generate_job_selector(object);
            object["status"] = json!({});
        }
        // TaintNodesByCondition: a new node is not ready until the node controller says so.
        Kind::Node => {
            let taint = json!({"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"});
            let spec = object.as_object_mut().map(|m| m.entry("spec").or_insert_with(|| json!({})));
            if let Some(Value::Object(spec)) = spec {
                let taints = spec.entry("taints").or_insert_with(|| json!([]));
                if let Value::Array(list) = taints {
                    if !list.iter().any(|t| t["key"] == taint["key"] && t["effect"] == taint["effect"]) {
                        list.push(taint);
                    }
                }
            }
        }
        // Go writes an empty status struct as {}; a request starts with none.
        Kind::Deployment | Kind::ReplicaSet | Kind::CertificateSigningRequest => object["status"] = json!({}),
        Kind::Service => {
            if let Some(map) = object.as_object_mut() {
                map.remove("status");
            }
        }
        _ => {}
    }
}

/// The Approved and Denied conditions of `current`, with `object`'s others.
fn keep_approval(object: &mut Value, current: &Value) {
    let is_decision = |c: &Value| c["type"] == "Approved" || c["type"] == "Denied";
    let conditions = |o: &Value| o.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut kept: Vec<Value> = conditions(current).into_iter().filter(is_decision).collect();
    kept.extend(conditions(object).into_iter().filter(|c| !is_decision(c)));
    if kept.is_empty() {
        if let Some(status) = object.get_mut("status").and_then(Value::as_object_mut) {
            status.remove("conditions");
        }
    } else {
        if !object["status"].is_object() {
            object["status"] = json!({});
        }
        object["status"]["conditions"] = json!(kept);
    }
}

/// A CertificateSigningRequest names who made it: `requester` is kube's
/// UserInfo of the caller; what the body said is dropped.
pub fn stamp_requester(object: &mut Value, requester: &Value) {
    let Some(spec) = object.as_object_mut().map(|o| o.entry("spec").or_insert_with(|| json!({}))) else { return };
    let Some(spec) = spec.as_object_mut() else { return };
    for field in ["username", "uid", "groups", "extra"] {
        spec.remove(field);
    }
    for field in ["username", "uid", "groups"] {
        let value = &requester[field];
        let empty = value.is_null() || value == "" || value.as_array().is_some_and(Vec::is_empty);
        if !empty {
            spec.insert(field.into(), value.clone());
        }
    }
}

/// A Job without `manualSelector` selects its pods by its own uid, as
/// kube-apiserver's job strategy generates it.
fn generate_job_selector(job: &mut Value) {
    if job.pointer("/spec/manualSelector") == Some(&json!(true)) {
        return;
    }
    let uid = meta::uid(job).to_string();
    let name = meta::name(job).to_string();
    if let Some(spec) = job.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("selector".into(), json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}));
        let template = spec.entry("template").or_insert_with(|| json!({}));
        let metadata = template.as_object_mut().map(|t| t.entry("metadata").or_insert_with(|| json!({})));
        if let Some(Value::Object(metadata)) = metadata {
            let labels = metadata.entry("labels").or_insert_with(|| json!({}));
            if let Value::Object(labels) = labels {
                for (key, value) in [
                    ("batch.kubernetes.io/controller-uid", &uid),
                    ("batch.kubernetes.io/job-name", &name),
                    ("controller-uid", &uid),
                    ("job-name", &name),
                ] {
                    labels.insert(key.into(), json!(value));
                }
            }
        }
    }
}

/// The pod's QoS class from its containers' requests and limits.
fn qos_class(pod: &Value) -> &'static str {
    let containers = meta::at(pod, &["spec", "containers"]).and_then(Value::as_array);
    let mut any = false;
    let mut guaranteed = true;
    for container in containers.into_iter().flatten() {
        let requests = container.pointer("/resources/requests").and_then(Value::as_object);
        let limits = container.pointer("/resources/limits").and_then(Value::as_object);
        if requests.is_some_and(|r| !r.is_empty()) || limits.is_some_and(|l| !l.is_empty()) {
            any = true;
        }
        let complete = ["cpu", "memory"].iter().all(|r| {
            let limit = limits.and_then(|l| l.get(*r));
            let request = requests.and_then(|q| q.get(*r)).or(limit);
            limit.is_some() && request == limit
        });
        guaranteed &= complete;
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

/// The object to store for an update: system fields carried over, status
/// kept from the stored object on main writes, spec kept on status writes.
pub fn prepare_for_update(
    resource: &Resource,
    subresource: Option<Subresource>,
    given: Value,
    current: &Value,
) -> Value {
    let mut object = match subresource {
        // finalize changes spec.finalizers and nothing else.
        Some(Subresource::Finalize) => {
            let mut object = current.clone();
            // Go omits an empty list: the namespace's spec is then `{}`.
            match given["spec"]["finalizers"].as_array().filter(|f| !f.is_empty()) {
                Some(finalizers) => object["spec"]["finalizers"] = json!(finalizers),
                None => object["spec"] = json!({}),
            }
            object
        }
        // approval changes the Approved, Denied and Failed conditions and nothing else.
        Some(Subresource::Approval) => {
            let mut object = current.clone();
            if !object["status"].is_object() {
                object["status"] = json!({});
            }
            object["status"]["conditions"] = given["status"]["conditions"].clone();
            if object["status"]["conditions"].is_null() {
                if let Some(status) = object["status"].as_object_mut() {
                    status.remove("conditions");
                }
            }
            object
        }
        Some(Subresource::Status) => {
            let mut object = current.clone();
            match given.get("status") {
                Some(status) => object["status"] = status.clone(),
                None => {
                    if let Some(map) = object.as_object_mut() {
                        map.remove("status");
                    }
                }
            }
            // A signer's status write keeps the approval decisions as they stood.
            if resource.kind == Kind::CertificateSigningRequest {
                keep_approval(&mut object, current);
            }
            // Status writes may change labels and annotations, as kube-apiserver allows.
            for key in ["labels", "annotations"] {
                match meta::at(&given, &["metadata", key]) {
                    Some(value) => meta::set(&mut object, key, value.clone()),
                    None => meta::remove(&mut object, key),
                }
            }
            object
        }
        _ => {
            let mut object = given;
            // A binding writes the PodScheduled condition along with spec.nodeName.
            if resource.has(Subresource::Status) && subresource != Some(Subresource::Binding) {
                match current.get("status") {
                    Some(status) => object["status"] = status.clone(),
                    None => {
                        if let Some(map) = object.as_object_mut() {
                            map.remove("status");
                        }
                    }
                }
            }
            object
        }
    };
    for key in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"] {
        match meta::at(current, &["metadata", key]) {
            Some(value) => meta::set(&mut object, key, value.clone()),
            None => meta::remove(&mut object, key),
        }
    }
    // A request cannot be changed once made; only its status moves.
    if resource.kind == Kind::CertificateSigningRequest {
        object["spec"] = current.get("spec").cloned().unwrap_or(Value::Null);
    }
    if resource.kind == Kind::Namespace && subresource != Some(Subresource::Finalize) {
        object["spec"] = current.get("spec").cloned().unwrap_or(Value::Null);
    }
    if resource.kind == Kind::Service {
        keep_allocated_addresses(&mut object, current);
    }
    if has_generation(resource.kind) && spec_of(&object) != spec_of(current) {
        let generation = meta::at(current, &["metadata", "generation"]).and_then(Value::as_i64).unwrap_or(0);
        meta::set(&mut object, "generation", json!(generation + 1));
    }
    object
}

/// A Service keeps the addresses allocated to it when an update leaves them out.
fn keep_allocated_addresses(next: &mut Value, current: &Value) {
    for field in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
        let given = next.pointer(&format!("/spec/{field}")).is_some_and(|v| !v.is_null() && v != "");
        if let (false, Some(value)) = (given, current.pointer(&format!("/spec/{field}"))) {
            if let Some(spec) = next.get_mut("spec").and_then(Value::as_object_mut) {
                spec.insert(field.to_string(), value.clone());
            }
        }
    }
}

/// Everything but metadata and status: what a generation bump watches.
fn spec_of(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(map) = copy.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    copy
}

/// Removing the last finalizer of an object being deleted deletes it.
pub fn should_delete_during_update(kind: Kind, next: &Value, current: &Value) -> bool {
    let spec_finalizers = |o: &Value| o["spec"]["finalizers"].as_array().is_some_and(|f| !f.is_empty());
    if kind == Kind::Namespace && meta::is_deleting(next) && spec_finalizers(current) {
        return !spec_finalizers(next) && meta::finalizers(next).is_empty();
    }
    if !meta::is_deleting(next) || !meta::finalizers(next).is_empty() || meta::finalizers(current).is_empty() {
        return false;
    }
    let grace = meta::at(next, &["metadata", "deletionGracePeriodSeconds"]).and_then(Value::as_i64).unwrap_or(0);
    kind != Kind::Pod || grace == 0
}

/// What a DELETE does to the stored object.
pub(super) fn delete_step(kind: Kind, current: &Value, grace: Option<i64>, propagation: Option<Propagation>) -> Step {
    let mut marked = current.clone();
    // Foreground and Orphan deletion are finalizers the garbage collector removes.
    // batch/v1 Jobs orphan their pods unless told otherwise, for compatibility.
    let policy = propagation.or((kind == Kind::Job).then_some(Propagation::Orphan));
    let finalizer = match policy {
        Some(Propagation::Foreground) => Some("foregroundDeletion"),
        Some(Propagation::Orphan) => Some("orphan"),
        _ => None,
    };
    if let Some(finalizer) = finalizer.filter(|_| kind != Kind::Namespace && !meta::is_deleting(current)) {
        let mut finalizers = meta::finalizers(current);
        if !finalizers.iter().any(|f| f == finalizer) {
            finalizers.push(finalizer.to_string());
        }
        meta::set(&mut marked, "finalizers", json!(finalizers));
    }
    let current = &marked.clone();
    if kind == Kind::Namespace {
        if meta::is_deleting(current) {
            return Step::Keep(marked);
        }
        // kube-apiserver gives a namespace no grace period: only a deletion time.
        meta::set(&mut marked, "deletionTimestamp", json!(meta::now()));
        marked["status"] = json!({"phase": "Terminating"});
        let finalizing = marked["spec"]["finalizers"].as_array().is_some_and(|f| !f.is_empty());
        return if finalizing || !meta::finalizers(current).is_empty() {
            Step::Write(marked)
        } else {
            Step::Delete(marked)
        };
    }
    let grace = if kind == Kind::Pod { pod_grace(current, grace) } else { 0 };
    let finalizers = !meta::finalizers(current).is_empty();
    if grace > 0 {
        let already = meta::at(current, &["metadata", "deletionGracePeriodSeconds"]).and_then(Value::as_i64);
        if already.is_some_and(|g| g <= grace) {
            return Step::Keep(marked);
        }
        let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(grace);
        meta::set(&mut marked, "deletionTimestamp", json!(meta::timestamp(at)));
        meta::set(&mut marked, "deletionGracePeriodSeconds", json!(grace));
        return Step::Write(marked);
    }
    if finalizers {
        if meta::is_deleting(current)
            && meta::at(current, &["metadata", "deletionGracePeriodSeconds"]).and_then(Value::as_i64) == Some(0)
        {
            return Step::Keep(marked);
        }
        meta::set(&mut marked, "deletionTimestamp", json!(meta::now()));
        meta::set(&mut marked, "deletionGracePeriodSeconds", json!(0));
        return Step::Write(marked);
    }
    Step::Delete(marked)
}

/// A pod's grace period: the request's, else the pod's; none for pods never
/// scheduled or already finished, as kube-apiserver's pod strategy decides.
fn pod_grace(pod: &Value, requested: Option<i64>) -> i64 {
    let scheduled = meta::str_at(pod, &["spec", "nodeName"]).is_some_and(|n| !n.is_empty());
    let phase = meta::str_at(pod, &["status", "phase"]).unwrap_or("");
    if !scheduled || phase == "Succeeded" || phase == "Failed" {
        return 0;
    }
    let own = meta::at(pod, &["spec", "terminationGracePeriodSeconds"]).and_then(Value::as_i64).unwrap_or(30);
    requested.unwrap_or(own).max(0)
}

/// The autoscaling/v1 Scale view of a deployment or replica set.
pub fn scale_of(object: &Value) -> Value {
    let selector = meta::at(object, &["spec", "selector"])
        .and_then(|s| LabelSelector::from_object(s).ok())
        .map(|s| s.to_text())
        .unwrap_or_default();
    let mut metadata = json!({});
    for key in ["name", "namespace", "uid", "resourceVersion", "creationTimestamp"] {
        if let Some(value) = meta::at(object, &["metadata", key]) {
            metadata[key] = value.clone();
        }
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": meta::at(object, &["spec", "replicas"]).and_then(Value::as_i64).unwrap_or(0)},
        "status": {
            "replicas": meta::at(object, &["status", "replicas"]).and_then(Value::as_i64).unwrap_or(0),
            "selector": selector,
        },
    })
}

/// The pod after a Binding to `node`: spec.nodeName and the PodScheduled condition.
pub fn bound(pod: &Value, node: &str) -> Value {
    let mut next = pod.clone();
    next["spec"]["nodeName"] = json!(node);
    let condition =
        json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": meta::now()});
    let status = next.as_object_mut().map(|m| m.entry("status").or_insert_with(|| json!({})));
    if let Some(status) = status {
        let conditions = status.as_object_mut().map(|s| s.entry("conditions").or_insert_with(|| json!([])));
        if let Some(Value::Array(list)) = conditions {
            list.retain(|c| c["type"] != "PodScheduled");
            list.push(condition);
        }
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::of;

    #[test]
    fn generation_moves_with_the_spec_only() {
        let current = json!({"metadata": {"name": "d", "generation": 1, "uid": "u"}, "spec": {"replicas": 1}, "status": {"replicas": 1}});
        let same = prepare_for_update(
            of(Kind::Deployment),
            None,
            json!({"metadata": {"name": "d", "labels": {"a": "b"}}, "spec": {"replicas": 1}}),
            &current,
        );
        assert_eq!(same["metadata"]["generation"], 1);
        assert_eq!(same["status"]["replicas"], 1, "main writes keep the status");
        let changed = prepare_for_update(
            of(Kind::Deployment),
            None,
            json!({"metadata": {"name": "d"}, "spec": {"replicas": 2}, "status": {"replicas": 9}}),
            &current,
        );
        assert_eq!(changed["metadata"]["generation"], 2);
        assert_eq!(changed["status"]["replicas"], 1);
        let status = prepare_for_update(
            of(Kind::Deployment),
            Some(Subresource::Status),
            json!({"metadata": {"name": "d"}, "spec": {"replicas": 5}, "status": {"replicas": 3}}),
            &current,
        );
        assert_eq!(status["spec"]["replicas"], 1, "status writes keep the spec");
        assert_eq!(status["status"]["replicas"], 3);
        assert_eq!(status["metadata"]["uid"], "u");
    }

    #[test]
    fn finalize_changes_only_the_finalizers_and_omits_an_empty_list() {
        let namespaces = crate::resources::of(Kind::Namespace);
        let current = json!({"metadata": {"name": "zz", "labels": {"a": "b"}}, "spec": {"finalizers": ["kubernetes"]},
                             "status": {"phase": "Terminating"}});
        let given = json!({"metadata": {"name": "zz"}, "spec": {"finalizers": []}, "status": {"phase": "Active"}});
        let next = prepare_for_update(namespaces, Some(Subresource::Finalize), given, &current);
        assert_eq!(next["spec"], json!({}));
        assert_eq!(next["status"]["phase"], "Terminating");
        assert_eq!(next["metadata"]["labels"], json!({"a": "b"}));
    }

    #[test]
    fn pod_deletion_is_graceful_once_scheduled() {
        let unscheduled = json!({"metadata": {"name": "p"}, "spec": {}});
        assert!(matches!(delete_step(Kind::Pod, &unscheduled, None, None), Step::Delete(_)));
        let scheduled = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n", "terminationGracePeriodSeconds": 30}, "status": {"phase": "Running"}});
        match delete_step(Kind::Pod, &scheduled, None, None) {
            Step::Write(o) => assert_eq!(o["metadata"]["deletionGracePeriodSeconds"], 30),
            _ => panic!("expected a graceful mark"),
        }
        assert!(matches!(delete_step(Kind::Pod, &scheduled, Some(0), None), Step::Delete(_)));
        let finalized = json!({"metadata": {"name": "c", "finalizers": ["x"]}});
        assert!(matches!(delete_step(Kind::ConfigMap, &finalized, None, None), Step::Write(_)));
    }

    #[test]
    fn qos() {
        let pod = |resources: Value| json!({"spec": {"containers": [{"name": "c", "resources": resources}]}});
        assert_eq!(qos_class(&pod(json!({}))), "BestEffort");
        assert_eq!(qos_class(&pod(json!({"limits": {"cpu": "1", "memory": "1Gi"}}))), "Guaranteed");
        assert_eq!(qos_class(&pod(json!({"requests": {"cpu": "1"}}))), "Burstable");
    }
}
