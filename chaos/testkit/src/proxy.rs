//! One TCP proxy per directed peer link, so that the nemesis can stall, delay
//! or break the connections one member opens to another.
//!
//! A stalled link stops reading: the sender's writes back up as they would
//! behind a real partition, and nothing is lost or reordered when it heals,
//! as with TCP retransmission.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LinkMode {
    Pass,
    Stall,
    Delay(Duration),
    /// Resets a connection on this fraction of the transfers.
    Lossy(f64),
}

pub struct Link {
    mode: watch::Sender<LinkMode>,
    task: tokio::task::JoinHandle<()>,
}

impl Link {
    /// A proxy listening on `listen_url` that forwards to `target_url` (`http://ip:port`).
    pub async fn start(listen_url: &str, target_url: &str, seed: u64) -> std::io::Result<Link> {
        let (listen, target) = (socket_addr(listen_url)?, socket_addr(target_url)?);
        let listener = TcpListener::bind(listen).await?;
        let (mode, watcher) = watch::channel(LinkMode::Pass);
        let counter = Arc::new(AtomicU64::new(seed));
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let _ = inbound.set_nodelay(true);
                tokio::spawn(serve(inbound, target, watcher.clone(), counter.clone()));
            }
        });
        Ok(Link { mode, task })
    }

    pub fn set(&self, mode: LinkMode) {
        self.mode.send_replace(mode);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn socket_addr(url: &str) -> std::io::Result<SocketAddr> {
    let host_port = url.trim_start_matches("http://");
    host_port
        .parse()
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("not an http://ip:port URL: {url}")))
}

async fn serve(inbound: TcpStream, target: SocketAddr, mut mode: watch::Receiver<LinkMode>, counter: Arc<AtomicU64>) {
    // A connection opened during a stall waits, as a SYN would be retried.
    if wait_unstalled(&mut mode).await.is_err() {
        return;
    }
    let Ok(Ok(outbound)) = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(target)).await else {
        return;
    };
    let _ = outbound.set_nodelay(true);
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    let forward = pump(in_read, out_write, mode.clone(), counter.clone());
    let backward = pump(out_read, in_write, mode, counter);
    // Either side closing (or a reset) ends both directions.
    tokio::select! {
        _ = forward => {}
        _ = backward => {}
    }
}

async fn wait_unstalled(mode: &mut watch::Receiver<LinkMode>) -> Result<(), watch::error::RecvError> {
    mode.wait_for(|mode| *mode != LinkMode::Stall).await.map(|_| ())
}

/// Decides, from a shared counter, whether this transfer is one to drop.
fn unlucky(counter: &AtomicU64, fraction: f64) -> bool {
    let draw = counter.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    let mixed = (draw ^ (draw >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    ((mixed >> 11) as f64 / (1u64 << 53) as f64) < fraction
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<LinkMode>,
    counter: Arc<AtomicU64>,
) {
    // Delayed chunks go through a queue so that a delay does not add up.
    let (queue, mut delayed) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((due, chunk)) = delayed.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
    });
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        if wait_unstalled(&mut mode).await.is_err() {
            break;
        }
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            // Re-check the mode when it changes while idle.
            _ = mode.changed() => continue,
        };
        let Ok(n) = read else { break };
        if n == 0 {
            break;
        }
        let current = *mode.borrow();
        let due = match current {
            LinkMode::Delay(delay) => Instant::now() + delay,
            LinkMode::Lossy(fraction) if unlucky(&counter, fraction) => break,
            _ => Instant::now(),
        };
        if queue.send((due, buffer[..n].to_vec())).is_err() {
            break;
        }
    }
    drop(queue);
    let _ = writer.await;
}
