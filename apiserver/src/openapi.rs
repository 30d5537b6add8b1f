//! The OpenAPI documents kube-apiserver 1.33 publishes, trimmed to the
//! resources served here (apiserver/openapi/trim.py; Apache-2.0, from the
//! k8s.io/kubernetes v1.33.7 module, api/openapi-spec/). They drive
//! `kubectl explain`, client-side apply, validation and strategic merge patches.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

use serde_json::{json, Map, Value};

pub const V2: &str = include_str!("../openapi/v2.json");

/// The v3 documents by their path under /openapi/v3.
pub const V3: &[(&str, &str)] = &[
    ("api/v1", include_str!("../openapi/v3/api__v1_openapi.json")),
    ("apis/apps/v1", include_str!("../openapi/v3/apis__apps__v1_openapi.json")),
    ("apis/batch/v1", include_str!("../openapi/v3/apis__batch__v1_openapi.json")),
    ("apis/coordination.k8s.io/v1", include_str!("../openapi/v3/apis__coordination.k8s.io__v1_openapi.json")),
    ("apis/discovery.k8s.io/v1", include_str!("../openapi/v3/apis__discovery.k8s.io__v1_openapi.json")),
    ("apis/scheduling.k8s.io/v1", include_str!("../openapi/v3/apis__scheduling.k8s.io__v1_openapi.json")),
    (
        "apis/rbac.authorization.k8s.io/v1",
        include_str!("../openapi/v3/apis__rbac.authorization.k8s.io__v1_openapi.json"),
    ),
    ("apis/certificates.k8s.io/v1", include_str!("../openapi/v3/apis__certificates.k8s.io__v1_openapi.json")),
];

pub fn hash(document: &str) -> String {
    let mut hasher = DefaultHasher::new();
    document.hash(&mut hasher);
    format!("{:016X}", hasher.finish())
}

/// The /openapi/v3 index: each group version with its content-addressed URL.
pub fn v3_index() -> Value {
    let mut paths = Map::new();
    for (path, document) in V3 {
        paths.insert(
            path.to_string(),
            json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={}", hash(document))}),
        );
    }
    json!({"paths": paths})
}

pub fn v3_document(path: &str) -> Option<&'static str> {
    V3.iter().find(|(p, _)| *p == path).map(|(_, d)| *d)
}

/// Every component schema of the v3 documents, by name.
pub fn schemas() -> &'static Map<String, Value> {
    static SCHEMAS: OnceLock<Map<String, Value>> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        let mut all = Map::new();
        for (_, document) in V3 {
            let Ok(doc) = serde_json::from_str::<Value>(document) else { continue };
            if let Some(schemas) = doc.pointer("/components/schemas").and_then(Value::as_object) {
                for (name, schema) in schemas {
                    all.entry(name.clone()).or_insert_with(|| schema.clone());
                }
            }
        }
        all
    })
}

/// Follows `$ref` and single-element `allOf` to the schema a property points at.
pub fn resolve(node: &Value) -> Option<&'static Value> {
    let reference = node
        .get("$ref")
        .or_else(|| node.get("allOf").and_then(|a| a.get(0)).and_then(|first| first.get("$ref")))
        .and_then(Value::as_str)?;
    schemas().get(reference.rsplit('/').next()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_parse_and_carry_patch_extensions() {
        let pod_spec = schemas().get("io.k8s.api.core.v1.PodSpec").expect("PodSpec");
        let containers = &pod_spec["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert!(resolve(&containers["items"]).is_some());
        assert!(serde_json::from_str::<Value>(V2).is_ok());
        assert_eq!(v3_index()["paths"].as_object().map(|p| p.len()), Some(V3.len()));
    }
}
