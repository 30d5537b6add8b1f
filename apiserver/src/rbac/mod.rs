//! RBAC authorisation, as kube-apiserver's `--authorization-mode=Node,RBAC`
//! decides it: rules of Roles and ClusterRoles, granted by RoleBindings (in
//! their namespace) and ClusterRoleBindings (everywhere), to users, groups and
//! service accounts; and the Node rule that a kubelet acts as its own node
//! only. Pure: the policy is built from the objects, and a request's
//! attributes are checked against it.

pub mod bootstrap;

use std::collections::HashMap;

use serde_json::Value;

use crate::meta;

/// A request as the authorizer sees it (kube's `authorizer.Attributes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    pub user: String,
    pub groups: Vec<String>,
    pub verb: String,
    pub target: Target,
    /// A list's or watch's `fieldSelector`, which the Node rules read.
    pub field_selector: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Resource { group: String, resource: String, subresource: String, namespace: String, name: String },
    Path(String),
}

/// One rule of a role (rbac/v1 `PolicyRule`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Rule {
    verbs: Vec<String>,
    api_groups: Vec<String>,
    resources: Vec<String>,
    resource_names: Vec<String>,
    non_resource_urls: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Subject {
    kind: String,
    name: String,
    namespace: String,
}

#[derive(Debug, Clone)]
struct Binding {
    name: String,
    /// Empty for a ClusterRoleBinding.
    namespace: String,
    role_kind: String,
    role_name: String,
    subjects: Vec<Subject>,
}

/// Every role and binding, indexed for checks.
#[derive(Debug, Default)]
pub struct Policy {
    roles: HashMap<(String, String), Vec<Rule>>,
    cluster_roles: HashMap<String, Vec<Rule>>,
    cluster_bindings: Vec<Binding>,
    bindings: HashMap<String, Vec<Binding>>,
}

/// The answer, with kube's reason when a binding allowed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow(String),
    Deny(String),
}

impl Decision {
    pub fn allowed(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }
}

fn strings(value: &Value, field: &str) -> Vec<String> {
    value
        .get(field)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(String::from)
        .collect()
}

fn rules(role: &Value) -> Vec<Rule> {
    role.get("rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|rule| Rule {
            verbs: strings(rule, "verbs"),
            api_groups: strings(rule, "apiGroups"),
            resources: strings(rule, "resources"),
            resource_names: strings(rule, "resourceNames"),
            non_resource_urls: strings(rule, "nonResourceURLs"),
        })
        .collect()
}

fn binding(object: &Value) -> Binding {
    let subjects = object
        .get("subjects")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|subject| Subject {
            kind: meta::str_at(subject, &["kind"]).unwrap_or_default().to_string(),
            name: meta::str_at(subject, &["name"]).unwrap_or_default().to_string(),
            namespace: meta::str_at(subject, &["namespace"]).unwrap_or_default().to_string(),
        })
        .collect();
    Binding {
        name: meta::name(object).to_string(),
        namespace: meta::namespace(object).to_string(),
        role_kind: meta::str_at(object, &["roleRef", "kind"]).unwrap_or_default().to_string(),
        role_name: meta::str_at(object, &["roleRef", "name"]).unwrap_or_default().to_string(),
        subjects,
    }
}

/// Whether a ClusterRole's labels match an aggregation selector's `matchLabels`.
fn selected(role: &Value, selector: &Value) -> bool {
    let labels = role.pointer("/metadata/labels");
    selector.get("matchLabels").and_then(Value::as_object).is_some_and(|wanted| {
        !wanted.is_empty() && wanted.iter().all(|(key, value)| labels.and_then(|l| l.get(key)) == Some(value))
    })
}

