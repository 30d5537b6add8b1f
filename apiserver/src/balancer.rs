//! A TCP load balancer on loopback, as the reference architecture puts in front
//! of several API servers: each connection goes to the next backend, round
//! robin, skipping one that refuses it; TLS passes through untouched.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// How long a backend may take to accept before the next one is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Accepts on `listener` forever, forwarding to `backends`.
pub async fn run(listener: TcpListener, backends: Vec<SocketAddr>) {
    let backends = Arc::new(backends);
    let next = Arc::new(AtomicUsize::new(0));
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else { continue };
        let backends = backends.clone();
        let first = next.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            for attempt in 0..backends.len() {
                let backend = backends[(first + attempt) % backends.len()];
                if let Ok(Ok(mut outbound)) = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(backend)).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    return;
                }
            }
            tracing::debug!("no backend accepted a connection");
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn t10_connections_skip_a_dead_backend_and_alternate_between_live_ones() {
        let mut live = Vec::new();
        let mut addresses = Vec::new();
        for name in ["a", "b"] {
            let server = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            addresses.push(server.local_addr().expect("addr"));
            live.push(tokio::spawn(async move {
                loop {
                    let Ok((mut stream, _)) = server.accept().await else { return };
                    let _ = stream.write_all(name.as_bytes()).await;
                }
            }));
        }
        // A backend that refuses: a port that was bound and released.
        let dead = TcpListener::bind("127.0.0.1:0").await.expect("bind").local_addr().expect("addr");
        let front = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let front_address = front.local_addr().expect("addr");
        tokio::spawn(run(front, vec![addresses[0], dead, addresses[1]]));
        let mut answers = Vec::new();
        for _ in 0..4 {
            let mut stream = TcpStream::connect(front_address).await.expect("connect");
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await.expect("read");
            answers.push(answer);
        }
        assert!(answers.iter().all(|a| a == "a" || a == "b"), "{answers:?}");
        assert!(answers.contains(&"a".to_string()) && answers.contains(&"b".to_string()), "{answers:?}");
        live.iter().for_each(tokio::task::JoinHandle::abort);
    }
}
