//! The member's sockets: binding the listen URLs, and the TLS each side uses,
//! with `--auto-tls` certificates made in the data dir.

use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use super::StartError;
use crate::config::{Config, Listen};
use crate::tls::{self, PeerDialer, ServerTls, TlsInfo, TlsOptions};

/// A bound listen URL.
pub struct Bound {
    pub listen: Listen,
    pub listener: TcpListener,
}

pub async fn bind_all(listens: &[Listen]) -> Result<Vec<Bound>, StartError> {
    let mut bound = Vec::with_capacity(listens.len());
    for listen in listens {
        let listener =
            TcpListener::bind(listen.addr).await.map_err(|source| StartError::Bind { addr: listen.addr, source })?;
        bound.push(Bound { listen: *listen, listener });
    }
    Ok(bound)
}

/// Accepted connections with Nagle's algorithm off: `Server::tcp_nodelay` only
/// applies to listeners tonic binds itself, and small responses must not wait
/// for a delayed ACK.
pub fn plain(listener: TcpListener) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    TcpListenerStream::new(listener).map(|accepted| {
        accepted.inspect(|stream| {
            let _ = stream.set_nodelay(true);
        })
    })
}

/// The TLS of the client and peer sides, where some URL needs it.
#[derive(Default)]
pub struct Security {
    pub client: Option<Arc<ServerTls>>,
    pub peer: Option<Arc<ServerTls>>,
    pub dialer: Option<Arc<PeerDialer>>,
}

impl Security {
    pub fn new(config: &Config, data_dir: &Path) -> Result<Security, StartError> {
        let options = config.tls.options().map_err(tls_error)?;
        let client = resolve(config.tls.client(), &options, &data_dir.join(tls::AUTO_TLS_CLIENT_DIR), || {
            Config::listen_hosts(&config.listen_client_urls)
        })?;
        let peer = resolve(config.tls.peer(), &options, &data_dir.join(tls::AUTO_TLS_PEER_DIR), || {
            Config::listen_hosts(&config.listen_peer_urls)
        })?;
        let any_tls = |listens: Vec<Listen>| listens.iter().any(|listen| listen.tls);
        let client_tls = any_tls(config.client_listens()?) || any_tls(config.metrics_listens()?);
        let server = |info: &Option<TlsInfo>, wanted: bool| match info {
            Some(info) if wanted => ServerTls::new(info.clone(), options.clone()).map(Some).map_err(tls_error),
            _ => Ok(None),
        };
        Ok(Security {
            client: server(&client, client_tls)?,
            peer: server(&peer, any_tls(config.peer_listens()?))?,
            dialer: match peer {
                Some(info) => Some(PeerDialer::new(info, options).map_err(tls_error)?),
                None => None,
            },
        })
    }

    /// The TLS of a listen URL of the given side, if it is `https://`; an
    /// `https://` URL is never served in plain text.
    pub fn for_listen(side: &Option<Arc<ServerTls>>, listen: &Listen) -> Result<Option<Arc<ServerTls>>, StartError> {
        match (listen.tls, side) {
            (false, _) => Ok(None),
            (true, Some(tls)) => Ok(Some(tls.clone())),
            (true, None) => Err(StartError::Tls(format!("{} is https, but no TLS is configured for it", listen.addr))),
        }
    }
}

fn tls_error(err: impl std::fmt::Display) -> StartError {
    StartError::Tls(err.to_string())
}

/// One side's settings with `--auto-tls` applied: as in etcd, a generated
/// certificate replaces the side's settings whole; given files win over it.
fn resolve(
    info: TlsInfo,
    options: &TlsOptions,
    fixtures: &Path,
    hosts: impl FnOnce() -> Vec<String>,
) -> Result<Option<TlsInfo>, StartError> {
    if !info.is_empty() {
        if info.auto_tls {
            tracing::warn!(dir = %fixtures.display(), "ignoring auto TLS since certs given");
        }
        return Ok(Some(TlsInfo { auto_tls: false, ..info }));
    }
    if !info.auto_tls {
        return Ok(None);
    }
    let (cert, key) = tls::self_cert(fixtures, &hosts(), options.self_signed_validity_years).map_err(tls_error)?;
    Ok(Some(TlsInfo { cert_file: Some(cert), key_file: Some(key), auto_tls: true, ..TlsInfo::default() }))
}
