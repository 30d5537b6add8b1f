//! Bad input gets a clear Status with kube-apiserver's code and reason, and
//! writes nothing.

use std::process::Command;

use cairn_testkit::kube::{ApiServer, ADMIN_TOKEN};
use cairn_testkit::{etcdctl_ok, Flavor};
use serde_json::Value;

use crate::cluster_and_apiserver;

/// One request by curl; the status code and the decoded Status body.
fn send(api: &ApiServer, method: &str, path: &str, content_type: &str, body: &[u8]) -> (u16, Value) {
    let file = api.dir().join("request-body");
    std::fs::write(&file, body).expect("write body");
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "20", "-X", method, "-w", "\n%{http_code}"])
        .args(["-H", &format!("Authorization: Bearer {ADMIN_TOKEN}"), "-H", &format!("Content-Type: {content_type}")])
        .arg("--data-binary")
        .arg(format!("@{}", file.display()))
        .arg(format!("{}{path}", api.url))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), serde_json::from_str(body).unwrap_or(Value::Null))
}

#[track_caller]
fn expect(result: (u16, Value), code: u16, reason: &str, message: &str) {
    let (got, status) = result;
    assert_eq!(got, code, "{status}");
    assert_eq!(status["kind"], "Status", "{status}");
    assert_eq!(status["code"], code, "{status}");
    assert_eq!(status["reason"].as_str().unwrap_or(""), reason, "{status}");
    let text = status["message"].as_str().unwrap_or("");
    assert!(text.contains(message), "{text:?} should contain {message:?}");
}

