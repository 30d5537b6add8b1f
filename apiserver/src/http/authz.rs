//! Authorisation of each request, as `--authorization-mode` says: the
//! attributes kube-apiserver's RequestInfo gives a request, then the Node and
//! RBAC decisions over the policy in the registry's watch caches.

use std::collections::HashMap;
use std::sync::Arc;

use http::Method;
use parking_lot::Mutex;
use serde_json::Value;

use super::auth::User;
use super::request::{self, Route};
use crate::config::Authorization;
use crate::error::{ApiError, GroupResource};
use crate::rbac::{self, Attributes, Decision, Policy, Target};
use crate::registry::{Registry, CACHE_WAIT};
use crate::resources::{self, Kind};

const POLICY_KINDS: [Kind; 4] = [Kind::Role, Kind::ClusterRole, Kind::RoleBinding, Kind::ClusterRoleBinding];

pub struct Authorizer {
    modes: Authorization,
    /// The policy as of the caches' revisions it was built at.
    policy: Mutex<Option<([i64; 4], Arc<Policy>)>>,
    /// The Node mode's rules, bound to every node identity.
    nodes: Policy,
}

impl Authorizer {
    pub fn new(modes: Authorization) -> Authorizer {
        let role = serde_json::json!({"metadata": {"name": "node"}, "rules": rbac::bootstrap::node_rules()});
        let binding = serde_json::json!({
            "metadata": {"name": "node"},
            "roleRef": {"kind": "ClusterRole", "name": "node"},
            "subjects": [{"kind": "Group", "name": "system:nodes"}],
        });
        Authorizer { modes, policy: Mutex::new(None), nodes: Policy::new(&[], &[role], &[], &[binding]) }
    }

    /// kube's union authorizer over the modes, in order; the first to allow decides.
    pub async fn decide(&self, registry: &Registry, attributes: &Attributes) -> Decision {
        // kube 1.33's privileged-group authorizer comes before every mode.
        if self.modes.always_allow || attributes.groups.iter().any(|group| group == "system:masters") {
            return Decision::Allow(String::new());
        }
        // kube's Node authorizer gives no reason when it allows; its reason for
        // refusing is kept for the message if RBAC refuses too.
        let mut node_reason = String::new();
        if self.modes.node && rbac::node_of(attributes).is_some() {
            match rbac::node_reads(attributes) {
                Some(Ok(())) => return Decision::Allow(String::new()),
                Some(Err(reason)) => node_reason = reason,
                None if self.nodes.authorize(attributes).allowed() => return Decision::Allow(String::new()),
                None => {}
            }
        }
        if self.modes.rbac {
            if let allowed @ Decision::Allow(_) = self.policy(registry).await.authorize(attributes) {
                return allowed;
            }
        }
        Decision::Deny(node_reason)
    }

    async fn policy(&self, registry: &Registry) -> Arc<Policy> {
        let cachers = POLICY_KINDS.map(|kind| registry.cacher(kind));
        for cacher in &cachers {
            if cacher.revision() == 0 {
                let _ = cacher.wait_for(0, CACHE_WAIT).await;
            }
        }
        let revisions = cachers.map(|cacher| cacher.revision());
        if let Some((seen, policy)) = self.policy.lock().as_ref() {
            if *seen == revisions {
                return policy.clone();
            }
        }
        let [roles, cluster_roles, bindings, cluster_bindings] = POLICY_KINDS.map(|kind| {
            let (items, _) = registry.cacher(kind).list(&registry.keys.resource(resources::of(kind)));
            items.into_iter().map(|(_, object)| (*object).clone()).collect::<Vec<Value>>()
        });
        let policy = Arc::new(Policy::new(&roles, &cluster_roles, &bindings, &cluster_bindings));
        *self.policy.lock() = Some((revisions, policy.clone()));
        policy
    }

    /// Checks a request; a denial is kube-apiserver's 403, and a node writing
    /// another node's objects gets NodeRestriction's.
    /// `created` is the name a create's body gives its object: NodeRestriction judges by it.
    pub async fn check(&self, registry: &Registry, attributes: &Attributes, created: &str) -> Result<(), ApiError> {
        let decision = self.decide(registry, attributes).await;
        let (resource, name) = match &attributes.target {
            Target::Resource { group, resource, name, .. } => {
                (GroupResource { group: group.clone(), resource: resource.clone() }, name.clone())
            }
            Target::Path(_) => (GroupResource { group: String::new(), resource: String::new() }, String::new()),
        };
        if let Decision::Deny(reason) = decision {
            let message = rbac::forbidden_message(attributes);
            let detail = if reason.is_empty() { message } else { format!("{message}: {reason}") };
            return Err(ApiError::Forbidden { resource, name, detail });
        }
        if self.modes.node {
            let mut judged = attributes.clone();
            if let Target::Resource { name, .. } = &mut judged.target {
                if name.is_empty() {
                    *name = created.to_string();
                }
            }
            if let Some(detail) = rbac::node_restriction(&judged) {
                // Admission names the object it refused, a create's too.
                let name = if name.is_empty() { created.to_string() } else { name };
                return Err(ApiError::Forbidden { resource, name, detail });
            }
        }
        Ok(())
    }
}

