//! Every error cairn-kube returns, and the one place that turns them into
//! kube-apiserver's `metav1.Status` objects: HTTP code, reason and message.

use serde_json::{json, Value};

use crate::resources::Resource;

/// A group and resource as kube-apiserver names them in Status objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupResource {
    pub group: String,
    pub resource: String,
}

impl GroupResource {
    pub fn of(resource: &Resource) -> GroupResource {
        GroupResource { group: resource.group.to_string(), resource: resource.plural.to_string() }
    }

    fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }
}

/// One field-level validation failure, formatted as apimachinery's `field.Error`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub kind: FieldErrorKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldErrorKind {
    Required(String),
    Invalid {
        value: String,
        detail: String,
    },
    /// A value that is no string, printed as Go's `%#v` prints it.
    InvalidPrinted {
        printed: String,
        detail: String,
    },
    Forbidden(String),
    NotSupported {
        value: String,
        supported: Vec<String>,
    },
    TooLong {
        max: usize,
    },
    Duplicate(String),
}

impl FieldError {
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> FieldError {
        FieldError { field: field.into(), kind: FieldErrorKind::Required(detail.into()) }
    }

    pub fn invalid(field: impl Into<String>, value: impl Into<String>, detail: impl Into<String>) -> FieldError {
        FieldError { field: field.into(), kind: FieldErrorKind::Invalid { value: value.into(), detail: detail.into() } }
    }

    /// An invalid value that is no string (bytes, a number), already printed as kube prints it.
    pub fn invalid_printed(field: impl Into<String>, printed: String, detail: impl Into<String>) -> FieldError {
        FieldError { field: field.into(), kind: FieldErrorKind::InvalidPrinted { printed, detail: detail.into() } }
    }

    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> FieldError {
        FieldError { field: field.into(), kind: FieldErrorKind::Forbidden(detail.into()) }
    }

    pub fn not_supported(field: impl Into<String>, value: &str, supported: &[&str]) -> FieldError {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::NotSupported {
                value: value.to_string(),
                supported: supported.iter().map(|s| s.to_string()).collect(),
            },
        }
    }

    fn reason(&self) -> &'static str {
        match self.kind {
            FieldErrorKind::Required(_) => "FieldValueRequired",
            FieldErrorKind::Invalid { .. } | FieldErrorKind::InvalidPrinted { .. } => "FieldValueInvalid",
            FieldErrorKind::Forbidden(_) => "FieldValueForbidden",
            FieldErrorKind::NotSupported { .. } => "FieldValueNotSupported",
            FieldErrorKind::TooLong { .. } => "FieldValueTooLong",
            FieldErrorKind::Duplicate(_) => "FieldValueDuplicate",
        }
    }

    /// The message without the field path, as in a Status cause.
    fn body(&self) -> String {
        let with_detail = |head: String, detail: &str| {
            if detail.is_empty() {
                head
            } else {
                format!("{head}: {detail}")
            }
        };
        match &self.kind {
            FieldErrorKind::Required(detail) => with_detail("Required value".into(), detail),
            FieldErrorKind::Invalid { value, detail } => with_detail(format!("Invalid value: {value:?}"), detail),
            FieldErrorKind::InvalidPrinted { printed, detail } => {
                with_detail(format!("Invalid value: {printed}"), detail)
            }
            FieldErrorKind::Forbidden(detail) => with_detail("Forbidden".into(), detail),
            FieldErrorKind::NotSupported { value, supported } => {
                let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
                format!("Unsupported value: {value:?}: supported values: {}", list.join(", "))
            }
            FieldErrorKind::TooLong { max } => format!("Too long: may not be more than {max} bytes"),
            FieldErrorKind::Duplicate(value) => format!("Duplicate value: {value:?}"),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{} {name:?} not found", .resource.qualified())]
    NotFound { resource: GroupResource, name: String },
    #[error("{} {name:?} already exists", .resource.qualified())]
    AlreadyExists { resource: GroupResource, name: String },
    #[error("Operation cannot be fulfilled on {} {name:?}: {detail}", .resource.qualified())]
    Conflict { resource: GroupResource, name: String, detail: String },
    /// A server-side apply conflict; the message is the conflict list alone,
    /// and each (manager, field) is a cause.
    #[error("{detail}")]
    ApplyConflict { detail: String, conflicts: Vec<(String, String)> },
    #[error("{} {name:?} is invalid: {}", qualified_kind(.group, .kind), join_causes(.causes))]
    Invalid { group: String, kind: String, name: String, causes: Vec<FieldError> },
    #[error("{}", forbidden(.resource, .name, .detail))]
    Forbidden { resource: GroupResource, name: String, detail: String },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Expired(String),
    /// What the store refused (etcd's "request is too large"); kube-apiserver
    /// passes it on as a 500 without a reason.
    #[error("{0}")]
    StoreRejected(String),
    /// A JSON patch whose operations do not apply (kube-apiserver's generic 422).
    #[error("the server rejected our request due to an error in our request")]
    PatchFailed(String),
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    #[error("the body of the request was in an unknown format - accepted media types include: {0}")]
    UnsupportedMediaType(String),
    #[error("Request entity too large: {0}")]
    TooLarge(String),
    #[error("Unauthorized")]
    Unauthorized,
    #[error("only the following media types are accepted: application/json, application/yaml")]
    NotAcceptable,
    #[error("the server could not find the requested resource")]
    NoRoute,
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

/// The conflict detail kube-apiserver gives for a stale resourceVersion.
pub const MODIFIED: &str =
    "the object has been modified; please apply your changes to the latest version and try again";

/// apimachinery's `NewForbidden`: the resource and name when there are ones.
fn forbidden(resource: &GroupResource, name: &str, detail: &str) -> String {
    match (resource.resource.is_empty(), name.is_empty()) {
        (true, _) => format!("forbidden: {detail}"),
        (false, true) => format!("{} is forbidden: {detail}", resource.qualified()),
        (false, false) => format!("{} {name:?} is forbidden: {detail}", resource.qualified()),
    }
}

fn qualified_kind(group: &str, kind: &str) -> String {
    if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    }
}

fn join_causes(causes: &[FieldError]) -> String {
    match causes {
        [one] => one.to_string(),
        many => format!("[{}]", many.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", ")),
    }
}

