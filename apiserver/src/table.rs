//! Server-side printing: the `meta.k8s.io/v1` Table kubectl asks for, with
//! kube-apiserver's columns for every resource (pkg/printers/internalversion).

use serde_json::{json, Value};

use crate::meta;
use crate::resources::{Kind, Resource};
use crate::selector::LabelSelector;

/// What each row carries besides its cells (`includeObject`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    #[default]
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(text: &str) -> IncludeObject {
        match text {
            "None" => IncludeObject::None,
            "Object" => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

struct Column {
    name: &'static str,
    kind: &'static str,
    wide: bool,
}

const fn col(name: &'static str, kind: &'static str) -> Column {
    Column { name, kind, wide: false }
}

const fn wide(name: &'static str) -> Column {
    Column { name, kind: "string", wide: true }
}

fn columns(kind: Kind) -> Vec<Column> {
    let name = col("Name", "string");
    let age = col("Age", "string");
    match kind {
        Kind::Pod => vec![
            name,
            col("Ready", "string"),
            col("Status", "string"),
            col("Restarts", "string"),
            age,
            wide("IP"),
            wide("Node"),
            wide("Nominated Node"),
            wide("Readiness Gates"),
        ],
        Kind::Node => vec![
            name,
            col("Status", "string"),
            col("Roles", "string"),
            age,
            col("Version", "string"),
            wide("Internal-IP"),
            wide("External-IP"),
            wide("OS-Image"),
            wide("Kernel-Version"),
            wide("Container-Runtime"),
        ],
        Kind::Namespace => vec![name, col("Status", "string"), age],
        Kind::Service => vec![
            name,
            col("Type", "string"),
            col("Cluster-IP", "string"),
            col("External-IP", "string"),
            col("Port(s)", "string"),
            age,
            wide("Selector"),
        ],
        Kind::Endpoints => vec![name, col("Endpoints", "string"), age],
        Kind::ConfigMap => vec![name, col("Data", "string"), age],
        Kind::Secret => vec![name, col("Type", "string"), col("Data", "string"), age],
        Kind::ServiceAccount => vec![name, col("Secrets", "string"), age],
        Kind::Event => vec![
            col("Last Seen", "string"),
            col("Type", "string"),
            col("Reason", "string"),
            col("Object", "string"),
            wide("Subobject"),
            wide("Source"),
            col("Message", "string"),
            wide("First Seen"),
            Column { name: "Count", kind: "integer", wide: true },
            wide("Name"),
        ],
        Kind::Deployment => vec![
            name,
            col("Ready", "string"),
            col("Up-to-date", "integer"),
            col("Available", "integer"),
            age,
            wide("Containers"),
            wide("Images"),
            wide("Selector"),
        ],
        Kind::ReplicaSet => vec![
            name,
            col("Desired", "integer"),
            col("Current", "integer"),
            col("Ready", "integer"),
            age,
            wide("Containers"),
            wide("Images"),
            wide("Selector"),
        ],
        Kind::Job => vec![
            name,
            col("Status", "string"),
            col("Completions", "string"),
            col("Duration", "string"),
            age,
            wide("Containers"),
            wide("Images"),
            wide("Selector"),
        ],
        Kind::Lease => vec![name, col("Holder", "string"), age],
        Kind::EndpointSlice => {
            vec![name, col("AddressType", "string"), col("Ports", "string"), col("Endpoints", "string"), age]
        }
        Kind::Role | Kind::ClusterRole => vec![name, col("Created At", "date")],
        Kind::RoleBinding | Kind::ClusterRoleBinding => {
            vec![name, col("Role", "string"), age, wide("Users"), wide("Groups"), wide("ServiceAccounts")]
        }
        Kind::CertificateSigningRequest => vec![
            name,
            age,
            col("SignerName", "string"),
            col("Requestor", "string"),
            col("RequestedDuration", "string"),
            col("Condition", "string"),
        ],
        Kind::PriorityClass => vec![
            name,
            col("Value", "integer"),
            col("Global-Default", "boolean"),
            age,
            col("PreemptionPolicy", "string"),
        ],
    }
}

/// kube's `duration.HumanDuration`.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    let s = seconds.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    let y = d / 365;
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if s % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", s % 60)
        }
    } else if h < 3 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if d < 8 {
        if h % 24 == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{}h", h % 24)
        }
    } else if y < 2 {
        format!("{d}d")
    } else if y < 8 {
        if d % 365 == 0 {
            format!("{y}y")
        } else {
            format!("{y}y{}d", d % 365)
        }
    } else {
        format!("{y}y")
    }
}

