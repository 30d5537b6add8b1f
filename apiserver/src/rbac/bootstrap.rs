//! kube-apiserver's bootstrap RBAC policy for the components Cairn has: the
//! ClusterRoles and ClusterRoleBindings it creates at start (labelled
//! `kubernetes.io/bootstrapping=rbac-defaults`), and the rules the Node
//! authorizer grants every kubelet.

use serde_json::{json, Value};

use crate::resources::{Kind, CERTIFICATES_GROUP, RBAC_GROUP};

const READ: &[&str] = &["get", "list", "watch"];
const ALL_VERBS: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

fn paths(urls: &[&str], verbs: &[&str]) -> Value {
    json!({"nonResourceURLs": urls, "verbs": verbs})
}

fn metadata(name: &str) -> Value {
    json!({
        "name": name,
        "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
        "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
    })
}

/// What a kubelet may do (kube's `NodeRules`), checked for node identities by the Node mode.
pub fn node_rules() -> Vec<Value> {
    vec![
        // kube's authorizeNode refuses a kubelet deleting its Node.
        rule(&[""], &["nodes"], &["create", "get", "list", "patch", "update", "watch"]),
        rule(&[""], &["nodes/status"], &["patch", "update"]),
        rule(&[""], &["pods"], &["create", "delete", "get", "list", "watch"]),
        rule(&[""], &["pods/status"], &["patch", "update"]),
        rule(&[""], &["pods/eviction"], &["create"]),
        rule(&[""], &["services", "endpoints"], READ),
        rule(&["", "events.k8s.io"], &["events"], &["create", "patch", "update"]),
        rule(&["coordination.k8s.io"], &["leases"], &["create", "delete", "get", "patch", "update"]),
        rule(&["discovery.k8s.io"], &["endpointslices"], READ),
        rule(&["authentication.k8s.io"], &["tokenreviews"], &["create"]),
        rule(&["authorization.k8s.io"], &["subjectaccessreviews"], &["create"]),
        // A kubelet asks for its next certificate itself.
        rule(&[CERTIFICATES_GROUP], &["certificatesigningrequests"], &["create", "get", "list", "watch"]),
    ]
}

/// `edit`: every verb on the namespaced workloads; `admin` adds roles and bindings.
fn edit_rules() -> Vec<Value> {
    let workloads = ["deployments", "deployments/scale", "replicasets", "replicasets/scale"];
    let core = ["pods", "services", "endpoints", "configmaps", "serviceaccounts", "events"];
    vec![
        rule(&[""], &core, ALL_VERBS),
        rule(&[""], &["secrets"], ALL_VERBS),
        rule(&[""], &["pods/log", "pods/status", "services/status", "namespaces", "namespaces/status"], READ),
        rule(&[""], &["pods/eviction"], &["create"]),
        rule(&["apps"], &workloads, ALL_VERBS),
        rule(&["batch"], &["jobs"], ALL_VERBS),
        rule(&["discovery.k8s.io"], &["endpointslices"], ALL_VERBS),
        rule(&["coordination.k8s.io"], &["leases"], ALL_VERBS),
    ]
}