impl ApiError {
    pub fn not_found(resource: &Resource, name: &str) -> ApiError {
        ApiError::NotFound { resource: GroupResource::of(resource), name: name.to_string() }
    }

    pub fn conflict(resource: &Resource, name: &str) -> ApiError {
        ApiError::Conflict {
            resource: GroupResource::of(resource),
            name: name.to_string(),
            detail: MODIFIED.to_string(),
        }
    }

    pub fn invalid(resource: &Resource, name: &str, causes: Vec<FieldError>) -> ApiError {
        ApiError::Invalid {
            group: resource.group.to_string(),
            kind: resource.kind_name.to_string(),
            name: name.to_string(),
            causes,
        }
    }

    pub fn code(&self) -> u16 {
        match self {
            ApiError::NotFound { .. } | ApiError::NoRoute => 404,
            ApiError::AlreadyExists { .. } | ApiError::Conflict { .. } | ApiError::ApplyConflict { .. } => 409,
            ApiError::Invalid { .. } | ApiError::PatchFailed(_) => 422,
            ApiError::Forbidden { .. } => 403,
            ApiError::BadRequest(_) => 400,
            ApiError::Expired(_) => 410,
            ApiError::MethodNotAllowed => 405,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::TooLarge(_) => 413,
            ApiError::Unauthorized => 401,
            ApiError::NotAcceptable => 406,
            ApiError::Timeout(_) => 504,
            ApiError::Unavailable(_) => 503,
            ApiError::Internal(_) | ApiError::StoreRejected(_) => 500,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::NotFound { .. } | ApiError::NoRoute => "NotFound",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict { .. } | ApiError::ApplyConflict { .. } => "Conflict",
            ApiError::Invalid { .. } | ApiError::PatchFailed(_) => "Invalid",
            ApiError::Forbidden { .. } => "Forbidden",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Expired(_) => "Expired",
            ApiError::MethodNotAllowed => "MethodNotAllowed",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::TooLarge(_) => "RequestEntityTooLarge",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::NotAcceptable => "NotAcceptable",
            ApiError::Timeout(_) => "Timeout",
            ApiError::Unavailable(_) => "ServiceUnavailable",
            ApiError::Internal(_) => "InternalError",
            ApiError::StoreRejected(_) => "",
        }
    }

