//! The namespace controller: a namespace being deleted has its content
//! deleted, resource by resource as discovery lists them; once nothing is
//! left, the `kubernetes` finalizer is cleared through `finalize` and the API
//! server removes the namespace.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams};
use kube::discovery::{verbs, Discovery, Scope};
use kube::Api;
use serde_json::json;

use super::Context;
use crate::client::{self, writes::Op, Write};

const FINALIZER: &str = "kubernetes";

/// Every namespaced resource that can be deleted as a collection.
async fn deletable(client: &kube::Client) -> Result<Vec<ApiResource>, kube::Error> {
    let discovery = Discovery::new(client.clone()).run().await?;
    let mut resources = Vec::new();
    for group in discovery.groups() {
        for (resource, capabilities) in group.recommended_resources() {
            if capabilities.scope == Scope::Namespaced && capabilities.supports_operation(verbs::DELETE_COLLECTION) {
                resources.push(resource);
            }
        }
    }
    Ok(resources)
}

/// Deletes what is left in the namespace; returns how many objects remain.
async fn empty(client: &kube::Client, resources: &[ApiResource], namespace: &str) -> Result<usize, kube::Error> {
    let mut remaining = 0;
    for resource in resources {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, resource);
        let listed = api.list(&ListParams::default().limit(500)).await?;
        if listed.items.is_empty() {
            continue;
        }
        remaining += listed.items.len();
        if listed.items.iter().any(|o| o.metadata.deletion_timestamp.is_none()) {
            api.delete_collection(&DeleteParams::background(), &ListParams::default()).await?;
        }
    }
    Ok(remaining)
}

fn terminating(namespace: &Namespace) -> bool {
    namespace.metadata.deletion_timestamp.is_some()
        && namespace.spec.as_ref().and_then(|s| s.finalizers.as_ref()).is_some_and(|f| f.iter().any(|f| f == FINALIZER))
}

/// The `finalize` write that clears our finalizer.
pub fn finalize(namespace: &Namespace) -> Write {
    let name = namespace.metadata.name.clone().unwrap_or_default();
    let mut object = super::object_json(namespace);
    let rest: Vec<String> = namespace
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f != FINALIZER)
        .collect();
    object["spec"]["finalizers"] = json!(rest);
    Write::new::<Namespace>("", Op::Replace { name, object, subresource: Some("finalize") })
}

pub async fn run(ctx: Arc<Context>) {
    let mut resources = Vec::new();
    let mut wake = ctx.caches.namespaces.changes().subscribe();
    loop {
        client::informer::next_pass(&mut wake, Duration::from_secs(5)).await;
        let doomed: Vec<Arc<Namespace>> =
            ctx.caches.namespaces.state().into_iter().filter(|n| terminating(n)).collect();
        if doomed.is_empty() {
            continue;
        }
        if resources.is_empty() {
            match deletable(&ctx.client).await {
                Ok(found) => resources = found,
                Err(error) => {
                    tracing::warn!(%error, "discovery failed; namespaces wait");
                    continue;
                }
            }
        }
        for namespace in doomed {
            let name = namespace.metadata.name.clone().unwrap_or_default();
            match empty(&ctx.client, &resources, &name).await {
                Ok(0) => {
                    client::writes::perform_all(&ctx.client, "namespace", vec![finalize(&namespace)]).await;
                }
                Ok(left) => tracing::debug!(namespace = %name, left, "namespace content still being deleted"),
                Err(error) => tracing::warn!(namespace = %name, %error, "deleting namespace content failed"),
            }
        }
    }
}
