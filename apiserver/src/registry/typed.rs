//! The typed side of the registry: every object passes through its k8s-openapi
//! type on the way in, which is how kube-apiserver drops unknown fields, and
//! kube-apiserver's defaults are set on the typed value.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Endpoints, Event, Namespace, Node, Pod, PodSpec, Secret, Service, ServiceAccount, Toleration,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding, Subject};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::resources::Kind;

fn through<K: DeserializeOwned + Serialize>(value: Value, default: impl FnOnce(&mut K)) -> Result<Value, String> {
    let mut typed: K = serde_json::from_value(value).map_err(|e| e.to_string())?;
    default(&mut typed);
    serde_json::to_value(&typed).map_err(|e| e.to_string())
}

/// Decodes into the kind's type and encodes again, without defaults.
pub fn normalize(kind: Kind, value: Value) -> Result<Value, String> {
    decode_with(kind, value, false)
}

/// Decodes, sets kube-apiserver's defaults, and encodes again.
pub fn default(kind: Kind, value: Value) -> Result<Value, String> {
    decode_with(kind, value, true)
}

fn decode_with(kind: Kind, value: Value, defaults: bool) -> Result<Value, String> {
    match kind {
        Kind::Namespace => through(value, |_: &mut Namespace| {}),
        Kind::Node => through(value, |_: &mut Node| {}),
        Kind::Pod => through(value, |p: &mut Pod| {
            if defaults {
                let spec = p.spec.get_or_insert_with(Default::default);
                default_pod_spec(spec);
                // A pod's own default, not its templates' (SetDefaults_Pod).
                spec.enable_service_links.get_or_insert(true);
            }
        }),
        Kind::Service => through(value, |s: &mut Service| {
            if defaults {
                default_service(s);
            }
        }),
        Kind::Endpoints => through(value, |e: &mut Endpoints| {
            if defaults {
                for subset in e.subsets.iter_mut().flatten() {
                    for port in subset.ports.iter_mut().flatten() {
                        port.protocol.get_or_insert_with(|| "TCP".into());
                    }
                }
            }
        }),
        Kind::ConfigMap => through(value, |_: &mut ConfigMap| {}),
        Kind::Secret => through(value, |s: &mut Secret| {
            if defaults {
                s.type_.get_or_insert_with(|| "Opaque".into());
            }
        }),
        Kind::ServiceAccount => through(value, |_: &mut ServiceAccount| {}),
        Kind::Event => through(value, |_: &mut Event| {}),
        Kind::Deployment => through(value, |d: &mut Deployment| {
            if defaults {
                default_deployment(d);
            }
        }),
        Kind::ReplicaSet => through(value, |r: &mut ReplicaSet| {
            if defaults {
                if let Some(spec) = r.spec.as_mut() {
                    spec.replicas.get_or_insert(1);
                    spec.min_ready_seconds.get_or_insert(0);
                    default_pod_spec(
                        spec.template.get_or_insert_with(Default::default).spec.get_or_insert_with(Default::default),
                    );
                }
            }
        }),
        Kind::Job => through(value, |j: &mut Job| {
            if defaults {
                default_job(j);
            }
        }),
        Kind::Lease => through(value, |_: &mut Lease| {}),
        Kind::EndpointSlice => through(value, |e: &mut EndpointSlice| {
            if defaults {
                for port in e.ports.iter_mut().flatten() {
                    port.protocol.get_or_insert_with(|| "TCP".into());
                }
            }
        }),
        Kind::PriorityClass => through(value, |p: &mut PriorityClass| {
            if defaults {
                p.preemption_policy.get_or_insert_with(|| "PreemptLowerPriority".into());
            }
        }),
        Kind::Role => through(value, |_: &mut Role| {}),
        Kind::ClusterRole => through(value, |_: &mut ClusterRole| {}),
        Kind::RoleBinding => through(value, |b: &mut RoleBinding| {
            if defaults {
                default_subjects(b.subjects.iter_mut().flatten());
            }
        }),
        Kind::ClusterRoleBinding => through(value, |b: &mut ClusterRoleBinding| {
            if defaults {
                default_subjects(b.subjects.iter_mut().flatten());
            }
        }),
        Kind::CertificateSigningRequest => through(value, |_: &mut CertificateSigningRequest| {}),
    }
}

/// kube's SetDefaults_Subject: users and groups are RBAC's, service accounts the core group's.
fn default_subjects<'a>(subjects: impl Iterator<Item = &'a mut Subject>) {
    for subject in subjects {
        if subject.api_group.as_deref().unwrap_or_default().is_empty() {
            let group = if subject.kind == "ServiceAccount" { "" } else { crate::resources::RBAC_GROUP };
            subject.api_group = Some(group.to_string());
        }
    }
}

