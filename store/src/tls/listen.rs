//! The server side: a TLS listener whose handshakes run beside each other,
//! each with the configuration its files hold at that moment.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::files::{self, Reloading};
use super::{identity, TlsError, TlsInfo, TlsOptions};

/// A client that opens a connection and never finishes the handshake holds
/// nothing for longer than this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Resolving a certificate's DNS names for the peer-address check: all at
/// once, at most this many, each within the timeout.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(1);
const MAX_RESOLVED_NAMES: usize = 8;
/// Handshaken connections waiting for the server to take them.
const ACCEPTED_BACKLOG: usize = 64;

/// One listener side's TLS: its settings and the configuration built from its files.
pub struct ServerTls {
    info: TlsInfo,
    options: TlsOptions,
    config: Reloading<ServerConfig>,
}

impl ServerTls {
    /// Checks the files once, so that a bad certificate fails the start.
    pub fn new(info: TlsInfo, options: TlsOptions) -> Result<Arc<ServerTls>, TlsError> {
        let paths = [&info.cert_file, &info.key_file, &info.trusted_ca_file].into_iter().flatten().cloned().collect();
        let tls = ServerTls { info, options, config: Reloading::new(paths) };
        tls.server_config()?;
        Ok(Arc::new(tls))
    }

    fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        self.config.get(|| self.build())
    }

    fn build(&self) -> Result<ServerConfig, TlsError> {
        let (Some(cert), Some(key)) = (&self.info.cert_file, &self.info.key_file) else {
            return Err(TlsError::Verifier("KeyFile and CertFile are not presented".into()));
        };
        let provider = self.options.provider.clone();
        let builder =
            ServerConfig::builder_with_provider(provider.clone()).with_protocol_versions(&self.options.versions)?;
        let builder = if self.info.requires_client_cert() {
            let ca = self.info.trusted_ca_file.as_ref().ok_or_else(|| {
                TlsError::Verifier("client certificate authentication needs a trusted CA file".into())
            })?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(files::roots(ca)?), provider)
                .build()
                .map_err(|err| TlsError::Verifier(err.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder.with_single_cert(files::certs(cert)?, files::key(key)?)?;
        // gRPC and the HTTP endpoints share the port, as on etcd's.
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }

    async fn handshake(&self, tcp: TcpStream, remote: IpAddr) -> Result<TlsStream<TcpStream>, String> {
        let config = self.server_config().map_err(|err| err.to_string())?;
        let stream = TlsAcceptor::from(config).accept(tcp).await.map_err(|err| err.to_string())?;
        let presented = stream.get_ref().1.peer_certificates().map(<[_]>::to_vec).unwrap_or_default();
        // As etcd: the revocation list is read for every connection that
        // sent certificates, and matched by serial against each of them.
        if let Some(crl) = self.info.crl_file.as_ref().filter(|_| !presented.is_empty()) {
            let crl = std::fs::read(crl).map_err(|err| format!("read {}: {err}", crl.display()))?;
            identity::not_revoked(&crl, &presented)?;
        }
        if let Some(cert) = presented.first() {
            let names = identity::names(cert)?;
            let resolved = if self.info.check_client_san && !names.ips.contains(&remote.to_canonical()) {
                resolve(&names.dns).await
            } else {
                HashMap::new()
            };
            let lookup = |dns: &str| resolved.get(dns).cloned().unwrap_or_default();
            identity::check(&names, &self.info, remote, &lookup)?;
        }
        Ok(stream)
    }
}

async fn resolve(names: &[String]) -> HashMap<String, Vec<IpAddr>> {
    let plain = names.iter().filter(|name| !name.starts_with("*.")).take(MAX_RESOLVED_NAMES);
    let lookups = plain.map(|name| async move {
        let lookup = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((name.as_str(), 0))).await;
        let ips = match lookup {
            Ok(Ok(addrs)) => addrs.map(|addr| addr.ip()).collect(),
            _ => Vec::new(),
        };
        (name.clone(), ips)
    });
    futures::future::join_all(lookups).await.into_iter().collect()
}

/// Connections from `listener` once their handshake and etcd's checks pass;
/// the others are logged and closed. Ends when the stream is dropped.
pub fn accept(
    listener: TcpListener,
    tls: Arc<ServerTls>,
) -> impl tokio_stream::Stream<Item = std::io::Result<TlsStream<TcpStream>>> {
    let (ready, accepted) = tokio::sync::mpsc::channel(ACCEPTED_BACKLOG);
    tokio::spawn(async move {
        loop {
            let (tcp, remote) = tokio::select! {
                _ = ready.closed() => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        // Out of descriptors, most likely: wait rather than spin.
                        tracing::warn!(error = %err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let (tls, ready) = (tls.clone(), ready.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.handshake(tcp, remote.ip())).await {
                    Ok(Ok(stream)) => {
                        let _ = ready.send(Ok(stream)).await;
                    }
                    Ok(Err(reason)) => tracing::warn!(remote = %remote, %reason, "rejected connection"),
                    Err(_) => tracing::warn!(remote = %remote, "rejected connection: TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(accepted)
}
