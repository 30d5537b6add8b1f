//! Label and field selectors: parsing kube's text syntax and matching objects.
//! Pure: no I/O.

use serde_json::{Map, Value};

use crate::meta;
use crate::resources::Kind;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector(pub Vec<Requirement>);

impl LabelSelector {
    pub fn parse(text: &str) -> Result<LabelSelector, String> {
        let mut requirements = Vec::new();
        for part in split_top_level(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            requirements.push(parse_requirement(part)?);
        }
        Ok(LabelSelector(requirements))
    }

    /// A `metav1.LabelSelector` object (matchLabels, matchExpressions).
    pub fn from_object(selector: &Value) -> Result<LabelSelector, String> {
        let mut requirements = Vec::new();
        if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
            for (key, value) in labels {
                requirements.push(Requirement::Equals(key.clone(), value.as_str().unwrap_or("").to_string()));
            }
        }
        for expression in selector.get("matchExpressions").and_then(Value::as_array).into_iter().flatten() {
            let key = meta::str_at(expression, &["key"]).unwrap_or("").to_string();
            let values: Vec<String> = expression
                .get("values")
                .and_then(Value::as_array)
                .map(|v| v.iter().filter_map(|s| s.as_str().map(String::from)).collect())
                .unwrap_or_default();
            requirements.push(match meta::str_at(expression, &["operator"]).unwrap_or("") {
                "In" => Requirement::In(key, values),
                "NotIn" => Requirement::NotIn(key, values),
                "Exists" => Requirement::Exists(key),
                "DoesNotExist" => Requirement::DoesNotExist(key),
                other => return Err(format!("{other:?} is not a valid label selector operator")),
            });
        }
        Ok(LabelSelector(requirements))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        let get = |key: &str| labels.and_then(|l| l.get(key)).and_then(Value::as_str);
        self.0.iter().all(|requirement| match requirement {
            Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::DoesNotExist(k) => get(k).is_none(),
        })
    }

    /// The text form, as `kubectl get -o wide` and scale's `status.selector` show it.
    pub fn to_text(&self) -> String {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|r| match r {
                Requirement::Equals(k, v) => format!("{k}={v}"),
                Requirement::NotEquals(k, v) => format!("{k}!={v}"),
                Requirement::In(k, vs) => format!("{k} in ({})", vs.join(",")),
                Requirement::NotIn(k, vs) => format!("{k} notin ({})", vs.join(",")),
                Requirement::Exists(k) => k.clone(),
                Requirement::DoesNotExist(k) => format!("!{k}"),
            })
            .collect();
        parts.join(",")
    }
}

/// Splits on commas outside parentheses.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn parse_set(rest: &str, whole: &str) -> Result<Vec<String>, String> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("unable to parse requirement: found '{rest}', expected: '(' in {whole:?}"))?;
    Ok(inner.split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect())
}

fn parse_requirement(part: &str) -> Result<Requirement, String> {
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement::DoesNotExist(valid_key(key.trim())?));
    }
    if let Some((key, value)) = part.split_once("!=") {
        return Ok(Requirement::NotEquals(valid_key(key.trim())?, value.trim().to_string()));
    }
    if let Some((key, value)) = part.split_once("==").or_else(|| part.split_once('=')) {
        return Ok(Requirement::Equals(valid_key(key.trim())?, value.trim().to_string()));
    }
    let words: Vec<&str> = part.splitn(2, char::is_whitespace).collect();
    if let [key, rest] = words.as_slice() {
        let rest = rest.trim_start();
        if let Some(set) = rest.strip_prefix("notin") {
            return Ok(Requirement::NotIn(valid_key(key)?, parse_set(set, part)?));
        }
        if let Some(set) = rest.strip_prefix("in") {
            return Ok(Requirement::In(valid_key(key)?, parse_set(set, part)?));
        }
        return Err(format!("unable to parse requirement: {part:?}"));
    }
    Ok(Requirement::Exists(valid_key(part)?))
}

fn valid_key(key: &str) -> Result<String, String> {
    let ok =
        !key.is_empty() && key.len() <= 317 && key.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
    if ok {
        Ok(key.to_string())
    } else {
        Err(format!("unable to parse requirement: invalid label key {key:?}"))
    }
}

/// A parsed field selector: `a=b`, `a==b`, `a!=b`, comma-separated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector(pub Vec<(String, bool, String)>);

impl FieldSelector {
    pub fn parse(text: &str) -> Result<FieldSelector, String> {
        let mut terms = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let term = if let Some((k, v)) = part.split_once("!=") {
                (k.trim().to_string(), false, v.trim().to_string())
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (k.trim().to_string(), true, v.trim().to_string())
            } else {
                return Err(format!("invalid selector: '{text}'; can't understand '{part}'"));
            };
            terms.push(term);
        }
        Ok(FieldSelector(terms))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Checks every field is one kube-apiserver supports for the kind.
    pub fn validate(&self, kind: Kind) -> Result<(), String> {
        let probe = Value::Null;
        for (field, _, _) in &self.0 {
            if field_value(kind, &probe, field).is_none() {
                // Kinds with no field labels of their own get apimachinery's default conversion's words.
                return Err(if has_own_field_labels(kind) {
                    format!("field label not supported: {field}")
                } else {
                    format!("{field:?} is not a known field selector: only \"metadata.name\", \"metadata.namespace\"")
                });
            }
        }
        Ok(())
    }

