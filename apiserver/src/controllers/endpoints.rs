//! The Endpoints and EndpointSlice controllers: for every Service with a
//! selector, the pods it selects, by readiness, with their ports resolved
//! (named targetPorts through each pod's containerPorts).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{json, Value};

use super::{controller_ref, is_ready, Context};
use crate::client::Write;
use crate::selector::LabelSelector;

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
const MANAGER: &str = "endpointslice-controller.k8s.io";
/// Endpoints per slice, kube's default `--max-endpoints-per-slice`.
const PER_SLICE: usize = 100;

fn resolve_port(target: Option<&IntOrString>, port: i32, pod: &Pod) -> Option<i32> {
    match target {
        None => Some(port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => pod
            .spec
            .as_ref()?
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port),
    }
}

/// One selected pod with its resolved ports.
struct Member {
    pod: Arc<Pod>,
    ip: String,
    ready: bool,
    terminating: bool,
    ports: Vec<Value>,
}

fn members(service: &Service, pods: &[Arc<Pod>]) -> Option<Vec<Member>> {
    let spec = service.spec.as_ref()?;
    let selector = spec.selector.as_ref().filter(|s| !s.is_empty())?;
    let selector = LabelSelector::from_object(&json!({"matchLabels": selector})).ok()?;
    let namespace = service.metadata.namespace.clone();
    let mut chosen = Vec::new();
    for pod in pods.iter().filter(|p| p.metadata.namespace == namespace) {
        let labels: serde_json::Map<String, Value> =
            pod.metadata.labels.iter().flatten().map(|(k, v)| (k.clone(), json!(v))).collect();
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).filter(|ip| !ip.is_empty()) else { continue };
        if !selector.matches(Some(&labels)) || matches!(phase, Some("Succeeded") | Some("Failed")) {
            continue;
        }
        let ports: Vec<Value> = spec
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                let port = resolve_port(p.target_port.as_ref(), p.port, pod)?;
                let mut value = json!({"port": port, "protocol": p.protocol.clone().unwrap_or_else(|| "TCP".into())});
                if let Some(name) = &p.name {
                    value["name"] = json!(name);
                }
                Some(value)
            })
            .collect();
        let terminating = pod.metadata.deletion_timestamp.is_some();
        chosen.push(Member { ready: is_ready(pod) && !terminating, terminating, ip, ports, pod: pod.clone() });
    }
    chosen.sort_by(|a, b| a.ip.cmp(&b.ip));
    Some(chosen)
}

fn target_ref(pod: &Pod) -> Value {
    json!({"kind": "Pod", "namespace": pod.metadata.namespace, "name": pod.metadata.name, "uid": pod.metadata.uid})
}

fn node_of(pod: &Pod) -> Option<String> {
    pod.spec.as_ref().and_then(|s| s.node_name.clone())
}

/// The Endpoints subsets: members grouped by their resolved ports.
fn subsets(members: &[Member]) -> Value {
    let mut groups: BTreeMap<String, (Value, Vec<Value>, Vec<Value>)> = BTreeMap::new();
    for member in members.iter().filter(|m| !m.terminating) {
        let mut ports = member.ports.clone();
        ports.sort_by_key(|p| p.to_string());
        let entry = groups.entry(json!(ports).to_string()).or_insert_with(|| (json!(ports), Vec::new(), Vec::new()));
        let mut address = json!({"ip": member.ip, "targetRef": target_ref(&member.pod)});
        if let Some(node) = node_of(&member.pod) {
            address["nodeName"] = json!(node);
        }
        if member.ready {
            entry.1.push(address)
        } else {
            entry.2.push(address)
        }
    }
    let subsets: Vec<Value> = groups
        .into_values()
        .map(|(ports, ready, unready)| {
            let mut subset = json!({});
            if !ready.is_empty() {
                subset["addresses"] = json!(ready);
            }
            if !unready.is_empty() {
                subset["notReadyAddresses"] = json!(unready);
            }
            if ports.as_array().is_some_and(|p| !p.is_empty()) {
                subset["ports"] = ports;
            }
            subset
        })
        .collect();
    json!(subsets)
}

fn slice_endpoints(members: &[Member]) -> Vec<Value> {
    members
        .iter()
        .map(|m| {
            let mut endpoint = json!({
                "addresses": [m.ip],
                "conditions": {"ready": m.ready, "serving": is_ready(&m.pod), "terminating": m.terminating},
                "targetRef": target_ref(&m.pod),
            });
            if let Some(node) = node_of(&m.pod) {
                endpoint["nodeName"] = json!(node);
            }
            endpoint
        })
        .collect()
}

fn comparable_subsets(endpoints: Option<&Endpoints>) -> Value {
    let value = endpoints.and_then(|e| serde_json::to_value(&e.subsets).ok()).unwrap_or(Value::Null);
    if value.is_null() {
        json!([])
    } else {
        value
    }
}

