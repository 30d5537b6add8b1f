//! One message's round trip on a long-lived gRPC bidi stream against a
//! length-framed TCP connection, each served the way the member serves
//! replication (a task reads and hands requests on; answers come from a
//! channel). Run `stream-rtt grpc-server` and `stream-rtt raw-server`, then
//! `stream-rtt grpc-client` and `stream-rtt raw-client` in turn.
use std::time::Instant;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
pub mod pb { tonic::include_proto!("echo"); }
use pb::echo_client::EchoClient;
use pb::echo_server::{Echo, EchoServer};
use pb::Msg;

struct Svc;
#[tonic::async_trait]
impl Echo for Svc {
    type StreamStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<Msg, tonic::Status>> + Send>>;
    async fn stream(&self, req: tonic::Request<tonic::Streaming<Msg>>) -> Result<tonic::Response<Self::StreamStream>, tonic::Status> {
        // As openraft does: a task reads requests and hands them on; the answers come from a channel.
        let mut input = req.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel::<Msg>(64);
        tokio::spawn(async move { while let Some(Ok(m)) = input.next().await { if tx.send(m).await.is_err() { break; } } });
        Ok(tonic::Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok))))
    }
}

fn report(label: &str, mut lat: Vec<f64>) {
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = lat.len();
    println!("{label}: p50 {:.1} us p90 {:.1} p99 {:.1}", lat[n / 2], lat[n * 9 / 10], lat[n * 99 / 100]);
}

#[tokio::main(worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args[1].as_str();
    let n: usize = 5000;
    let payload = vec![7u8; 400];
    match mode {
        "grpc-server" => {
            tonic::transport::Server::builder().tcp_nodelay(true).add_service(EchoServer::new(Svc)).serve("127.0.0.91:29001".parse().unwrap()).await.unwrap();
        }
        "raw-server" => {
            let l = tokio::net::TcpListener::bind("127.0.0.91:29002").await.unwrap();
            loop {
                let (s, _) = l.accept().await.unwrap();
                s.set_nodelay(true).unwrap();
                let (mut r, mut w) = s.into_split();
                let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
                // A reader task hands frames on; a writer task writes answers.
                tokio::spawn(async move { loop { let len = match r.read_u32().await { Ok(l) => l as usize, Err(_) => break }; let mut b = vec![0; len]; if r.read_exact(&mut b).await.is_err() { break } if tx.send(b).await.is_err() { break } } });
                tokio::spawn(async move { while let Some(b) = rx.recv().await { let mut f = (b.len() as u32).to_be_bytes().to_vec(); f.extend(b); if w.write_all(&f).await.is_err() { break } } });
            }
        }
        "grpc-client" => {
            let mut c = EchoClient::connect("http://127.0.0.91:29001").await.unwrap();
            let (tx, rx) = tokio::sync::mpsc::channel::<Msg>(64);
            let mut answers = c.stream(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
            let mut lat = Vec::new();
            for i in 0..n + 500 {
                tokio::time::sleep(std::time::Duration::from_micros(200)).await;
                let t = Instant::now();
                tx.send(Msg { data: payload.clone() }).await.unwrap();
                answers.next().await.unwrap().unwrap();
                if i >= 500 { lat.push(t.elapsed().as_secs_f64() * 1e6); }
            }
            report("grpc bidi stream", lat);
        }
        "raw-client" => {
            let s = tokio::net::TcpStream::connect("127.0.0.91:29002").await.unwrap();
            s.set_nodelay(true).unwrap();
            let (mut r, mut w) = s.into_split();
            let mut lat = Vec::new();
            for i in 0..n + 500 {
                tokio::time::sleep(std::time::Duration::from_micros(200)).await;
                let t = Instant::now();
                let mut f = (payload.len() as u32).to_be_bytes().to_vec(); f.extend(&payload);
                w.write_all(&f).await.unwrap();
                let len = r.read_u32().await.unwrap() as usize; let mut b = vec![0; len]; r.read_exact(&mut b).await.unwrap();
                if i >= 500 { lat.push(t.elapsed().as_secs_f64() * 1e6); }
            }
            report("raw tcp", lat);
        }
        _ => panic!("mode"),
    }
}
