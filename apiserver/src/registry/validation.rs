//! Validation with kube-apiserver's field paths and messages, for the mistakes
//! people make: bad names, missing containers, selectors that do not match.

use serde_json::Value;

use crate::error::FieldError;
use crate::meta;
use crate::resources::Kind;
use crate::selector::LabelSelector;

const DNS1123_SUBDOMAIN: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1123_LABEL: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1035_LABEL: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

fn is_label(text: &str) -> bool {
    let bytes = text.as_bytes();
    !bytes.is_empty()
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

fn is_subdomain(text: &str) -> bool {
    text.split('.').all(is_label)
}

enum NameRule {
    Subdomain,
    Label,
    Dns1035,
    /// RBAC's names (`system:node`): anything that is one path segment.
    PathSegment,
}

fn name_rule(kind: Kind) -> NameRule {
    match kind {
        Kind::Namespace => NameRule::Label,
        Kind::Service => NameRule::Dns1035,
        Kind::Role | Kind::ClusterRole | Kind::RoleBinding | Kind::ClusterRoleBinding => NameRule::PathSegment,
        _ => NameRule::Subdomain,
    }
}

/// Errors in a name, as `metadata.name` (or the given path) would report them.
pub fn name_errors(kind: Kind, field: &str, name: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let (max, ok, detail) = match name_rule(kind) {
        NameRule::PathSegment => return path_segment_errors(field, name),
        NameRule::Subdomain => (253, is_subdomain(name), DNS1123_SUBDOMAIN),
        NameRule::Label => (63, is_label(name), DNS1123_LABEL),
        NameRule::Dns1035 => {
            (63, is_label(name) && name.as_bytes().first().is_some_and(u8::is_ascii_lowercase), DNS1035_LABEL)
        }
    };
    if name.len() > max {
        errors.push(FieldError::invalid(field, name, format!("must be no more than {max} characters")));
    }
    if !ok {
        errors.push(FieldError::invalid(field, name, detail));
    }
    errors
}

/// apimachinery's `IsValidPathSegmentName`.
fn path_segment_errors(field: &str, name: &str) -> Vec<FieldError> {
    if name == "." || name == ".." {
        return vec![FieldError::invalid(field, name, format!("may not be '{name}'"))];
    }
    ["/", "%"]
        .iter()
        .filter(|bad| name.contains(*bad))
        .map(|bad| FieldError::invalid(field, name, format!("may not contain '{bad}'")))
        .collect()
}

/// Checks an object after defaulting; `old` is set for updates.
pub fn validate(kind: Kind, object: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let name = meta::name(object);
    if name.is_empty() {
        errors.push(FieldError::required("metadata.name", "name or generateName is required"));
    } else {
        errors.extend(name_errors(kind, "metadata.name", name));
    }
    if let Some(old) = old {
        if meta::name(old) != name {
            errors.push(FieldError::invalid("metadata.name", name, "field is immutable"));
        }
        if kind == Kind::Service {
            let ip = |o: &Value| meta::str_at(o, &["spec", "clusterIP"]).unwrap_or("").to_string();
            if !ip(old).is_empty() && ip(object) != ip(old) {
                errors.push(FieldError::invalid("spec.clusterIPs[0]", ip(object), "may not change once set"));
            }
            let ips = |o: &Value| o.pointer("/spec/clusterIPs").cloned().unwrap_or(Value::Null);
            if !ips(old).is_null() && ips(object) != ips(old) {
                errors.push(FieldError::invalid("spec.clusterIPs", ips(object).to_string(), "may not change once set"));
            }
        }
    }
    errors.extend(validate_labels(object));
    match kind {
        Kind::Pod => errors.extend(validate_pod_spec(meta::at(object, &["spec"]), "spec")),
        Kind::Deployment | Kind::ReplicaSet => errors.extend(validate_controller(object, "spec.template")),
        Kind::Job => {
            errors.extend(validate_pod_spec(meta::at(object, &["spec", "template", "spec"]), "spec.template.spec"));
            let policy = meta::str_at(object, &["spec", "template", "spec", "restartPolicy"]).unwrap_or("");
            if policy != "Never" && policy != "OnFailure" {
                errors.push(FieldError::not_supported(
                    "spec.template.spec.restartPolicy",
                    policy,
                    &["OnFailure", "Never"],
                ));
            }
        }
        Kind::Service => errors.extend(validate_service(object)),
        Kind::CertificateSigningRequest => match old {
            None => errors.extend(validate_certificate_request(object)),
            Some(old) => errors.extend(validate_certificate_request_update(object, old)),
        },
        Kind::ConfigMap | Kind::Secret => {
            errors.extend(data_size(kind, object));
            for field in ["data", "binaryData", "stringData"] {
                for key in meta::at(object, &[field]).and_then(Value::as_object).into_iter().flatten().map(|(k, _)| k) {
                    let ok = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
                    if !ok {
                        errors.push(FieldError::invalid(
                            format!("{field}[{key}]"),
                            key.as_str(),
                            "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                        ));
                    }
                }
            }
        }
        Kind::PriorityClass if meta::at(object, &["value"]).and_then(Value::as_i64).is_none() => {
            errors.push(FieldError::required("value", ""));
        }
        _ => {}
    }
    errors
}

/// ConfigMaps and Secrets hold at most 1 MiB of data, as kube-apiserver checks.
fn data_size(kind: Kind, object: &Value) -> Vec<FieldError> {
    const MAX: usize = 1024 * 1024;
    let size: usize = ["data", "binaryData", "stringData"]
        .iter()
        .filter_map(|f| meta::at(object, &[f]).and_then(Value::as_object))
        .flatten()
        .map(|(k, v)| {
            k.len() + v.as_str().map(|s| if kind == Kind::Secret { s.len() * 3 / 4 } else { s.len() }).unwrap_or(0)
        })
        .sum();
    if size <= MAX {
        return Vec::new();
    }
    let field = if kind == Kind::Secret { "data" } else { "[]" };
    vec![FieldError { field: field.into(), kind: crate::error::FieldErrorKind::TooLong { max: MAX } }]
}

fn validate_labels(object: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (key, value) in meta::labels(object).into_iter().flatten() {
        let text = value.as_str().unwrap_or("");
        if text.len() > 63 {
            errors.push(FieldError::invalid("metadata.labels", text, "must be no more than 63 characters"));
            continue;
        }
        let ok = text.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && text.chars().next().is_none_or(|c| c.is_ascii_alphanumeric())
            && text.chars().last().is_none_or(|c| c.is_ascii_alphanumeric());
        if !ok {
            errors.push(FieldError::invalid(
                "metadata.labels",
                text,
                "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
            ));
        }
        let name = key.rsplit('/').next().unwrap_or("");
        if name.is_empty() || name.len() > 63 {
            errors.push(FieldError::invalid(
                "metadata.labels",
                key.as_str(),
                "name part must be no more than 63 characters",
            ));
        }
    }
    errors
}

fn validate_pod_spec(spec: Option<&Value>, path: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let containers = spec.and_then(|s| s.get("containers")).and_then(Value::as_array);
    match containers {
        None => errors.push(FieldError::required(format!("{path}.containers"), "")),
        Some(list) if list.is_empty() => errors.push(FieldError::required(format!("{path}.containers"), "")),
        Some(list) => {
            let mut seen = std::collections::HashSet::new();
            for (i, container) in list.iter().enumerate() {
                let name = meta::str_at(container, &["name"]).unwrap_or("");
                let field = format!("{path}.containers[{i}].name");
                if name.is_empty() {
                    errors.push(FieldError::required(field, ""));
                } else if !is_label(name) || name.len() > 63 {
                    errors.push(FieldError::invalid(field, name, DNS1123_LABEL));
                } else if !seen.insert(name.to_string()) {
                    errors.push(FieldError { field, kind: crate::error::FieldErrorKind::Duplicate(name.to_string()) });
                }
                if meta::str_at(container, &["image"]).unwrap_or("").is_empty() {
                    errors.push(FieldError::required(format!("{path}.containers[{i}].image"), ""));
                }
            }
        }
    }
    if let Some(policy) = spec.and_then(|s| s.get("restartPolicy")).and_then(Value::as_str) {
        if !["Always", "OnFailure", "Never"].contains(&policy) {
            errors.push(FieldError::not_supported(
                format!("{path}.restartPolicy"),
                policy,
                &["Always", "OnFailure", "Never"],
            ));
        }
    }
    errors
}

fn validate_controller(object: &Value, template: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    match meta::at(object, &["spec", "selector"]) {
        None | Some(Value::Null) => errors.push(FieldError::required("spec.selector", "")),
        Some(selector) => match LabelSelector::from_object(selector) {
            Err(err) => errors.push(FieldError::invalid("spec.selector", selector.to_string(), err)),
            Ok(parsed) if parsed.is_empty() => {
                errors.push(FieldError::invalid("spec.selector", "null", "empty selector is invalid for deployment"))
            }
            Ok(parsed) => {
                let labels = meta::at(object, &["spec", "template", "metadata", "labels"]).and_then(Value::as_object);
                if !parsed.matches(labels) {
                    let shown = labels.map(|l| {
                        let pairs: Vec<String> = l.iter().map(|(k, v)| format!("{k:?}:{v}")).collect();
                        format!("map[string]string{{{}}}", pairs.join(", "))
                    });
                    errors.push(FieldError::invalid(
                        format!("{template}.metadata.labels"),
                        shown.unwrap_or_else(|| "map[string]string(nil)".into()),
                        "`selector` does not match template `labels`",
                    ));
                }
            }
        },
    }
    errors.extend(validate_pod_spec(meta::at(object, &["spec", "template", "spec"]), &format!("{template}.spec")));
    if meta::at(object, &["spec", "replicas"]).and_then(Value::as_i64).is_some_and(|r| r < 0) {
        errors.push(FieldError::invalid("spec.replicas", "negative", "must be greater than or equal to 0"));
    }
    errors
}

fn validate_service(object: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let kind = meta::str_at(object, &["spec", "type"]).unwrap_or("ClusterIP");
    let supported = ["ClusterIP", "ExternalName", "NodePort", "LoadBalancer"];
    if !supported.contains(&kind) {
        errors.push(FieldError::not_supported("spec.type", kind, &supported));
    }
    let ports = meta::at(object, &["spec", "ports"]).and_then(Value::as_array);
    if kind != "ExternalName"
        && ports.is_none_or(|p| p.is_empty())
        && meta::str_at(object, &["spec", "clusterIP"]) != Some("None")
    {
        errors.push(FieldError::required("spec.ports", ""));
    }
    for (i, port) in ports.into_iter().flatten().enumerate() {
        let number = port.get("port").and_then(Value::as_i64).unwrap_or(0);
        if !(1..=65535).contains(&number) {
            errors.push(FieldError::invalid(
                format!("spec.ports[{i}].port"),
                number.to_string(),
                "must be between 1 and 65535, inclusive",
            ));
        }
        if ports.is_some_and(|p| p.len() > 1) && port.get("name").and_then(Value::as_str).unwrap_or("").is_empty() {
            errors.push(FieldError::required(format!("spec.ports[{i}].name"), ""));
        }
    }
    errors
}

fn condition_types(request: &Value) -> Vec<String> {
    let conditions = request.pointer("/status/conditions").and_then(Value::as_array).into_iter().flatten();
    conditions.filter_map(|c| c["type"].as_str().map(String::from)).collect()
}

/// A decision stands: Approved and Denied exclude each other and neither is
/// taken back, and an issued certificate is not replaced.
fn validate_certificate_request_update(object: &Value, old: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let (now, before) = (condition_types(object), condition_types(old));
    let has = |list: &[String], kind: &str| list.iter().any(|c| c == kind);
    if has(&now, "Approved") && has(&now, "Denied") {
        errors.push(FieldError::invalid(
            "status.conditions",
            "Approved",
            "Approved and Denied conditions are mutually exclusive",
        ));
    }
    for kind in ["Approved", "Denied", "Failed"] {
        if has(&before, kind) && !has(&now, kind) {
            errors.push(FieldError::forbidden(
                "status.conditions",
                format!("updates may not remove a condition of type {kind:?}"),
            ));
        }
    }
    let certificate = |o: &Value| meta::str_at(o, &["status", "certificate"]).unwrap_or("").to_string();
    if !certificate(old).is_empty() && certificate(object) != certificate(old) {
        errors.push(FieldError::forbidden("status.certificate", "updates may not modify existing certificate content"));
    }
    errors
}

/// A request must hold a PEM certificate request that verifies, name its
/// signer and say what the certificate is for.
fn validate_certificate_request(object: &Value) -> Vec<FieldError> {
    use base64::Engine;
    let mut errors = Vec::new();
    let request = meta::str_at(object, &["spec", "request"]).unwrap_or("");
    let decoded = base64::engine::general_purpose::STANDARD.decode(request).unwrap_or_default();
    if decoded.is_empty() {
        errors.push(FieldError::required("spec.request", ""));
    } else if let Err(error) = crate::certificates::parse_request(&decoded) {
        errors.push(FieldError::invalid_printed("spec.request", go_bytes(&decoded), error.to_string()));
    }
    let signer = meta::str_at(object, &["spec", "signerName"]).unwrap_or("");
    if signer.is_empty() {
        errors.push(FieldError::required("spec.signerName", ""));
    } else if signer.split('/').count() != 2 || signer.split('/').any(str::is_empty) {
        errors.push(FieldError::invalid(
            "spec.signerName",
            signer,
            "must be a fully qualified domain and path of the form 'example.com/signer-name'",
        ));
    }
    if object.pointer("/spec/usages").and_then(Value::as_array).is_none_or(Vec::is_empty) {
        errors.push(FieldError::required("spec.usages", ""));
    }
    errors
}

/// Bytes as Go's `%#v` prints them, as kube-apiserver shows a bad request.
fn go_bytes(bytes: &[u8]) -> String {
    let items: Vec<String> = bytes.iter().map(|b| format!("0x{b:x}")).collect();
    format!("[]byte{{{}}}", items.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names() {
        assert!(name_errors(Kind::ConfigMap, "metadata.name", "a.b-c").is_empty());
        assert_eq!(name_errors(Kind::ConfigMap, "metadata.name", "Foo_bar").len(), 1);
        assert_eq!(name_errors(Kind::ConfigMap, "metadata.name", &"a".repeat(254)).len(), 1);
        assert_eq!(name_errors(Kind::Service, "metadata.name", "1abc").len(), 1);
        assert_eq!(name_errors(Kind::Namespace, "metadata.name", "a.b").len(), 1);
    }

    #[test]
    fn pods_need_containers() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {}});
        let errors = validate(Kind::Pod, &pod, None);
        assert_eq!(errors[0].to_string(), "spec.containers: Required value");
    }

    #[test]
    fn deployment_selector_must_match_template() {
        let d = json!({"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "c"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        let errors = validate(Kind::Deployment, &d, None);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].to_string().contains("`selector` does not match template `labels`"));
    }
}
