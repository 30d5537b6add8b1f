use serde_json::json;

use super::*;

fn attributes(user: &str, groups: &[&str], verb: &str, target: Target) -> Attributes {
    let groups = groups.iter().map(|g| g.to_string()).collect();
    Attributes { user: user.into(), groups, verb: verb.into(), target, field_selector: String::new() }
}

fn target(group: &str, resource: &str, namespace: &str, name: &str) -> Target {
    Target::Resource {
        group: group.into(),
        resource: resource.into(),
        subresource: String::new(),
        namespace: namespace.into(),
        name: name.into(),
    }
}

fn pods(namespace: &str, name: &str) -> Target {
    target("", "pods", namespace, name)
}

fn nodes(name: &str) -> Target {
    target("", "nodes", "", name)
}

fn lease(namespace: &str, name: &str) -> Target {
    target("coordination.k8s.io", "leases", namespace, name)
}

/// The kubelet of node "a".
fn as_node(verb: &str, target: Target) -> Attributes {
    attributes("system:node:a", &["system:nodes"], verb, target)
}

/// alice may read pods in "dev" through a Role; root-ish group via a ClusterRoleBinding.
fn policy() -> Policy {
    let reader = json!({
        "metadata": {"name": "pod-reader", "namespace": "dev"},
        "rules": [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "watch"]}],
    });
    let binding = json!({
        "metadata": {"name": "alice-reads", "namespace": "dev"},
        "roleRef": {"kind": "Role", "name": "pod-reader"},
        "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "bot"}],
    });
    let cluster_roles: Vec<Value> = bootstrap::objects()
        .into_iter()
        .filter(|(k, _)| *k == crate::resources::Kind::ClusterRole)
        .map(|(_, o)| o)
        .collect();
    let cluster_bindings: Vec<Value> = bootstrap::objects()
        .into_iter()
        .filter(|(k, _)| *k == crate::resources::Kind::ClusterRoleBinding)
        .map(|(_, o)| o)
        .collect();
    Policy::new(&[reader], &cluster_roles, &[binding], &cluster_bindings)
}

#[test]
fn a_role_binding_grants_in_its_namespace_only() {
    let policy = policy();
    let allowed = policy.authorize(&attributes("alice", &["system:authenticated"], "list", pods("dev", "")));
    assert_eq!(
        allowed,
        Decision::Allow(
            r#"RBAC: allowed by RoleBinding "alice-reads/dev" of Role "pod-reader" to User "alice""#.into()
        )
    );
    assert!(!policy.authorize(&attributes("alice", &[], "list", pods("other", ""))).allowed());
    assert!(!policy.authorize(&attributes("alice", &[], "delete", pods("dev", "p"))).allowed());
    assert!(!policy.authorize(&attributes("alice", &[], "list", pods("", ""))).allowed(), "not at the cluster scope");
    assert!(!policy.authorize(&attributes("bob", &[], "list", pods("dev", ""))).allowed());
}

#[test]
fn service_accounts_groups_and_subresources_match_as_in_kube() {
    let policy = policy();
    let bot = attributes("system:serviceaccount:dev:bot", &[], "get", pods("dev", "p"));
    assert!(policy.authorize(&bot).allowed(), "a subject without a namespace is the binding's");
    let log = Target::Resource {
        group: String::new(),
        resource: "pods".into(),
        subresource: "log".into(),
        namespace: "dev".into(),
        name: "p".into(),
    };
    assert!(policy.authorize(&attributes("alice", &[], "get", log)).allowed());
    let exec = Target::Resource {
        group: String::new(),
        resource: "pods".into(),
        subresource: "exec".into(),
        namespace: "dev".into(),
        name: "p".into(),
    };
    assert!(!policy.authorize(&attributes("alice", &[], "get", exec)).allowed());
    let admin = attributes("someone", &["system:masters"], "delete", pods("any", "p"));
    assert_eq!(
        policy.authorize(&admin),
        Decision::Allow(
            r#"RBAC: allowed by ClusterRoleBinding "cluster-admin" of ClusterRole "cluster-admin" to Group "system:masters""#
                .into()
        )
    );
}

#[test]
fn paths_follow_the_discovery_and_public_roles() {
    let policy = policy();
    let get = |user: &str, groups: &[&str], path: &str| {
        policy.authorize(&attributes(user, groups, "get", Target::Path(path.into()))).allowed()
    };
    assert!(get("alice", &["system:authenticated"], "/apis/apps/v1"), "system:discovery's /apis/*");
    assert!(get("system:anonymous", &["system:unauthenticated"], "/healthz"));
    assert!(!get("system:anonymous", &["system:unauthenticated"], "/api"));
    assert!(!get("alice", &["system:authenticated"], "/metrics"));
}

#[test]
fn an_aggregated_cluster_role_holds_the_rules_it_selects() {
    let aggregate = json!({
        "metadata": {"name": "monitoring"},
        "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"aggregate-to-monitoring": "true"}}]},
    });
    let part = json!({
        "metadata": {"name": "part", "labels": {"aggregate-to-monitoring": "true"}},
        "rules": [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}],
    });
    let binding = json!({
        "metadata": {"name": "mon"},
        "roleRef": {"kind": "ClusterRole", "name": "monitoring"},
        "subjects": [{"kind": "User", "name": "prometheus"}],
    });
    let policy = Policy::new(&[], &[aggregate, part], &[], &[binding]);
    assert!(policy.authorize(&attributes("prometheus", &[], "get", Target::Path("/metrics".into()))).allowed());
}

