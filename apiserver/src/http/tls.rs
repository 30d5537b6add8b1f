//! The serving certificate (given, or self-signed into `--cert-dir` as
//! kube-apiserver does) and optional client-certificate verification.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {reason}")]
    Pem { path: String, reason: String },
    #[error("writing the self-signed certificate into {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error("making a self-signed certificate: {0}")]
    Generate(String),
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn pem_error(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::Pem { path: path.display().to_string(), reason: reason.to_string() }
}

fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates: Result<Vec<_>, _> =
        CertificateDer::pem_file_iter(path).map_err(|e| pem_error(path, e))?.collect();
    let certificates = certificates.map_err(|e| pem_error(path, e))?;
    if certificates.is_empty() {
        return Err(pem_error(path, "no certificate found"));
    }
    Ok(certificates)
}

/// Writes `apiserver.crt` and `apiserver.key` into `cert_dir` unless they exist.
pub fn self_signed(cert_dir: &Path, hosts: &[String]) -> Result<(std::path::PathBuf, std::path::PathBuf), TlsError> {
    let cert = cert_dir.join("apiserver.crt");
    let key = cert_dir.join("apiserver.key");
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    let write_error = |path: &Path, source| TlsError::Write { path: path.display().to_string(), source };
    std::fs::create_dir_all(cert_dir).map_err(|e| write_error(cert_dir, e))?;
    let generated =
        rcgen::generate_simple_self_signed(hosts.to_vec()).map_err(|e| TlsError::Generate(e.to_string()))?;
    std::fs::write(&cert, generated.cert.pem()).map_err(|e| write_error(&cert, e))?;
    std::fs::write(&key, generated.signing_key.serialize_pem()).map_err(|e| write_error(&key, e))?;
    Ok((cert, key))
}

pub fn server_config(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certificates = load_certificates(cert)?;
    let private_key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, e))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for certificate in load_certificates(ca)? {
                roots.add(certificate).map_err(|e| pem_error(ca, e))?;
            }
            // Clients without a certificate still connect, to present a token.
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config =
        builder.with_single_cert(certificates, private_key).map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
