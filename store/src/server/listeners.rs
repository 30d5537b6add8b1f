//! The member's sockets: binding the listen URLs, the TLS each side uses,
//! with `--auto-tls` certificates made in the data dir, and the sorting of
//! a peer URL's connections into gRPC and replication links.

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::server::Connected;

use super::StartError;
use crate::config::{Config, Listen};
use crate::raft::link;
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

/// Connections waiting for the peer server, as for the TLS handshake's.
const SORTED_BACKLOG: usize = 128;
/// How long an accepted peer connection has to say what it is.
const FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(10);

/// The peer URL's connections, sorted by how they start: links ([`link`]) go
/// to `serve_link` with their kind; the others are returned for the gRPC
/// server, their first byte put back. Ends when the stream is dropped.
pub fn sort_peer_connections<IO, Serve, Served>(
    incoming: impl Stream<Item = std::io::Result<IO>> + Send + 'static,
    serve_link: Serve,
) -> impl Stream<Item = std::io::Result<Replayed<IO>>>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    Serve: Fn(link::Kind, IO) -> Served + Send + Sync + 'static,
    Served: std::future::Future<Output = ()> + Send + 'static,
{
    let (sorted, grpc) = tokio::sync::mpsc::channel(SORTED_BACKLOG);
    let serve_link = Arc::new(serve_link);
    tokio::spawn(async move {
        let mut incoming = std::pin::pin!(incoming);
        loop {
            let accepted = tokio::select! {
                _ = sorted.closed() => return,
                accepted = incoming.next() => match accepted {
                    Some(accepted) => accepted,
                    None => return,
                },
            };
            let mut io = match accepted {
                Ok(io) => io,
                Err(err) => {
                    let _ = sorted.send(Err(err)).await;
                    continue;
                }
            };
            let (sorted, serve_link) = (sorted.clone(), serve_link.clone());
            tokio::spawn(async move {
                let mut first = [0u8; 1];
                if !matches!(tokio::time::timeout(FIRST_BYTES_TIMEOUT, io.read(&mut first)).await, Ok(Ok(1))) {
                    return;
                }
                if first[0] != link::MAGIC_PREFIX[0] {
                    let _ = sorted.send(Ok(Replayed { first: Some(first[0]), io })).await;
                    return;
                }
                let mut magic = [0u8; link::MAGIC_BYTES];
                magic[0] = first[0];
                let read = tokio::time::timeout(FIRST_BYTES_TIMEOUT, io.read_exact(&mut magic[1..])).await;
                if !matches!(read, Ok(Ok(_))) {
                    return;
                }
                match link::Kind::of_magic(&magic) {
                    Some(kind) => serve_link(kind, io).await,
                    // A newer build's kind: its dialer falls back to gRPC.
                    None if magic.starts_with(link::MAGIC_PREFIX) => {
                        let _ = io.write_all(&[link::UNKNOWN_KIND]).await;
                        let _ = io.flush().await;
                    }
                    None => {}
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(grpc)
}

/// A connection whose first byte was read to sort it, and is read again first.
pub struct Replayed<IO> {
    first: Option<u8>,
    io: IO,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Replayed<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if buf.remaining() > 0 {
            if let Some(first) = self.first.take() {
                buf.put_slice(&[first]);
                return Poll::Ready(Ok(()));
            }
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Replayed<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl<IO: Connected> Connected for Replayed<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn links_are_served_apart_by_kind_and_other_connections_get_their_first_byte_back() {
        let (linked, mut served_links) = tokio::sync::mpsc::unbounded_channel();
        let dialed =
            [&b"PRI * HTTP/2.0"[..], link::Kind::Replication.magic(), link::Kind::ReadIndex.magic(), b"cairn-zz"];
        let (mut dialers, mut accepted) = (Vec::new(), Vec::new());
        for _ in dialed {
            let (dialer, theirs) = tokio::io::duplex(64);
            dialers.push(dialer);
            accepted.push(Ok(theirs));
        }
        let incoming = futures::stream::iter(accepted).chain(futures::stream::pending());
        let mut grpc = Box::pin(sort_peer_connections(incoming, move |kind, mut io: tokio::io::DuplexStream| {
            let linked = linked.clone();
            async move {
                let mut after_magic = [0u8; 3];
                io.read_exact(&mut after_magic).await.expect("read");
                linked.send((kind, after_magic)).expect("send");
            }
        }));
        for (dialer, first_bytes) in dialers.iter_mut().zip(dialed) {
            dialer.write_all(first_bytes).await.expect("write");
            dialer.write_all(b"abc").await.expect("write");
        }
        let bounded = Duration::from_secs(5);
        let mut replayed = tokio::time::timeout(bounded, grpc.next()).await.expect("sorted").expect("one").expect("ok");
        let mut read = [0u8; 17];
        replayed.read_exact(&mut read).await.expect("read");
        assert_eq!(&read, b"PRI * HTTP/2.0abc", "the gRPC connection reads from its first byte");
        let mut served = Vec::new();
        for _ in 0..2 {
            served.push(tokio::time::timeout(bounded, served_links.recv()).await.expect("served").expect("one"));
        }
        served.sort_by_key(|(kind, _)| *kind != link::Kind::Replication);
        assert_eq!(served, [(link::Kind::Replication, *b"abc"), (link::Kind::ReadIndex, *b"abc")]);
        let mut unknown = [0u8; 1];
        tokio::time::timeout(bounded, dialers[3].read_exact(&mut unknown)).await.expect("answered").expect("read");
        assert_eq!(unknown, [link::UNKNOWN_KIND], "a newer build's kind is answered, not served");
    }
}