#[test]
fn messages_are_kube_apiservers() {
    assert_eq!(
        forbidden_message(&attributes("alice", &[], "list", pods("other", ""))),
        r#"User "alice" cannot list resource "pods" in API group "" in the namespace "other""#
    );
    let nodes = Target::Resource {
        group: String::new(),
        resource: "nodes".into(),
        subresource: "status".into(),
        namespace: String::new(),
        name: "n".into(),
    };
    assert_eq!(
        forbidden_message(&attributes("alice", &[], "patch", nodes)),
        r#"User "alice" cannot patch resource "nodes/status" in API group "" at the cluster scope"#
    );
    assert_eq!(
        forbidden_message(&attributes("alice", &[], "get", Target::Path("/metrics".into()))),
        r#"User "alice" cannot get path "/metrics""#
    );
}

#[test]
fn a_node_writes_its_own_node_and_lease_only() {
    assert_eq!(node_restriction(&as_node("update", nodes("a"))), None);
    assert_eq!(
        node_restriction(&as_node("update", nodes("b"))).as_deref(),
        Some(r#"node "a" is not allowed to modify node "b""#)
    );
    assert_eq!(node_restriction(&as_node("get", nodes("b"))), None, "reads are not restricted");
    assert_eq!(node_restriction(&as_node("update", lease("kube-node-lease", "a"))), None);
    assert!(node_restriction(&as_node("update", lease("kube-node-lease", "b"))).is_some());
    let not_a_node = attributes("system:node:a", &[], "update", nodes("b"));
    assert_eq!(node_restriction(&not_a_node), None, "the name alone makes no node");
}

#[test]
fn a_node_reads_its_own_node_and_lists_its_own_pods() {
    assert_eq!(node_reads(&as_node("get", nodes("a"))), Some(Ok(())));
    assert_eq!(
        node_reads(&as_node("get", nodes("b"))),
        Some(Err("node 'a' cannot read 'b', only its own Node object".into()))
    );
    assert!(node_reads(&as_node("list", nodes(""))).is_some_and(|decision| decision.is_err()));
    let mut list = as_node("list", pods("", ""));
    assert!(node_reads(&list).is_some_and(|decision| decision.is_err()));
    list.field_selector = "spec.nodeName=a".into();
    assert_eq!(node_reads(&list), Some(Ok(())));
    assert_eq!(node_reads(&as_node("create", pods("ns", ""))), None, "left to the rules");
}

#[test]
fn an_empty_node_name_is_no_node_and_leases_are_the_nodes_own() {
    let nameless = attributes("system:node:", &["system:nodes"], "list", pods("", ""));
    assert_eq!(node_of(&nameless), None);
    assert_eq!(node_reads(&as_node("get", lease("kube-node-lease", "a"))), None, "left to the rules");
    assert!(node_reads(&as_node("get", lease("kube-node-lease", "b"))).is_some_and(|d| d.is_err()));
    assert!(node_reads(&as_node("get", lease("kube-system", "a"))).is_some_and(|d| d.is_err()));
}

#[test]
fn a_service_account_subject_needs_a_namespace() {
    let binding = json!({
        "metadata": {"name": "sa"},
        "roleRef": {"kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "bot"}],
    });
    let admin = json!({"metadata": {"name": "cluster-admin"}, "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]});
    let policy = Policy::new(&[], &[admin], &[], &[binding]);
    assert!(!policy.authorize(&attributes("system:serviceaccount::bot", &[], "get", pods("x", "p"))).allowed());
}

#[test]
fn t90_bootstrap_roles_gain_missing_default_rules_unless_told_not_to() {
    use serde_json::json;
    let wanted = json!({"rules": [{"apiGroups": ["a"], "resources": ["x"], "verbs": ["get"]}, {"apiGroups": ["b"], "resources": ["y"], "verbs": ["list"]}]});
    let current = json!({"metadata": {"name": "r"}, "rules": [{"apiGroups": ["a"], "resources": ["x"], "verbs": ["get"]}, {"apiGroups": ["own"], "resources": ["z"], "verbs": ["*"]}]});
    let merged = bootstrap::reconcile(crate::resources::Kind::ClusterRole, &current, &wanted);
    assert_eq!(merged["rules"].as_array().map(Vec::len), Some(3), "{merged}");
    let mut pinned = current.clone();
    pinned["metadata"]["annotations"] = json!({"rbac.authorization.kubernetes.io/autoupdate": "false"});
    assert_eq!(bootstrap::reconcile(crate::resources::Kind::ClusterRole, &pinned, &wanted), pinned);
    let merged_again = bootstrap::reconcile(crate::resources::Kind::ClusterRole, &merged, &wanted);
    assert_eq!(merged_again, merged, "a second pass changes nothing");
}
