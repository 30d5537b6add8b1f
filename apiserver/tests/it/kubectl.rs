//! A kubectl session with every command of the issue's part 4 and the errors
//! of part 7, checked by kubectl's own output; on Cairn and on etcd 3.5.1.

use std::process::{Command, Stdio};
use std::time::Duration;

use cairn_testkit::kube::{kubectl_binary, ApiServer};
use cairn_testkit::Flavor;

use crate::{cluster_and_apiserver, eventually, fails, ok, ok_stdin, DEPLOYMENT};

const NAMESPACE: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: t\n";

const POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: web-0
  namespace: t
  labels: {app: web}
spec:
  containers:
  - name: nginx
    image: nginx:1.25
";

fn session(api: &ApiServer) {
    let version = ok(api, &["version"]);
    assert!(version.contains("Server Version: v1.33.7+cairn"), "{version}");
    let resources = ok(api, &["api-resources"]);
    for line in ["deployments", "apps/v1", "priorityclasses", "endpointslices", "leases"] {
        assert!(resources.contains(line), "api-resources lacks {line}: {resources}");
    }

    // Typed `create` commands send protobuf bodies.
    assert_eq!(ok(api, &["create", "namespace", "typed"]).trim(), "namespace/typed created");
    assert_eq!(
        ok(api, &["create", "configmap", "c", "-n", "typed", "--from-literal=k=v"]).trim(),
        "configmap/c created"
    );
    assert_eq!(
        ok(api, &["create", "secret", "generic", "s", "-n", "typed", "--from-literal=p=q"]).trim(),
        "secret/s created"
    );
    assert_eq!(
        ok(api, &["create", "deployment", "d", "-n", "typed", "--image=nginx", "--replicas=0"]).trim(),
        "deployment.apps/d created"
    );
    assert_eq!(ok(api, &["get", "cm", "c", "-n", "typed", "-o", "jsonpath={.data.k}"]), "v");
    assert_eq!(ok(api, &["get", "secret", "s", "-n", "typed", "-o", "jsonpath={.data.p}"]), "cQ==");
    let typed = ok(
        api,
        &["get", "deploy", "d", "-n", "typed", "-o", "jsonpath={.spec.replicas} {.spec.template.spec.restartPolicy}"],
    );
    assert_eq!(typed, "0 Always", "a zero the client set survives, an empty string does not");

    // apply: create, unchanged, configure.
    assert_eq!(ok_stdin(api, &["apply", "-f", "-"], NAMESPACE).trim(), "namespace/t created");
    assert_eq!(ok_stdin(api, &["apply", "-f", "-"], DEPLOYMENT).trim(), "deployment.apps/web created");
    assert_eq!(ok_stdin(api, &["apply", "-f", "-"], DEPLOYMENT).trim(), "deployment.apps/web unchanged");
    let three = DEPLOYMENT.replace("replicas: 2", "replicas: 3");
    assert_eq!(ok_stdin(api, &["apply", "-f", "-"], &three).trim(), "deployment.apps/web configured");
    let shape = ok(
        api,
        &[
            "get",
            "deploy",
            "web",
            "-n",
            "t",
            "-o",
            "jsonpath={.spec.replicas} {.metadata.generation} {.spec.strategy.type} {.spec.revisionHistoryLimit}",
        ],
    );
    assert_eq!(shape, "3 2 RollingUpdate 10");

    // scale, through the scale subresource.
    assert_eq!(ok(api, &["scale", "deploy", "web", "-n", "t", "--replicas=5"]).trim(), "deployment.apps/web scaled");
    assert_eq!(ok(api, &["get", "deploy", "web", "-n", "t", "-o", "jsonpath={.spec.replicas}"]), "5");
    let table = ok(api, &["get", "deploy", "-n", "t", "-o", "wide"]);
    assert!(
        table.starts_with("NAME")
            && table.contains("UP-TO-DATE")
            && table.contains("SELECTOR")
            && table.contains("app=web"),
        "{table}"
    );

    // A pod, its defaults, and a binding that places it.
    assert_eq!(ok_stdin(api, &["create", "-f", "-"], POD).trim(), "pod/web-0 created");
    let defaults = ok(api, &["get", "pod", "web-0", "-n", "t", "-o", "jsonpath={.spec.restartPolicy} {.spec.dnsPolicy} {.spec.terminationGracePeriodSeconds} {.spec.serviceAccountName} {.status.phase}"]);
    assert_eq!(defaults, "Always ClusterFirst 30 default Pending");
    let tolerations =
        ok(api, &["get", "pod", "web-0", "-n", "t", "-o", "jsonpath={.spec.tolerations[*].tolerationSeconds}"]);
    assert_eq!(tolerations, "300 300");
    let binding =
        r#"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"web-0"},"target":{"kind":"Node","name":"node-1"}}"#;
    ok_stdin(api, &["create", "--raw", "/api/v1/namespaces/t/pods/web-0/binding", "-f", "-"], binding);
    let wide = ok(api, &["get", "pods", "-n", "t", "-o", "wide"]);
    let header: Vec<&str> = wide.lines().next().unwrap_or("").split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED", "NODE", "READINESS", "GATES"]
    );
    assert!(wide.lines().nth(1).is_some_and(|row| row.contains("node-1")), "{wide}");

    // label, annotate, selectors.
    assert_eq!(ok(api, &["label", "pod", "web-0", "-n", "t", "tier=front"]).trim(), "pod/web-0 labeled");
    assert_eq!(ok(api, &["annotate", "pod", "web-0", "-n", "t", "note=hi"]).trim(), "pod/web-0 annotated");
    for selector in ["tier=front", "tier!=back", "tier in (front,middle)", "tier notin (back)", "tier", "!missing"] {
        let names = ok(api, &["get", "pods", "-n", "t", "-l", selector, "-o", "name"]);
        assert_eq!(names.trim(), "pod/web-0", "selector {selector}");
    }
    for selector in ["tier=back", "!tier", "tier notin (front)"] {
        let names = ok(api, &["get", "pods", "-n", "t", "-l", selector, "-o", "name"]);
        assert_eq!(names.trim(), "", "selector {selector}");
    }
    for fields in ["spec.nodeName=node-1", "status.phase=Pending", "metadata.name=web-0", "metadata.namespace=t"] {
        let names = ok(api, &["get", "pods", "-A", "--field-selector", fields, "-o", "name"]);
        assert_eq!(names.trim(), "pod/web-0", "field selector {fields}");
    }
    let unsupported = fails(api, &["get", "pods", "-n", "t", "--field-selector", "spec.bogus=1"], None);
    assert!(unsupported.contains("field label not supported: spec.bogus"), "{unsupported}");

    // edit, through $EDITOR.
    let edited = Command::new(kubectl_binary())
        .args([
            format!("--kubeconfig={}", api.kubeconfig.display()),
            format!("--cache-dir={}", api.dir().join("kubectl-cache").display()),
        ])
        .args(["edit", "pod", "web-0", "-n", "t"])
        .env("EDITOR", "sed -i s/note:\\ hi/note:\\ edited/")
        .stdin(Stdio::null())
        .output()
        .expect("kubectl edit runs");
    assert!(edited.status.success(), "{}", String::from_utf8_lossy(&edited.stderr));
    assert_eq!(String::from_utf8_lossy(&edited.stdout).trim(), "pod/web-0 edited");
    assert_eq!(ok(api, &["get", "pod", "web-0", "-n", "t", "-o", "jsonpath={.metadata.annotations.note}"]), "edited");

    // describe lists the pod's Events by involvedObject.
    let uid = ok(api, &["get", "pod", "web-0", "-n", "t", "-o", "jsonpath={.metadata.uid}"]);
    let event = format!(
        r#"{{"apiVersion":"v1","kind":"Event","metadata":{{"name":"web-0.1","namespace":"t"}},
        "involvedObject":{{"kind":"Pod","namespace":"t","name":"web-0","apiVersion":"v1","uid":"{uid}"}},
        "reason":"Scheduled","message":"Successfully assigned t/web-0 to node-1","type":"Normal",
        "source":{{"component":"default-scheduler"}},"count":1}}"#
    );
    ok_stdin(api, &["create", "-f", "-"], &event);
    let described = ok(api, &["describe", "pod", "web-0", "-n", "t"]);
    assert!(described.contains("Successfully assigned t/web-0 to node-1"), "{described}");
    assert!(described.contains("Node:             node-1"), "{described}");

    // Patches of every type.
    ok_stdin(
        api,
        &["create", "-f", "-"],
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"p","namespace":"t"},"data":{"a":"1"}}"#,
    );
    ok(api, &["patch", "cm", "p", "-n", "t", "--type=json", "-p", r#"[{"op":"add","path":"/data/b","value":"2"}]"#]);
    ok(api, &["patch", "cm", "p", "-n", "t", "--type=merge", "-p", r#"{"data":{"a":null,"c":"3"}}"#]);
    ok(
        api,
        &[
            "patch",
            "pod",
            "web-0",
            "-n",
            "t",
            "-p",
            r#"{"spec":{"containers":[{"name":"nginx","image":"nginx:1.26"}]}}"#,
        ],
    );
    assert_eq!(ok(api, &["get", "cm", "p", "-n", "t", "-o", "jsonpath={.data}"]), r#"{"b":"2","c":"3"}"#);
    assert_eq!(
        ok(api, &["get", "pod", "web-0", "-n", "t", "-o", "jsonpath={.spec.containers[*].image}"]),
        "nginx:1.26"
    );

    // Server-side apply with managed fields and conflicts.
    let applied = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\n  namespace: t\ndata:\n  owner: first\n";
    assert_eq!(
        ok_stdin(api, &["apply", "--server-side", "-f", "-"], applied).trim(),
        "configmap/ssa serverside-applied"
    );
    let managers = ok(
        api,
        &[
            "get",
            "cm",
            "ssa",
            "-n",
            "t",
            "--show-managed-fields",
            "-o",
            "jsonpath={.metadata.managedFields[*].manager}",
        ],
    );
    assert_eq!(managers, "kubectl");
    let second = applied.replace("first", "second");
    let conflict = fails(api, &["apply", "--server-side", "--field-manager=other", "-f", "-"], Some(&second));
    assert_eq!(
        conflict.lines().next().unwrap_or(""),
        "error: Apply failed with 1 conflict: conflict with \"kubectl\": .data.owner",
        "{conflict}"
    );
    ok_stdin(api, &["apply", "--server-side", "--field-manager=other", "--force-conflicts", "-f", "-"], &second);
    assert_eq!(ok(api, &["get", "cm", "ssa", "-n", "t", "-o", "jsonpath={.data.owner}"]), "second");

    // get -w sees a change made after it started.
    let watcher = Command::new("timeout")
        .arg("8")
        .arg(kubectl_binary())
        .args([
            format!("--kubeconfig={}", api.kubeconfig.display()),
            format!("--cache-dir={}", api.dir().join("kubectl-cache").display()),
        ])
        .args(["get", "cm", "-n", "t", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl get -w runs");
    std::thread::sleep(Duration::from_secs(2));
    ok_stdin(
        api,
        &["create", "-f", "-"],
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"watched","namespace":"t"}}"#,
    );
    let watched = watcher.wait_with_output().expect("kubectl get -w ends");
    let watched = String::from_utf8_lossy(&watched.stdout);
    assert!(watched.lines().next().is_some_and(|l| l.starts_with("NAME")), "{watched}");
    assert!(watched.lines().any(|l| l.starts_with("watched ")), "{watched}");

    // explain and paging.
    assert!(ok(api, &["explain", "deployment.spec.replicas"]).contains("replicas"));
    let chunked = ok(api, &["get", "cm", "-n", "t", "--chunk-size=1", "-o", "name"]);
    assert_eq!(chunked.lines().count(), 3, "{chunked}");

    // delete waits for the object to go (a metadata.name watch).
    assert_eq!(ok(api, &["delete", "cm", "watched", "-n", "t"]).trim(), "configmap \"watched\" deleted");
    assert_eq!(
        ok(api, &["delete", "pod", "web-0", "-n", "t", "--grace-period=0", "--force"]).lines().last().unwrap_or(""),
        "pod \"web-0\" force deleted"
    );
    assert_eq!(ok(api, &["get", "pods", "-n", "t", "-o", "name"]).trim(), "");

    lifecycle(api);
    errors(api);
}

/// Priority admission, eviction, deletecollection, finalizers, and a terminating namespace.
fn lifecycle(api: &ApiServer) {
    let pod = |name: &str, extra: &str| {
        format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","namespace":"t"}},"spec":{{{extra}"containers":[{{"name":"c","image":"busybox"}}]}}}}"#
        )
    };
    ok_stdin(api, &["create", "-f", "-"], &pod("critical", r#""priorityClassName":"system-node-critical","#));
    assert_eq!(ok(api, &["get", "pod", "critical", "-n", "t", "-o", "jsonpath={.spec.priority}"]), "2000001000");
    let unknown = fails(api, &["create", "-f", "-"], Some(&pod("nope", r#""priorityClassName":"nope","#)));
    assert_eq!(unknown, "Error from server (Forbidden): error when creating \"STDIN\": pods \"nope\" is forbidden: no PriorityClass with name nope was found");

    let eviction = r#"{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"critical","namespace":"t"}}"#;
    ok_stdin(api, &["create", "--raw", "/api/v1/namespaces/t/pods/critical/eviction", "-f", "-"], eviction);
    assert_eq!(
        fails(api, &["get", "pod", "critical", "-n", "t"], None),
        "Error from server (NotFound): pods \"critical\" not found"
    );

    for name in ["gone-1", "gone-2"] {
        ok(api, &["create", "configmap", name, "-n", "typed"]);
        ok(api, &["label", "cm", name, "-n", "typed", "sweep=yes"]);
    }
    ok(api, &["delete", "--raw", "/api/v1/namespaces/typed/configmaps?labelSelector=sweep%3Dyes"]);
    assert_eq!(
        ok(api, &["get", "cm", "-n", "typed", "-l", "sweep", "-o", "name"]).trim(),
        "",
        "deletecollection removed both"
    );

    let held = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"held","namespace":"typed","finalizers":["example.com/hold"]}}"#;
    ok_stdin(api, &["create", "-f", "-"], held);
    ok(api, &["delete", "cm", "held", "-n", "typed", "--wait=false"]);
    assert!(
        !ok(api, &["get", "cm", "held", "-n", "typed", "-o", "jsonpath={.metadata.deletionTimestamp}"]).is_empty(),
        "marked, not removed"
    );
    ok(
        api,
        &[
            "patch",
            "cm",
            "held",
            "-n",
            "typed",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
        ],
    );
    assert_eq!(
        fails(api, &["get", "cm", "held", "-n", "typed"], None),
        "Error from server (NotFound): configmaps \"held\" not found"
    );

    ok(api, &["delete", "namespace", "typed", "--wait=false"]);
    assert_eq!(ok(api, &["get", "ns", "typed", "-o", "jsonpath={.status.phase}"]), "Terminating");
    let late = fails(api, &["create", "configmap", "late", "-n", "typed"], None);
    assert_eq!(late, "error: failed to create configmap: configmaps \"late\" is forbidden: unable to create new content in namespace typed because it is being terminated");
}

fn create_fails(api: &ApiServer, input: &str) -> String {
    fails(api, &["create", "-f", "-"], Some(input))
}

/// The errors of part 7, as kubectl prints them against kube-apiserver.
fn errors(api: &ApiServer) {
    assert_eq!(
        fails(api, &["get", "pod", "nope", "-n", "t"], None),
        "Error from server (NotFound): pods \"nope\" not found"
    );
    assert_eq!(
        fails(api, &["get", "deploy", "nope", "-n", "t"], None),
        "Error from server (NotFound): deployments.apps \"nope\" not found"
    );
    let twice = POD.replace("web-0", "twice");
    ok_stdin(api, &["create", "-f", "-"], &twice);
    let exists = fails(api, &["create", "-f", "-"], Some(&twice));
    assert_eq!(
        exists,
        "Error from server (AlreadyExists): error when creating \"STDIN\": pods \"twice\" already exists"
    );
    let stale = ok(api, &["get", "cm", "p", "-n", "t", "-o", "json"]);
    ok(api, &["label", "cm", "p", "-n", "t", "moved=on"]);
    let conflict = fails(api, &["replace", "-f", "-"], Some(&stale));
    assert_eq!(
        conflict,
        "Error from server (Conflict): error when replacing \"STDIN\": Operation cannot be fulfilled on configmaps \"p\": the object has been modified; please apply your changes to the latest version and try again"
    );
    let invalid =
        create_fails(api, r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Bad_Name","namespace":"t"}}"#);
    assert!(invalid.starts_with("The ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"), "{invalid}");
    let no_containers = create_fails(
        api,
        r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"empty","namespace":"t"},"spec":{"containers":[]}}"#,
    );
    assert_eq!(no_containers, "The Pod \"empty\" is invalid: spec.containers: Required value");
    let strict = create_fails(
        api,
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"strict","namespace":"t"},"bogus":1}"#,
    );
    assert_eq!(
        strict,
        "Error from server (BadRequest): error when creating \"STDIN\": ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: unknown field \"bogus\""
    );
    let missing_ns =
        create_fails(api, r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","namespace":"absent"}}"#);
    assert_eq!(
        missing_ns,
        "Error from server (NotFound): error when creating \"STDIN\": namespaces \"absent\" not found"
    );
}

#[tokio::test]
async fn t10_kubectl_session_on_three_cairn_members() {
    let (_cluster, api) = cluster_and_apiserver(Flavor::Cairn, 3, &[]).await.expect("cluster and API server");
    session(&api);
}

#[tokio::test]
async fn t11_kubectl_session_on_etcd() {
    let (_cluster, api) = cluster_and_apiserver(Flavor::Etcd, 1, &[]).await.expect("etcd and API server");
    session(&api);
}

#[tokio::test]
async fn t12_unauthenticated_requests_get_401() {
    let (_cluster, api) = cluster_and_apiserver(Flavor::Cairn, 1, &[]).await.expect("cluster and API server");
    let out = Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("{}/api/v1/pods", api.url))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "401");
    let out = Command::new("curl")
        .args(["-sk", "-H", "Authorization: Bearer wrong", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("{}/api/v1/pods", api.url))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "401");
    let (code, body) = api.get("/metrics");
    assert_eq!(code, 200);
    assert!(body.contains("apiserver_request_total{code=\"401\""), "{body}");
    assert!(eventually(Duration::from_secs(5), || api.get("/readyz").0 == 200).await);
}

/// Makes a CA and a client certificate signed by it (CN=jane, O=dev), with openssl.
fn client_certificate(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=test-ca",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "jane.key",
        "-out",
        "jane.csr",
        "-subj",
        "/CN=jane/O=dev",
    ]);
    // webpki takes v3 certificates only: these extensions make it one.
    let extensions =
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n";
    std::fs::write(dir.join("client.ext"), extensions).expect("write the extensions");
    run(&[
        "x509",
        "-extfile",
        "client.ext",
        "-req",
        "-in",
        "jane.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "jane.crt",
        "-days",
        "1",
    ]);
    (dir.join("ca.crt"), dir.join("jane.crt"), dir.join("jane.key"))
}

