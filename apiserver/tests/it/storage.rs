//! What the API server writes is kube-apiserver's layout, read back with the
//! real etcdctl: keys, JSON values without resourceVersion, mod_revision as
//! resourceVersion, and the compactors' `compact_rev_key`; and the store
//! reached over mTLS with kube-apiserver's `--etcd-*` flags.

use std::time::Duration;

use base64::Engine;
use cairn_testkit::kube::ApiServer;
use cairn_testkit::pki::ClusterTls;
use cairn_testkit::{etcdctl_ok, net, Flavor, Options};
use serde_json::Value;

use crate::{cluster_and_apiserver, eventually, ok, ok_stdin};

fn etcdctl_json(endpoints: &[&str], key: &str) -> Value {
    let out = etcdctl_ok(endpoints, &["get", key, "-w", "json"]);
    serde_json::from_str(&out).expect("etcdctl -w json")
}

#[tokio::test]
async fn t20_keys_and_values_are_kube_apiservers() {
    let (cluster, api) =
        cluster_and_apiserver(Flavor::Cairn, 3, &["--etcd-compaction-interval=2s"]).await.expect("start");
    let endpoints = cluster.endpoints();
    let endpoints: Vec<&str> = endpoints.iter().map(String::as_str).collect();
    ok_stdin(
        &api,
        &["create", "-f", "-"],
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","namespace":"default"},"data":{"k":"v"}}"#,
    );
    ok_stdin(&api, &["create", "-f", "-"], r#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"n1"}}"#);
    ok_stdin(
        &api,
        &["create", "-f", "-"],
        r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"s","namespace":"default"},"spec":{"ports":[{"port":80}]}}"#,
    );

    let read = etcdctl_json(&endpoints, "/registry/configmaps/default/c");
    let kv = &read["kvs"][0];
    let value = base64::engine::general_purpose::STANDARD
        .decode(kv["value"].as_str().expect("well-formed test data"))
        .expect("well-formed test data");
    let stored: Value = serde_json::from_slice(&value).expect("values are JSON");
    assert_eq!(stored["kind"], "ConfigMap");
    assert_eq!(stored["apiVersion"], "v1");
    assert_eq!(stored["data"]["k"], "v");
    assert!(stored["metadata"].get("resourceVersion").is_none(), "stored objects carry no resourceVersion");
    let rv = ok(&api, &["get", "cm", "c", "-o", "jsonpath={.metadata.resourceVersion}"]);
    assert_eq!(rv, kv["mod_revision"].to_string(), "resourceVersion is the key's mod_revision");

    let keys = etcdctl_ok(&endpoints, &["get", "/registry/", "--prefix", "--keys-only"]);
    for key in [
        "/registry/minions/n1",
        "/registry/services/specs/default/s",
        "/registry/services/specs/default/kubernetes",
        "/registry/services/endpoints/default/kubernetes",
        "/registry/namespaces/kube-system",
        "/registry/priorityclasses/system-node-critical",
        "/registry/ranges/serviceips",
    ] {
        assert!(keys.lines().any(|l| l == key), "{key} missing from:\n{keys}");
    }

    // A list's resourceVersion is the header revision.
    let list: Value =
        serde_json::from_str(&ok(&api, &["get", "--raw", "/api/v1/configmaps"])).expect("well-formed test data");
    let header =
        etcdctl_json(&endpoints, "/registry/none")["header"]["revision"].as_i64().expect("well-formed test data");
    let list_rv: i64 = list["metadata"]["resourceVersion"]
        .as_str()
        .expect("well-formed test data")
        .parse()
        .expect("well-formed test data");
    assert!(list_rv > 0 && list_rv <= header, "{list_rv} vs {header}");

    // An update that changes nothing writes nothing.
    let before = etcdctl_json(&endpoints, "/registry/configmaps/default/c")["kvs"][0]["mod_revision"].clone();
    ok(&api, &["label", "cm", "c", "x=y"]);
    ok(&api, &["label", "cm", "c", "x=y", "--overwrite"]);
    let after = etcdctl_json(&endpoints, "/registry/configmaps/default/c")["kvs"][0]["mod_revision"]
        .as_i64()
        .expect("well-formed test data");
    assert!(after > before.as_i64().expect("well-formed test data"), "the label was written");
    ok(&api, &["label", "cm", "c", "x=y", "--overwrite"]);
    let again = etcdctl_json(&endpoints, "/registry/configmaps/default/c")["kvs"][0]["mod_revision"]
        .as_i64()
        .expect("well-formed test data");
    assert_eq!(again, after, "a no-op update writes nothing");

    // Events live on a lease (--event-ttl).
    ok_stdin(
        &api,
        &["create", "-f", "-"],
        r#"{"apiVersion":"v1","kind":"Event","metadata":{"name":"e","namespace":"default"},"involvedObject":{"kind":"ConfigMap","name":"c","namespace":"default"},"reason":"R","message":"m"}"#,
    );
    let event = etcdctl_json(&endpoints, "/registry/events/default/e");
    assert!(event["kvs"][0]["lease"].as_i64().unwrap_or(0) != 0, "events carry a lease: {event}");

    // The compactors agree through compact_rev_key.
    assert!(
        eventually(Duration::from_secs(15), || etcdctl_json(&endpoints, "compact_rev_key")["kvs"][0]["version"]
            .as_i64()
            .unwrap_or(0)
            >= 2)
        .await,
        "compact_rev_key was not written twice"
    );
}

#[tokio::test]
async fn t21_the_api_server_reaches_a_store_with_client_cert_auth_over_mtls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_ca, tls) = ClusterTls::new(dir.path(), &net::loopback_ip()).expect("pki");
    let cluster = Options::new(Flavor::Cairn, 3).tls(tls.clone()).start().await.expect("a TLS store");
    let ca = format!("--etcd-cafile={}", tls.ca.display());
    let cert = format!("--etcd-certfile={}", tls.client.cert.display());
    let key = format!("--etcd-keyfile={}", tls.client.key.display());
    let api = ApiServer::start(&cluster.endpoints(), &[&ca, &cert, &key]).await.expect("the API server starts");
    ok(&api, &["create", "namespace", "secure"]);
    assert!(ok(&api, &["get", "namespace", "secure", "-o", "name"]).contains("namespace/secure"));
    let mut client = cluster.connect(cluster.members[2].endpoint(), Duration::from_secs(5)).await.expect("client");
    let stored = client.get("/registry/namespaces/secure", None).await.expect("get");
    assert_eq!(stored.kvs().len(), 1, "the namespace was written to the store over mTLS");
    drop(api);

    // Without a client certificate the store lets nobody in: the API server does not come up.
    let refused = tokio::time::timeout(Duration::from_secs(90), ApiServer::start(&cluster.endpoints(), &[&ca])).await;
    assert!(matches!(refused, Ok(Err(_))), "an API server without a client certificate came up");
}
