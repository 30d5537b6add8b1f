//! Watches across failures: a store leader killed and an API server restarted
//! under an open watcher; a compacted resourceVersion answered with 410
//! inside the stream; kube-rs's watcher relisting by itself.

use std::time::Duration;

use cairn_testkit::Flavor;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::watcher;
use serde_json::json;

use crate::{cluster_and_apiserver, kube_client};

fn counter_of(cm: &ConfigMap) -> Option<u64> {
    cm.data.as_ref()?.get("i")?.parse().ok()
}

/// Retries a write until it lands, across store elections and API server restarts.
async fn write(maps: &Api<ConfigMap>, i: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let patch = Patch::Merge(json!({"data": {"i": i.to_string()}}));
        match maps.patch("w", &PatchParams::default(), &patch).await {
            Ok(_) => return,
            Err(err) => {
                assert!(tokio::time::Instant::now() < deadline, "write {i} never landed: {err}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[tokio::test]
async fn t40_a_watcher_sees_every_change_once_across_leader_kill_and_apiserver_restart() {
    let (mut cluster, mut api) = cluster_and_apiserver(Flavor::Cairn, 3, &[]).await.expect("start");
    let client = kube_client(&api).await.expect("client");
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let created = maps
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "w"}, "data": {"i": "0"}}))
                .expect("well-formed test data"),
        )
        .await
        .expect("create");
    let start = created.metadata.resource_version.expect("a resourceVersion");

    // An informer-style watcher: on any break, watch again from the last resourceVersion.
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let watched = maps.clone();
    let watcher_task = tokio::spawn(async move {
        let mut last = start;
        loop {
            let params = WatchParams::default().timeout(60);
            if let Ok(stream) = watched.watch(&params, &last).await {
                let mut stream = stream.boxed();
                while let Ok(Some(event)) = stream.try_next().await {
                    match event {
                        WatchEvent::Added(cm) | WatchEvent::Modified(cm) => {
                            last = cm.metadata.resource_version.clone().unwrap_or(last);
                            if let Some(i) = counter_of(&cm) {
                                let _ = seen_tx.send(i);
                            }
                        }
                        WatchEvent::Bookmark(b) => last = b.metadata.resource_version,
                        WatchEvent::Error(e) => panic!("watch error: {e:?}"),
                        WatchEvent::Deleted(_) => {}
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });

    for i in 1..=60u64 {
        if i == 20 {
            let leader = cluster.leader_index().await.expect("a leader");
            cluster.members[leader].kill();
        }
        if i == 40 {
            api.restart().await.expect("API server restarts");
        }
        write(&maps, i).await;
    }
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.last() != Some(&60) {
        match tokio::time::timeout_at(deadline, seen_rx.recv()).await {
            Ok(Some(i)) => seen.push(i),
            _ => panic!("the watcher stopped at {seen:?}"),
        }
    }
    assert_eq!(seen, (1..=60).collect::<Vec<u64>>(), "every change once, in order");
    watcher_task.abort();
}

#[tokio::test]
async fn t41_compacted_resource_versions_get_410_and_kube_rs_relists() {
    let (cluster, mut api) = cluster_and_apiserver(Flavor::Cairn, 1, &[]).await.expect("start");
    let client = kube_client(&api).await.expect("client");
    let maps: Api<ConfigMap> = Api::namespaced(client, "default");
    let old = maps
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "old"}})).expect("well-formed test data"),
        )
        .await
        .expect("create");
    let old_rv = old.metadata.resource_version.expect("rv");

    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let watched = maps.clone();
    let watcher_task = tokio::spawn(async move {
        let mut stream = watcher(watched, watcher::Config::default()).boxed();
        loop {
            match stream.next().await {
                Some(Ok(watcher::Event::Apply(cm) | watcher::Event::InitApply(cm))) => {
                    let _ = seen_tx.send(cm.metadata.name.unwrap_or_default());
                }
                Some(_) => {}
                None => return,
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;

    // While the API server is down, the store moves on and compacts.
    api.kill();
    let mut store = cairn_testkit::client(&cluster.endpoints()[0]).await;
    for i in 0..5 {
        let key = format!("/registry/configmaps/default/during-{i}");
        let value = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("during-{i}"), "namespace": "default", "uid": format!("u{i}")}});
        store.put(key, value.to_string(), None).await.expect("put");
    }
    let revision = store.get("x", None).await.expect("get").header().expect("header").revision();
    store.compact(revision, None).await.expect("compact");
    api.restart().await.expect("restart");

    // A watch from before the compaction: 200, then an ERROR event with 410 Expired.
    let (code, body) =
        api.get(&format!("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={old_rv}&timeoutSeconds=2"));
    assert_eq!(code, 200, "{body}");
    let first: serde_json::Value = serde_json::from_str(body.lines().next().unwrap_or("{}")).expect("a JSON event");
    assert_eq!(first["type"], "ERROR", "{body}");
    assert_eq!(first["object"]["code"], 410);
    assert_eq!(first["object"]["reason"], "Expired");

    // kube-rs's watcher got the same 410 and listed again, finding what was written meanwhile.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match tokio::time::timeout_at(deadline, seen_rx.recv()).await {
            Ok(Some(name)) if name == "during-4" => break,
            Ok(Some(_)) => {}
            other => panic!("the kube-rs watcher never relisted: {other:?}"),
        }
    }
    watcher_task.abort();
}

