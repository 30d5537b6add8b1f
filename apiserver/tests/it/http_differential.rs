//! Raw HTTP against cairn-kube and against the real kube-apiserver 1.33.7,
//! each on a Cairn of its own: discovery, Table output, a watch, every patch
//! type, errors and validation. The JSON answers must be the same once uids,
//! resourceVersions, timestamps and continue tokens are set aside. Then both
//! API servers share one Cairn and read each other's objects.

use serde_json::Value;

use cairn_testkit::kube::{ApiServer, Server};
use cairn_testkit::{Flavor, Options};

/// Known differences, listed in `docs/kubernetes.md` ("Known differences"):
/// the request (`*`: every one), a path into each answered object (`*`: any
/// key or index), and what is kept of the value there (`None`: nothing).
const KNOWN: &[(&str, &str, Option<&str>)] = &[
    // Server-side apply's field sets: kube-apiserver computes them from the
    // decoded request before the registry's strategy runs and marks maps and
    // pointer structs it added with ".", and keeps atomic structs whole;
    // cairn-kube computes them from the stored object.
    ("*", "/metadata/managedFields/*/fieldsV1", None),
    ("*", "/items/*/metadata/managedFields/*/fieldsV1", None),
    ("*", "/rows/*/object/metadata/managedFields/*/fieldsV1", None),
    // Table column descriptions are the OpenAPI field docs, which cairn-kube does not carry.
    ("list as a Table", "/columnDefinitions/*/description", None),
    // The parse error's own words are Go's encoding/json's.
    ("a body that is not JSON: 400", "/message", Some("json parse error: ")),
];

/// One request: a name, the method, the path, headers and a body.
struct Request {
    name: &'static str,
    method: &'static str,
    path: String,
    headers: Vec<&'static str>,
    body: Option<String>,
    /// How long it may take (a watch runs for its timeout).
    seconds: u64,
}

fn request(name: &'static str, method: &'static str, path: &str) -> Request {
    Request { name, method, path: path.to_string(), headers: Vec::new(), body: None, seconds: 10 }
}

impl Request {
    fn json(mut self, body: &str) -> Request {
        self.headers.push("Content-Type: application/json");
        self.body = Some(body.to_string());
        self
    }

    fn with(mut self, header: &'static str, body: &str) -> Request {
        self.headers.push(header);
        self.body = Some(body.to_string());
        self
    }

    fn accept(mut self, accept: &'static str) -> Request {
        self.headers.push(accept);
        self
    }
}

const NS: &str = "/api/v1/namespaces/h";
const CM: &str = "/api/v1/namespaces/h/configmaps";
const DEPLOY: &str = "/apis/apps/v1/namespaces/h/deployments";