/// The writes that bring every selector Service's Endpoints and slices up to date.
pub fn reconcile(
    services: &[Arc<Service>],
    pods: &[Arc<Pod>],
    endpoints: &[Arc<Endpoints>],
    slices: &[Arc<EndpointSlice>],
) -> Vec<Write> {
    let mut writes = Vec::new();
    for service in services {
        let Some(members) = members(service, pods) else { continue };
        let namespace = service.metadata.namespace.clone().unwrap_or_default();
        let name = service.metadata.name.clone().unwrap_or_default();
        let wanted = subsets(&members);
        let current = endpoints
            .iter()
            .find(|e| e.metadata.namespace == service.metadata.namespace && e.metadata.name == service.metadata.name);
        match current {
            None => writes.push(Write::create::<Endpoints>(
                &namespace,
                json!({"metadata": {"name": name, "namespace": namespace, "labels": service.metadata.labels}, "subsets": wanted}),
            )),
            Some(current) if comparable_subsets(Some(current)) != wanted => {
                let mut object = serde_json::to_value(&**current).unwrap_or_default();
                object["subsets"] = wanted;
                writes.push(Write::new::<Endpoints>(
                    &namespace,
                    crate::client::writes::Op::Replace { name: name.clone(), object, subresource: None },
                ));
            }
            Some(_) => {}
        }

        let mut ports: Vec<Value> = members.first().map(|m| m.ports.clone()).unwrap_or_else(|| {
            service
                .spec
                .iter()
                .flat_map(|s| s.ports.iter().flatten())
                .map(|p| {
                    let mut v = json!({"port": p.port, "protocol": p.protocol.clone().unwrap_or_else(|| "TCP".into())});
                    if let Some(n) = &p.name {
                        v["name"] = json!(n);
                    }
                    v
                })
                .collect()
        });
        ports.sort_by_key(|p| p.to_string());
        let mine: Vec<&Arc<EndpointSlice>> = slices
            .iter()
            .filter(|s| {
                s.metadata.namespace == service.metadata.namespace
                    && s.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)) == Some(&name)
                    && s.metadata.labels.as_ref().and_then(|l| l.get(MANAGED_BY)).map(String::as_str) == Some(MANAGER)
            })
            .collect();
        let chunks: Vec<Vec<Value>> = {
            let all = slice_endpoints(&members);
            if all.is_empty() {
                vec![Vec::new()]
            } else {
                all.chunks(PER_SLICE).map(<[Value]>::to_vec).collect()
            }
        };
        for (i, chunk) in chunks.iter().enumerate() {
            let body = |metadata: Value| {
                json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": metadata,
                       "addressType": "IPv4", "endpoints": chunk, "ports": ports})
            };
            match mine.get(i) {
                None => writes.push(Write::create::<EndpointSlice>(
                    &namespace,
                    body(json!({"generateName": format!("{name}-"), "namespace": namespace,
                                "labels": {SERVICE_NAME_LABEL: name, MANAGED_BY: MANAGER},
                                "ownerReferences": [controller_ref("v1", "Service", &service.metadata)]})),
                )),
                Some(slice) => {
                    let have = json!({"endpoints": slice.endpoints, "ports": slice.ports});
                    let mut have_ports = have["ports"].as_array().cloned().unwrap_or_default();
                    have_ports.sort_by_key(|p| p.to_string());
                    if have["endpoints"] != json!(chunk) || json!(have_ports) != json!(ports) {
                        let mut object = serde_json::to_value(&***slice).unwrap_or_default();
                        object["endpoints"] = json!(chunk);
                        object["ports"] = json!(ports);
                        let slice_name = slice.metadata.name.clone().unwrap_or_default();
                        writes.push(Write::new::<EndpointSlice>(
                            &namespace,
                            crate::client::writes::Op::Replace { name: slice_name, object, subresource: None },
                        ));
                    }
                }
            }
        }
        for extra in mine.iter().skip(chunks.len()) {
            let slice_name = extra.metadata.name.clone().unwrap_or_default();
            writes.push(Write::delete::<EndpointSlice>(&namespace, &slice_name, extra.metadata.uid.as_deref()));
        }
    }
    writes
}

pub async fn pass(ctx: Arc<Context>) -> Vec<Write> {
    let caches = &ctx.caches;
    reconcile(
        &caches.services.state(),
        &caches.pods.state(),
        &caches.endpoints.state(),
        &caches.endpoint_slices.state(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ip: &str, ready: bool) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "default", "uid": name, "labels": {"app": "web"}},
                "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "x", "ports": [{"name": "http", "containerPort": 8080}]}]},
                "status": {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}}))
            .expect("pod"),
        )
    }

    #[test]
    fn t10_ready_and_unready_pods_land_in_endpoints_and_one_slice_with_named_ports_resolved() {
        let service: Arc<Service> = Arc::new(
            serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "default", "uid": "s1"},
                "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http", "protocol": "TCP"}]}}))
            .expect("service"),
        );
        let pods = vec![pod("a", "127.64.0.2", true), pod("b", "127.64.0.3", false)];
        let writes = reconcile(&[service], &pods, &[], &[]);
        assert_eq!(writes.len(), 2);
        let crate::client::writes::Op::Create(endpoints) = &writes[0].op else { panic!("create") };
        assert_eq!(endpoints["subsets"][0]["addresses"][0]["ip"], json!("127.64.0.2"));
        assert_eq!(endpoints["subsets"][0]["notReadyAddresses"][0]["ip"], json!("127.64.0.3"));
        assert_eq!(endpoints["subsets"][0]["ports"][0]["port"], json!(8080));
        let crate::client::writes::Op::Create(slice) = &writes[1].op else { panic!("create") };
        assert_eq!(slice["endpoints"].as_array().map(Vec::len), Some(2));
        assert_eq!(slice["endpoints"][1]["conditions"]["ready"], json!(false));
        assert_eq!(slice["metadata"]["labels"][SERVICE_NAME_LABEL], json!("web"));
    }
}