impl Policy {
    pub fn new(roles: &[Value], cluster_roles: &[Value], bindings: &[Value], cluster_bindings: &[Value]) -> Policy {
        let mut policy = Policy::default();
        for role in roles {
            let key = (meta::namespace(role).to_string(), meta::name(role).to_string());
            policy.roles.insert(key, rules(role));
        }
        for role in cluster_roles {
            let mut own = rules(role);
            // An aggregated ClusterRole holds the rules of every ClusterRole its selectors pick,
            // as kube's clusterrole-aggregation controller writes them.
            let selectors = role.pointer("/aggregationRule/clusterRoleSelectors").and_then(Value::as_array);
            for selector in selectors.into_iter().flatten() {
                for other in cluster_roles.iter().filter(|other| selected(other, selector)) {
                    own.extend(rules(other));
                }
            }
            policy.cluster_roles.insert(meta::name(role).to_string(), own);
        }
        for object in bindings {
            let binding = binding(object);
            policy.bindings.entry(binding.namespace.clone()).or_default().push(binding);
        }
        policy.cluster_bindings = cluster_bindings.iter().map(binding).collect();
        policy
    }

    fn rules_of(&self, binding: &Binding) -> Option<&Vec<Rule>> {
        match binding.role_kind.as_str() {
            "ClusterRole" => self.cluster_roles.get(&binding.role_name),
            "Role" => self.roles.get(&(binding.namespace.clone(), binding.role_name.clone())),
            _ => None,
        }
    }

    /// kube's RBAC authorizer: ClusterRoleBindings first, then the
    /// RoleBindings of the request's namespace.
    pub fn authorize(&self, attributes: &Attributes) -> Decision {
        let namespace = match &attributes.target {
            Target::Resource { namespace, .. } => namespace.as_str(),
            Target::Path(_) => "",
        };
        let namespaced = if namespace.is_empty() { None } else { self.bindings.get(namespace) };
        let candidates = self.cluster_bindings.iter().chain(namespaced.into_iter().flatten());
        for binding in candidates {
            let Some(subject) = binding.subjects.iter().find(|s| applies(s, attributes, &binding.namespace)) else {
                continue;
            };
            let Some(rules) = self.rules_of(binding) else { continue };
            if rules.iter().any(|rule| rule_allows(rule, attributes)) {
                return Decision::Allow(format!("RBAC: allowed by {}", describe(binding, subject)));
            }
        }
        Decision::Deny(String::new())
    }
}

/// kube's `appliesTo`: a user by name, a group the user is in, or a service account.
fn applies(subject: &Subject, attributes: &Attributes, binding_namespace: &str) -> bool {
    match subject.kind.as_str() {
        "User" => subject.name == attributes.user,
        "Group" => attributes.groups.contains(&subject.name),
        "ServiceAccount" => {
            let namespace = if subject.namespace.is_empty() { binding_namespace } else { &subject.namespace };
            !namespace.is_empty() && attributes.user == format!("system:serviceaccount:{namespace}:{}", subject.name)
        }
        _ => false,
    }
}

fn describe(binding: &Binding, subject: &Subject) -> String {
    let who = match subject.kind.as_str() {
        "ServiceAccount" => {
            let namespace = if subject.namespace.is_empty() { &binding.namespace } else { &subject.namespace };
            format!("{} {:?}", subject.kind, format!("{}/{namespace}", subject.name))
        }
        _ => format!("{} {:?}", subject.kind, subject.name),
    };
    if binding.namespace.is_empty() {
        format!("ClusterRoleBinding {:?} of {} {:?} to {who}", binding.name, binding.role_kind, binding.role_name)
    } else {
        let name = format!("{}/{}", binding.name, binding.namespace);
        format!("RoleBinding {name:?} of {} {:?} to {who}", binding.role_kind, binding.role_name)
    }
}

fn has(list: &[String], wanted: &str) -> bool {
    list.iter().any(|item| item == "*" || item == wanted)
}

/// kube's `RuleAllows`.
fn rule_allows(rule: &Rule, attributes: &Attributes) -> bool {
    if !has(&rule.verbs, &attributes.verb) {
        return false;
    }
    match &attributes.target {
        Target::Resource { group, resource, subresource, name, .. } => {
            let combined = if subresource.is_empty() { resource.clone() } else { format!("{resource}/{subresource}") };
            let resource_matches = rule
                .resources
                .iter()
                .any(|r| r == "*" || *r == combined || (!subresource.is_empty() && *r == format!("*/{subresource}")));
            has(&rule.api_groups, group)
                && resource_matches
                && (rule.resource_names.is_empty() || rule.resource_names.contains(name))
        }
        Target::Path(path) => rule.non_resource_urls.iter().any(|url| {
            url == "*" || url == path || url.strip_suffix('*').is_some_and(|prefix| path.starts_with(prefix))
        }),
    }
}