fn age_of(timestamp: Option<&str>, now: jiff::Timestamp) -> String {
    match timestamp.and_then(meta::parse_time) {
        Some(t) => human_duration((now - t).get_seconds()),
        None => "<unknown>".into(),
    }
}

/// kubectl's CONDITION of a certificate request: Denied over Approved over
/// Pending, then Failed and Issued.
fn request_condition(request: &Value) -> String {
    let has = |kind: &str| {
        request.pointer("/status/conditions").and_then(Value::as_array).into_iter().flatten().any(|c| c["type"] == kind)
    };
    let mut condition = if has("Denied") {
        "Denied"
    } else if has("Approved") {
        "Approved"
    } else {
        "Pending"
    }
    .to_string();
    if has("Failed") {
        condition.push_str(",Failed");
    }
    if !text(request, &["status", "certificate"]).is_empty() {
        condition.push_str(",Issued");
    }
    condition
}

fn text(value: &Value, path: &[&str]) -> String {
    meta::str_at(value, path).unwrap_or("").to_string()
}

fn or_none(text: String) -> Value {
    json!(if text.is_empty() { "<none>".to_string() } else { text })
}

fn int(value: &Value, path: &[&str]) -> i64 {
    meta::at(value, path).and_then(Value::as_i64).unwrap_or(0)
}

fn count(value: &Value, fields: &[&str]) -> i64 {
    fields.iter().map(|f| value.get(*f).and_then(Value::as_object).map(|m| m.len() as i64).unwrap_or(0)).sum()
}

fn containers_and_images(template_spec: Option<&Value>) -> (Value, Value) {
    let list: Vec<&Value> = template_spec
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array)
        .map(|c| c.iter().collect())
        .unwrap_or_default();
    let names: Vec<&str> = list.iter().filter_map(|c| c.get("name").and_then(Value::as_str)).collect();
    let images: Vec<&str> = list.iter().filter_map(|c| c.get("image").and_then(Value::as_str)).collect();
    (json!(names.join(",")), json!(images.join(",")))
}

fn selector_text(object: &Value) -> Value {
    let text = meta::at(object, &["spec", "selector"])
        .and_then(|s| LabelSelector::from_object(s).ok())
        .map(|s| s.to_text())
        .unwrap_or_default();
    or_none(text)
}

fn pod_cells(pod: &Value, age: String) -> Vec<Value> {
    let total = meta::at(pod, &["spec", "containers"]).and_then(Value::as_array).map(Vec::len).unwrap_or(0);
    let statuses: Vec<&Value> = meta::at(pod, &["status", "containerStatuses"])
        .and_then(Value::as_array)
        .map(|s| s.iter().collect())
        .unwrap_or_default();
    let ready = statuses.iter().filter(|s| s.get("ready").and_then(Value::as_bool) == Some(true)).count();
    let restarts: i64 = statuses.iter().map(|s| s.get("restartCount").and_then(Value::as_i64).unwrap_or(0)).sum();
    let mut reason = text(pod, &["status", "reason"]);
    if reason.is_empty() {
        reason = text(pod, &["status", "phase"]);
    }
    for status in &statuses {
        let waiting = meta::str_at(status, &["state", "waiting", "reason"]).unwrap_or("");
        let terminated = meta::str_at(status, &["state", "terminated", "reason"]).unwrap_or("");
        if !waiting.is_empty() {
            reason = waiting.to_string();
        } else if !terminated.is_empty() {
            reason = terminated.to_string();
        }
    }
    if meta::is_deleting(pod) {
        reason = if text(pod, &["status", "reason"]) == "NodeLost" { "Unknown".into() } else { "Terminating".into() };
    }
    let gates = meta::at(pod, &["spec", "readinessGates"]).and_then(Value::as_array).map(Vec::len).unwrap_or(0);
    vec![
        json!(meta::name(pod)),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts.to_string()),
        json!(age),
        or_none(text(pod, &["status", "podIP"])),
        or_none(text(pod, &["spec", "nodeName"])),
        or_none(text(pod, &["status", "nominatedNodeName"])),
        if gates == 0 { json!("<none>") } else { json!(format!("0/{gates}")) },
    ]
}