fn session() -> Vec<Request> {
    let deployment = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d","namespace":"h","labels":{"app":"d"}},"spec":{"replicas":1,"selector":{"matchLabels":{"app":"d"}},"template":{"metadata":{"labels":{"app":"d"}},"spec":{"containers":[{"name":"a","image":"busybox"},{"name":"b","image":"nginx"}]}}}}"#;
    vec![
        request("create namespace", "POST", "/api/v1/namespaces").json(r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"h"}}"#),
        request("create configmap", "POST", CM).json(r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","labels":{"k":"v"}},"data":{"a":"1"}}"#),
        request("create it again: 409", "POST", CM).json(r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}}"#),
        request("get a missing one: 404", "GET", &format!("{CM}/nope")),
        request("an invalid name: 422", "POST", CM).json(r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Not_Valid"}}"#),
        request("an unknown field, strict: 400", "POST", &format!("{CM}?fieldValidation=Strict")).json(r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"s"},"bogus":1}"#),
        request("an unknown field, warned", "POST", &format!("{CM}?fieldValidation=Warn")).json(r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"w"},"bogus":1}"#),
        request("a body that is not JSON: 400", "POST", CM).json("{not json"),
        request("merge patch", "PATCH", &format!("{CM}/c")).with("Content-Type: application/merge-patch+json", r#"{"data":{"b":"2"},"metadata":{"labels":{"k":null}}}"#),
        request("json patch", "PATCH", &format!("{CM}/c")).with("Content-Type: application/json-patch+json", r#"[{"op":"add","path":"/data/c","value":"3"},{"op":"replace","path":"/data/a","value":"0"}]"#),
        request("json patch, a failed test: 422", "PATCH", &format!("{CM}/c")).with("Content-Type: application/json-patch+json", r#"[{"op":"test","path":"/data/a","value":"9"}]"#),
        request("apply patch", "PATCH", &format!("{CM}/applied?fieldManager=tester")).with("Content-Type: application/apply-patch+yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\ndata:\n  x: \"1\"\n"),
        request("apply patch, a conflict: 409", "PATCH", &format!("{CM}/applied?fieldManager=other")).with("Content-Type: application/apply-patch+yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\ndata:\n  x: \"2\"\n"),
        request("update with a stale resourceVersion: 409", "PUT", &format!("{CM}/c")).json(r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","resourceVersion":"1"},"data":{}}"#),
        request("create deployment", "POST", DEPLOY).json(deployment),
        request("strategic merge patch", "PATCH", &format!("{DEPLOY}/d")).with("Content-Type: application/strategic-merge-patch+json", r#"{"spec":{"template":{"spec":{"containers":[{"name":"b","image":"nginx:2"}]}}}}"#),
        request("scale subresource", "GET", &format!("{DEPLOY}/d/scale")),
        request("list", "GET", CM),
        request("list from the watch cache", "GET", &format!("{CM}?resourceVersion=0")),
        request("list with a limit", "GET", &format!("{CM}?limit=1&labelSelector=")),
        request("list as a Table", "GET", CM).accept("Accept: application/json;as=Table;v=v1;g=meta.k8s.io"),
        request("get as PartialObjectMetadata", "GET", &format!("{CM}/c")).accept("Accept: application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io"),
        request("a field selector that is not supported: 400", "GET", &format!("{CM}?fieldSelector=data.a%3D1")),
        Request { seconds: 5, ..request("watch from resourceVersion 0, for 1 s", "GET", &format!("{CM}?watch=1&timeoutSeconds=1&resourceVersion=0&labelSelector=k%3Dv")) },
        request("delete with a wrong uid precondition: 409", "DELETE", &format!("{CM}/c")).json(r#"{"kind":"DeleteOptions","apiVersion":"v1","preconditions":{"uid":"00000000-0000-0000-0000-000000000000"}}"#),
        request("delete", "DELETE", &format!("{CM}/c")),
        request("delete the namespace", "DELETE", NS),
    ]
}

/// Sets aside what differs between any two servers: identities, revisions,
/// clocks, continue tokens and generated values.
fn normalize(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for key in ["uid", "resourceVersion", "creationTimestamp", "time", "continue", "deletionTimestamp"] {
                if let Some(v) = map.get_mut(key) {
                    *v = Value::String(format!("<{key}>"));
                }
            }
            map.values_mut().for_each(normalize);
        }
        Value::Array(items) => items.iter_mut().for_each(normalize),
        Value::String(text) if is_age(text) => *text = "<age>".into(),
        Value::String(text) => *text = crate::differential::without_uuids(text),
        _ => {}
    }
}

fn is_age(token: &str) -> bool {
    let units = token.trim_start_matches(|c: char| c.is_ascii_digit());
    token.len() > units.len() && ["s", "m", "h", "d"].contains(&units)
}

/// The answer as compared: the status code and the normalized JSON (each
/// line of a watch is one JSON object).
fn answer(code: u16, body: &str) -> Value {
    // kube-apiserver pretty-prints for curl; a watch is one object per line.
    let mut parsed: Vec<Value> = match serde_json::from_str::<Value>(body) {
        Ok(whole) => vec![whole],
        Err(_) => body
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| serde_json::from_str(line).unwrap_or_else(|_| Value::String(line.to_string())))
            .collect(),
    };
    parsed.iter_mut().for_each(normalize);
    serde_json::json!({ "code": code, "body": parsed })
}

fn set_aside(name: &str, mut value: Value) -> Value {
    for (_, path, keep) in KNOWN.iter().filter(|(request, _, _)| *request == "*" || *request == name) {
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        for object in value["body"].as_array_mut().into_iter().flatten() {
            aside(object, &parts, *keep);
        }
    }
    value
}

fn aside(value: &mut Value, parts: &[&str], keep: Option<&str>) {
    let Some((first, rest)) = parts.split_first() else {
        let kept = match (keep, value.as_str()) {
            (Some(marker), Some(text)) => text.find(marker).map(|at| format!("{}…", &text[..at + marker.len()])),
            _ => None,
        };
        *value = Value::String(kept.unwrap_or_else(|| "<known difference>".into()));
        return;
    };
    let children: Vec<&mut Value> = match (value, *first) {
        (Value::Array(items), "*") => items.iter_mut().collect(),
        (Value::Object(map), "*") => map.values_mut().collect(),
        (Value::Array(items), index) => {
            index.parse::<usize>().ok().and_then(|i| items.get_mut(i)).into_iter().collect()
        }
        (Value::Object(map), key) => map.get_mut(key).into_iter().collect(),
        _ => Vec::new(),
    };
    for child in children {
        aside(child, rest, keep);
    }
}

/// Discovery: every resource cairn-kube serves, as kube-apiserver describes it.
fn discovery_differences(real: &ApiServer, ours: &ApiServer) -> Vec<String> {
    let mut differences = Vec::new();
    for path in
        ["/api/v1", "/apis/apps/v1", "/apis/coordination.k8s.io/v1", "/apis/discovery.k8s.io/v1", "/apis/batch/v1"]
    {
        let (_, body) = ours.get(path);
        let ours_list: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let (_, body) = real.get(path);
        let real_list: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let resources = ours_list["resources"].as_array().cloned().unwrap_or_default();
        if resources.is_empty() {
            differences.push(format!("{path}: cairn-kube lists no resources"));
        }
        for resource in resources {
            let name = resource["name"].as_str().unwrap_or_default();
            let Some(expected) =
                real_list["resources"].as_array().and_then(|all| all.iter().find(|r| r["name"] == name))
            else {
                differences.push(format!("{path} {name}: kube-apiserver does not serve it"));
                continue;
            };
            for field in ["kind", "namespaced", "singularName", "shortNames", "categories", "group", "version"] {
                if resource[field] != expected[field] {
                    differences.push(format!(
                        "{path} {name} {field}: kube-apiserver {} cairn-kube {}",
                        expected[field], resource[field]
                    ));
                }
            }
            let sorted = |v: &Value| {
                let mut verbs: Vec<String> =
                    v["verbs"].as_array().into_iter().flatten().filter_map(|x| x.as_str().map(String::from)).collect();
                verbs.sort();
                verbs
            };
            if sorted(&resource) != sorted(expected) {
                differences.push(format!(
                    "{path} {name} verbs: kube-apiserver {:?} cairn-kube {:?}",
                    sorted(expected),
                    sorted(&resource)
                ));
            }
        }
    }
    differences
}

#[tokio::test]
async fn t15_raw_http_answers_as_kube_apiserver_does() {
    let (_real_store, real, _our_store, ours) = crate::differential::real_and_ours().await;
    let mut differences = discovery_differences(&real, &ours);
    let requests = session();
    for step in &requests {
        let send = |api: &ApiServer| {
            let (code, body) = api.request(step.method, &step.path, &step.headers, step.body.as_deref(), step.seconds);
            set_aside(step.name, answer(code, &body))
        };
        let (expected, got) = (send(&real), send(&ours));
        if expected != got {
            differences.push(format!(
                "{} ({} {})\n--- kube-apiserver\n{}\n--- cairn-kube\n{}\n",
                step.name,
                step.method,
                step.path,
                serde_json::to_string_pretty(&expected).unwrap_or_default(),
                serde_json::to_string_pretty(&got).unwrap_or_default()
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "{} differences over {} requests and discovery:\n{}",
        differences.len(),
        requests.len(),
        differences.join("\n")
    );
}

/// Both API servers on one Cairn: each reads, lists and updates what the other wrote.
#[tokio::test]
async fn t16_each_api_server_reads_the_others_objects() {
    crate::differential::require_kube_apiserver();
    let store = Options::new(Flavor::Cairn, 1).start().await.expect("cairn");
    let real = ApiServer::start_as(Server::Kube, &store.endpoints(), &["--storage-media-type=application/json"])
        .await
        .expect("kube-apiserver");
    let ours = ApiServer::start(&store.endpoints(), &[]).await.expect("cairn-kube");
    let json = ["Content-Type: application/json"];
    let (code, body) = ours.request(
        "POST",
        "/api/v1/namespaces",
        &json,
        Some(r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"x"}}"#),
        10,
    );
    assert!(code == 201, "{code} {body}");
    for (writer, reader, name) in [(&ours, &real, "by-cairn-kube"), (&real, &ours, "by-kube-apiserver")] {
        let cm = format!(
            r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}","namespace":"x","labels":{{"w":"{name}"}}}},"data":{{"k":"v"}}}}"#
        );
        let (code, body) = writer.request("POST", "/api/v1/namespaces/x/configmaps", &json, Some(&cm), 10);
        assert_eq!(code, 201, "{name}: {body}");
        let (code, read) = reader.get(&format!("/api/v1/namespaces/x/configmaps/{name}"));
        assert_eq!(code, 200, "{name} read by the other: {read}");
        let (written, read): (Value, Value) =
            (serde_json::from_str(&body).expect("json"), serde_json::from_str(&read).expect("json"));
        for field in
            ["/metadata/uid", "/metadata/resourceVersion", "/metadata/creationTimestamp", "/metadata/labels", "/data"]
        {
            assert_eq!(written.pointer(field), read.pointer(field), "{name}: {field}");
        }
        let (code, listed) = reader.get(&format!("/api/v1/namespaces/x/configmaps?labelSelector=w%3D{name}"));
        assert!(code == 200 && listed.contains(name), "{name} listed by the other: {listed}");
        let patch = r#"{"data":{"k":"patched"}}"#;
        let (code, patched) = reader.request(
            "PATCH",
            &format!("/api/v1/namespaces/x/configmaps/{name}"),
            &["Content-Type: application/merge-patch+json"],
            Some(patch),
            10,
        );
        assert_eq!(code, 200, "{name} patched by the other: {patched}");
        let (_, again) = writer.get(&format!("/api/v1/namespaces/x/configmaps/{name}"));
        assert!(again.contains("\"patched\""), "{name}: the writer reads the other's update: {again}");
    }
}