#[tokio::test]
async fn t60_bad_input_gets_a_status_and_writes_nothing() {
    let (cluster, api) = cluster_and_apiserver(Flavor::Cairn, 1, &[]).await.expect("start");
    let endpoints = cluster.endpoints();
    let endpoint = [endpoints[0].as_str()];
    let count = || {
        etcdctl_ok(&endpoint, &["get", "/registry/configmaps/", "--prefix", "--keys-only"])
            .lines()
            .filter(|l| !l.is_empty())
            .count()
    };
    let before = count();
    let maps = "/api/v1/namespaces/default/configmaps";
    let json = "application/json";

    expect(send(&api, "POST", maps, json, b"{\"kind\": \"ConfigMap\", oops"), 400, "BadRequest", "json parse error");
    expect(
        send(&api, "POST", maps, "application/yaml", b"kind: ConfigMap\nmetadata: [unclosed"),
        400,
        "BadRequest",
        "yaml",
    );
    expect(
        send(&api, "POST", maps, json, br#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}"#),
        400,
        "BadRequest",
        "does not match the expected kind",
    );
    expect(
        send(&api, "POST", maps, json, br#"{"apiVersion":"v9","kind":"ConfigMap","metadata":{"name":"x"}}"#),
        400,
        "BadRequest",
        "does not match the expected API version",
    );
    expect(
        send(&api, "POST", "/apis/nope.example.com/v1/namespaces/default/widgets", json, b"{}"),
        404,
        "NotFound",
        "could not find the requested resource",
    );
    let long = format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{}"}}}}"#, "a".repeat(254));
    expect(send(&api, "POST", maps, json, long.as_bytes()), 422, "Invalid", "must be no more than 253 characters");
    // kube-apiserver's own 1 MiB limit on a ConfigMap's data, then etcd's on any object.
    let big = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"big"}},"data":{{"a":"{}"}}}}"#,
        "x".repeat(1_600_000)
    );
    expect(
        send(&api, "POST", maps, json, big.as_bytes()),
        422,
        "Invalid",
        "[]: Too long: may not be more than 1048576 bytes",
    );
    let lease = format!(
        r#"{{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{{"name":"big"}},"spec":{{"holderIdentity":"{}"}}}}"#,
        "x".repeat(1_600_000)
    );
    let leases = "/apis/coordination.k8s.io/v1/namespaces/default/leases";
    expect(send(&api, "POST", leases, json, lease.as_bytes()), 500, "", "etcdserver: request is too large");
    let huge = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"huge"}},"data":{{"a":"{}"}}}}"#,
        "x".repeat(3_200_000)
    );
    expect(send(&api, "POST", maps, json, huge.as_bytes()), 413, "RequestEntityTooLarge", "limit is 3145728");
    expect(
        send(
            &api,
            "POST",
            &format!("{maps}?fieldValidation=Strict"),
            json,
            br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"extra":true}"#,
        ),
        400,
        "BadRequest",
        "strict decoding error: unknown field \"extra\"",
    );
    expect(
        send(&api, "POST", maps, "application/vnd.kubernetes.protobuf", b"\x6b\x38\x73\x00\x01"),
        400,
        "BadRequest",
        "protobuf",
    );
    expect(send(&api, "POST", maps, "text/csv", b"a,b"), 415, "UnsupportedMediaType", "application/json");
    expect(send(&api, "PUT", maps, json, b"{}"), 405, "MethodNotAllowed", "does not allow this method");

    // Patches: a target that exists, then patches that cannot apply.
    let (code, _) = send(
        &api,
        "POST",
        maps,
        json,
        br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"target"},"data":{"a":"1"}}"#,
    );
    assert_eq!(code, 201);
    let before_patches = count();
    let target = format!("{maps}/target");
    expect(
        send(&api, "PATCH", &target, "application/json-patch+json", br#"[{"op":"remove","path":"/data/missing"}]"#),
        422,
        "Invalid",
        "rejected our request",
    );
    expect(
        send(&api, "PATCH", &target, "application/json-patch+json", b"{\"op\":"),
        400,
        "BadRequest",
        "error decoding patch",
    );
    expect(
        send(&api, "PATCH", &target, "application/merge-patch+json", b"[1,2]"),
        400,
        "BadRequest",
        "merge patch must be an object",
    );
    expect(
        send(&api, "PATCH", &target, "text/plain", b"{}"),
        415,
        "UnsupportedMediaType",
        "application/merge-patch+json",
    );
    expect(
        send(&api, "PATCH", &target, "application/merge-patch+json", br#"{"metadata":{"name":"Renamed_"}}"#),
        400,
        "BadRequest",
        "does not match the name on the URL",
    );
    let (_, unchanged) = send(&api, "GET", &target, json, b"");
    assert_eq!(unchanged["data"]["a"], "1", "failed patches change nothing");
    assert_eq!(count(), before_patches);

    assert_eq!(count(), before + 1, "only the patch target was written");
}

/// Every key the requests below may write, with its mod revision.
async fn written_keys(store: &mut etcd_client::Client) -> Vec<(String, i64)> {
    let options = etcd_client::GetOptions::new().with_prefix().with_keys_only();
    let response = store.get("/registry/", Some(options)).await.expect("read the store");
    response
        .kvs()
        .iter()
        .map(|kv| (String::from_utf8_lossy(kv.key()).into_owned(), kv.mod_revision()))
        // The API server's own writes: its lease, the endpoints it reconciles, events.
        .filter(|(key, _)| {
            !["/leases/", "/masterleases/", "/endpoints/", "/endpointslices/", "/events/"]
                .iter()
                .any(|k| key.contains(k))
        })
        .collect()
}

#[tokio::test]
async fn t61_mutated_bodies_and_patches_get_a_4xx_and_write_nothing_when_refused() {
    let (cluster, api) = cluster_and_apiserver(Flavor::Cairn, 1, &[]).await.expect("start");
    let mut store = cairn_testkit::client(&cluster.endpoints()[0]).await;
    let pods = "/api/v1/namespaces/default/pods";
    let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"app": "a"}},
        "spec": {"containers": [{"name": "c", "image": "i", "env": [{"name": "E", "value": "1"}]}],
                 "tolerations": [{"key": "k", "operator": "Exists"}]}});
    let (code, _) = send(&api, "POST", pods, "application/json", pod.to_string().as_bytes());
    assert_eq!(code, 201);
    let patches = [
        ("application/json-patch+json", serde_json::json!([{"op": "add", "path": "/metadata/labels/b", "value": "c"}])),
        ("application/merge-patch+json", serde_json::json!({"metadata": {"annotations": {"a": "1"}}})),
        (
            "application/strategic-merge-patch+json",
            serde_json::json!({"spec": {"containers": [{"name": "c", "image": "j"}]}}),
        ),
        (
            "application/apply-patch+yaml",
            serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"x": "y"}}}),
        ),
    ];
    let mut mutator = cairn_testkit::mutate::Mutator::new(0x5eed);
    let (mut refused, mut accepted) = (0, 0);
    for round in 0..400 {
        let before = written_keys(&mut store).await;
        let (code, status) = if round % 2 == 0 {
            let mut body = pod.clone();
            body["metadata"]["name"] = serde_json::json!(format!("p{round}"));
            let body = mutator.mutate_json(body);
            send(&api, "POST", pods, "application/json", body.to_string().as_bytes())
        } else {
            let (media, patch) = &patches[(round / 2) % patches.len()];
            let patch = mutator.mutate_json(patch.clone());
            send(&api, "PATCH", &format!("{pods}/p?fieldManager=fuzz"), media, patch.to_string().as_bytes())
        };
        assert!((200..500).contains(&code), "round {round}: {code} {status}");
        if code >= 400 {
            refused += 1;
            assert_eq!(status["kind"], "Status", "round {round}: {status}");
            assert_eq!(written_keys(&mut store).await, before, "round {round}: refused with {status} but wrote");
        } else {
            accepted += 1;
        }
    }
    assert!(refused >= 200 && accepted >= 40, "{refused} refused, {accepted} accepted: the mutations test little");
    let (code, _) = send(&api, "GET", "/readyz", "application/json", b"");
    assert_eq!(code, 200, "the API server still serves");
}
