//! Lists: consistent reads from the store with `limit` and `continue`, or
//! reads from the watch cache for `resourceVersion=0` and exact revisions.

use base64::Engine;
use serde_json::{json, Value};

use super::{too_large, Registry, CACHE_WAIT};
use crate::error::{ApiError, CONTINUE_EXPIRED};
use crate::meta;
use crate::resources::Resource;
use crate::selector::{FieldSelector, LabelSelector};
use crate::storage::StorageError;

#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub limit: i64,
    pub continue_token: String,
    pub resource_version: String,
    pub resource_version_match: String,
}

impl ListOptions {
    pub fn matches(&self, resource: &Resource, object: &Value) -> bool {
        self.labels.matches(meta::labels(object)) && self.fields.matches(resource.kind, object)
    }
}

/// A continue token, in kube-apiserver's format: base64 of
/// `{"v":"meta.k8s.io/v1","rv":<revision>,"start":"<key after the prefix>"}`.
#[derive(Debug, PartialEq, Eq)]
pub struct Paging {
    pub revision: i64,
    pub start: String,
}

impl Paging {
    pub fn encode(&self) -> String {
        let body = json!({"v": "meta.k8s.io/v1", "rv": self.revision, "start": self.start});
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(body.to_string())
    }

    pub fn decode(token: &str) -> Result<Paging, ApiError> {
        let invalid = || ApiError::BadRequest(format!("continue key is not valid: {token:?}"));
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.trim_end_matches('='))
            .map_err(|_| invalid())?;
        let body: Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
        if body["v"] != "meta.k8s.io/v1" {
            return Err(invalid());
        }
        let revision = body["rv"].as_i64().filter(|r| *r > 0).ok_or_else(invalid)?;
        let start = body["start"].as_str().ok_or_else(invalid)?.to_string();
        if start.contains("..") || start.starts_with('/') {
            return Err(invalid());
        }
        Ok(Paging { revision, start })
    }
}

pub fn empty_list(resource: &Resource, revision: &str) -> Value {
    json!({
        "kind": format!("{}List", resource.kind_name),
        "apiVersion": resource.api_version(),
        "metadata": {"resourceVersion": revision},
        "items": [],
    })
}

/// kube-apiserver answers from its watch cache when a resourceVersion is
/// given and no paging forces an exact snapshot.
fn serves_from_cache(options: &ListOptions) -> bool {
    options.continue_token.is_empty()
        && !options.resource_version.is_empty()
        && (options.limit == 0 || options.resource_version == "0")
        && options.resource_version_match != "Exact"
}

const ITEMS_HERE: &str = "cairn:items-go-here";

/// Items of a list from the watch cache, shared with it.
pub struct CachedList {
    pub resource: &'static Resource,
    pub revision: i64,
    pub items: Vec<std::sync::Arc<Value>>,
}

impl CachedList {
    /// The list's JSON, written item by item: a list of 30,000 pods is
    /// encoded without first copying 30,000 trees into one.
    pub fn to_json(&self) -> Vec<u8> {
        let mut head = empty_list(self.resource, &self.revision.to_string());
        head["items"] = json!(ITEMS_HERE);
        let text = head.to_string();
        let (open, close) = text.split_once(&format!("\"{ITEMS_HERE}\"")).unwrap_or((&text, "}"));
        let mut out = Vec::with_capacity(64 + self.items.len() * 2048);
        out.extend_from_slice(open.as_bytes());
        out.push(b'[');
        for (i, item) in self.items.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let _ = serde_json::to_writer(&mut out, &ListItem(item));
        }
        out.push(b']');
        out.extend_from_slice(close.as_bytes());
        out.push(b'\n');
        out
    }
}

/// An object as a list's item: without `apiVersion` and `kind`, which the list
/// states once, as kube-apiserver writes its lists.
struct ListItem<'a>(&'a Value);