    fn details(&self) -> Option<Value> {
        // StatusDetails leaves out what is empty.
        let named = |resource: &GroupResource, name: &str| {
            let mut details = json!({});
            for (field, value) in [("name", name), ("group", &resource.group), ("kind", &resource.resource)] {
                if !value.is_empty() {
                    details[field] = json!(value);
                }
            }
            details
        };
        match self {
            ApiError::NotFound { resource, name }
            | ApiError::AlreadyExists { resource, name }
            | ApiError::Conflict { resource, name, .. }
            | ApiError::Forbidden { resource, name, .. } => Some(named(resource, name)),
            ApiError::ApplyConflict { conflicts, .. } => {
                let causes: Vec<Value> = conflicts
                    .iter()
                    .map(|(manager, field)| {
                        json!({"reason": "FieldManagerConflict", "message": format!("conflict with {manager:?}"), "field": field})
                    })
                    .collect();
                Some(json!({ "causes": causes }))
            }
            ApiError::Invalid { group, kind, name, causes } => {
                let causes: Vec<Value> = causes
                    .iter()
                    .map(|c| json!({"reason": c.reason(), "message": c.body(), "field": c.field}))
                    .collect();
                let mut details = json!({"name": name, "kind": kind, "causes": causes});
                if !group.is_empty() {
                    details["group"] = json!(group);
                }
                Some(details)
            }
            ApiError::Internal(message) => Some(json!({"causes": [{"message": message}]})),
            ApiError::PatchFailed(_) => Some(json!({})),
            _ => None,
        }
    }

    /// The `metav1.Status` body kube-apiserver sends for this error.
    pub fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "code": self.code(),
        });
        if !self.reason().is_empty() {
            status["reason"] = json!(self.reason());
        }
        if let Some(details) = self.details() {
            status["details"] = details;
        }
        status
    }
}

impl From<crate::storage::StorageError> for ApiError {
    fn from(err: crate::storage::StorageError) -> ApiError {
        use crate::storage::StorageError;
        match err {
            StorageError::Compacted { .. } => ApiError::Expired(err.to_string()),
            StorageError::TooLarge => ApiError::StoreRejected(err.to_string()),
            StorageError::Unavailable(_) => ApiError::Unavailable(err.to_string()),
            StorageError::Corrupt { .. } | StorageError::Encode(_) => ApiError::Internal(err.to_string()),
        }
    }
}

/// kube-apiserver's message for a continue token or list RV that was compacted.
pub const CONTINUE_EXPIRED: &str = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.";

pub fn too_old(requested: i64, oldest: i64) -> ApiError {
    ApiError::Expired(format!("too old resource version: {requested} ({oldest})"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{of, Kind};

    #[test]
    fn messages_match_kube_apiserver() {
        let pods = of(Kind::Pod);
        assert_eq!(ApiError::not_found(pods, "x").to_string(), "pods \"x\" not found");
        let deploy = of(Kind::Deployment);
        assert_eq!(ApiError::not_found(deploy, "web").to_string(), "deployments.apps \"web\" not found");
        assert_eq!(
            ApiError::conflict(of(Kind::ConfigMap), "c").to_string(),
            format!("Operation cannot be fulfilled on configmaps \"c\": {MODIFIED}")
        );
        let invalid = ApiError::invalid(pods, "p", vec![FieldError::required("spec.containers", "")]);
        assert_eq!(invalid.to_string(), "Pod \"p\" is invalid: spec.containers: Required value");
        let status = invalid.status();
        assert_eq!(status["code"], 422);
        assert_eq!(status["details"]["causes"][0]["reason"], "FieldValueRequired");
        let two = ApiError::invalid(
            deploy,
            "d",
            vec![FieldError::required("spec.selector", ""), FieldError::invalid("metadata.name", "A", "bad")],
        );
        assert_eq!(
            two.to_string(),
            "Deployment.apps \"d\" is invalid: [spec.selector: Required value, metadata.name: Invalid value: \"A\": bad]"
        );
    }
}
