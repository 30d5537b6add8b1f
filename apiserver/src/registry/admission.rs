//! Built-in admission: NamespaceLifecycle, DefaultTolerationSeconds, Priority
//! and ServiceAccount defaulting, in the order kube-apiserver runs them.

use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

use super::Registry;
use crate::error::{ApiError, GroupResource};
use crate::meta;
use crate::resources::{self, Kind, Resource};

/// Namespaces that always exist (kube-apiserver's immortal namespaces).
const IMMORTAL: &[&str] = &["default", "kube-system", "kube-public"];

/// Mutating admission on create.
pub async fn mutate_create(registry: &Registry, resource: &Resource, object: &mut Value) -> Result<(), ApiError> {
    if resource.kind != Kind::Pod {
        return Ok(());
    }
    let mut pod: Pod = serde_json::from_value(object.clone()).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let spec = pod.spec.get_or_insert_with(Default::default);
    // ServiceAccount: every pod runs as one.
    if spec.service_account_name.as_deref().unwrap_or("").is_empty() {
        spec.service_account_name = Some("default".into());
    }
    spec.service_account = spec.service_account_name.clone();
    super::typed::default_toleration_seconds(spec);
    // Priority: the class names the number.
    let class = spec.priority_class_name.clone().unwrap_or_default();
    let (name, priority, policy) = resolve_priority(registry, &class).await.map_err(|detail| ApiError::Forbidden {
        resource: GroupResource::of(resource),
        name: meta::name(object).to_string(),
        detail,
    })?;
    if let Some(name) = name {
        spec.priority_class_name = Some(name);
    }
    spec.priority = Some(priority);
    spec.preemption_policy.get_or_insert(policy);
    *object = serde_json::to_value(&pod).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(())
}

/// The class name (when a global default applies), priority and preemption policy.
async fn resolve_priority(registry: &Registry, class: &str) -> Result<(Option<String>, i32, String), String> {
    let classes = registry.cacher(Kind::PriorityClass);
    let _ = classes.wait_for(0, super::CACHE_WAIT).await;
    let (all, _) = classes.list(&registry.keys.resource(resources::of(Kind::PriorityClass)));
    let policy_of = |c: &Value| meta::str_at(c, &["preemptionPolicy"]).unwrap_or("PreemptLowerPriority").to_string();
    let value_of = |c: &Value| c.get("value").and_then(Value::as_i64).unwrap_or(0) as i32;
    if class.is_empty() {
        return Ok(match all.iter().find(|(_, c)| c.get("globalDefault").and_then(Value::as_bool) == Some(true)) {
            Some((_, c)) => (Some(meta::name(c).to_string()), value_of(c), policy_of(c)),
            None => (None, 0, "PreemptLowerPriority".into()),
        });
    }
    match all.iter().find(|(_, c)| meta::name(c) == class) {
        Some((_, c)) => Ok((None, value_of(c), policy_of(c))),
        None => Err(format!("no PriorityClass with name {class} was found")),
    }
}

/// NamespaceLifecycle: nothing is created in a missing or terminating namespace.
pub async fn namespace_lifecycle(
    registry: &Registry,
    resource: &Resource,
    namespace: &str,
    name: &str,
) -> Result<(), ApiError> {
    if !resource.namespaced || IMMORTAL.contains(&namespace) && resource.kind != Kind::Event {
        return Ok(());
    }
    let namespaces = resources::of(Kind::Namespace);
    let key = registry.keys.object(namespaces, "", namespace);
    // The cache first; the store when the cache has not seen it yet.
    let found = match registry.cacher(Kind::Namespace).get(&key) {
        Some(object) => Some((*object).clone()),
        None => registry.storage.get(&key).await?.map(|s| s.object),
    };
    match found {
        None if IMMORTAL.contains(&namespace) => Ok(()),
        None => Err(ApiError::not_found(namespaces, namespace)),
        Some(ns) if meta::is_deleting(&ns) && resource.kind != Kind::Event => Err(ApiError::Forbidden {
            resource: GroupResource::of(resource),
            name: name.to_string(),
            detail: format!("unable to create new content in namespace {namespace} because it is being terminated"),
        }),
        Some(_) => Ok(()),
    }
}

/// The objects kube-apiserver creates at start: its namespaces, priority
/// classes and bootstrap RBAC policy.
pub fn bootstrap_objects() -> Vec<(Kind, &'static str, Value)> {
    let mut out = Vec::new();
    for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        out.push((Kind::Namespace, "", json!({"metadata": {"name": name}})));
    }
    for (name, value, description) in [
        ("system-node-critical", 2_000_001_000, "Used for system critical pods that must not be moved from their current node."),
        ("system-cluster-critical", 2_000_000_000, "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary."),
    ] {
        out.push((Kind::PriorityClass, "", json!({"metadata": {"name": name}, "value": value, "description": description})));
    }
    out.extend(crate::rbac::bootstrap::objects().into_iter().map(|(kind, object)| (kind, "", object)));
    out
}

/// kube's CertificateSubjectRestriction: no `system:masters` through the
/// API server client signer. The reason, if refused.
pub fn certificate_subject_restriction(request: &Value) -> Result<(), String> {
    use base64::Engine;
    let signer = meta::str_at(request, &["spec", "signerName"]).unwrap_or_default();
    if signer != crate::certificates::APISERVER_CLIENT_SIGNER {
        return Ok(());
    }
    let encoded = meta::str_at(request, &["spec", "request"]).unwrap_or_default();
    let pem = base64::engine::general_purpose::STANDARD.decode(encoded).unwrap_or_default();
    let requested = crate::certificates::parse_request(&pem).map_err(|e| format!("failed to parse CSR: {e}"))?;
    if requested.organizations.iter().any(|o| o == "system:masters") {
        return Err(format!("use of {signer} signer with system:masters group is not allowed"));
    }
    Ok(())
}
