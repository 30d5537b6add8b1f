//! The resources cairn-kube serves: one table, read by discovery, routing,
//! storage keys and the registry. Adding a resource starts here.

/// What differs per kind is chosen by matching on this.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Namespace,
    Node,
    Pod,
    Service,
    Endpoints,
    ConfigMap,
    Secret,
    ServiceAccount,
    Event,
    Deployment,
    ReplicaSet,
    Job,
    Lease,
    EndpointSlice,
    PriorityClass,
    Role,
    ClusterRole,
    RoleBinding,
    ClusterRoleBinding,
    CertificateSigningRequest,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subresource {
    Status,
    Scale,
    Binding,
    Eviction,
    /// A namespace's `spec.finalizers`, which the namespace controller clears.
    Finalize,
    /// A CertificateSigningRequest's Approved or Denied condition.
    Approval,
}

impl Subresource {
    pub fn name(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
            Subresource::Binding => "binding",
            Subresource::Finalize => "finalize",
            Subresource::Eviction => "eviction",
            Subresource::Approval => "approval",
        }
    }

    pub fn parse(name: &str) -> Option<Subresource> {
        [
            Subresource::Status,
            Subresource::Scale,
            Subresource::Binding,
            Subresource::Eviction,
            Subresource::Finalize,
            Subresource::Approval,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }
}

#[derive(Debug)]
pub struct Resource {
    pub kind: Kind,
    pub group: &'static str,
    pub version: &'static str,
    pub kind_name: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub subresources: &'static [Subresource],
    /// The folder under `--etcd-prefix`; kube-apiserver's names, exceptions included.
    pub storage_folder: &'static str,
    /// The OpenAPI component schema of the kind, for strategic merge patches.
    pub schema: &'static str,
}

impl Resource {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// "pods", or "deployments.apps" as kube-apiserver names a resource in messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn has(&self, sub: Subresource) -> bool {
        self.subresources.contains(&sub)
    }
}

const ALL: &[&str] = &["all"];
pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
const STATUS: &[Subresource] = &[Subresource::Status];
const STATUS_FINALIZE: &[Subresource] = &[Subresource::Status, Subresource::Finalize];
const STATUS_SCALE: &[Subresource] = &[Subresource::Status, Subresource::Scale];
const STATUS_APPROVAL: &[Subresource] = &[Subresource::Approval, Subresource::Status];
pub const CERTIFICATES_GROUP: &str = "certificates.k8s.io";