/// The user's groups as authorisers see them: every authenticated user is
/// also in `system:authenticated`.
pub fn groups_of(user: &User) -> Vec<String> {
    let mut groups = user.groups.clone();
    if user.name != "system:anonymous" && !groups.iter().any(|group| group == "system:authenticated") {
        groups.push("system:authenticated".into());
    }
    groups
}

/// kube's RequestInfo: the verb and target of a request. `name` is the
/// object a create names in its body, when the path does not.
pub fn attributes(
    user: &User,
    route: &Route,
    method: &Method,
    query: &HashMap<String, String>,
    path: &str,
) -> Attributes {
    let verb = match (route, method.as_str()) {
        (Route::Resource(r), "GET" | "HEAD") if r.name.is_none() => {
            if r.watch_path || request::flag(query, "watch") {
                "watch"
            } else {
                "list"
            }
        }
        (Route::Resource(r), "GET" | "HEAD") if r.watch_path || request::flag(query, "watch") => "watch",
        (Route::Resource(_), "GET" | "HEAD") => "get",
        (
            Route::Resource(_) | Route::SelfSubjectReview | Route::SelfSubjectAccessReview | Route::SubjectAccessReview,
            "POST",
        ) => "create",
        (Route::Resource(_), "PUT") => "update",
        (Route::Resource(_), "PATCH") => "patch",
        (Route::Resource(r), "DELETE") if r.name.is_none() => "deletecollection",
        (Route::Resource(_), "DELETE") => "delete",
        (_, other) => return non_resource(user, &other.to_lowercase(), route, path),
    };
    let target = match route {
        Route::Resource(r) => {
            // A list or watch names one object by `metadata.name=`, as kube's RequestInfo reads it.
            let selected = || {
                query
                    .get("fieldSelector")?
                    .split(',')
                    .find_map(|r| r.trim().strip_prefix("metadata.name="))
                    .map(String::from)
            };
            let name = r.name.clone().or_else(|| if verb == "list" || verb == "watch" { selected() } else { None });
            let name = name.unwrap_or_default();
            // And a namespace named by the path is in its own namespace.
            let namespace = match (&r.name, r.resource.kind) {
                (Some(own), Kind::Namespace) if r.namespace.is_empty() => own.clone(),
                _ => r.namespace.clone(),
            };
            Target::Resource {
                group: r.resource.group.to_string(),
                resource: r.resource.plural.to_string(),
                subresource: r.subresource.map(|s| s.name().to_string()).unwrap_or_default(),
                namespace,
                name,
            }
        }
        Route::SelfSubjectReview => review("authentication.k8s.io", "selfsubjectreviews"),
        Route::SubjectAccessReview => review("authorization.k8s.io", "subjectaccessreviews"),
        _ => review("authorization.k8s.io", "selfsubjectaccessreviews"),
    };
    let field_selector = query.get("fieldSelector").cloned().unwrap_or_default();
    Attributes { user: user.name.clone(), groups: groups_of(user), verb: verb.to_string(), target, field_selector }
}

fn review(group: &str, resource: &str) -> Target {
    Target::Resource {
        group: group.into(),
        resource: resource.into(),
        subresource: String::new(),
        namespace: String::new(),
        name: String::new(),
    }
}

fn non_resource(user: &User, verb: &str, route: &Route, path: &str) -> Attributes {
    let target = match route {
        Route::SelfSubjectReview => review("authentication.k8s.io", "selfsubjectreviews"),
        Route::SelfSubjectAccessReview => review("authorization.k8s.io", "selfsubjectaccessreviews"),
        Route::SubjectAccessReview => review("authorization.k8s.io", "subjectaccessreviews"),
        _ => Target::Path(path.to_string()),
    };
    Attributes {
        user: user.name.clone(),
        groups: groups_of(user),
        verb: verb.to_string(),
        target,
        field_selector: String::new(),
    }
}

/// An access review's question about `user` in `groups`, as the authorizer sees it.
pub fn review_attributes(kind: &str, user: &str, groups: Vec<String>, spec: &Value) -> Result<Attributes, ApiError> {
    let text = |value: &Value, field: &str| value.get(field).and_then(Value::as_str).unwrap_or_default().to_string();
    let (verb, target) = if let Some(resource) = spec.get("resourceAttributes").filter(|v| v.is_object()) {
        let target = Target::Resource {
            group: text(resource, "group"),
            resource: text(resource, "resource"),
            subresource: text(resource, "subresource"),
            namespace: text(resource, "namespace"),
            name: text(resource, "name"),
        };
        (text(resource, "verb"), target)
    } else if let Some(path) = spec.get("nonResourceAttributes").filter(|v| v.is_object()) {
        (text(path, "verb"), Target::Path(text(path, "path")))
    } else {
        return Err(ApiError::Invalid {
            group: "authorization.k8s.io".into(),
            kind: kind.into(),
            name: String::new(),
            causes: vec![crate::error::FieldError::invalid(
                "spec.resourceAttributes",
                "null",
                "exactly one of nonResourceAttributes or resourceAttributes must be specified",
            )],
        });
    };
    let field_selector = spec.pointer("/resourceAttributes/fieldSelector/rawSelector").and_then(Value::as_str);
    let field_selector = field_selector.unwrap_or_default().to_string();
    Ok(Attributes { user: user.to_string(), groups, verb, target, field_selector })
}