fn node_cells(node: &Value, age: String) -> Vec<Value> {
    let conditions = meta::at(node, &["status", "conditions"]).and_then(Value::as_array);
    let ready = conditions.into_iter().flatten().find(|c| c["type"] == "Ready");
    let mut status = match ready.and_then(|c| c["status"].as_str()) {
        Some("True") => "Ready".to_string(),
        Some(_) => "NotReady".to_string(),
        None => "Unknown".to_string(),
    };
    if meta::at(node, &["spec", "unschedulable"]).and_then(Value::as_bool) == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    let roles: Vec<String> = meta::labels(node)
        .into_iter()
        .flatten()
        .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/").map(String::from))
        .collect();
    let address = |kind: &str| {
        meta::at(node, &["status", "addresses"])
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|a| a["type"] == kind)
            .and_then(|a| a["address"].as_str())
            .unwrap_or("")
            .to_string()
    };
    vec![
        json!(meta::name(node)),
        json!(status),
        or_none(roles.join(",")),
        json!(age),
        json!(text(node, &["status", "nodeInfo", "kubeletVersion"])),
        or_none(address("InternalIP")),
        or_none(address("ExternalIP")),
        or_none(text(node, &["status", "nodeInfo", "osImage"])),
        or_none(text(node, &["status", "nodeInfo", "kernelVersion"])),
        or_none(text(node, &["status", "nodeInfo", "containerRuntimeVersion"])),
    ]
}

fn service_cells(service: &Value, age: String) -> Vec<Value> {
    let ports: Vec<String> = meta::at(service, &["spec", "ports"])
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| {
            let protocol = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
            let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
            match p.get("nodePort").and_then(Value::as_i64) {
                Some(node_port) => format!("{port}:{node_port}/{protocol}"),
                None => format!("{port}/{protocol}"),
            }
        })
        .collect();
    let selector: Vec<String> = meta::at(service, &["spec", "selector"])
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    let kind = text(service, &["spec", "type"]);
    let external = if kind == "ExternalName" {
        text(service, &["spec", "externalName"])
    } else {
        let ips: Vec<String> = meta::at(service, &["spec", "externalIPs"])
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(String::from))
            .collect();
        if ips.is_empty() && kind == "LoadBalancer" {
            "<pending>".into()
        } else {
            ips.join(",")
        }
    };
    vec![
        json!(meta::name(service)),
        json!(kind),
        or_none(text(service, &["spec", "clusterIP"])),
        or_none(external),
        or_none(ports.join(",")),
        json!(age),
        or_none(selector.join(",")),
    ]
}

fn endpoints_text(endpoints: &Value) -> String {
    let mut all = Vec::new();
    for subset in endpoints.get("subsets").and_then(Value::as_array).into_iter().flatten() {
        let ports: Vec<i64> = subset
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p["port"].as_i64())
            .collect();
        for address in subset.get("addresses").and_then(Value::as_array).into_iter().flatten() {
            let ip = address["ip"].as_str().unwrap_or("");
            if ports.is_empty() {
                all.push(ip.to_string());
            }
            for port in &ports {
                all.push(format!("{ip}:{port}"));
            }
        }
    }
    if all.len() > 3 {
        let more = all.len() - 3;
        format!("{} + {more} more...", all[..3].join(","))
    } else {
        all.join(",")
    }
}

fn event_cells(event: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let first = meta::str_at(event, &["firstTimestamp"])
        .or_else(|| meta::str_at(event, &["eventTime"]))
        .or_else(|| meta::str_at(event, &["metadata", "creationTimestamp"]));
    let last = meta::str_at(event, &["lastTimestamp"]).or(first);
    let involved = |k: &str| text(event, &["involvedObject", k]);
    let source = {
        let component = text(event, &["source", "component"]);
        let component = if component.is_empty() { text(event, &["reportingComponent"]) } else { component };
        let host = text(event, &["source", "host"]);
        if host.is_empty() {
            component
        } else {
            format!("{component}, {host}")
        }
    };
    vec![
        json!(age_of(last, now)),
        json!(text(event, &["type"])),
        json!(text(event, &["reason"])),
        json!(format!("{}/{}", involved("kind").to_lowercase(), involved("name"))),
        json!(involved("fieldPath")),
        json!(source),
        json!(text(event, &["message"]).trim()),
        json!(age_of(first, now)),
        json!(int(event, &["count"]).max(1)),
        json!(meta::name(event)),
    ]
}

