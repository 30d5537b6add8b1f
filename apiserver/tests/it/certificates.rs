//! CertificateSigningRequests against the real kube-apiserver 1.33.7 with
//! `Node,RBAC`: creating (the requester written by the server, validation,
//! CertificateSubjectRestriction), `kubectl get csr`, `certificate approve`
//! and `deny` by who may and may not, and a kubelet filing its own request.
//! Neither side runs a controller-manager, so nothing is approved or signed
//! behind the session's back.

use base64::Engine;
use cairn_testkit::kube::TEST_USERS;

use crate::differential::{real_and_ours_with_rbac, same_session, Step};

const ADMIN: &str = "";
const ALICE: &str = TEST_USERS[0].0;
const NODE_A: &str = TEST_USERS[1].0;

/// A PEM request for `subject`, made by openssl.
fn request(dir: &std::path::Path, name: &str, subject: &str) -> String {
    let (key, csr) = (dir.join(format!("{name}.key")), dir.join(format!("{name}.csr")));
    let made = std::process::Command::new("openssl")
        .args(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", subject])
        .args(["-keyout", &key.display().to_string(), "-out", &csr.display().to_string()])
        .output()
        .expect("openssl");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    base64::engine::general_purpose::STANDARD.encode(std::fs::read(&csr).expect("csr"))
}

fn manifest(name: &str, request: &str, signer: &str, usages: &str) -> String {
    format!(
        "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata:\n  name: {name}\nspec:\n  request: {request}\n  signerName: {signer}\n  usages: {usages}\n  username: someone-else\n  groups: [system:masters]\n"
    )
}

const CLIENT: &str = "kubernetes.io/kube-apiserver-client";

fn session(dir: &std::path::Path) -> Vec<Step> {
    let alice = request(dir, "alice", "/CN=alice/O=dev");
    let bob = request(dir, "bob", "/CN=bob");
    let masters = request(dir, "mallory", "/CN=mallory/O=system:masters");
    let node = request(dir, "node-a", "/CN=system:node:node-a/O=system:nodes");
    let step = |token, args: &[&'static str]| (token, args.to_vec(), None);
    let create = |token, yaml: String| (token, vec!["create", "-f", "-"], Some(yaml));
    let alice_as = |token, output: &'static str| (token, vec!["get", "csr", "alice", "-o", output], None);
    vec![
        create(ADMIN, manifest("alice", &alice, CLIENT, "[client auth]")),
        alice_as(ADMIN, "jsonpath={.spec.username} {.spec.groups} {.spec.signerName} {.spec.usages} {.status}"),
        create(ADMIN, manifest("bob", &bob, CLIENT, "[digital signature, client auth]")),
        step(ADMIN, &["get", "csr"]),
        step(ADMIN, &["get", "csr", "alice", "-o", "wide"]),
        step(ALICE, &["get", "csr"]),
        step(ALICE, &["certificate", "approve", "alice"]),
        step(ADMIN, &["certificate", "approve", "alice"]),
        alice_as(
            ADMIN,
            "jsonpath={.status.conditions[0].type} {.status.conditions[0].status} {.status.conditions[0].reason}",
        ),
        step(ADMIN, &["certificate", "deny", "bob"]),
        step(ADMIN, &["get", "csr"]),
        step(ADMIN, &["certificate", "deny", "alice"]),
        create(ADMIN, manifest("mallory", &masters, CLIENT, "[client auth]")),
        create(ADMIN, manifest("broken", "aGVsbG8=", CLIENT, "[client auth]")),
        create(ADMIN, manifest("nosigner", &bob, "\"\"", "[client auth]")),
        create(
            NODE_A,
            manifest(
                "node-a",
                &node,
                "kubernetes.io/kube-apiserver-client-kubelet",
                "[digital signature, client auth]",
            ),
        ),
        step(ADMIN, &["get", "csr", "node-a", "-o", "jsonpath={.spec.username} {.spec.groups}"]),
        step(NODE_A, &["get", "csr", "node-a", "-o", "name"]),
        step(NODE_A, &["certificate", "approve", "node-a"]),
        step(ADMIN, &["delete", "csr", "alice", "bob"]),
        step(ADMIN, &["get", "csr", "-o", "name"]),
    ]
}

#[tokio::test]
async fn t23_certificate_requests_answer_as_kube_apiserver() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_real_store, real, _our_store, ours) = real_and_ours_with_rbac().await;
    let all = same_session(&real, &ours, &session(dir.path()));
    for expected in [
        "certificatesigningrequest.certificates.k8s.io/alice approved",
        "certificatesigningrequest.certificates.k8s.io/bob denied",
        "system:masters group is not allowed",
        "PEM block type must be CERTIFICATE REQUEST",
        "system:node:node-a",
    ] {
        assert!(all.contains(expected), "no step printed {expected:?}:\n{all}");
    }
}
