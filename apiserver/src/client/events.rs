//! core/v1 Events, written as kube's components write them, so that
//! `kubectl describe` and `kubectl get events` show them.

use k8s_openapi::api::core::v1::Event;
use serde_json::{json, Value};

use super::Write;

/// Who reports: `default-scheduler`, `kubelet` on a host, a controller.
#[derive(Clone, Debug)]
pub struct Reporter {
    pub component: String,
    pub host: Option<String>,
    /// Which replica reports (a leader-elected component's identity); the host by default.
    pub instance: Option<String>,
}

impl Reporter {
    pub fn new(component: &str, host: Option<&str>) -> Reporter {
        Reporter { component: component.to_string(), host: host.map(String::from), instance: None }
    }

    pub fn instance(mut self, instance: &str) -> Reporter {
        self.instance = Some(instance.to_string());
        self
    }

    /// An Event about `object` (any kube object as JSON); `warning` selects the type.
    pub fn event(&self, object: &Value, warning: bool, reason: &str, message: &str) -> Write {
        self.event_on(object, None, warning, reason, message)
    }

    /// An Event about one field of the object, as the kubelet reports a container's.
    pub fn event_on(
        &self,
        object: &Value,
        field_path: Option<&str>,
        warning: bool,
        reason: &str,
        message: &str,
    ) -> Write {
        let metadata = &object["metadata"];
        let name = metadata["name"].as_str().unwrap_or_default();
        let namespace = metadata["namespace"].as_str().filter(|n| !n.is_empty()).unwrap_or("default");
        let now = super::now();
        let mut involved = json!({
            "apiVersion": object["apiVersion"],
            "kind": object["kind"],
            "name": name,
            "uid": metadata["uid"],
            "resourceVersion": metadata["resourceVersion"],
        });
        if let Some(object_namespace) = metadata["namespace"].as_str() {
            involved["namespace"] = json!(object_namespace);
        }
        if let Some(path) = field_path {
            involved["fieldPath"] = json!(path);
        }
        let mut source = json!({"component": self.component});
        if let Some(host) = &self.host {
            source["host"] = json!(host);
        }
        let event = json!({
            "metadata": {"name": format!("{name}.{:x}", now.as_nanosecond()), "namespace": namespace},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": if warning { "Warning" } else { "Normal" },
            "source": source,
            "firstTimestamp": super::time_text(now),
            "lastTimestamp": super::time_text(now),
            "count": 1,
            "reportingComponent": self.component,
            "reportingInstance": self.instance.as_ref().or(self.host.as_ref()).unwrap_or(&self.component),
            // When, to the microsecond, and what: as events.k8s.io events say it,
            // so that a replica's actions can be set against its leader lease.
            "eventTime": super::micro_time_text(now),
            "action": reason,
        });
        Write::create::<Event>(namespace, event)
    }
}
