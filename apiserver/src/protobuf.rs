//! Protobuf request bodies (`application/vnd.kubernetes.protobuf`), as
//! client-go's typed clients send them, kubectl's `create configmap` among
//! them. A body is kube's envelope (`k8s\0` + runtime.Unknown) around the
//! object's message; it is decoded with descriptors compiled from Kubernetes'
//! own .proto files (build.rs) and turned into the JSON the rest of the server reads.

use serde_json::Value;

use crate::error::ApiError;

pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

#[cfg(k8s_protobuf)]
mod decoding {
    use std::sync::OnceLock;

    use base64::Engine;
    use prost_reflect::{DescriptorPool, DynamicMessage, MapKey, ReflectMessage, Value as Field};
    use serde_json::{json, Map, Value};

    use crate::error::ApiError;

    const MAGIC: &[u8] = b"k8s\0";
    const DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/k8s.descriptors"));

    fn pool() -> Option<&'static DescriptorPool> {
        static POOL: OnceLock<Option<DescriptorPool>> = OnceLock::new();
        POOL.get_or_init(|| DescriptorPool::decode(DESCRIPTORS).ok()).as_ref()
    }

    /// The .proto package of an API group.
    fn package(group: &str) -> Option<&'static str> {
        Some(match group {
            "" => "k8s.io.api.core",
            "apps" => "k8s.io.api.apps",
            "batch" => "k8s.io.api.batch",
            "coordination.k8s.io" => "k8s.io.api.coordination",
            "discovery.k8s.io" => "k8s.io.api.discovery",
            "scheduling.k8s.io" => "k8s.io.api.scheduling",
            "policy" => "k8s.io.api.policy",
            "autoscaling" => "k8s.io.api.autoscaling",
            "rbac.authorization.k8s.io" => "k8s.io.api.rbac",
            "authorization.k8s.io" => "k8s.io.api.authorization",
            "certificates.k8s.io" => "k8s.io.api.certificates",
            "meta.k8s.io" => "k8s.io.apimachinery.pkg.apis.meta",
            _ => return None,
        })
    }

    fn bad(detail: impl std::fmt::Display) -> ApiError {
        ApiError::BadRequest(format!("couldn't decode the protobuf body: {detail}"))
    }

    pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
        let pool = pool().ok_or_else(|| bad("the descriptors do not load"))?;
        let envelope =
            body.strip_prefix(MAGIC).ok_or_else(|| bad("the body does not start with kube's magic number"))?;
        let unknown = pool
            .get_message_by_name("k8s.io.apimachinery.pkg.runtime.Unknown")
            .ok_or_else(|| bad("runtime.Unknown is not described"))?;
        let unknown = DynamicMessage::decode(unknown, envelope).map_err(bad)?;
        let type_meta = match unknown.get_field_by_name("typeMeta").as_deref() {
            Some(Field::Message(m)) => to_json(m),
            _ => json!({}),
        };
        let api_version = type_meta["apiVersion"].as_str().unwrap_or("").to_string();
        let kind = type_meta["kind"].as_str().unwrap_or("").to_string();
        let raw = match unknown.get_field_by_name("raw").as_deref() {
            Some(Field::Bytes(bytes)) => bytes.clone(),
            _ => return Err(bad("the envelope holds no object")),
        };
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version.as_str()));
        let name =
            format!("{}.{version}.{kind}", package(group).ok_or_else(|| bad(format!("unknown API group {group:?}")))?);
        let descriptor = pool
            .get_message_by_name(&name)
            .ok_or_else(|| bad(format!("no kind {kind:?} in version {api_version:?}")))?;
        let object = DynamicMessage::decode(descriptor, raw.as_ref()).map_err(bad)?;
        let mut value = to_json(&object);
        if let Some(map) = value.as_object_mut() {
            map.insert("apiVersion".into(), json!(api_version));
            map.insert("kind".into(), json!(kind));
        }
        Ok(value)
    }

    fn to_json(message: &DynamicMessage) -> Value {
        let descriptor = message.descriptor();
        let field = |name: &str| message.get_field_by_name(name).map(|f| f.into_owned());
        match descriptor.full_name() {
            "k8s.io.apimachinery.pkg.apis.meta.v1.Time" | "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime" => {
                let seconds = match field("seconds") {
                    Some(Field::I64(s)) => s,
                    _ => 0,
                };
                let micro = descriptor.full_name().ends_with("MicroTime");
                let nanos = match field("nanos") {
                    Some(Field::I32(n)) => n,
                    _ => 0,
                };
                let Ok(at) = jiff::Timestamp::new(seconds, if micro { nanos } else { 0 }) else { return Value::Null };
                let format = if micro { "%Y-%m-%dT%H:%M:%S%.6fZ" } else { "%Y-%m-%dT%H:%M:%SZ" };
                return json!(at.strftime(format).to_string());
            }
            "k8s.io.apimachinery.pkg.api.resource.Quantity" => {
                return match field("string") {
                    Some(Field::String(s)) => json!(s),
                    _ => json!("0"),
                }
            }
            "k8s.io.apimachinery.pkg.util.intstr.IntOrString" => {
                let is_string = matches!(field("type"), Some(Field::I64(1)));
                return match (is_string, field("intVal"), field("strVal")) {
                    (true, _, Some(Field::String(s))) => json!(s),
                    (_, Some(Field::I32(n)), _) => json!(n),
                    _ => json!(0),
                };
            }
            "k8s.io.apimachinery.pkg.runtime.RawExtension" | "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1" => {
                let raw = field("raw").or_else(|| field("Raw"));
                return match raw {
                    Some(Field::Bytes(bytes)) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                    _ => json!({}),
                };
            }
            _ => {}
        }
        let mut out = Map::new();
        for (field, value) in message.fields() {
            if !is_unset(field.name(), value) {
                out.insert(field.name().to_string(), field_json(value));
            }
        }
        Value::Object(out)
    }

    /// Fields whose zero value is meaningful: Go pointers that clients set to
    /// 0 or false on purpose, and required numbers.
    const ZERO_MATTERS: &[&str] = &[
        "replicas",
        "terminationGracePeriodSeconds",
        "backoffLimit",
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "revisionHistoryLimit",
        "progressDeadlineSeconds",
        "tolerationSeconds",
        "priority",
        "value",
        "port",
        "containerPort",
        "ttlSecondsAfterFinished",
        "runAsUser",
        "runAsGroup",
        "fsGroup",
        "defaultMode",
        "mode",
        "exitCode",
        "deletionGracePeriodSeconds",
        "gracePeriodSeconds",
        "automountServiceAccountToken",
        "enableServiceLinks",
        "allocateLoadBalancerNodePorts",
        "immutable",
        "optional",
        "allowPrivilegeEscalation",
        "readOnlyRootFilesystem",
        "runAsNonRoot",
        "suspend",
        "manualSelector",
        "unschedulable",
        "ready",
        "serving",
        "terminating",
        "leaseDurationSeconds",
        "leaseTransitions",
    ];

    /// Go's protobuf writes every scalar, zero or not, where its JSON omits
    /// empty ones: a zero is dropped unless it can mean something.
    fn is_unset(name: &str, value: &Field) -> bool {
        let zero = match value {
            Field::String(s) => s.is_empty(),
            Field::Bool(b) => !b,
            Field::I32(n) | Field::EnumNumber(n) => *n == 0,
            Field::I64(n) => *n == 0,
            Field::U32(n) => *n == 0,
            Field::U64(n) => *n == 0,
            Field::Message(m)
                if m.descriptor().full_name().ends_with("meta.v1.Time")
                    || m.descriptor().full_name().ends_with("meta.v1.MicroTime") =>
            {
                !m.fields().any(|(_, v)| !matches!(v, Field::I64(0) | Field::I32(0)))
            }
            _ => false,
        };
        zero && !ZERO_MATTERS.contains(&name)
    }

    fn field_json(value: &Field) -> Value {
        match value {
            Field::Bool(b) => json!(b),
            Field::I32(n) | Field::EnumNumber(n) => json!(n),
            Field::I64(n) => json!(n),
            Field::U32(n) => json!(n),
            Field::U64(n) => json!(n),
            Field::F32(n) => json!(n),
            Field::F64(n) => json!(n),
            Field::String(s) => json!(s),
            Field::Bytes(bytes) => json!(base64::engine::general_purpose::STANDARD.encode(bytes)),
            Field::Message(m) => to_json(m),
            Field::List(items) => Value::Array(items.iter().map(field_json).collect()),
            Field::Map(entries) => {
                let mut map = Map::new();
                for (key, value) in entries {
                    let key = match key {
                        MapKey::String(s) => s.clone(),
                        MapKey::Bool(b) => b.to_string(),
                        MapKey::I32(n) => n.to_string(),
                        MapKey::I64(n) => n.to_string(),
                        MapKey::U32(n) => n.to_string(),
                        MapKey::U64(n) => n.to_string(),
                    };
                    map.insert(key, field_json(value));
                }
                Value::Object(map)
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use prost::Message;

        /// Encodes a JSON-described ConfigMap the way client-go does, by hand.
        fn envelope(raw: Vec<u8>, api_version: &str, kind: &str) -> Vec<u8> {
            let pool = pool().expect("descriptors");
            let mut type_meta = DynamicMessage::new(
                pool.get_message_by_name("k8s.io.apimachinery.pkg.runtime.TypeMeta").expect("TypeMeta"),
            );
            type_meta.set_field_by_name("apiVersion", Field::String(api_version.into()));
            type_meta.set_field_by_name("kind", Field::String(kind.into()));
            let mut unknown = DynamicMessage::new(
                pool.get_message_by_name("k8s.io.apimachinery.pkg.runtime.Unknown").expect("Unknown"),
            );
            unknown.set_field_by_name("typeMeta", Field::Message(type_meta));
            unknown.set_field_by_name("raw", Field::Bytes(raw.into()));
            let mut out = MAGIC.to_vec();
            out.extend(unknown.encode_to_vec());
            out
        }

        #[test]
        fn a_config_map_decodes_to_kube_json() {
            let pool = pool().expect("descriptors");
            let mut meta = DynamicMessage::new(
                pool.get_message_by_name("k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta").expect("ObjectMeta"),
            );
            meta.set_field_by_name("name", Field::String("c".into()));
            let mut cm =
                DynamicMessage::new(pool.get_message_by_name("k8s.io.api.core.v1.ConfigMap").expect("ConfigMap"));
            cm.set_field_by_name("metadata", Field::Message(meta));
            cm.set_field_by_name(
                "data",
                Field::Map([(MapKey::String("a".into()), Field::String("b".into()))].into_iter().collect()),
            );
            let value = decode(&envelope(cm.encode_to_vec(), "v1", "ConfigMap")).expect("decodes");
            assert_eq!(
                value,
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "b"}})
            );
            assert!(decode(b"not protobuf").is_err());
            assert!(decode(&envelope(vec![1, 2, 3], "v1", "ConfigMap")).is_err());
            assert!(decode(&envelope(Vec::new(), "example.com/v1", "Widget")).is_err());
        }
    }
}

/// Decodes a protobuf body into the object's JSON.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    #[cfg(k8s_protobuf)]
    {
        decoding::decode(body)
    }
    #[cfg(not(k8s_protobuf))]
    {
        let _ = body;
        Err(ApiError::UnsupportedMediaType("application/json, application/yaml".into()))
    }
}
