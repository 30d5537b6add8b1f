//! The four patch types kube-apiserver accepts. JSON patch and JSON merge
//! patch are RFC 6902 and 7386; the strategic merge patch merges lists by the
//! keys the OpenAPI extensions name. Server-side apply is in `apply`.

use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::openapi;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

pub const ACCEPTED: &str = "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml";

impl PatchType {
    pub fn from_content_type(content_type: &str) -> Result<PatchType, ApiError> {
        let media = content_type.split(';').next().unwrap_or("").trim();
        match media {
            "application/json-patch+json" => Ok(PatchType::Json),
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
            "application/apply-patch+yaml" => Ok(PatchType::Apply),
            _ => Err(ApiError::UnsupportedMediaType(format!("{ACCEPTED}, application/strategic-merge-patch+json"))),
        }
    }
}

/// Applies a JSON, merge or strategic patch; `schema` names the kind's OpenAPI schema.
pub fn apply(schema: &str, original: &Value, kind: PatchType, body: &[u8]) -> Result<Value, ApiError> {
    let patch: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("error decoding patch: {e}")))?;
    match kind {
        PatchType::Json => {
            let operations: json_patch::Patch = serde_json::from_value(patch)
                .map_err(|e| ApiError::BadRequest(format!("error decoding patch: {e}")))?;
            let mut doc = original.clone();
            json_patch::patch(&mut doc, &operations).map_err(|e| ApiError::PatchFailed(e.to_string()))?;
            Ok(doc)
        }
        PatchType::Merge => {
            if !patch.is_object() {
                return Err(ApiError::BadRequest("error decoding patch: a merge patch must be an object".into()));
            }
            let mut doc = original.clone();
            json_patch::merge(&mut doc, &patch);
            Ok(doc)
        }
        PatchType::Strategic => {
            let Value::Object(patch) = patch else {
                return Err(ApiError::BadRequest(
                    "error decoding patch: a strategic merge patch must be an object".into(),
                ));
            };
            let mut doc = original.clone();
            let schema = openapi::schemas().get(schema);
            strategic_merge(&mut doc, &patch, schema)?;
            Ok(doc)
        }
        PatchType::Apply => Err(ApiError::Internal("apply patches go through server-side apply".into())),
    }
}

/// The schema of property `name` in `schema`, with the property node that
/// carries the patch extensions.
fn property(schema: Option<&'static Value>, name: &str) -> (Option<&'static Value>, Option<&'static Value>) {
    let Some(schema) = schema else { return (None, None) };
    if let Some(node) = schema.get("properties").and_then(|p| p.get(name)) {
        return (openapi::resolve(node).or(Some(node)), Some(node));
    }
    if let Some(values) = schema.get("additionalProperties") {
        return (openapi::resolve(values).or(Some(values)), Some(values));
    }
    (None, None)
}

fn strategy(node: Option<&Value>) -> (Option<&str>, Option<&str>) {
    let Some(node) = node else { return (None, None) };
    (
        node.get("x-kubernetes-patch-strategy").and_then(Value::as_str),
        node.get("x-kubernetes-patch-merge-key").and_then(Value::as_str),
    )
}

fn strip_directives(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter().filter(|(k, _)| !k.starts_with('$')).map(|(k, v)| (k.clone(), strip_directives(v))).collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

fn strategic_merge(
    doc: &mut Value,
    patch: &Map<String, Value>,
    schema: Option<&'static Value>,
) -> Result<(), ApiError> {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            *doc = strip_directives(&Value::Object(patch.clone()));
            return Ok(());
        }
        Some("delete") => {
            *doc = Value::Object(Map::new());
            return Ok(());
        }
        Some("merge") | None => {}
        Some(other) => return Err(ApiError::BadRequest(format!("unknown patch type: {other}"))),
    }
    if !doc.is_object() {
        *doc = Value::Object(Map::new());
    }
    let mut orders: Vec<(String, Vec<Value>)> = Vec::new();
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix("$setElementOrder/") {
            orders.push((field.to_string(), value.as_array().cloned().unwrap_or_default()));
            continue;
        }
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            let remove = value.as_array().cloned().unwrap_or_default();
            if let Some(Value::Array(items)) = doc.get_mut(field) {
                items.retain(|item| !remove.contains(item));
            }
            continue;
        }
        if key.starts_with('$') {
            continue;
        }
        let map = doc.as_object_mut().expect("made an object above");
        if value.is_null() {
            map.remove(key);
            continue;
        }
        let (field_schema, node) = property(schema, key);
        let (strategy, merge_key) = strategy(node);
        let replace = strategy.is_some_and(|s| s.split(',').any(|p| p == "replace"));
        match (map.get_mut(key), value) {
            (Some(current @ Value::Object(_)), Value::Object(inner)) if !replace => {
                strategic_merge(current, inner, field_schema)?;
            }
            (Some(Value::Array(current)), Value::Array(items))
                if strategy.is_some_and(|s| s.split(',').any(|p| p == "merge")) =>
            {
                let item_schema =
                    node.and_then(|n| n.get("items")).and_then(|items| openapi::resolve(items).or(Some(items)));
                merge_list(current, items, merge_key, item_schema)?;
            }
            _ => {
                if let Value::Object(inner) = value {
                    let mut fresh = Value::Object(Map::new());
                    strategic_merge(&mut fresh, inner, field_schema)?;
                    map.insert(key.clone(), fresh);
                } else {
                    map.insert(key.clone(), strip_directives(value));
                }
            }
        }
    }
    if let Some(retain) = patch.get("$retainKeys").and_then(Value::as_array) {
        if let Some(map) = doc.as_object_mut() {
            map.retain(|k, _| retain.iter().any(|r| r.as_str() == Some(k)));
        }
    }
    for (field, order) in orders {
        let (_, node) = property(schema, &field);
        let merge_key = strategy(node).1;
        if let Some(Value::Array(items)) = doc.get_mut(&field) {
            reorder(items, &order, merge_key);
        }
    }
    Ok(())
}

