//! What every component other than the API server shares: a kube client from a
//! kubeconfig, informers (a watcher feeding a reflector cache), the writes a
//! pure reconcile returns and the one place that performs them, Events, and
//! leader election on a coordination Lease.

pub mod events;
pub mod informer;
pub mod leader;
pub mod writes;

use std::path::Path;

pub use informer::Informer;
pub use writes::Write;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("reading the kubeconfig {path}: {reason}")]
    Kubeconfig { path: String, reason: String },
    #[error("{0}")]
    Kube(#[from] kube::Error),
    #[error("leader election lost: {0}")]
    LeaderLost(String),
}

/// A client for the cluster the kubeconfig names, as every component starts one.
pub async fn connect(kubeconfig: &Path, user_agent: &str) -> Result<kube::Client, ClientError> {
    Ok(kube::Client::try_from(config(kubeconfig, user_agent).await?)?)
}

/// A client whose writes pass only while `gate` is open: a leader's.
pub async fn connect_gated(
    kubeconfig: &Path,
    user_agent: &str,
    gate: leader::Gate,
) -> Result<kube::Client, ClientError> {
    let builder = kube::client::ClientBuilder::try_from(config(kubeconfig, user_agent).await?)?;
    let layer = tower::layer::layer_fn(|inner| leader::Gated::new(inner, gate.clone()));
    Ok(builder.with_layer(&layer).build())
}

async fn config(kubeconfig: &Path, user_agent: &str) -> Result<kube::Config, ClientError> {
    let error = |reason: String| ClientError::Kubeconfig { path: kubeconfig.display().to_string(), reason };
    let file = kube::config::Kubeconfig::read_from(kubeconfig).map_err(|e| error(e.to_string()))?;
    let mut config = kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(|e| error(e.to_string()))?;
    config
        .headers
        .push((http::header::USER_AGENT, http::HeaderValue::from_str(user_agent).map_err(|e| error(e.to_string()))?));
    // Watches stay open for minutes; only the connection is bounded.
    config.read_timeout = None;
    Ok(config)
}

/// Writes a key, token or kubeconfig readable by its owner only (0600),
/// whole or not at all: a temporary file, synced, then renamed over `path`.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&temporary)?;
    file.write_all(contents)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

/// The current time as kube writes it in `Time` fields.
pub fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

/// A `Time` field's text: RFC 3339 in whole seconds, as Go writes it.
pub fn time_text(at: jiff::Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A `MicroTime` field's text.
pub fn micro_time_text(at: jiff::Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()
}

/// serde_json's conversions with kube's error, for writes built from JSON.
pub fn to_json(value: impl serde::Serialize) -> Result<serde_json::Value, kube::Error> {
    serde_json::to_value(value).map_err(kube::Error::SerdeError)
}

pub fn from_json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, kube::Error> {
    serde_json::from_value(value).map_err(kube::Error::SerdeError)
}

/// A typed list (conditions, taints) as JSON values, for writing back with changes.
pub fn json_items<T: serde::Serialize>(items: Option<&Vec<T>>) -> Vec<serde_json::Value> {
    items.into_iter().flatten().filter_map(|item| serde_json::to_value(item).ok()).collect()
}

/// True when the error is the API server's 409 Conflict or AlreadyExists.
pub fn is_conflict(error: &kube::Error) -> bool {
    status_code(error) == Some(409)
}

pub fn is_not_found(error: &kube::Error) -> bool {
    status_code(error) == Some(404)
}

pub fn status_code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}
