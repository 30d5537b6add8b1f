//! The ServiceAccount controller: a `default` ServiceAccount in every active namespace.

use std::sync::Arc;

use k8s_openapi::api::core::v1::ServiceAccount;
use serde_json::json;

use super::Context;
use crate::client::Write;

pub fn reconcile(
    namespaces: &[Arc<k8s_openapi::api::core::v1::Namespace>],
    accounts: &[Arc<ServiceAccount>],
) -> Vec<Write> {
    namespaces
        .iter()
        .filter(|ns| ns.metadata.deletion_timestamp.is_none())
        .filter_map(|ns| ns.metadata.name.clone())
        .filter(|name| {
            !accounts
                .iter()
                .any(|a| a.metadata.namespace.as_ref() == Some(name) && a.metadata.name.as_deref() == Some("default"))
        })
        .map(|name| Write::create::<ServiceAccount>(&name, json!({"metadata": {"name": "default", "namespace": name}})))
        .collect()
}

pub async fn pass(ctx: Arc<Context>) -> Vec<Write> {
    reconcile(&ctx.caches.namespaces.state(), &ctx.caches.service_accounts.state())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t10_only_namespaces_without_a_default_account_get_one() {
        let ns = |name: &str, deleting: bool| {
            let mut v = json!({"metadata": {"name": name}});
            if deleting {
                v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
            }
            Arc::new(serde_json::from_value(v).expect("ns"))
        };
        let sa: Arc<ServiceAccount> =
            Arc::new(serde_json::from_value(json!({"metadata": {"name": "default", "namespace": "a"}})).expect("sa"));
        let writes = reconcile(&[ns("a", false), ns("b", false), ns("c", true)], &[sa]);
        assert_eq!(writes.iter().map(|w| w.namespace.clone().unwrap_or_default()).collect::<Vec<_>>(), vec!["b"]);
    }
}
