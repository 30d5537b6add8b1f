//! Reading and writing `metadata` on objects kept as JSON values. The API
//! server moves objects as `serde_json::Value`; typed k8s-openapi structs are
//! used where a kind's own rules need them (registry::kinds).

use serde_json::{json, Map, Value};

pub fn str_at<'a>(object: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(object, path).and_then(Value::as_str)
}

pub fn at<'a>(object: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(object, |node, key| node.get(key))
}

pub fn name(object: &Value) -> &str {
    str_at(object, &["metadata", "name"]).unwrap_or("")
}

pub fn namespace(object: &Value) -> &str {
    str_at(object, &["metadata", "namespace"]).unwrap_or("")
}

pub fn resource_version(object: &Value) -> &str {
    str_at(object, &["metadata", "resourceVersion"]).unwrap_or("")
}

pub fn uid(object: &Value) -> &str {
    str_at(object, &["metadata", "uid"]).unwrap_or("")
}

/// `metadata`, created if absent. Callers pass objects already known to be maps.
pub fn metadata_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object.is_object() {
        *object = json!({});
    }
    let map = object.as_object_mut().expect("made an object above");
    let entry = map.entry("metadata").or_insert_with(|| json!({}));
    if !entry.is_object() {
        *entry = json!({});
    }
    entry.as_object_mut().expect("made an object above")
}

pub fn set(object: &mut Value, key: &str, value: Value) {
    metadata_mut(object).insert(key.to_string(), value);
}

pub fn remove(object: &mut Value, key: &str) {
    metadata_mut(object).remove(key);
}

pub fn set_resource_version(object: &mut Value, revision: i64) {
    set(object, "resourceVersion", json!(revision.to_string()));
}

pub fn labels(object: &Value) -> Option<&Map<String, Value>> {
    at(object, &["metadata", "labels"]).and_then(Value::as_object)
}

pub fn finalizers(object: &Value) -> Vec<String> {
    at(object, &["metadata", "finalizers"])
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(|f| f.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

pub fn is_deleting(object: &Value) -> bool {
    at(object, &["metadata", "deletionTimestamp"]).is_some_and(|t| !t.is_null())
}

/// The timestamp format of metav1.Time: RFC 3339 in UTC, whole seconds.
pub fn timestamp(now: jiff::Timestamp) -> String {
    now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub fn now() -> String {
    timestamp(jiff::Timestamp::now())
}

pub fn parse_time(text: &str) -> Option<jiff::Timestamp> {
    text.parse().ok()
}

/// Parses a resourceVersion given by a client; kube-apiserver's message on failure.
pub fn parse_resource_version(text: &str) -> Result<i64, crate::error::ApiError> {
    text.parse::<i64>()
        .ok()
        .filter(|rv| *rv >= 0)
        .ok_or_else(|| crate::error::ApiError::BadRequest(format!("invalid resource version: {text:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_accessors() {
        let mut pod = json!({"metadata": {"name": "a", "namespace": "ns", "finalizers": ["x"]}});
        assert_eq!(name(&pod), "a");
        assert_eq!(namespace(&pod), "ns");
        set_resource_version(&mut pod, 42);
        assert_eq!(resource_version(&pod), "42");
        assert_eq!(finalizers(&pod), vec!["x".to_string()]);
        assert!(!is_deleting(&pod));
        assert!(parse_resource_version("-1").is_err());
        assert_eq!(timestamp("2024-05-01T10:11:12.5Z".parse().expect("test data")), "2024-05-01T10:11:12Z");
    }
}
