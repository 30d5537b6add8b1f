//! One kubectl session against cairn-kube and against the real
//! kube-apiserver 1.33.7, each on a Cairn of its own: what kubectl prints must be the same,
//! once ages and generated names are set aside. kube-apiserver is the specification.

use cairn_testkit::kube::{kube_apiserver_binary, ApiServer, Server};
use cairn_testkit::{Cluster, Flavor, Options};

use crate::DEPLOYMENT;

// No service-account token volume: the real server would add one, and its
// token controller is not part of this comparison.
const POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: web-0
  namespace: t
  labels: {app: web}
spec:
  automountServiceAccountToken: false
  containers:
  - name: nginx
    image: nginx
    resources:
      requests: {cpu: 100m}
";

/// The kubectl session: arguments and standard input.
fn session() -> Vec<(Vec<String>, Option<String>)> {
    let cmd = |args: &[&str]| (args.iter().map(|a| a.to_string()).collect::<Vec<_>>(), None);
    let with =
        |args: &[&str], input: &str| (args.iter().map(|a| a.to_string()).collect::<Vec<_>>(), Some(input.to_string()));
    let long = "a".repeat(70);
    vec![
        cmd(&["create", "namespace", "t"]),
        cmd(&["create", "serviceaccount", "default", "-n", "t"]),
        cmd(&["get", "ns"]),
        cmd(&["get", "svc", "-n", "default", "-o", "wide"]),
        cmd(&["get", "priorityclasses"]),
        with(&["apply", "-f", "-"], DEPLOYMENT),
        with(&["apply", "-f", "-"], DEPLOYMENT),
        with(&["apply", "-f", "-"], &DEPLOYMENT.replace("replicas: 2", "replicas: 3")),
        cmd(&["get", "deploy", "web", "-n", "t", "-o", "jsonpath={.spec}"]),
        cmd(&["get", "deploy", "web", "-n", "t", "-o", "jsonpath={.metadata.generation} {.status}"]),
        cmd(&["scale", "deploy", "web", "-n", "t", "--replicas=4"]),
        cmd(&["get", "deploy", "-n", "t", "-o", "wide"]),
        cmd(&["create", "deployment", "typed", "-n", "t", "--image=busybox", "--replicas=0"]),
        cmd(&["get", "deploy", "typed", "-n", "t", "-o", "jsonpath={.spec}"]),
        with(&["create", "-f", "-"], POD),
        cmd(&["get", "pod", "web-0", "-n", "t", "-o", "jsonpath={.spec}"]),
        cmd(&["get", "pod", "web-0", "-n", "t", "-o", "jsonpath={.status}"]),
        cmd(&["get", "pods", "-n", "t", "-o", "wide"]),
        cmd(&["label", "pod", "web-0", "-n", "t", "tier=front"]),
        cmd(&["annotate", "pod", "web-0", "-n", "t", "note=hi"]),
        cmd(&["get", "pods", "-n", "t", "-l", "tier in (front),app", "-o", "name"]),
        cmd(&["get", "pods", "-A", "--field-selector", "status.phase=Pending,metadata.namespace=t", "-o", "name"]),
        cmd(&["get", "pods", "-n", "t", "--field-selector", "spec.bogus=x"]),
        cmd(&["create", "configmap", "c", "-n", "t", "--from-literal=a=1"]),
        cmd(&["create", "secret", "generic", "s", "-n", "t", "--from-literal=p=q"]),
        cmd(&["get", "cm,secret", "-n", "t"]),
        cmd(&["patch", "cm", "c", "-n", "t", "--type=merge", "-p", r#"{"data":{"b":"2"}}"#]),
        cmd(&["patch", "cm", "c", "-n", "t", "--type=json", "-p", r#"[{"op":"remove","path":"/data/missing"}]"#]),
        cmd(&["get", "cm", "c", "-n", "t", "-o", "jsonpath={.data}"]),
        with(&["create", "service", "clusterip", "s1", "-n", "t", "--tcp=80:8080"], ""),
        cmd(&[
            "get",
            "svc",
            "s1",
            "-n",
            "t",
            "-o",
            "jsonpath={.spec.ports} {.spec.type} {.spec.sessionAffinity} {.spec.ipFamilies}",
        ]),
        with(
            &["apply", "--server-side", "-f", "-"],
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\n  namespace: t\ndata:\n  owner: first\n",
        ),
        with(
            &["apply", "--server-side", "--field-manager=other", "-f", "-"],
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\n  namespace: t\ndata:\n  owner: second\n",
        ),
        cmd(&["get", "pod", "nope", "-n", "t"]),
        cmd(&["get", "deploy", "nope", "-n", "t"]),
        with(&["create", "-f", "-"], POD),
        with(
            &["create", "-f", "-"],
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Bad_Name","namespace":"t"}}"#,
        ),
        with(
            &["create", "-f", "-"],
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"empty","namespace":"t"},"spec":{"containers":[]}}"#,
        ),
        with(
            &["create", "-f", "-"],
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"strict","namespace":"t"},"bogus":1}"#,
        ),
        with(
            &["create", "-f", "-"],
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","namespace":"absent"}}"#,
        ),
        cmd(&["create", "namespace", &long]),
        cmd(&["explain", "deployment.spec.replicas"]),
        cmd(&["get", "deploy", "web", "-n", "t", "-o", "yaml"]),
        cmd(&["get", "pod", "web-0", "-n", "t", "-o", "yaml"]),
        cmd(&["get", "cm", "c", "-n", "t", "-o", "yaml"]),
        cmd(&["get", "secret", "s", "-n", "t", "-o", "yaml"]),
        cmd(&["get", "svc", "s1", "-n", "t", "-o", "yaml"]),
        cmd(&["get", "ns", "t", "-o", "yaml"]),
        cmd(&["get", "sa", "default", "-n", "t", "-o", "yaml"]),
        cmd(&["get", "priorityclass", "system-node-critical", "-o", "yaml"]),
        with(
            &["create", "-f", "-"],
            r#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"n1","labels":{"node-role.kubernetes.io/worker":""}},"status":{"nodeInfo":{"kubeletVersion":"v1.33.7"},"conditions":[{"type":"Ready","status":"True"}]}}"#,
        ),
        cmd(&["get", "node", "n1", "-o", "yaml"]),
        cmd(&["get", "nodes"]),
        with(
            &["create", "-f", "-"],
            r#"{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"l","namespace":"t"},"spec":{"holderIdentity":"me","leaseDurationSeconds":15}}"#,
        ),
        cmd(&["get", "lease", "l", "-n", "t", "-o", "yaml"]),
        cmd(&["get", "leases", "-n", "t"]),
        with(
            &["create", "-f", "-"],
            r#"{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"s1-x","namespace":"t","labels":{"kubernetes.io/service-name":"s1"}},"addressType":"IPv4","ports":[{"name":"http","port":8080}],"endpoints":[{"addresses":["10.1.0.5"],"conditions":{"ready":true}}]}"#,
        ),
        cmd(&["get", "endpointslice", "s1-x", "-n", "t", "-o", "yaml"]),
        cmd(&["get", "endpointslices", "-n", "t"]),
        with(
            &["create", "-f", "-"],
            r#"{"apiVersion":"v1","kind":"Endpoints","metadata":{"name":"s1","namespace":"t"},"subsets":[{"addresses":[{"ip":"10.1.0.5"}],"ports":[{"name":"http","port":8080}]}]}"#,
        ),
        cmd(&["get", "endpoints", "s1", "-n", "t", "-o", "yaml"]),
        cmd(&["get", "endpoints", "-n", "t"]),
        with(
            &["create", "-f", "-"],
            r#"{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"j","namespace":"t"},"spec":{"template":{"spec":{"restartPolicy":"Never","containers":[{"name":"c","image":"busybox"}]}}}}"#,
        ),
        cmd(&["get", "job", "j", "-n", "t", "-o", "jsonpath={.spec}"]),
        cmd(&["get", "jobs", "-n", "t"]),
        cmd(&["delete", "cm", "c", "-n", "t"]),
        cmd(&["delete", "pod", "web-0", "-n", "t", "--grace-period=0", "--force"]),
        cmd(&["get", "cm", "-n", "t", "-o", "name"]),
    ]
}