fn job_cells(job: &Value, age: String, now: jiff::Timestamp) -> Vec<Value> {
    let conditions: Vec<&Value> = meta::at(job, &["status", "conditions"])
        .and_then(Value::as_array)
        .map(|c| c.iter().collect())
        .unwrap_or_default();
    let holds = |kind: &str| conditions.iter().any(|c| c["type"] == kind && c["status"] == "True");
    let status = if holds("Complete") {
        "Complete"
    } else if holds("Failed") {
        "Failed"
    } else if holds("FailureTarget") {
        "FailureTarget"
    } else if holds("Suspended") {
        "Suspended"
    } else {
        "Running"
    };
    let completions = match meta::at(job, &["spec", "completions"]).and_then(Value::as_i64) {
        Some(c) => format!("{}/{c}", int(job, &["status", "succeeded"])),
        None => format!("{}/1 of {}", int(job, &["status", "succeeded"]), int(job, &["spec", "parallelism"])),
    };
    let start = meta::str_at(job, &["status", "startTime"]).and_then(meta::parse_time);
    let end = meta::str_at(job, &["status", "completionTime"]).and_then(meta::parse_time).unwrap_or(now);
    let duration = start.map(|s| human_duration((end - s).get_seconds())).unwrap_or_default();
    let (containers, images) = containers_and_images(meta::at(job, &["spec", "template", "spec"]));
    vec![
        json!(meta::name(job)),
        json!(status),
        json!(completions),
        json!(duration),
        json!(age),
        containers,
        images,
        selector_text(job),
    ]
}

fn cells(kind: Kind, object: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let age = age_of(meta::str_at(object, &["metadata", "creationTimestamp"]), now);
    let name = json!(meta::name(object));
    match kind {
        Kind::Pod => pod_cells(object, age),
        Kind::Node => node_cells(object, age),
        Kind::Namespace => vec![name, json!(text(object, &["status", "phase"])), json!(age)],
        Kind::Service => service_cells(object, age),
        Kind::Endpoints => vec![name, or_none(endpoints_text(object)), json!(age)],
        Kind::ConfigMap => vec![name, json!(count(object, &["data", "binaryData"])), json!(age)],
        Kind::Secret => vec![name, json!(text(object, &["type"])), json!(count(object, &["data"])), json!(age)],
        Kind::ServiceAccount => {
            let secrets = object.get("secrets").and_then(Value::as_array).map(Vec::len).unwrap_or(0);
            vec![name, json!(secrets), json!(age)]
        }
        Kind::Event => event_cells(object, now),
        Kind::Deployment => {
            let (containers, images) = containers_and_images(meta::at(object, &["spec", "template", "spec"]));
            let ready = format!("{}/{}", int(object, &["status", "readyReplicas"]), int(object, &["spec", "replicas"]));
            vec![
                name,
                json!(ready),
                json!(int(object, &["status", "updatedReplicas"])),
                json!(int(object, &["status", "availableReplicas"])),
                json!(age),
                containers,
                images,
                selector_text(object),
            ]
        }
        Kind::ReplicaSet => {
            let (containers, images) = containers_and_images(meta::at(object, &["spec", "template", "spec"]));
            vec![
                name,
                json!(int(object, &["spec", "replicas"])),
                json!(int(object, &["status", "replicas"])),
                json!(int(object, &["status", "readyReplicas"])),
                json!(age),
                containers,
                images,
                selector_text(object),
            ]
        }
        Kind::Job => job_cells(object, age, now),
        Kind::Lease => vec![name, or_none(text(object, &["spec", "holderIdentity"])), json!(age)],
        Kind::EndpointSlice => {
            let ports: Vec<String> = object
                .get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|p| p["port"].as_i64().map(|n| n.to_string()))
                .collect();
            let addresses: Vec<String> = object
                .get("endpoints")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .flat_map(|e| e["addresses"].as_array().cloned().unwrap_or_default())
                .filter_map(|a| a.as_str().map(String::from))
                .collect();
            let shown = if addresses.len() > 3 {
                format!("{} + {} more...", addresses[..3].join(","), addresses.len() - 3)
            } else {
                addresses.join(",")
            };
            vec![name, json!(text(object, &["addressType"])), or_none(ports.join(",")), or_none(shown), json!(age)]
        }
        Kind::Role | Kind::ClusterRole => {
            vec![name, json!(meta::str_at(object, &["metadata", "creationTimestamp"]).unwrap_or_default())]
        }
        Kind::RoleBinding | Kind::ClusterRoleBinding => binding_cells(object, name, age),
        Kind::CertificateSigningRequest => {
            let requested = object.pointer("/spec/expirationSeconds").and_then(Value::as_i64).map(human_duration);
            vec![
                name,
                json!(age),
                json!(text(object, &["spec", "signerName"])),
                json!(text(object, &["spec", "username"])),
                json!(requested.unwrap_or_else(|| "<none>".into())),
                json!(request_condition(object)),
            ]
        }
        Kind::PriorityClass => vec![
            name,
            json!(int(object, &["value"])),
            json!(object.get("globalDefault").and_then(Value::as_bool).unwrap_or(false)),
            json!(age),
            json!(text(object, &["preemptionPolicy"])),
        ],
    }
}

