//! RBAC and the Node rules against the real kube-apiserver 1.33.7 with
//! `--authorization-mode=Node,RBAC` and NodeRestriction: the same kubectl
//! commands, as an administrator, as a user bound to a namespaced Role and as
//! a kubelet, must print the same.

use cairn_testkit::kube::TEST_USERS;

use crate::differential::{real_and_ours_with_rbac, same_session, Step};

const ADMIN: &str = "";
const ALICE: &str = TEST_USERS[0].0;
const NODE_A: &str = TEST_USERS[1].0;

const SETUP: &str = "apiVersion: v1
kind: Namespace
metadata: {name: dev}
---
apiVersion: v1
kind: Namespace
metadata: {name: other}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: default, namespace: dev}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: default, namespace: other}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: dev}
spec: {containers: [{name: c, image: nginx}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: other}
spec: {containers: [{name: c, image: nginx}]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pod-reader, namespace: dev}
rules:
- apiGroups: [\"\"]
  resources: [pods, pods/log]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: alice-reads, namespace: dev}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}
subjects:
- {kind: User, name: alice}
";

fn node(name: &str) -> String {
    format!("apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n")
}

fn session() -> Vec<Step> {
    let step = |token, args: &[&'static str]| (token, args.to_vec(), None);
    vec![
        (ADMIN, vec!["create", "-f", "-"], Some(SETUP.to_string())),
        step(
            ADMIN,
            &[
                "get",
                "rolebinding",
                "alice-reads",
                "-n",
                "dev",
                "-o",
                "jsonpath={.roleRef.kind}/{.roleRef.name} {.subjects[0].apiGroup}",
            ],
        ),
        step(ADMIN, &["auth", "can-i", "delete", "nodes"]),
        step(ALICE, &["get", "pods", "-n", "dev", "-o", "name"]),
        step(ALICE, &["get", "pod", "web", "-n", "dev", "-o", "name"]),
        step(ALICE, &["get", "pods", "-n", "other"]),
        step(ALICE, &["get", "pod", "web", "-n", "other"]),
        step(ALICE, &["delete", "pod", "web", "-n", "dev"]),
        step(ALICE, &["get", "nodes"]),
        step(ALICE, &["get", "deployments", "-n", "dev"]),
        step(ALICE, &["get", "roles", "-n", "dev"]),
        step(ALICE, &["create", "configmap", "c", "-n", "dev", "--from-literal=a=b"]),
        step(ALICE, &["auth", "can-i", "list", "pods", "-n", "dev"]),
        step(ALICE, &["auth", "can-i", "list", "pods", "-n", "other"]),
        step(ALICE, &["auth", "can-i", "create", "pods", "-n", "dev"]),
        step(ALICE, &["auth", "can-i", "get", "pods", "--subresource=log", "-n", "dev"]),
        step(ALICE, &["auth", "can-i", "get", "/healthz"]),
        step(ALICE, &["auth", "can-i", "get", "/metrics"]),
        step(ALICE, &["get", "--raw", "/metrics"]),
        step(ALICE, &["get", "--raw", "/healthz"]),
        step(ALICE, &["auth", "whoami", "-o", "jsonpath={.status.userInfo.username} {.status.userInfo.groups}"]),
        (NODE_A, vec!["create", "-f", "-"], Some(node("node-a"))),
        (NODE_A, vec!["create", "-f", "-"], Some(node("node-b"))),
        (ADMIN, vec!["create", "-f", "-"], Some(node("node-b"))),
        step(NODE_A, &["get", "nodes", "-o", "name"]),
        step(NODE_A, &["label", "node", "node-a", "x=y"]),
        step(NODE_A, &["label", "node", "node-b", "x=y"]),
        step(NODE_A, &["get", "pods", "-A", "-o", "name"]),
        step(NODE_A, &["delete", "namespace", "dev"]),
        step(NODE_A, &["auth", "can-i", "update", "nodes/status"]),
        step(ADMIN, &["delete", "rolebinding", "alice-reads", "-n", "dev"]),
        step(ALICE, &["get", "pods", "-n", "dev", "-o", "name"]),
    ]
}

#[tokio::test]
async fn t22_rbac_and_node_rules_answer_as_kube_apiserver() {
    let (_real_store, real, _our_store, ours) = real_and_ours_with_rbac().await;
    let all = same_session(&real, &ours, &session());
    // The run must have shown both sides of each rule.
    for expected in [
        r#"pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "other""#,
        r#"pods "web" is forbidden: User "alice" cannot get resource "pods" in API group "" in the namespace "other""#,
        "pod/web",
        "node/node-a",
    ] {
        assert!(all.contains(expected), "no step printed {expected:?}:\n{all}");
    }
}
