//! Starting `cairn-kube apiserver`: connect to the store, create what
//! kube-apiserver creates at start, and serve HTTPS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::config::{ApiServerConfig, ConfigError, ProgressRequests};
use crate::error::ApiError;
use crate::http::{self, auth, tls, Server};
use crate::registry::{parse_cidr, Registry, WriteOptions};
use crate::resources::{of, Kind};
use crate::storage::{run_compactor, Storage, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("connecting to the store: {0}")]
    Store(#[from] StorageError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Tokens(#[from] auth::AuthFileError),
    #[error("listening on {address}: {source}")]
    Listen { address: String, source: std::io::Error },
    #[error("creating the default objects: {0}")]
    Bootstrap(String),
}

/// Attempts at creating the default objects while the store settles.
const BOOTSTRAP_ATTEMPTS: u32 = 60;

pub async fn run(config: ApiServerConfig) -> Result<(), StartError> {
    config.validate()?;
    let storage = Storage::connect(&config.etcd_servers, config.store_tls().as_ref()).await?;
    let service_ips = parse_cidr(&config.service_cluster_ip_range).map_err(ConfigError::ServiceRange)?;
    let progress_requests = match config.etcd_watch_progress_requests {
        ProgressRequests::True => true,
        ProgressRequests::False => false,
        ProgressRequests::Auto => storage.version_at_least((3, 5, 13)).await,
    };
    let registry =
        Arc::new(Registry::new(storage.clone(), &config.etcd_prefix, config.event_ttl, service_ips, progress_requests));

    let tokens = match &config.token_auth_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|source| auth::AuthFileError::Read { path: path.display().to_string(), source })?;
            auth::parse_token_file(&path.display().to_string(), &text)?
        }
        None => Default::default(),
    };
    let (cert, key) = match (&config.tls_cert_file, &config.tls_private_key_file) {
        (Some(cert), Some(key)) => (cert.clone(), key.clone()),
        _ => {
            let mut hosts = vec!["localhost".to_string(), "127.0.0.1".to_string(), config.bind_address.clone()];
            hosts.extend(config.advertise_address.clone());
            hosts.push(registry.service_ips.first().to_string());
            tls::self_signed(&config.cert_dir, &hosts)?
        }
    };
    let tls_config = tls::server_config(&cert, &key, config.client_ca_file.as_deref())?;

    let address = format!("{}:{}", config.bind_address, config.secure_port);
    let listener =
        TcpListener::bind(&address).await.map_err(|source| StartError::Listen { address: address.clone(), source })?;
    let advertised = config.advertise_address.clone().unwrap_or_else(|| {
        if config.bind_address == "0.0.0.0" {
            "127.0.0.1".into()
        } else {
            config.bind_address.clone()
        }
    });
    bootstrap(&registry, &advertised, config.secure_port).await?;
    tokio::spawn(run_compactor(storage, config.etcd_compaction_interval));

    let server = Arc::new(Server {
        registry,
        auth: auth::Authenticator::new(tokens, config.anonymous_auth)
            .with_bootstrap_tokens(config.enable_bootstrap_token_auth),
        authorizer: crate::http::authz::Authorizer::new(config.authorization()?),
        metrics: Default::default(),
        address: format!("{advertised}:{}", config.secure_port),
    });
    let local: SocketAddr =
        listener.local_addr().map_err(|source| StartError::Listen { address: address.clone(), source })?;
    tracing::info!(%local, "serving the Kubernetes API");
    http::serve(server, listener, TlsAcceptor::from(tls_config))
        .await
        .map_err(|source| StartError::Listen { address, source })
}

/// The namespaces, priority classes and `kubernetes` Service kube-apiserver
/// keeps; creating them again is harmless, so every replica tries.
async fn bootstrap(registry: &Registry, advertised: &str, port: u16) -> Result<(), StartError> {
    let mut last = String::new();
    for _ in 0..BOOTSTRAP_ATTEMPTS {
        match bootstrap_once(registry, advertised, port).await {
            Ok(()) => return Ok(()),
            Err(err) => {
                last = err.to_string();
                tracing::warn!(%err, "creating the default objects; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    Err(StartError::Bootstrap(last))
}

async fn bootstrap_once(registry: &Registry, advertised: &str, port: u16) -> Result<(), ApiError> {
    let options = WriteOptions::default();
    let ignore_exists = |result: Result<_, ApiError>| match result {
        Ok(_) | Err(ApiError::AlreadyExists { .. }) => Ok(()),
        Err(err) => Err(err),
    };
    for (kind, namespace, object) in crate::registry::bootstrap_objects() {
        let name = crate::meta::name(&object).to_string();
        match registry.create(of(kind), namespace, object.clone(), &options).await {
            Ok(_) => {}
            // A role from an older version gains the rules this one needs.
            Err(ApiError::AlreadyExists { .. }) if matches!(kind, Kind::ClusterRole | Kind::ClusterRoleBinding) => {
                let reconcile =
                    |current: &serde_json::Value| Ok(crate::rbac::bootstrap::reconcile(kind, current, &object));
                registry.rewrite(of(kind), namespace, &name, None, &options, reconcile).await?;
            }
            Err(ApiError::AlreadyExists { .. }) => {}
            Err(err) => return Err(err),
        }
    }
    let services = of(Kind::Service);
    let exists = registry.storage.get(&registry.keys.object(services, "default", "kubernetes")).await?.is_some();
    let service = json!({
        "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"clusterIP": registry.service_ips.first().to_string(), "type": "ClusterIP",
                 "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]},
    });
    if !exists {
        ignore_exists(registry.create(services, "default", service, &options).await)?;
    }
    let endpoints = json!({
        "metadata": {"name": "kubernetes", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": advertised}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
    });
    ignore_exists(registry.create(of(Kind::Endpoints), "default", endpoints, &options).await)?;
    // kube-apiserver keeps the slice too; kube-proxy routes the kubernetes Service by it.
    let slice = json!({
        "metadata": {"name": "kubernetes", "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [advertised], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    });
    ignore_exists(registry.create(of(Kind::EndpointSlice), "default", slice, &options).await)
}