pub static RESOURCES: &[Resource] = &[
    Resource {
        kind: Kind::Namespace,
        group: "",
        version: "v1",
        kind_name: "Namespace",
        plural: "namespaces",
        singular: "namespace",
        namespaced: false,
        short_names: &["ns"],
        categories: &[],
        subresources: STATUS_FINALIZE,
        storage_folder: "namespaces",
        schema: "io.k8s.api.core.v1.Namespace",
    },
    Resource {
        kind: Kind::Node,
        group: "",
        version: "v1",
        kind_name: "Node",
        plural: "nodes",
        singular: "node",
        namespaced: false,
        short_names: &["no"],
        categories: &[],
        subresources: STATUS,
        storage_folder: "minions",
        schema: "io.k8s.api.core.v1.Node",
    },
    Resource {
        kind: Kind::Pod,
        group: "",
        version: "v1",
        kind_name: "Pod",
        plural: "pods",
        singular: "pod",
        namespaced: true,
        short_names: &["po"],
        categories: ALL,
        subresources: &[Subresource::Status, Subresource::Binding, Subresource::Eviction],
        storage_folder: "pods",
        schema: "io.k8s.api.core.v1.Pod",
    },
    Resource {
        kind: Kind::Service,
        group: "",
        version: "v1",
        kind_name: "Service",
        plural: "services",
        singular: "service",
        namespaced: true,
        short_names: &["svc"],
        categories: ALL,
        subresources: STATUS,
        storage_folder: "services/specs",
        schema: "io.k8s.api.core.v1.Service",
    },
    Resource {
        kind: Kind::Endpoints,
        group: "",
        version: "v1",
        kind_name: "Endpoints",
        plural: "endpoints",
        singular: "endpoints",
        namespaced: true,
        short_names: &["ep"],
        categories: &[],
        subresources: &[],
        storage_folder: "services/endpoints",
        schema: "io.k8s.api.core.v1.Endpoints",
    },
    Resource {
        kind: Kind::ConfigMap,
        group: "",
        version: "v1",
        kind_name: "ConfigMap",
        plural: "configmaps",
        singular: "configmap",
        namespaced: true,
        short_names: &["cm"],
        categories: &[],
        subresources: &[],
        storage_folder: "configmaps",
        schema: "io.k8s.api.core.v1.ConfigMap",
    },
    Resource {
        kind: Kind::Secret,
        group: "",
        version: "v1",
        kind_name: "Secret",
        plural: "secrets",
        singular: "secret",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
        storage_folder: "secrets",
        schema: "io.k8s.api.core.v1.Secret",
    },
    Resource {
        kind: Kind::ServiceAccount,
        group: "",
        version: "v1",
        kind_name: "ServiceAccount",
        plural: "serviceaccounts",
        singular: "serviceaccount",
        namespaced: true,
        short_names: &["sa"],
        categories: &[],
        subresources: &[],
        storage_folder: "serviceaccounts",
        schema: "io.k8s.api.core.v1.ServiceAccount",
    },
    Resource {
        kind: Kind::Event,
        group: "",
        version: "v1",
        kind_name: "Event",
        plural: "events",
        singular: "event",
        namespaced: true,
        short_names: &["ev"],
        categories: &[],
        subresources: &[],
        storage_folder: "events",
        schema: "io.k8s.api.core.v1.Event",
    },
    Resource {
        kind: Kind::Deployment,
        group: "apps",
        version: "v1",
        kind_name: "Deployment",
        plural: "deployments",
        singular: "deployment",
        namespaced: true,
        short_names: &["deploy"],
        categories: ALL,
        subresources: STATUS_SCALE,
        storage_folder: "deployments",
        schema: "io.k8s.api.apps.v1.Deployment",
    },
    Resource {
        kind: Kind::ReplicaSet,
        group: "apps",
        version: "v1",
        kind_name: "ReplicaSet",
        plural: "replicasets",
        singular: "replicaset",
        namespaced: true,
        short_names: &["rs"],
        categories: ALL,
        subresources: STATUS_SCALE,
        storage_folder: "replicasets",
        schema: "io.k8s.api.apps.v1.ReplicaSet",
    },
    Resource {
        kind: Kind::Job,
        group: "batch",
        version: "v1",
        kind_name: "Job",
        plural: "jobs",
        singular: "job",
        namespaced: true,
        short_names: &[],
        categories: ALL,
        subresources: STATUS,
        storage_folder: "jobs",
        schema: "io.k8s.api.batch.v1.Job",
    },
    Resource {
        kind: Kind::Lease,
        group: "coordination.k8s.io",
        version: "v1",
        kind_name: "Lease",
        plural: "leases",
        singular: "lease",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
        storage_folder: "leases",
        schema: "io.k8s.api.coordination.v1.Lease",
    },
    Resource {
        kind: Kind::EndpointSlice,
        group: "discovery.k8s.io",
        version: "v1",
        kind_name: "EndpointSlice",
        plural: "endpointslices",
        singular: "endpointslice",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
        storage_folder: "endpointslices",
        schema: "io.k8s.api.discovery.v1.EndpointSlice",
    },
    Resource {
        kind: Kind::PriorityClass,
        group: "scheduling.k8s.io",
        version: "v1",
        kind_name: "PriorityClass",
        plural: "priorityclasses",
        singular: "priorityclass",
        namespaced: false,
        short_names: &["pc"],
        categories: &[],
        subresources: &[],
        storage_folder: "priorityclasses",
        schema: "io.k8s.api.scheduling.v1.PriorityClass",
    },
    Resource {
        kind: Kind::Role,
        group: RBAC_GROUP,
        version: "v1",
        kind_name: "Role",
        plural: "roles",
        singular: "role",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
        storage_folder: "roles",
        schema: "io.k8s.api.rbac.v1.Role",
    },
    Resource {
        kind: Kind::ClusterRole,
        group: RBAC_GROUP,
        version: "v1",
        kind_name: "ClusterRole",
        plural: "clusterroles",
        singular: "clusterrole",
        namespaced: false,
        short_names: &[],
        categories: &[],
        subresources: &[],
        storage_folder: "clusterroles",
        schema: "io.k8s.api.rbac.v1.ClusterRole",
    },
    Resource {
        kind: Kind::RoleBinding,
        group: RBAC_GROUP,
        version: "v1",
        kind_name: "RoleBinding",
        plural: "rolebindings",
        singular: "rolebinding",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
        storage_folder: "rolebindings",
        schema: "io.k8s.api.rbac.v1.RoleBinding",
    },
    Resource {
        kind: Kind::ClusterRoleBinding,
        group: RBAC_GROUP,
        version: "v1",
        kind_name: "ClusterRoleBinding",
        plural: "clusterrolebindings",
        singular: "clusterrolebinding",
        namespaced: false,
        short_names: &[],
        categories: &[],
        subresources: &[],
        storage_folder: "clusterrolebindings",
        schema: "io.k8s.api.rbac.v1.ClusterRoleBinding",
    },
    Resource {
        kind: Kind::CertificateSigningRequest,
        group: CERTIFICATES_GROUP,
        version: "v1",
        kind_name: "CertificateSigningRequest",
        plural: "certificatesigningrequests",
        singular: "certificatesigningrequest",
        namespaced: false,
        short_names: &["csr"],
        categories: &[],
        subresources: STATUS_APPROVAL,
        storage_folder: "certificatesigningrequests",
        schema: "io.k8s.api.certificates.v1.CertificateSigningRequest",
    },
];

/// The resource served at `group/version/plural`.
pub fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.group == group && r.version == version && r.plural == plural)
}

pub fn of(kind: Kind) -> &'static Resource {
    RESOURCES.iter().find(|r| r.kind == kind).expect("every Kind has a row in RESOURCES")
}

/// Group versions in the order discovery lists them, the core group first.
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&'static str, &'static str)> = Vec::new();
    for r in RESOURCES {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_one_row() {
        for r in RESOURCES {
            assert_eq!(RESOURCES.iter().filter(|o| o.kind == r.kind).count(), 1);
            assert!(std::ptr::eq(of(r.kind), r));
        }
    }

    #[test]
    fn storage_folders_follow_kube_apiserver() {
        assert_eq!(of(Kind::Node).storage_folder, "minions");
        assert_eq!(of(Kind::Service).storage_folder, "services/specs");
        assert_eq!(of(Kind::Endpoints).storage_folder, "services/endpoints");
        assert_eq!(lookup("apps", "v1", "deployments").map(|r| r.kind), Some(Kind::Deployment));
        assert_eq!(group_versions()[0], ("", "v1"));
    }
}