    pub fn matches(&self, kind: Kind, object: &Value) -> bool {
        self.0.iter().all(|(field, equals, value)| {
            let actual = field_value(kind, object, field).unwrap_or_default();
            (actual == *value) == *equals
        })
    }

    /// The name a `metadata.name=x` selector pins, so a watch or list reads one key.
    pub fn exact_name(&self) -> Option<&str> {
        self.0.iter().find(|(f, eq, _)| f == "metadata.name" && *eq).map(|(_, _, v)| v.as_str())
    }
}

/// The value of a selectable field, or None when the kind has no such field label.
/// Kinds whose API group registers field label conversions beyond metadata's.
fn has_own_field_labels(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Pod
            | Kind::Event
            | Kind::Node
            | Kind::Namespace
            | Kind::Secret
            | Kind::ReplicaSet
            | Kind::Job
            | Kind::Service
    )
}

pub fn field_value(kind: Kind, object: &Value, field: &str) -> Option<String> {
    let text = |path: &[&str]| meta::str_at(object, path).unwrap_or("").to_string();
    let boolean = |path: &[&str]| meta::at(object, path).and_then(Value::as_bool).unwrap_or(false).to_string();
    let number = |path: &[&str]| meta::at(object, path).and_then(Value::as_i64).unwrap_or(0).to_string();
    match field {
        "metadata.name" => return Some(text(&["metadata", "name"])),
        "metadata.namespace" => return Some(text(&["metadata", "namespace"])),
        _ => {}
    }
    let value = match (kind, field) {
        (Kind::Pod, "spec.nodeName") => text(&["spec", "nodeName"]),
        (Kind::Pod, "spec.restartPolicy") => text(&["spec", "restartPolicy"]),
        (Kind::Pod, "spec.schedulerName") => text(&["spec", "schedulerName"]),
        (Kind::Pod, "spec.serviceAccountName") => text(&["spec", "serviceAccountName"]),
        (Kind::Pod, "spec.hostNetwork") => boolean(&["spec", "hostNetwork"]),
        (Kind::Pod, "status.phase") => text(&["status", "phase"]),
        (Kind::Pod, "status.podIP") => text(&["status", "podIP"]),
        (Kind::Pod, "status.nominatedNodeName") => text(&["status", "nominatedNodeName"]),
        (Kind::Event, "involvedObject.kind") => text(&["involvedObject", "kind"]),
        (Kind::Event, "involvedObject.namespace") => text(&["involvedObject", "namespace"]),
        (Kind::Event, "involvedObject.name") => text(&["involvedObject", "name"]),
        (Kind::Event, "involvedObject.uid") => text(&["involvedObject", "uid"]),
        (Kind::Event, "involvedObject.apiVersion") => text(&["involvedObject", "apiVersion"]),
        (Kind::Event, "involvedObject.resourceVersion") => text(&["involvedObject", "resourceVersion"]),
        (Kind::Event, "involvedObject.fieldPath") => text(&["involvedObject", "fieldPath"]),
        (Kind::Event, "reason") => text(&["reason"]),
        (Kind::Event, "reportingComponent") => text(&["reportingComponent"]),
        (Kind::Event, "source") => {
            let component = text(&["source", "component"]);
            if component.is_empty() {
                text(&["reportingComponent"])
            } else {
                component
            }
        }
        (Kind::Event, "type") => text(&["type"]),
        (Kind::Node, "spec.unschedulable") => boolean(&["spec", "unschedulable"]),
        (Kind::Namespace, "status.phase") => text(&["status", "phase"]),
        (Kind::Secret, "type") => text(&["type"]),
        (Kind::ReplicaSet, "status.replicas") => number(&["status", "replicas"]),
        (Kind::Job, "status.successful") => number(&["status", "succeeded"]),
        (Kind::Service, "spec.clusterIP") => text(&["spec", "clusterIP"]),
        (Kind::Service, "spec.type") => text(&["spec", "type"]),
        _ => return None,
    };
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("test data")
    }

    #[test]
    fn label_selector_operators() {
        let l = labels(json!({"app": "web", "tier": "front"}));
        let yes = [
            "app=web",
            "app==web",
            "app!=db",
            "app in (web,db)",
            "tier notin (back)",
            "app",
            "!missing",
            "app=web,tier",
        ];
        for text in yes {
            assert!(LabelSelector::parse(text).expect("test data").matches(Some(&l)), "{text}");
        }
        let no = ["app=db", "app!=web", "app in (db)", "tier notin (front, back)", "missing", "!app"];
        for text in no {
            assert!(!LabelSelector::parse(text).expect("test data").matches(Some(&l)), "{text}");
        }
        assert!(LabelSelector::parse("a in b").is_err());
        assert!(LabelSelector::parse("").expect("test data").matches(None));
    }

    #[test]
    fn label_selector_object() {
        let s = LabelSelector::from_object(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]
        }))
        .expect("test data");
        assert_eq!(s.to_text(), "app=web,tier in (a,b)");
    }

    #[test]
    fn field_selectors() {
        let pod = json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        let s = FieldSelector::parse("spec.nodeName=n1,status.phase!=Pending").expect("test data");
        assert!(s.validate(Kind::Pod).is_ok());
        assert!(s.matches(Kind::Pod, &pod));
        assert!(!FieldSelector::parse("spec.nodeName=").expect("test data").matches(Kind::Pod, &pod));
        assert!(FieldSelector::parse("spec.nodeName=x").expect("test data").validate(Kind::ConfigMap).is_err());
        assert_eq!(FieldSelector::parse("metadata.name=p").expect("test data").exact_name(), Some("p"));
    }
}