/// kube's printRoleBinding: the role as Kind/name, then subjects by kind.
fn binding_cells(object: &Value, name: Value, age: String) -> Vec<Value> {
    let role = format!(
        "{}/{}",
        meta::str_at(object, &["roleRef", "kind"]).unwrap_or_default(),
        meta::str_at(object, &["roleRef", "name"]).unwrap_or_default()
    );
    let subjects = object.get("subjects").and_then(Value::as_array).cloned().unwrap_or_default();
    let of_kind = |kind: &str| -> Value {
        let names: Vec<String> = subjects
            .iter()
            .filter(|s| s["kind"] == kind)
            .map(|s| {
                let name = s["name"].as_str().unwrap_or_default();
                match (kind, s["namespace"].as_str()) {
                    ("ServiceAccount", Some(ns)) => format!("{ns}/{name}"),
                    _ => name.to_string(),
                }
            })
            .collect();
        json!(names.join(", "))
    };
    vec![name, json!(role), json!(age), of_kind("User"), of_kind("Group"), of_kind("ServiceAccount")]
}

fn row_object(object: &Value, include: IncludeObject) -> Option<Value> {
    match include {
        IncludeObject::None => None,
        IncludeObject::Object => Some(object.clone()),
        IncludeObject::Metadata => Some(json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
        })),
    }
}

/// A Table of `objects`; `list_metadata` carries resourceVersion and continue.
pub fn table(resource: &Resource, objects: &[Value], list_metadata: Value, include: IncludeObject) -> Value {
    let now = jiff::Timestamp::now();
    let definitions: Vec<Value> = columns(resource.kind)
        .iter()
        .map(|c| {
            let mut definition = json!({"name": c.name, "type": c.kind, "format": "", "description": "", "priority": if c.wide { 1 } else { 0 }});
            if c.name == "Name" {
                definition["format"] = json!("name");
            }
            definition
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let mut row = json!({"cells": cells(resource.kind, object, now)});
            if let Some(inner) = row_object(object, include) {
                row["object"] = inner;
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_metadata,
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{of, RESOURCES};

    #[test]
    fn durations_read_as_kubectl_shows_them() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(125), "2m5s");
        assert_eq!(human_duration(900), "15m");
        assert_eq!(human_duration(4 * 3600 + 60), "4h1m");
        assert_eq!(human_duration(3 * 86400), "3d");
    }

    #[test]
    fn every_kind_has_as_many_cells_as_columns() {
        for resource in RESOURCES {
            let t = table(resource, &[json!({"metadata": {"name": "x"}})], json!({}), IncludeObject::Metadata);
            let columns = t["columnDefinitions"].as_array().expect("test data").len();
            assert_eq!(t["rows"][0]["cells"].as_array().expect("test data").len(), columns, "{}", resource.plural);
        }
    }

    #[test]
    fn pods_show_ip_and_node_when_wide() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1", "containers": [{"name": "c"}]}, "status": {"phase": "Running", "podIP": "10.1.0.5"}});
        let t = table(of(Kind::Pod), &[pod], json!({}), IncludeObject::None);
        assert_eq!(t["rows"][0]["cells"][2], "Running");
        assert_eq!(t["rows"][0]["cells"][5], "10.1.0.5");
        assert_eq!(t["rows"][0]["cells"][6], "n1");
        assert_eq!(t["columnDefinitions"][5]["priority"], 1);
    }
}
