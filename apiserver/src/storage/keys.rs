//! kube-apiserver's key layout: `<prefix>/<folder>/<namespace>/<name>`, or
//! `<prefix>/<folder>/<name>` for cluster-scoped kinds. Pure.

use crate::resources::Resource;

#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys { prefix: prefix.trim_end_matches('/').to_string() }
    }

    /// The prefix every object of the resource lives under, ending in '/'.
    pub fn resource(&self, resource: &Resource) -> String {
        format!("{}/{}/", self.prefix, resource.storage_folder)
    }

    /// The prefix of one namespace's objects, or the whole resource for "".
    pub fn collection(&self, resource: &Resource, namespace: &str) -> String {
        if resource.namespaced && !namespace.is_empty() {
            format!("{}{namespace}/", self.resource(resource))
        } else {
            self.resource(resource)
        }
    }

    pub fn object(&self, resource: &Resource, namespace: &str, name: &str) -> String {
        format!("{}{name}", self.collection(resource, namespace))
    }

    /// The ClusterIP allocation bitmap, as kube-apiserver keeps it.
    pub fn service_ip_range(&self) -> String {
        format!("{}/ranges/serviceips", self.prefix)
    }

    pub fn node_port_range(&self) -> String {
        format!("{}/ranges/servicenodeports", self.prefix)
    }
}

/// The key kube-apiserver's compactors agree through, outside the prefix.
pub const COMPACT_REV_KEY: &str = "compact_rev_key";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{of, Kind};

    #[test]
    fn layout_matches_kube_apiserver() {
        let keys = Keys::new("/registry/");
        assert_eq!(keys.object(of(Kind::Pod), "default", "web"), "/registry/pods/default/web");
        assert_eq!(keys.object(of(Kind::Node), "", "n1"), "/registry/minions/n1");
        assert_eq!(keys.object(of(Kind::Service), "a", "s"), "/registry/services/specs/a/s");
        assert_eq!(keys.object(of(Kind::Endpoints), "a", "s"), "/registry/services/endpoints/a/s");
        assert_eq!(keys.collection(of(Kind::Pod), ""), "/registry/pods/");
        assert_eq!(keys.object(of(Kind::Namespace), "", "kube-system"), "/registry/namespaces/kube-system");
    }
}