#[tokio::test]
async fn t42_continue_tokens_expire_with_compaction_and_watches_get_bookmarks() {
    let (cluster, api) = cluster_and_apiserver(Flavor::Cairn, 1, &[]).await.expect("start");
    let client = kube_client(&api).await.expect("client");
    let maps: Api<ConfigMap> = Api::namespaced(client, "default");
    for name in ["a", "b", "c"] {
        maps.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name}})).expect("a ConfigMap"),
        )
        .await
        .expect("create");
    }
    let (code, body) = api.get("/api/v1/namespaces/default/configmaps?limit=1");
    assert_eq!(code, 200);
    let page: serde_json::Value = serde_json::from_str(&body).expect("a list");
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(page["metadata"]["remainingItemCount"], 2);
    let token = page["metadata"]["continue"].as_str().expect("a continue token").to_string();
    let (code, next) = api.get(&format!("/api/v1/namespaces/default/configmaps?limit=5&continue={token}"));
    assert_eq!(code, 200, "{next}");

    maps.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "d"}})).expect("a ConfigMap"),
    )
    .await
    .expect("create");
    let mut store = cairn_testkit::client(&cluster.endpoints()[0]).await;
    let revision = store.get("x", None).await.expect("get").header().expect("header").revision();
    store.compact(revision, None).await.expect("compact");
    let (code, expired) = api.get(&format!("/api/v1/namespaces/default/configmaps?limit=5&continue={token}"));
    assert_eq!(code, 410, "{expired}");
    let status: serde_json::Value = serde_json::from_str(&expired).expect("a Status");
    assert_eq!(status["reason"], "Expired");
    assert!(
        status["message"].as_str().unwrap_or("").starts_with("The provided continue parameter is too old"),
        "{status}"
    );

    // A quiet watch that allows bookmarks gets one, carrying the current revision.
    let (code, events) = api.get_with_timeout(
        "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=0&allowWatchBookmarks=true&timeoutSeconds=12",
        20,
    );
    assert_eq!(code, 200);
    let bookmark = events
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["type"] == "BOOKMARK")
        .expect("a BOOKMARK event");
    let at: i64 =
        bookmark["object"]["metadata"]["resourceVersion"].as_str().and_then(|r| r.parse().ok()).expect("a revision");
    assert!(at >= revision - 1, "bookmark at {at}, store at {revision}");
}