#[tokio::test]
async fn t13_x509_client_certificates_authenticate() {
    let certs = tempfile::tempdir().expect("tempdir");
    let (ca, cert, key) = client_certificate(certs.path());
    let ca_flag = format!("--client-ca-file={}", ca.display());
    let (_cluster, api) = cluster_and_apiserver(Flavor::Cairn, 1, &[&ca_flag]).await.expect("cluster and API server");
    let curl = |extra: &[&str]| {
        let out = Command::new("curl")
            .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}"])
            .args(extra)
            .arg(format!("{}/api/v1/namespaces", api.url))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    assert_eq!(curl(&["--cert", &cert, "--key", &key]), "200", "a certificate signed by the client CA authenticates");
    let review = Command::new("curl")
        .args(["-sk", "-X", "POST", "-H", "Content-Type: application/json", "-d", "{}", "--cert", &cert, "--key", &key])
        .arg(format!("{}/apis/authentication.k8s.io/v1/selfsubjectreviews", api.url))
        .output()
        .expect("curl");
    let review: serde_json::Value = serde_json::from_slice(&review.stdout).expect("a SelfSubjectReview");
    assert_eq!(review["status"]["userInfo"]["username"], "jane", "the CN is the user: {review}");
    assert_eq!(
        review["status"]["userInfo"]["groups"],
        serde_json::json!(["dev", "system:authenticated"]),
        "O values are the groups"
    );
    let whoami = ok(&api, &["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"]);
    assert_eq!(whoami, "admin", "the token's user");
    assert_eq!(curl(&[]), "401", "no certificate and no token");
    let other = tempfile::tempdir().expect("tempdir");
    let (_, stranger, stranger_key) = client_certificate(other.path());
    let refused = curl(&["--cert", &stranger.display().to_string(), "--key", &stranger_key.display().to_string()]);
    assert!(refused == "000" || refused == "401", "a certificate from another CA is refused: {refused}");
}