impl serde::Serialize for ListItem<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Value::Object(fields) = self.0 else { return self.0.serialize(serializer) };
        let kept = fields.iter().filter(|(key, _)| !is_type_meta(key));
        let mut map = serializer.serialize_map(None)?;
        for (key, value) in kept {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

fn is_type_meta(key: &str) -> bool {
    key == "apiVersion" || key == "kind"
}

fn as_list_item(mut object: Value) -> Value {
    if let Some(fields) = object.as_object_mut() {
        fields.retain(|key, _| !is_type_meta(key));
    }
    object
}

/// Keys read from the store per round while filtering a limited list.
const PAGE_FLOOR: i64 = 64;

impl Registry {
    pub async fn list(
        &self,
        resource: &'static Resource,
        namespace: &str,
        options: &ListOptions,
    ) -> Result<Value, ApiError> {
        let prefix = self.keys.collection(resource, namespace);
        if serves_from_cache(options) {
            return self.list_from_cache(resource, &prefix, options).await;
        }
        self.list_from_store(resource, &prefix, options).await
    }

    async fn list_from_cache(
        &self,
        resource: &'static Resource,
        prefix: &str,
        options: &ListOptions,
    ) -> Result<Value, ApiError> {
        let cached = self.cached_items(resource, prefix, options).await?;
        let mut list = empty_list(resource, &cached.revision.to_string());
        list["items"] = Value::Array(cached.items.iter().map(|o| as_list_item((**o).clone())).collect());
        Ok(list)
    }

    async fn cached_items(
        &self,
        resource: &'static Resource,
        prefix: &str,
        options: &ListOptions,
    ) -> Result<CachedList, ApiError> {
        let wanted = meta::parse_resource_version(&options.resource_version)?;
        let cacher = self.cacher(resource.kind);
        cacher.wait_for(wanted, CACHE_WAIT).await.map_err(|seen| too_large(wanted, seen))?;
        let (items, revision) = cacher.list(prefix);
        let items = items.into_iter().filter(|(_, o)| options.matches(resource, o)).map(|(_, o)| o).collect();
        Ok(CachedList { resource, revision, items })
    }

    /// A list the watch cache can serve, with its items shared rather than
    /// copied; None when the request needs the store.
    pub async fn list_cached(
        &self,
        resource: &'static Resource,
        namespace: &str,
        options: &ListOptions,
    ) -> Result<Option<CachedList>, ApiError> {
        let prefix = self.keys.collection(resource, namespace);
        if !serves_from_cache(options) {
            return Ok(None);
        }
        self.cached_items(resource, &prefix, options).await.map(Some)
    }

    async fn list_from_store(
        &self,
        resource: &'static Resource,
        prefix: &str,
        options: &ListOptions,
    ) -> Result<Value, ApiError> {
        let (mut revision, mut start) = if options.continue_token.is_empty() {
            let exact = if options.resource_version.is_empty() || options.resource_version == "0" {
                0
            } else {
                meta::parse_resource_version(&options.resource_version)?
            };
            (exact, String::new())
        } else {
            let paging = Paging::decode(&options.continue_token)?;
            (paging.revision, format!("{prefix}{}", paging.start))
        };
        let filtering = !options.labels.is_empty() || !options.fields.is_empty();
        let mut items = Vec::new();
        let mut last_key = None;
        let mut more = false;
        let mut remaining;
        loop {
            let want = if options.limit > 0 {
                (options.limit - items.len() as i64).max(if filtering { PAGE_FLOOR } else { 1 })
            } else {
                0
            };
            let page = self.storage.list(prefix, &start, revision, want).await.map_err(|err| match err {
                StorageError::Compacted { .. } if !options.continue_token.is_empty() => {
                    ApiError::Expired(CONTINUE_EXPIRED.into())
                }
                StorageError::Compacted { .. } => crate::error::too_old(revision, 0),
                other => other.into(),
            })?;
            revision = page.revision;
            let fetched = page.items.len();
            let mut taken_all = true;
            for (key, stored) in page.items {
                if options.limit > 0 && items.len() as i64 >= options.limit {
                    taken_all = false;
                    more = true;
                    break;
                }
                last_key = Some(key);
                if options.matches(resource, &stored.object) {
                    items.push(as_list_item(stored.object));
                }
            }
            remaining = page.remaining;
            if !taken_all {
                break;
            }
            if page.remaining <= 0 || fetched == 0 {
                break;
            }
            if options.limit > 0 && items.len() as i64 >= options.limit {
                more = true;
                break;
            }
            start = format!("{}\0", last_key.clone().unwrap_or_default());
        }
        let mut list = empty_list(resource, &revision.to_string());
        if more {
            if let Some(key) = last_key {
                let token = Paging { revision, start: format!("{}\0", &key[prefix.len()..]) };
                list["metadata"]["continue"] = json!(token.encode());
                if !filtering && remaining > 0 {
                    list["metadata"]["remainingItemCount"] = json!(remaining);
                }
            }
        }
        list["items"] = Value::Array(items);
        Ok(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_list_encodes_as_the_list_value_does() {
        let resource = crate::resources::of(crate::resources::Kind::Pod);
        let items = vec![
            std::sync::Arc::new(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}})),
            std::sync::Arc::new(json!({"b": [1, "x\"y"]})),
        ];
        let cached = CachedList { resource, revision: 7, items: items.clone() };
        let mut expected = empty_list(resource, "7");
        // The items leave their apiVersion and kind to the list.
        expected["items"] = json!([{"metadata": {"name": "a"}}, {"b": [1, "x\"y"]}]);
        let encoded: Value = serde_json::from_slice(&cached.to_json()).expect("valid JSON");
        assert_eq!(encoded, expected);
        let empty = CachedList { resource, revision: 1, items: vec![] };
        assert_eq!(serde_json::from_slice::<Value>(&empty.to_json()).expect("json")["items"], json!([]));
    }

    #[test]
    fn continue_tokens_round_trip_and_reject_garbage() {
        let paging = Paging { revision: 42, start: "b\0".into() };
        assert_eq!(Paging::decode(&paging.encode()).expect("test data"), paging);
        assert!(Paging::decode("garbage!").is_err());
        let escaping = Paging { revision: 1, start: "../x".into() };
        assert!(Paging::decode(&escaping.encode()).is_err());
    }
}