/// kube-apiserver's message for a denied request (`forbiddenMessage`).
pub fn forbidden_message(attributes: &Attributes) -> String {
    match &attributes.target {
        Target::Path(path) => format!("User {:?} cannot {} path {path:?}", attributes.user, attributes.verb),
        Target::Resource { group, resource, subresource, namespace, .. } => {
            let resource = if subresource.is_empty() { resource.clone() } else { format!("{resource}/{subresource}") };
            let scope = if namespace.is_empty() {
                "at the cluster scope".to_string()
            } else {
                format!("in the namespace {namespace:?}")
            };
            format!(
                "User {:?} cannot {} resource {resource:?} in API group {group:?} {scope}",
                attributes.user, attributes.verb
            )
        }
    }
}

/// The node a kubelet's identity names (`system:node:<name>` in group `system:nodes`).
pub fn node_of(attributes: &Attributes) -> Option<&str> {
    if !attributes.groups.iter().any(|group| group == "system:nodes") {
        return None;
    }
    attributes.user.strip_prefix("system:node:").filter(|name| !name.is_empty())
}

/// kube's Node authorizer for what it decides itself: a kubelet reads its
/// own Node only, and lists pods only by `spec.nodeName`. `Some(Err(reason))`
/// refuses with kube's reason; `None` leaves the request to the node rules.
pub fn node_reads(attributes: &Attributes) -> Option<Result<(), String>> {
    let node = node_of(attributes)?;
    let Target::Resource { group, resource, subresource, name, namespace } = &attributes.target else { return None };
    let reading = ["get", "list", "watch"].contains(&attributes.verb.as_str());
    if group == "coordination.k8s.io" && resource == "leases" {
        // kube's authorizeLease: the node's own Lease, in kube-node-lease.
        if namespace != "kube-node-lease" {
            return Some(Err("can only access leases in the \"kube-node-lease\" system namespace".into()));
        }
        if name != node && !(attributes.verb == "create" && name.is_empty()) {
            return Some(Err("can only access node lease with the same name as the requesting node".into()));
        }
        return None;
    }
    if !group.is_empty() || !subresource.is_empty() {
        return None;
    }
    match resource.as_str() {
        "nodes" if reading && name == node => Some(Ok(())),
        "nodes" if reading && name.is_empty() => {
            Some(Err(format!("node '{node}' cannot read all nodes, only its own Node object")))
        }
        "nodes" if reading => Some(Err(format!("node '{node}' cannot read '{name}', only its own Node object"))),
        "pods" if ["list", "watch"].contains(&attributes.verb.as_str()) => {
            let own = format!("spec.nodeName={node}");
            if attributes.field_selector.split(',').any(|requirement| requirement.trim() == own) {
                Some(Ok(()))
            } else {
                Some(Err("can only list/watch pods with spec.nodeName field selector".into()))
            }
        }
        _ => None,
    }
}

/// kube's NodeRestriction for the objects a kubelet writes by name: its own
/// Node and its own Lease only. `None` when the request is not restricted.
pub fn node_restriction(attributes: &Attributes) -> Option<String> {
    let node = node_of(attributes)?;
    let Target::Resource { group, resource, name, namespace, .. } = &attributes.target else { return None };
    let writes = ["create", "update", "patch", "delete"].contains(&attributes.verb.as_str());
    match (group.as_str(), resource.as_str()) {
        ("", "nodes") if writes && name != node => {
            Some(format!("node {node:?} is not allowed to modify node {name:?}"))
        }
        ("coordination.k8s.io", "leases") if writes && (namespace != "kube-node-lease" || name != node) => {
            Some("can only access node lease with the same name as the requesting node".into())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
