//! The end of a run: heal, time the convergence of every Deployment and its
//! Endpoints, list what the workload made, then quiet the cluster and wait
//! until every watcher reached the store's last change.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use cairn_chaos::kube::{check, Convergence, Present};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Pod, Service};
use kube::api::ListParams;
use kube::{Api, Resource, ResourceExt};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::cluster::Parts;
use super::observe::StoreWatch;
use super::workload::{key, NAMESPACE};
use super::{unix_us, Shared};

pub struct End {
    pub cluster: Arc<Mutex<Parts>>,
    pub recorder: Shared,
    pub client: kube::Client,
    pub store_watch: StoreWatch,
    pub converge_limit: Duration,
}

impl End {
    pub async fn gather(&self) {
        let mut errors = Vec::new();
        if let Err(err) = self.cluster.lock().await.store.wait_healthy(Duration::from_secs(60)).await {
            errors.push(format!("the store is not healthy at the end: {err:#}"));
        }
        let convergence = self.converge().await;
        self.recorder.record().convergence = Some(convergence);
        match tokio::time::timeout(Duration::from_secs(60), self.present()).await {
            Ok(Ok(present)) => self.recorder.record().end.present = Some(present),
            Ok(Err(err)) => errors.push(format!("listing the workload's objects: {err:#}")),
            Err(_) => errors.push("listing the workload's objects took over 60 s".into()),
        }
        self.cluster.lock().await.stop_components();
        if let Err(err) = self.fence().await {
            errors.push(format!("{err:#}"));
        }
        let panics = self.cluster.lock().await.panics();
        let mut run = self.recorder.record();
        run.end.panics = panics;
        run.end.errors.extend(errors);
    }

    /// Polls until every Deployment has its replicas available and its
    /// Service's Endpoints name exactly its ready pods, or the limit passes.
    async fn converge(&self) -> Convergence {
        let healed_us = unix_us();
        let deadline = Instant::now() + self.converge_limit;
        loop {
            let state = match tokio::time::timeout(Duration::from_secs(10), self.shortfall()).await {
                Ok(Ok(None)) => {
                    return Convergence { healed_us, converged_us: Some(unix_us()), state: "converged".into() }
                }
                Ok(Ok(Some(short))) => short,
                Ok(Err(err)) => format!("reading the cluster: {err:#}"),
                Err(_) => "reading the cluster took over 10 s".into(),
            };
            if Instant::now() > deadline {
                return Convergence { healed_us, converged_us: None, state };
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// What is not converged yet, if anything.
    async fn shortfall(&self) -> Result<Option<String>> {
        let list = ListParams::default();
        let deployments = Api::<Deployment>::namespaced(self.client.clone(), NAMESPACE).list(&list).await?;
        let pods = Api::<Pod>::namespaced(self.client.clone(), NAMESPACE).list(&list).await?;
        let endpoints = Api::<Endpoints>::namespaced(self.client.clone(), NAMESPACE).list(&list).await?;
        let mut ready_ips: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for pod in pods.items.iter().filter(|pod| pod.metadata.deletion_timestamp.is_none()) {
            let app = pod.labels().get("app").cloned().unwrap_or_default();
            let status = pod.status.clone().unwrap_or_default();
            let ready = status.conditions.unwrap_or_default().iter().any(|c| c.type_ == "Ready" && c.status == "True");
            if ready && status.phase.as_deref() == Some("Running") {
                ready_ips.entry(app).or_default().insert(status.pod_ip.unwrap_or_default());
            }
        }
        for deployment in &deployments.items {
            let name = deployment.name_any();
            if deployment.metadata.deletion_timestamp.is_some() {
                return Ok(Some(format!("deployment {name} is still being deleted")));
            }
            let wanted = deployment.spec.as_ref().and_then(|spec| spec.replicas).unwrap_or(1);
            let status = deployment.status.clone().unwrap_or_default();
            let generation = deployment.metadata.generation.unwrap_or(0);
            if status.observed_generation.unwrap_or(0) < generation
                || status.available_replicas.unwrap_or(0) != wanted
                || status.updated_replicas.unwrap_or(0) != wanted
                || status.replicas.unwrap_or(0) != wanted
            {
                return Ok(Some(format!("deployment {name}: {wanted} wanted, status {status:?}")));
            }
            let running = ready_ips.get(&name).cloned().unwrap_or_default();
            if running.len() != wanted as usize {
                return Ok(Some(format!(
                    "deployment {name}: {wanted} wanted, {} pods running and ready",
                    running.len()
                )));
            }
            let Some(service_endpoints) = endpoints.items.iter().find(|e| e.name_any() == name) else { continue };
            let addresses: BTreeSet<String> = service_endpoints
                .subsets
                .iter()
                .flatten()
                .flat_map(|subset| subset.addresses.iter().flatten())
                .map(|address| address.ip.clone())
                .collect();
            if addresses != running {
                return Ok(Some(format!("endpoints {name} {addresses:?}, ready pods {running:?}")));
            }
        }
        Ok(None)
    }

    /// The workload's kinds of object as they are now: what the lost-object checker holds creates to.
    async fn present(&self) -> Result<Vec<Present>> {
        let mut present = Vec::new();
        present.extend(listed::<ConfigMap>(&self.client, "configmaps").await?);
        present.extend(listed::<Deployment>(&self.client, "deployments").await?);
        present.extend(listed::<Service>(&self.client, "services/specs").await?);
        Ok(present)
    }

    /// With the components stopped, waits until the store's watch reached the
    /// current revision and each watcher's view equals the store's.
    async fn fence(&self) -> Result<()> {
        let mut client =
            self.cluster.lock().await.store.any_client(None, cairn_testkit::cluster::ADMIN_TIMEOUT).await?;
        let revision = client.get("/registry/", None).await?.header().map_or(0, |header| header.revision());
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.store_watch.reached.load(Ordering::Relaxed) < revision {
            if Instant::now() > deadline {
                return Err(anyhow!("the store's watch never reached revision {revision}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let behind = self.behind();
            if behind.is_empty() || Instant::now() > deadline {
                let run = &mut self.recorder.record();
                let resources: Vec<String> = run.watches.iter().map(|log| log.resource.clone()).collect();
                run.end.watchers_caught_up =
                    resources.into_iter().map(|resource| (resource.clone(), !behind.contains(&resource))).collect();
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The resources whose watcher's current view differs from the store's.
    fn behind(&self) -> Vec<String> {
        let run = self.recorder.record();
        run.watches.iter().filter(|log| !check::caught_up(&run.store, log)).map(|log| log.resource.clone()).collect()
    }
}

async fn listed<K>(client: &kube::Client, folder: &str) -> Result<Vec<Present>>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    let list = Api::<K>::namespaced(client.clone(), NAMESPACE).list(&ListParams::default()).await?;
    Ok(list
        .items
        .iter()
        .map(|object| Present { key: key(folder, &object.name_any()), uid: object.uid().unwrap_or_default() })
        .collect())
}
