//! The steady workload: Deployments with a Service each, created, scaled and
//! deleted, and a stream of ConfigMaps. Every create and delete is recorded
//! with its outcome; nothing is retried, so an outcome is one request's.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cairn_chaos::kube::{Create, CreateOutcome, Delete};
use cairn_chaos::schedule::Rng;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::{unix_us, Shared};

pub const NAMESPACE: &str = "chaos";
/// One request's bound: past it, the outcome is unknown.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Deployments kept alive at a time: fewer, and one is created; more than
/// three over, and the oldest goes; between, a create, a scale or a delete.
const LIVE_DEPLOYMENTS: usize = 6;

pub fn key(resource_folder: &str, name: &str) -> String {
    format!("/registry/{resource_folder}/{NAMESPACE}/{name}")
}

/// Creates the namespace, then starts the workers.
pub async fn start(
    client: kube::Client,
    recorder: Shared,
    rng: Rng,
    toleration: i64,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": NAMESPACE}}))?;
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &namespace).await?;
    let deployments =
        Deployments { client: client.clone(), recorder: recorder.clone(), rng, toleration, live: Vec::new() };
    Ok(vec![tokio::spawn(deployments.run()), tokio::spawn(config_maps(client, recorder))])
}

/// Sends one create and records its outcome; the object, if acknowledged.
async fn create<K>(recorder: &Shared, api: &Api<K>, resource: &str, folder: &str, object: K) -> Option<K>
where
    K: Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let key = key(folder, &object.name_any());
    let invoked_us = unix_us();
    let answer = bounded(api.create(&PostParams::default(), &object)).await;
    let (outcome, created) = match answer {
        Ok(created) => {
            let uid = created.uid().unwrap_or_default();
            let revision = created.resource_version().and_then(|rv| rv.parse().ok()).unwrap_or(0);
            (CreateOutcome::Acknowledged { uid, revision }, Some(created))
        }
        Err(Answer::Refused(why)) => (CreateOutcome::Refused(why), None),
        Err(Answer::Unknown(why)) => (CreateOutcome::Unknown(why), None),
    };
    recorder.record().creates.push(Create { resource: resource.into(), key, invoked_us, outcome });
    created
}

async fn delete<K>(recorder: &Shared, api: &Api<K>, folder: &str, name: &str)
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let sent_us = unix_us();
    let acknowledged = bounded(api.delete(name, &DeleteParams::background())).await.is_ok();
    recorder.record().deletes.push(Delete { key: key(folder, name), sent_us, acknowledged });
}

enum Answer {
    /// A 4xx other than 429: certainly not done.
    Refused(String),
    Unknown(String),
}

async fn bounded<T>(call: impl Future<Output = Result<T, kube::Error>>) -> Result<T, Answer> {
    match tokio::time::timeout(REQUEST_TIMEOUT, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(kube::Error::Api(status))) if (400..500).contains(&status.code) && status.code != 429 => {
            Err(Answer::Refused(format!("{} {}", status.code, status.message)))
        }
        Ok(Err(error)) => Err(Answer::Unknown(error.to_string())),
        Err(_) => Err(Answer::Unknown(format!("no answer within {REQUEST_TIMEOUT:?}"))),
    }
}

struct Deployments {
    client: kube::Client,
    recorder: Shared,
    rng: Rng,
    toleration: i64,
    /// Acknowledged Deployments, oldest first.
    live: Vec<String>,
}

impl Deployments {
    async fn run(mut self) {
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), NAMESPACE);
        let services: Api<Service> = Api::namespaced(self.client.clone(), NAMESPACE);
        let mut tick = tokio::time::interval(Duration::from_millis(1500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for number in 0u64.. {
            tick.tick().await;
            if self.recorder.stopping() {
                return;
            }
            // While a node is cut off nothing is scaled or deleted: what leaves
            // it is the node controller's doing.
            let quiet = self.recorder.quiet.load(Ordering::Relaxed);
            let choice = match self.live.len() {
                n if n < LIVE_DEPLOYMENTS => 0,
                _ if quiet => continue,
                n if n > LIVE_DEPLOYMENTS + 3 => 2,
                _ => self.rng.below(3),
            };
            if choice == 0 {
                let name = format!("d-{number}");
                let replicas = 1 + self.rng.below(3) as i64;
                if create(&self.recorder, &deployments, "deployments", "deployments", self.deployment(&name, replicas))
                    .await
                    .is_some()
                {
                    self.live.push(name.clone());
                }
                let _ = create(&self.recorder, &services, "services", "services/specs", service(&name)).await;
                continue;
            }
            if choice == 1 {
                let name = self.live[self.rng.below(self.live.len() as u64) as usize].clone();
                let replicas = 1 + self.rng.below(3) as i64;
                let patch = Patch::Merge(json!({"spec": {"replicas": replicas}}));
                let _ = bounded(deployments.patch(&name, &PatchParams::default(), &patch)).await;
            } else {
                let name = self.live.remove(0);
                delete(&self.recorder, &deployments, "deployments", &name).await;
                delete(&self.recorder, &services, "services/specs", &name).await;
            }
        }
    }

    fn deployment(&self, name: &str, replicas: i64) -> Deployment {
        let tolerate = |key: &str| json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": self.toleration});
        let value = json!({
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "tolerations": [tolerate("node.kubernetes.io/unreachable"), tolerate("node.kubernetes.io/not-ready")],
                        "containers": [{
                            "name": "echo",
                            "image": "cairn.io/echo",
                            "ports": [{"containerPort": 8080, "name": "http"}],
                            "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
                        }],
                    },
                },
            },
        });
        serde_json::from_value(value).unwrap_or_default()
    }
}

fn service(name: &str) -> Service {
    let value = json!({
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": "http"}]},
    });
    serde_json::from_value(value).unwrap_or_default()
}

/// A ConfigMap every 250 ms, and one of the earlier ones deleted every second.
async fn config_maps(client: kube::Client, recorder: Shared) {
    let api: Api<ConfigMap> = Api::namespaced(client, NAMESPACE);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut live = Vec::new();
    for number in 0u64.. {
        tick.tick().await;
        if recorder.stopping() {
            return;
        }
        let name = format!("cm-{number}");
        let map: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": name}, "data": {"n": number.to_string()}}))
                .unwrap_or_default();
        if create(&recorder, &api, "configmaps", "configmaps", map).await.is_some() {
            live.push(name);
        }
        if number % 4 == 3 && live.len() > 20 {
            let victim = live.remove(live.len() / 2);
            delete(&recorder, &api, "configmaps", &victim).await;
        }
    }
}