fn identity<'a>(item: &'a Value, merge_key: Option<&str>) -> Option<&'a Value> {
    match merge_key {
        Some(key) => item.get(key),
        None => Some(item),
    }
}

fn merge_list(
    current: &mut Vec<Value>,
    patch: &[Value],
    merge_key: Option<&str>,
    item_schema: Option<&'static Value>,
) -> Result<(), ApiError> {
    for item in patch {
        let Value::Object(fields) = item else {
            if !current.contains(item) {
                current.push(item.clone());
            }
            continue;
        };
        let Some(key) = merge_key else {
            current.push(strip_directives(item));
            continue;
        };
        let id = fields.get(key).cloned();
        let position = current.iter().position(|c| c.get(key).is_some() && c.get(key) == id.as_ref());
        match (fields.get("$patch").and_then(Value::as_str), position) {
            (Some("delete"), Some(i)) => {
                current.remove(i);
            }
            (Some("delete"), None) => {}
            (Some("replace"), Some(i)) => current[i] = strip_directives(item),
            (_, Some(i)) => strategic_merge(&mut current[i], fields, item_schema)?,
            (_, None) => {
                let mut fresh = Value::Object(Map::new());
                strategic_merge(&mut fresh, fields, item_schema)?;
                current.push(fresh);
            }
        }
    }
    Ok(())
}

/// `$setElementOrder`: listed items first, in the given order; the rest after, as they were.
fn reorder(items: &mut Vec<Value>, order: &[Value], merge_key: Option<&str>) {
    let position = |item: &Value| {
        order.iter().position(|o| {
            let wanted = match merge_key {
                Some(key) => o.get(key),
                None => Some(o),
            };
            wanted.is_some() && wanted == identity(item, merge_key)
        })
    };
    let mut indexed: Vec<(usize, Value)> =
        items.drain(..).enumerate().map(|(i, item)| (position(&item).unwrap_or(order.len() + i), item)).collect();
    indexed.sort_by_key(|(rank, _)| *rank);
    items.extend(indexed.into_iter().map(|(_, item)| item));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const POD: &str = "io.k8s.api.core.v1.Pod";

    fn smp(original: Value, patch: Value) -> Value {
        apply(POD, &original, PatchType::Strategic, patch.to_string().as_bytes()).expect("test data")
    }

    #[test]
    fn containers_merge_by_name() {
        let pod = json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}});
        let out = smp(pod, json!({"spec": {"containers": [{"name": "b", "image": "z"}, {"name": "c", "image": "w"}]}}));
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "a", "image": "x"}, {"name": "b", "image": "z"}, {"name": "c", "image": "w"}])
        );
    }

    #[test]
    fn directives() {
        let pod = json!({"metadata": {"labels": {"a": "1", "b": "2"}, "finalizers": ["x", "y"]},
            "spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}});
        let out = smp(
            pod.clone(),
            json!({"metadata": {"labels": {"a": null}},
            "spec": {"containers": [{"name": "a", "$patch": "delete"}]}}),
        );
        assert_eq!(out["metadata"]["labels"], json!({"b": "2"}));
        assert_eq!(out["spec"]["containers"], json!([{"name": "b", "image": "y"}]));
        let out = smp(pod.clone(), json!({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}}));
        assert_eq!(out["spec"]["containers"][0]["name"], "b");
        let out = smp(pod, json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]}}));
        assert_eq!(out["metadata"]["finalizers"], json!(["y"]));
    }

    #[test]
    fn json_and_merge_patches() {
        let cm = json!({"data": {"a": "1"}});
        let out =
            apply(POD, &cm, PatchType::Json, br#"[{"op":"add","path":"/data/b","value":"2"}]"#).expect("test data");
        assert_eq!(out["data"]["b"], "2");
        let out = apply(POD, &cm, PatchType::Merge, br#"{"data":{"a":null,"c":"3"}}"#).expect("test data");
        assert_eq!(out["data"], json!({"c": "3"}));
        assert!(apply(POD, &cm, PatchType::Json, br#"[{"op":"remove","path":"/nope"}]"#).is_err());
        assert!(apply(POD, &cm, PatchType::Merge, b"{bad").is_err());
    }
}