/// (name, rules)
fn cluster_roles() -> Vec<(&'static str, Vec<Value>)> {
    let workloads = ["deployments", "deployments/scale", "replicasets", "replicasets/scale"];
    let core = ["pods", "services", "endpoints", "configmaps", "serviceaccounts", "events"];
    vec![
        ("cluster-admin", vec![rule(&["*"], &["*"], &["*"]), paths(&["*"], &["*"])]),
        (
            "system:discovery",
            vec![paths(
                &[
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                    "/healthz",
                    "/livez",
                    "/openapi",
                    "/openapi/*",
                    "/readyz",
                    "/version",
                    "/version/",
                ],
                &["get"],
            )],
        ),
        (
            "system:public-info-viewer",
            vec![paths(&["/healthz", "/livez", "/readyz", "/version", "/version/"], &["get"])],
        ),
        (
            "system:basic-user",
            vec![
                rule(&["authentication.k8s.io"], &["selfsubjectreviews"], &["create"]),
                rule(&["authorization.k8s.io"], &["selfsubjectaccessreviews", "selfsubjectrulesreviews"], &["create"]),
            ],
        ),
        (
            "view",
            vec![
                rule(&[""], &core, READ),
                rule(&[""], &["pods/log", "pods/status", "services/status", "namespaces", "namespaces/status"], READ),
                rule(&["apps"], &workloads, READ),
                rule(&["batch"], &["jobs", "jobs/status"], READ),
                rule(&["discovery.k8s.io"], &["endpointslices"], READ),
            ],
        ),
        ("edit", edit_rules()),
        ("admin", {
            let mut rules = edit_rules();
            rules.push(rule(&[RBAC_GROUP], &["roles", "rolebindings"], ALL_VERBS));
            rules.push(rule(&["authorization.k8s.io"], &["localsubjectaccessreviews"], &["create"]));
            rules
        }),
        ("system:node", node_rules()),
        (
            "system:node-proxier",
            vec![
                rule(&[""], &["services", "endpoints", "nodes"], READ),
                rule(&["discovery.k8s.io"], &["endpointslices"], READ),
                rule(&["", "events.k8s.io"], &["events"], &["create", "patch", "update"]),
            ],
        ),
        (
            "system:kube-scheduler",
            vec![
                rule(&["", "events.k8s.io"], &["events"], &["create", "patch", "update"]),
                rule(&["coordination.k8s.io"], &["leases"], &["create", "get", "update"]),
                rule(&[""], &["nodes", "namespaces", "services", "replicationcontrollers"], READ),
                rule(&[""], &["pods"], &["delete", "get", "list", "watch"]),
                rule(&[""], &["bindings", "pods/binding"], &["create"]),
                rule(&[""], &["pods/status"], &["patch", "update"]),
                rule(&["apps"], &["replicasets", "statefulsets"], READ),
                rule(&["scheduling.k8s.io"], &["priorityclasses"], READ),
                rule(&["authentication.k8s.io"], &["tokenreviews"], &["create"]),
                rule(&["authorization.k8s.io"], &["subjectaccessreviews"], &["create"]),
            ],
        ),
        // kube's controller-manager runs each controller as its own service
        // account; Cairn's runs them under this one identity, with what they write.
        (
            "system:kube-controller-manager",
            vec![
                rule(&["", "apps", "batch", "discovery.k8s.io", "events.k8s.io"], &["*"], ALL_VERBS),
                rule(&["coordination.k8s.io"], &["leases"], ALL_VERBS),
                rule(&["scheduling.k8s.io"], &["priorityclasses"], READ),
                rule(&["authentication.k8s.io"], &["tokenreviews"], &["create"]),
                rule(&["authorization.k8s.io"], &["subjectaccessreviews"], &["create"]),
                // csrapproving and csrsigning.
                rule(
                    &[CERTIFICATES_GROUP],
                    &[CSRS, "certificatesigningrequests/approval", "certificatesigningrequests/status"],
                    ALL_VERBS,
                ),
                rule(&[CERTIFICATES_GROUP], &["signers"], &["approve", "sign"]),
            ],
        ),
        // What a bootstrap token may do: ask for a certificate, and have a
        // kubelet's client certificate approved (kubeadm binds both).
        ("system:node-bootstrapper", vec![rule(&[CERTIFICATES_GROUP], &[CSRS], &["create", "get", "list", "watch"])]),
        (
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            vec![rule(&[CERTIFICATES_GROUP], &["certificatesigningrequests/nodeclient"], &["create"])],
        ),
        (
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            vec![rule(&[CERTIFICATES_GROUP], &["certificatesigningrequests/selfnodeclient"], &["create"])],
        ),
    ]
}

const CSRS: &str = "certificatesigningrequests";

/// A binding's subject: (kind, name).
type Subject = (&'static str, &'static str);

/// (name, cluster role, subjects)
const CLUSTER_ROLE_BINDINGS: &[(&str, &str, &[Subject])] = &[
    ("cluster-admin", "cluster-admin", &[("Group", "system:masters")]),
    ("system:discovery", "system:discovery", &[("Group", "system:authenticated")]),
    ("system:basic-user", "system:basic-user", &[("Group", "system:authenticated")]),
    (
        "system:public-info-viewer",
        "system:public-info-viewer",
        &[("Group", "system:authenticated"), ("Group", "system:unauthenticated")],
    ),
    ("system:node-proxier", "system:node-proxier", &[("User", "system:kube-proxy")]),
    ("system:kube-scheduler", "system:kube-scheduler", &[("User", "system:kube-scheduler")]),
    ("system:kube-controller-manager", "system:kube-controller-manager", &[("User", "system:kube-controller-manager")]),
    // Nodes are authorised by the Node mode, not by this binding, as in kube since 1.8.
    ("system:node", "system:node", &[]),
];

/// The objects created at start when missing.
pub fn objects() -> Vec<(Kind, Value)> {
    let mut out = Vec::new();
    for (name, rules) in cluster_roles() {
        out.push((Kind::ClusterRole, json!({"metadata": metadata(name), "rules": rules})));
    }
    for (name, role, subjects) in CLUSTER_ROLE_BINDINGS {
        let subjects: Vec<Value> =
            subjects.iter().map(|(kind, name)| json!({"apiGroup": RBAC_GROUP, "kind": kind, "name": name})).collect();
        let mut binding = json!({
            "metadata": metadata(name),
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role},
        });
        if !subjects.is_empty() {
            binding["subjects"] = json!(subjects);
        }
        out.push((Kind::ClusterRoleBinding, binding));
    }
    out
}

/// kube's reconciliation of a bootstrap role or binding that exists: unless
/// it is annotated `rbac.authorization.kubernetes.io/autoupdate: "false"`,
/// it gains the default rules (or subjects) it lacks and keeps its own.
pub fn reconcile(kind: Kind, current: &Value, wanted: &Value) -> Value {
    let annotation = &current["metadata"]["annotations"]["rbac.authorization.kubernetes.io/autoupdate"];
    let field = match kind {
        Kind::ClusterRole => "rules",
        Kind::ClusterRoleBinding => "subjects",
        _ => return current.clone(),
    };
    if annotation == "false" {
        return current.clone();
    }
    let mut merged = current.clone();
    let mut items = current[field].as_array().cloned().unwrap_or_default();
    for item in wanted[field].as_array().into_iter().flatten() {
        if !items.contains(item) {
            items.push(item.clone());
        }
    }
    if !items.is_empty() {
        merged[field] = Value::Array(items);
    }
    merged
}