/// "0s", "12m", "3d4h": an age column's cell.
fn is_age(token: &str) -> bool {
    let mut digits = false;
    let mut units = false;
    for c in token.chars() {
        if c.is_ascii_digit() {
            digits = true;
        } else if "smhdy".contains(c) && digits {
            units = true;
            digits = false;
        } else {
            return false;
        }
    }
    units && !digits
}

/// YAML keys whose values differ between any two servers: identities, revisions, clocks, addresses.
const VOLATILE: &[&str] =
    &["uid:", "resourceVersion:", "creationTimestamp:", "time:", "clusterIP:", "deletionTimestamp:"];

/// Replaces every UUID (as uids and generated selectors hold) with `<uuid>`.
pub(crate) fn without_uuids(text: &str) -> String {
    let shape = |s: &[u8]| {
        s.len() >= 36
            && s[..36].iter().enumerate().all(|(i, b)| {
                if [8, 13, 18, 23].contains(&i) {
                    *b == b'-'
                } else {
                    b.is_ascii_hexdigit()
                }
            })
    };
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        if shape(&bytes[i..]) {
            out.push_str("<uuid>");
            i += 36;
        } else {
            let c = text[i..].chars().next().unwrap_or(' ');
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// Ages, volatile values, and the spacing that aligns them, set aside.
pub(crate) fn normalize(text: &str) -> String {
    without_uuids(text)
        .lines()
        .map(|line| {
            let mut tokens: Vec<&str> = line.split_whitespace().map(|t| if is_age(t) { "<age>" } else { t }).collect();
            if tokens.first().is_some_and(|t| VOLATILE.contains(t))
                || tokens.first() == Some(&"-") && tokens.len() == 2 && tokens[1].starts_with("10.0.0.")
            {
                tokens.truncate(1);
                tokens.push("<volatile>");
            }
            tokens.join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn run(api: &ApiServer, (args, input): &(Vec<String>, Option<String>)) -> String {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    outcome(&api.kubectl_stdin(&args, input.as_deref()))
}

/// What a kubectl run showed, with ages and generated names set aside.
pub(crate) fn outcome(out: &std::process::Output) -> String {
    format!(
        "exit: {}\nstdout:\n{}\nstderr:\n{}",
        out.status.code().unwrap_or(-1),
        normalize(&String::from_utf8_lossy(&out.stdout)),
        normalize(&String::from_utf8_lossy(&out.stderr))
    )
}

pub(crate) fn assert_none_differ(differences: &[String], commands: usize) {
    assert!(differences.is_empty(), "{} of {commands} commands differ:\n{}", differences.len(), differences.join("\n"));
}

/// A kubectl step: (token, arguments, standard input); an empty token is the administrator's.
pub(crate) type Step = (&'static str, Vec<&'static str>, Option<String>);

fn run_step(api: &ApiServer, (token, args, input): &Step) -> String {
    let out = if token.is_empty() {
        api.kubectl_stdin(args, input.as_deref())
    } else {
        api.kubectl_as(token, args, input.as_deref())
    };
    outcome(&out)
}

/// Runs each step on kube-apiserver and on cairn-kube, requires the same
/// output from both, and returns cairn-kube's, for checks that it showed something.
pub(crate) fn same_session(real: &ApiServer, ours: &ApiServer, steps: &[Step]) -> String {
    let mut differences = Vec::new();
    let mut outputs = Vec::new();
    for step in steps {
        let (expected, got) = (run_step(real, step), run_step(ours, step));
        if expected != got {
            differences.push(format!(
                "kubectl {:?} (token {:?})\n--- kube-apiserver\n{expected}\n--- cairn-kube\n{got}\n",
                step.1, step.0
            ));
        }
        outputs.push(got);
    }
    assert_none_differ(&differences, steps.len());
    outputs.join("\n")
}

pub(crate) fn require_kube_apiserver() {
    let binary = kube_apiserver_binary();
    assert!(binary.is_file(), "{} is missing: `.ci/kubernetes.sh` builds it", binary.display());
}

/// The real kube-apiserver and cairn-kube, each on a one-member Cairn of its own.
pub(crate) async fn real_and_ours() -> (Cluster, ApiServer, Cluster, ApiServer) {
    real_and_ours_with(&[], &[]).await
}

/// [`real_and_ours`] with flags for each server.
pub(crate) async fn real_and_ours_with(
    real_flags: &[&str],
    our_flags: &[&str],
) -> (Cluster, ApiServer, Cluster, ApiServer) {
    require_kube_apiserver();
    let real_store = Options::new(Flavor::Cairn, 1).start().await.expect("cairn for kube-apiserver");
    let real = ApiServer::start_as(Server::Kube, &real_store.endpoints(), real_flags).await.expect("kube-apiserver");
    let our_store = Options::new(Flavor::Cairn, 1).start().await.expect("cairn for cairn-kube");
    let ours = ApiServer::start(&our_store.endpoints(), our_flags).await.expect("cairn-kube");
    (real_store, real, our_store, ours)
}

/// Both with `--authorization-mode=Node,RBAC`; kube-apiserver with NodeRestriction, which cairn-kube always has.
pub(crate) async fn real_and_ours_with_rbac() -> (Cluster, ApiServer, Cluster, ApiServer) {
    let real_flags = ["--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction"];
    real_and_ours_with(&real_flags, &["--authorization-mode=Node,RBAC"]).await
}

#[tokio::test]
async fn t14_kubectl_prints_the_same_as_against_kube_apiserver() {
    let (_real_store, real, _our_store, ours) = real_and_ours().await;
    let mut differences = Vec::new();
    for step in session() {
        let (expected, got) = (run(&real, &step), run(&ours, &step));
        if expected != got {
            differences.push(format!("kubectl {:?}\n--- kube-apiserver\n{expected}\n--- cairn-kube\n{got}\n", step.0));
        }
    }
    assert_none_differ(&differences, session().len());
}

#[test]
fn uuids_are_set_aside() {
    assert_eq!(without_uuids("uid: e0112a99-5fc3-408c-a6c0-7c2fb6366220 é"), "uid: <uuid> é");
}

#[test]
fn ages_are_recognised() {
    assert!(is_age("0s") && is_age("5m2s") && is_age("3d") && is_age("12h"));
    assert!(!is_age("web") && !is_age("10") && !is_age("s") && !is_age("80/TCP"));
}
