//! Two API server replicas on one store: a write through one is seen by a
//! watch through the other, concurrent Service creates on both never get the
//! same ClusterIP, and a resourceVersion from one is served by the other.

use std::collections::HashSet;
use std::time::Duration;

use cairn_testkit::kube::ApiServer;
use cairn_testkit::{Flavor, Options};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::api::{Api, ListParams, PostParams, VersionMatch, WatchEvent, WatchParams};
use serde_json::json;

use crate::kube_client;

#[tokio::test]
async fn t50_two_replicas_share_one_store() {
    let cluster = Options::new(Flavor::Cairn, 3).start().await.expect("cluster");
    // Cairn's watch progress answers are safe (the default asks etcd 3.5.13 or newer).
    let progress = ["--etcd-watch-progress-requests=true"];
    let first = ApiServer::start(&cluster.endpoints(), &progress).await.expect("first API server");
    let second = ApiServer::start(&cluster.endpoints(), &progress).await.expect("second API server");
    let one = kube_client(&first).await.expect("client");
    let two = kube_client(&second).await.expect("client");

    let watched: Api<ConfigMap> = Api::namespaced(two.clone(), "default");
    let mut stream = watched.watch(&WatchParams::default().timeout(30), "0").await.expect("watch").boxed();
    let written: Api<ConfigMap> = Api::namespaced(one.clone(), "default");
    written
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "across"}})).expect("well-formed test data"),
        )
        .await
        .expect("create");
    let seen = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(event)) = stream.try_next().await {
            if let WatchEvent::Added(cm) = event {
                if cm.metadata.name.as_deref() == Some("across") {
                    return true;
                }
            }
        }
        false
    })
    .await;
    assert_eq!(seen, Ok(true), "a write through one replica is seen by a watch through the other");

    let mut creates = Vec::new();
    for i in 0..24 {
        let client = if i % 2 == 0 { one.clone() } else { two.clone() };
        creates.push(tokio::spawn(async move {
            let services: Api<Service> = Api::namespaced(client, "default");
            let service = serde_json::from_value(
                json!({"metadata": {"name": format!("s{i}")}, "spec": {"ports": [{"port": 80}]}}),
            )
            .expect("well-formed test data");
            services.create(&PostParams::default(), &service).await.expect("create service")
        }));
    }
    let mut ips = HashSet::new();
    for create in creates {
        let service = create.await.expect("task");
        let ip = service.spec.and_then(|s| s.cluster_ip).expect("a ClusterIP");
        assert!(ip.starts_with("10.0.0."), "{ip} is outside --service-cluster-ip-range");
        assert!(ips.insert(ip.clone()), "{ip} was handed out twice");
    }
    assert!(!ips.contains("10.0.0.1"), "10.0.0.1 belongs to the kubernetes Service");

    // A resourceVersion from one replica, for a resource that has not changed
    // since on the other: its watch cache must catch up by asking the store
    // for progress, not answer 504 "Too large resource version" after 3 s.
    let quiet = written
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "newest"}})).expect("well-formed test data"),
        )
        .await
        .expect("create");
    let newest = quiet.metadata.resource_version.expect("a resourceVersion");
    let secrets: Api<Secret> = Api::namespaced(two.clone(), "default");
    let listed = secrets.list(&ListParams::default().at(&newest).matching(VersionMatch::NotOlderThan)).await;
    assert!(listed.is_ok(), "a list at {newest} through the other replica: {listed:?}");
    let events: Vec<_> = secrets
        .watch(&WatchParams::default().timeout(1), &newest)
        .await
        .expect("a watch from a newer revision starts")
        .collect()
        .await;
    assert!(events.iter().all(Result::is_ok), "a watch from {newest} through the other replica: {events:?}");
}
