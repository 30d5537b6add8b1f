//! TLS bootstrapping, as the kubelet does it: with only a bootstrap token
//! (`--bootstrap-kubeconfig`), a node makes a key, files a
//! CertificateSigningRequest for `system:node:<name>` in `system:nodes`,
//! waits for the controller-manager to approve and sign it, and writes the
//! kubeconfig it then talks with. A node whose certificate is still valid
//! skips all of it.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::api::PostParams;
use kube::config::{AuthInfo, Context, Kubeconfig, NamedAuthInfo, NamedContext};
use kube::{Api, Client};
use serde_json::json;

use super::KubeletError;
use crate::certificates::{self, Profile, KUBELET_CLIENT_SIGNER, NODES_GROUP, NODE_USER_PREFIX};

/// How long a node waits for its certificate before it gives up.
const ISSUE_WAIT: Duration = Duration::from_secs(300);
const POLL: Duration = Duration::from_millis(250);
/// The file with the certificate and its key, kube's name for it.
pub const CLIENT_PEM: &str = "kubelet-client-current.pem";

/// Where one node keeps its kubeconfig and certificate.
#[derive(Debug, Clone)]
pub struct NodePaths {
    pub kubeconfig: PathBuf,
    pub cert_dir: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KubeletError + '_ {
    move |e| KubeletError::Bootstrap(format!("{}: {e}", path.display()))
}

/// True when `pem` holds a certificate that is valid now.
fn still_valid(pem: &[u8], now: jiff::Timestamp) -> bool {
    use tokio_rustls::rustls::pki_types::{pem::PemObject, CertificateDer};
    let Ok(der) = CertificateDer::from_pem_slice(pem) else { return false };
    let Ok((_, certificate)) = x509_parser::parse_x509_certificate(der.as_ref()) else { return false };
    certificate.validity().not_after.timestamp() > now.as_second()
}

/// A client as `node`: from its kubeconfig when its certificate is valid,
/// else after bootstrapping one with the bootstrap kubeconfig.
pub async fn client_for(
    node: &str,
    paths: &NodePaths,
    bootstrap: &Path,
    user_agent: &str,
) -> Result<Client, KubeletError> {
    let pem_path = paths.cert_dir.join(CLIENT_PEM);
    let current = std::fs::read(&pem_path).ok().filter(|pem| still_valid(pem, jiff::Timestamp::now()));
    if current.is_none() || !paths.kubeconfig.exists() {
        let bootstrap_client = crate::client::connect(bootstrap, user_agent).await?;
        let (certificate, key) = request_certificate(&bootstrap_client, node).await?;
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&paths.cert_dir).map_err(io(&paths.cert_dir))?;
        write_private(&pem_path, format!("{certificate}{key}").as_bytes())?;
        write_kubeconfig(bootstrap, &paths.kubeconfig, &pem_path)?;
        tracing::info!(node, "client certificate issued; talking as system:node:{node}");
    }
    Ok(crate::client::connect(&paths.kubeconfig, user_agent).await?)
}

/// Files a request and waits for its certificate: (certificate, key) in PEM.
async fn request_certificate(client: &Client, node: &str) -> Result<(String, String), KubeletError> {
    let profile = Profile {
        common_name: format!("{NODE_USER_PREFIX}{node}"),
        organizations: vec![NODES_GROUP.into()],
        client: true,
        ..Profile::default()
    };
    let failed = |e: certificates::CertError| KubeletError::Bootstrap(e.to_string());
    let (request, key) = certificates::request_for(&profile).map_err(failed)?;
    let requests: Api<CertificateSigningRequest> = Api::all(client.clone());
    let body = crate::client::from_json(json!({
        "metadata": {"generateName": "node-csr-"},
        "spec": {
            "request": base64::engine::general_purpose::STANDARD.encode(&request),
            "signerName": KUBELET_CLIENT_SIGNER,
            "usages": ["digital signature", "client auth"],
        },
    }))?;
    let deadline = tokio::time::Instant::now() + ISSUE_WAIT;
    // An API server that has not yet seen the token's Secret, or is restarting, is waited for.
    let name = loop {
        match requests.create(&PostParams::default(), &body).await {
            Ok(created) => break created.metadata.name.unwrap_or_default(),
            Err(error) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(node, %error, "filing the certificate request; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(error) => return Err(error.into()),
        }
    };
    tracing::info!(node, request = %name, "waiting for the client certificate to be approved and issued");
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
        let Ok(current) = requests.get(&name).await else { continue };
        let status = current.status.unwrap_or_default();
        if let Some(refused) = status.conditions.iter().flatten().find(|c| c.type_ == "Denied" || c.type_ == "Failed") {
            let message = refused.message.clone().unwrap_or_default();
            return Err(KubeletError::Bootstrap(format!("certificate request {name} {}: {message}", refused.type_)));
        }
        if let Some(certificate) = status.certificate.filter(|c| !c.0.is_empty()) {
            return Ok((String::from_utf8_lossy(&certificate.0).into_owned(), key));
        }
    }
    Err(KubeletError::Bootstrap(format!("certificate request {name} was not issued within {ISSUE_WAIT:?}")))
}

fn write_private(path: &Path, contents: &[u8]) -> Result<(), KubeletError> {
    crate::client::write_private(path, contents).map_err(io(path))
}

/// The bootstrap kubeconfig's cluster, with the node's certificate as its user.
fn write_kubeconfig(bootstrap: &Path, target: &Path, pem: &Path) -> Result<(), KubeletError> {
    let invalid = |reason: String| KubeletError::Bootstrap(format!("{}: {reason}", bootstrap.display()));
    let source = Kubeconfig::read_from(bootstrap).map_err(|e| invalid(e.to_string()))?;
    let context_name = source.current_context.clone().unwrap_or_default();
    let cluster_name = source
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone())
        .ok_or_else(|| invalid(format!("no context {context_name:?}")))?;
    let mut cluster = source
        .clusters
        .iter()
        .find(|c| c.name == cluster_name)
        .cloned()
        .ok_or_else(|| invalid(format!("no cluster {cluster_name:?}")))?;
    // A relative CA path is the bootstrap file's, wherever the new file goes.
    if let Some(details) = cluster.cluster.as_mut() {
        if let Some(ca) = details.certificate_authority.as_mut() {
            let base = bootstrap.parent().unwrap_or(Path::new("."));
            *ca = base.join(&*ca).display().to_string();
        }
    }
    let pem_path = pem.display().to_string();
    let user =
        AuthInfo { client_certificate: Some(pem_path.clone()), client_key: Some(pem_path), ..AuthInfo::default() };
    let config = Kubeconfig {
        clusters: vec![cluster],
        auth_infos: vec![NamedAuthInfo {
            name: "default-auth".into(),
            auth_info: Some(user),
            other: Default::default(),
        }],
        contexts: vec![NamedContext {
            name: "default-context".into(),
            context: Some(Context { cluster: cluster_name, user: Some("default-auth".into()), ..Context::default() }),
            other: Default::default(),
        }],
        current_context: Some("default-context".into()),
        api_version: Some("v1".into()),
        kind: Some("Config".into()),
        ..Kubeconfig::default()
    };
    let text = serde_yaml_ng::to_string(&config).map_err(|e| invalid(e.to_string()))?;
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    write_private(target, text.as_bytes())
}