fn default_container(container: &mut Container) {
    container.termination_message_path.get_or_insert_with(|| "/dev/termination-log".into());
    container.termination_message_policy.get_or_insert_with(|| "File".into());
    let image = container.image.clone().unwrap_or_default();
    container.image_pull_policy.get_or_insert_with(|| {
        let last = image.rsplit('/').next().unwrap_or("");
        let tagged = last.contains(':') && !last.ends_with(":latest");
        let pinned = image.contains('@');
        if tagged || pinned { "IfNotPresent" } else { "Always" }.to_string()
    });
    container.resources.get_or_insert_with(Default::default);
    for port in container.ports.iter_mut().flatten() {
        port.protocol.get_or_insert_with(|| "TCP".into());
    }
}

/// The PodSpec defaults of kube-apiserver (pkg/apis/core/v1/defaults.go).
pub fn default_pod_spec(spec: &mut PodSpec) {
    spec.restart_policy.get_or_insert_with(|| "Always".into());
    spec.dns_policy.get_or_insert_with(|| "ClusterFirst".into());
    spec.termination_grace_period_seconds.get_or_insert(30);
    spec.scheduler_name.get_or_insert_with(|| "default-scheduler".into());
    spec.security_context.get_or_insert_with(Default::default);
    for container in spec.containers.iter_mut().chain(spec.init_containers.iter_mut().flatten()) {
        default_container(container);
    }
}

/// DefaultTolerationSeconds admission: tolerate not-ready and unreachable for 300 s.
pub fn default_toleration_seconds(spec: &mut PodSpec) {
    const TAINTS: [&str; 2] = ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"];
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for taint in TAINTS {
        let tolerated = tolerations.iter().any(|t| {
            let key_matches =
                t.key.as_deref() == Some(taint) || (t.key.is_none() && t.operator.as_deref() == Some("Exists"));
            let effect_matches = t.effect.as_deref().is_none_or(|e| e.is_empty() || e == "NoExecute");
            key_matches && effect_matches
        });
        if !tolerated {
            tolerations.push(Toleration {
                key: Some(taint.into()),
                operator: Some("Exists".into()),
                effect: Some("NoExecute".into()),
                toleration_seconds: Some(300),
                value: None,
            });
        }
    }
}

fn default_service(service: &mut Service) {
    let spec = service.spec.get_or_insert_with(Default::default);
    let kind = spec.type_.get_or_insert_with(|| "ClusterIP".into()).clone();
    spec.session_affinity.get_or_insert_with(|| "None".into());
    if kind != "ExternalName" {
        spec.internal_traffic_policy.get_or_insert_with(|| "Cluster".into());
    }
    if kind == "NodePort" || kind == "LoadBalancer" {
        spec.external_traffic_policy.get_or_insert_with(|| "Cluster".into());
    }
    for port in spec.ports.iter_mut().flatten() {
        port.protocol.get_or_insert_with(|| "TCP".into());
        // Go writes an unset targetPort as 0: both mean "the port itself".
        let unset = match &port.target_port {
            None => true,
            Some(IntOrString::Int(n)) => *n == 0,
            Some(IntOrString::String(s)) => s.is_empty(),
        };
        if unset {
            port.target_port = Some(IntOrString::Int(port.port));
        }
    }
    service.status.get_or_insert_with(Default::default).load_balancer.get_or_insert_with(Default::default);
}

fn default_deployment(deployment: &mut Deployment) {
    let Some(spec) = deployment.spec.as_mut() else { return };
    spec.replicas.get_or_insert(1);
    spec.revision_history_limit.get_or_insert(10);
    spec.progress_deadline_seconds.get_or_insert(600);
    let strategy = spec.strategy.get_or_insert_with(Default::default);
    let kind = strategy.type_.get_or_insert_with(|| "RollingUpdate".into()).clone();
    if kind == "RollingUpdate" {
        let rolling = strategy.rolling_update.get_or_insert_with(Default::default);
        rolling.max_unavailable.get_or_insert_with(|| IntOrString::String("25%".into()));
        rolling.max_surge.get_or_insert_with(|| IntOrString::String("25%".into()));
    }
    default_pod_spec(spec.template.spec.get_or_insert_with(Default::default));
}

fn default_job(job: &mut Job) {
    let Some(spec) = job.spec.as_mut() else { return };
    spec.parallelism.get_or_insert(1);
    spec.completions.get_or_insert(1);
    spec.backoff_limit.get_or_insert(6);
    spec.completion_mode.get_or_insert_with(|| "NonIndexed".into());
    spec.suspend.get_or_insert(false);
    spec.pod_replacement_policy.get_or_insert_with(|| "TerminatingOrFailed".into());
    spec.manual_selector.get_or_insert(false);
    default_pod_spec(spec.template.spec.get_or_insert_with(Default::default));
}

/// What Go's encoding writes that serde's leaves out: a pod template's zero
/// `creationTimestamp` is `null`, not absent.
pub fn finish(kind: Kind, object: &mut Value) {
    // Go omits empty label and annotation maps.
    if let Some(Value::Object(metadata)) = object.get_mut("metadata") {
        for key in ["labels", "annotations"] {
            if metadata.get(key).is_some_and(|v| v.as_object().is_some_and(|m| m.is_empty())) {
                metadata.remove(key);
            }
        }
    }
    if kind == Kind::Node {
        finish_node_status(object);
    }
    let template = match kind {
        Kind::Deployment | Kind::ReplicaSet | Kind::Job => object.pointer_mut("/spec/template"),
        _ => None,
    };
    if let Some(Value::Object(template)) = template {
        let metadata = template.entry("metadata").or_insert_with(|| serde_json::json!({}));
        if let Value::Object(metadata) = metadata {
            metadata.entry("creationTimestamp").or_insert(Value::Null);
        }
    }
}

/// A node's status as Go writes it: zero condition times as null, and the
/// kubelet's endpoint port even when 0.
fn finish_node_status(node: &mut Value) {
    let Some(Value::Object(status)) = node.get_mut("status") else { return };
    let endpoints = status.entry("daemonEndpoints").or_insert_with(|| serde_json::json!({}));
    if let Value::Object(endpoints) = endpoints {
        let kubelet = endpoints.entry("kubeletEndpoint").or_insert_with(|| serde_json::json!({}));
        if let Value::Object(kubelet) = kubelet {
            kubelet.entry("Port").or_insert(serde_json::json!(0));
        }
    }
    if let Some(Value::Array(conditions)) = status.get_mut("conditions") {
        for condition in conditions.iter_mut().filter_map(Value::as_object_mut) {
            condition.entry("lastHeartbeatTime").or_insert(Value::Null);
            condition.entry("lastTransitionTime").or_insert(Value::Null);
        }
    }
}

/// Fields present (and not null) in `given` but absent after decoding: the
/// unknown fields of `fieldValidation=Strict`, named as kube-apiserver names them.
pub fn unknown_fields(given: &Value, decoded: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk_unknown(given, decoded, "", &mut out);
    out
}

fn walk_unknown(given: &Value, decoded: &Value, path: &str, out: &mut Vec<String>) {
    match (given, decoded) {
        (Value::Object(g), Value::Object(d)) => {
            for (key, value) in g {
                let child = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                match d.get(key) {
                    Some(inner) => walk_unknown(value, inner, &child, out),
                    None if value.is_null() => {}
                    None => out.push(child),
                }
            }
        }
        (Value::Array(g), Value::Array(d)) => {
            for (i, (value, inner)) in g.iter().zip(d).enumerate() {
                walk_unknown(value, inner, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pod_defaults_match_kube_apiserver() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "nginx"}, {"name": "d", "image": "nginx:1.25"}]}});
        let out = default(Kind::Pod, pod).expect("test data");
        assert_eq!(out["spec"]["restartPolicy"], "Always");
        assert_eq!(out["spec"]["dnsPolicy"], "ClusterFirst");
        assert_eq!(out["spec"]["terminationGracePeriodSeconds"], 30);
        assert_eq!(out["spec"]["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(out["spec"]["containers"][1]["imagePullPolicy"], "IfNotPresent");
    }

    #[test]
    fn deployment_defaults_match_kube_apiserver() {
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        let out = default(Kind::Deployment, d).expect("test data");
        assert_eq!(out["spec"]["replicas"], 1);
        assert_eq!(out["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(out["spec"]["progressDeadlineSeconds"], 600);
        assert_eq!(out["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
    }

    #[test]
    fn unknown_fields_are_named_by_path() {
        let given = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "bogus": 1},
            "spec": {"containers": [{"name": "c", "image": "i", "imagePullPolicyy": "x"}], "nodeName": null}});
        let decoded = normalize(Kind::Pod, given.clone()).expect("test data");
        assert_eq!(unknown_fields(&given, &decoded), vec!["metadata.bogus", "spec.containers[0].imagePullPolicyy"]);
    }

    #[test]
    fn default_tolerations_are_added_once() {
        let mut spec = PodSpec::default();
        default_toleration_seconds(&mut spec);
        default_toleration_seconds(&mut spec);
        assert_eq!(spec.tolerations.as_ref().map(Vec::len), Some(2));
    }
}
