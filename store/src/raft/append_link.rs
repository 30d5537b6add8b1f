//! Replication streams on connections of their own, beside the gRPC peer
//! service on the same peer URL. A message on a gRPC stream passes through
//! hyper's tasks on both members (the request body's pipe, the response
//! body's task and the connection's task each way); on a link the sending
//! task writes the socket itself and openraft's reading task reads it.
//! Measured on these machines, a round trip on a link took 47 µs against
//! 77 µs on a gRPC stream (docs/benchmarks.md), and every write waits for
//! one replication round trip.
//!
//! The wire: the dialer sends [`MAGIC`] and its cluster id (8 bytes, big
//! endian); the listener answers one byte, [`ACCEPTED`] or [`OTHER_CLUSTER`].
//! Then each side sends frames: a kind byte, a 4-byte big-endian length and
//! that many bytes, a `RaftPayload`'s data (requests one way, answers the
//! other, as on the gRPC `StreamAppend`) or, from the listener, an error that
//! ends the stream.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use cairn_proto::cairnpb::RaftPayload;
use futures::{Stream, StreamExt};
use prost::bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tonic::{Code, Status};

use crate::tls::PeerDialer;

/// What a link's dialer sends first. A gRPC connection starts otherwise, with
/// HTTP/2's preface ("PRI * HTTP/2.0"), so both share the peer URL.
pub const MAGIC: &[u8; 8] = b"cairn-rl";
/// The listener takes the link.
pub const ACCEPTED: u8 = 1;
/// The listener belongs to another cluster.
pub const OTHER_CLUSTER: u8 = 2;

const MESSAGE: u8 = 0;
const ERROR: u8 = 1;
const HEADER_BYTES: usize = 5;

/// A connection either side of a link.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// Where and how to dial a peer's link.
#[derive(Clone)]
pub struct Dial {
    pub host: String,
    pub port: u16,
    /// TLS, and the name to verify (the advertised URL's host).
    pub tls: Option<(Arc<PeerDialer>, String)>,
    /// For the connection, TLS and the listener's answer together.
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// The peer did not take the link (an older build): use gRPC.
    #[error("the peer does not take replication links: {0}")]
    Lacking(String),
    #[error("the peer belongs to another cluster")]
    OtherCluster,
    #[error("{0}")]
    Unreachable(String),
}

/// A connection to the peer whose listener has taken the link.
pub async fn dial(dial: &Dial, cluster_id: u64) -> Result<Box<dyn Io>, DialError> {
    match tokio::time::timeout(dial.timeout, connect_and_greet(dial, cluster_id)).await {
        Ok(linked) => linked,
        Err(_) => Err(DialError::Unreachable(format!("{}:{}: no answer in {:?}", dial.host, dial.port, dial.timeout))),
    }
}

async fn connect_and_greet(dial: &Dial, cluster_id: u64) -> Result<Box<dyn Io>, DialError> {
    let unreachable =
        |err: &dyn std::fmt::Display| DialError::Unreachable(format!("{}:{}: {err}", dial.host, dial.port));
    let mut io: Box<dyn Io> = match &dial.tls {
        Some((dialer, name)) => {
            Box::new(dialer.dial(name, &dial.host, dial.port).await.map_err(|err| unreachable(&err))?)
        }
        None => {
            let host = dial.host.trim_start_matches('[').trim_end_matches(']');
            let tcp = TcpStream::connect((host, dial.port)).await.map_err(|err| unreachable(&err))?;
            let _ = tcp.set_nodelay(true);
            Box::new(tcp)
        }
    };
    let mut hello = MAGIC.to_vec();
    hello.extend_from_slice(&cluster_id.to_be_bytes());
    io.write_all(&hello).await.map_err(|err| unreachable(&err))?;
    io.flush().await.map_err(|err| unreachable(&err))?;
    let mut answer = [0u8; 1];
    match io.read(&mut answer).await {
        Ok(1) if answer[0] == ACCEPTED => Ok(io),
        Ok(1) if answer[0] == OTHER_CLUSTER => Err(DialError::OtherCluster),
        // An older build's gRPC server answers in HTTP/2 first (its SETTINGS frame).
        Ok(1) => Err(DialError::Lacking(format!("{}:{} answered in another protocol", dial.host, dial.port))),
        // Closed unanswered: a stopping member, or a TLS check that failed.
        Ok(_) => Err(unreachable(&"closed without an answer")),
        Err(err) => Err(unreachable(&err)),
    }
}

/// Reads the dialer's cluster id, [`MAGIC`] having been read.
pub async fn read_cluster_id(io: &mut impl Io) -> io::Result<u64> {
    let mut id = [0u8; 8];
    io.read_exact(&mut id).await?;
    Ok(u64::from_be_bytes(id))
}

/// Sends each of `requests` on the link and returns the answers, in order. The
/// requests stop being sent once the answers are dropped.
pub fn exchange(
    io: Box<dyn Io>,
    cluster_id: u64,
    requests: impl Stream<Item = RaftPayload> + Send + 'static,
) -> impl Stream<Item = Result<RaftPayload, Status>> + Send + 'static {
    let (reader, writer) = tokio::io::split(io);
    let (answers_dropped, dropped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        // A peer that stopped reading must not hold this task in a write.
        tokio::select! {
            _ = dropped => {}
            _ = write_frames(writer, requests.map(Ok)) => {}
        }
    });
    frames(reader, cluster_id).map(move |answer| {
        let _held_until_the_answers_are_dropped = &answers_dropped;
        answer
    })
}

/// The frames read from `reader` as the payloads of `cluster_id`. An error
/// frame, or a broken connection, is the last item; the end of the connection
/// ends the stream.
pub fn frames(
    reader: impl AsyncRead + Send + Unpin + 'static,
    cluster_id: u64,
) -> impl Stream<Item = Result<RaftPayload, Status>> + Send + 'static {
    futures::stream::unfold(Some(BufReader::new(reader)), move |reader| async move {
        let mut reader = reader?;
        match read_frame(&mut reader).await {
            Ok(Some((MESSAGE, data))) => Some((Ok(RaftPayload { cluster_id, data }), Some(reader))),
            Ok(Some((_, data))) => Some((Err(error_status(&data)), None)),
            Ok(None) => None,
            Err(err) => Some((Err(Status::unavailable(format!("replication link: {err}"))), None)),
        }
    })
}

/// Writes each payload of `items` as a frame, and an error as the last; then
/// closes the writing side.
pub async fn write_frames(
    mut writer: impl AsyncWrite + Unpin,
    items: impl Stream<Item = Result<RaftPayload, Status>>,
) -> io::Result<()> {
    let mut items = std::pin::pin!(items);
    while let Some(item) = items.next().await {
        let (kind, data) = match &item {
            Ok(payload) => (MESSAGE, payload.data.clone()),
            Err(status) => (ERROR, error_bytes(status)),
        };
        writer.write_all(&frame(kind, &data)?).await?;
        writer.flush().await?;
        if item.is_err() {
            break;
        }
    }
    writer.shutdown().await
}

fn frame(kind: u8, data: &[u8]) -> io::Result<Vec<u8>> {
    let length = u32::try_from(data.len()).map_err(|_| io::Error::other("a replication message over 4 GiB"))?;
    let mut frame = Vec::with_capacity(HEADER_BYTES + data.len());
    frame.push(kind);
    frame.extend_from_slice(&length.to_be_bytes());
    frame.extend_from_slice(data);
    Ok(frame)
}

/// The next frame, or `None` if the connection ended between frames.
async fn read_frame(reader: &mut (impl AsyncRead + Unpin)) -> io::Result<Option<(u8, Bytes)>> {
    let mut header = [0u8; HEADER_BYTES];
    if reader.read(&mut header[..1]).await? == 0 {
        return Ok(None);
    }
    reader.read_exact(&mut header[1..]).await?;
    let length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if length > super::network::MAX_PEER_MESSAGE_BYTES {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("a frame of {length} bytes")));
    }
    // Grown as the bytes arrive: a length alone does not allocate it.
    let mut data = Vec::with_capacity(length.min(1 << 20));
    let read = reader.take(length as u64).read_to_end(&mut data).await?;
    if read < length {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("a frame cut at {read} of {length} bytes")));
    }
    Ok(Some((header[0], Bytes::from(data))))
}

/// An error frame's bytes: the gRPC code, then the message.
fn error_bytes(status: &Status) -> Bytes {
    let mut bytes = vec![u8::try_from(i32::from(status.code())).unwrap_or(u8::MAX)];
    bytes.extend_from_slice(status.message().as_bytes());
    Bytes::from(bytes)
}

fn error_status(bytes: &[u8]) -> Status {
    match bytes.split_first() {
        Some((code, message)) => Status::new(Code::from(i32::from(*code)), String::from_utf8_lossy(message)),
        None => Status::unknown("replication link: an empty error"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(data: &'static [u8]) -> RaftPayload {
        RaftPayload { cluster_id: 7, data: Bytes::from_static(data) }
    }

    #[tokio::test]
    async fn frames_carry_payloads_then_an_error_that_ends_them() {
        let (ours, theirs) = tokio::io::duplex(64);
        let sent = futures::stream::iter([
            Ok(payload(b"first")),
            Ok(payload(b"")),
            Err(Status::unavailable("core stopped")),
            Ok(payload(b"never sent")),
        ]);
        write_frames(ours, sent).await.expect("written");
        let read: Vec<_> = frames(theirs, 7).collect().await;
        assert_eq!(read.len(), 3, "the error is the last item: {read:?}");
        assert_eq!(read[0].as_ref().expect("a payload"), &payload(b"first"));
        assert_eq!(read[1].as_ref().expect("a payload"), &payload(b""));
        let status = read[2].as_ref().expect_err("the error");
        assert_eq!((status.code(), status.message()), (Code::Unavailable, "core stopped"));
    }

    #[tokio::test]
    async fn a_connection_cut_inside_a_frame_is_an_error_and_one_cut_between_frames_an_end() {
        let mut cut = frame(MESSAGE, b"whole").expect("frame");
        let whole = cut.len();
        cut.extend_from_slice(&frame(MESSAGE, b"cut short").expect("frame")[..8]);
        let read: Vec<_> = frames(std::io::Cursor::new(cut.clone()), 1).collect().await;
        assert_eq!(read.len(), 2);
        assert!(read[0].is_ok());
        assert_eq!(read[1].as_ref().expect_err("cut").code(), Code::Unavailable);

        let read: Vec<_> = frames(std::io::Cursor::new(cut[..whole].to_vec()), 1).collect().await;
        assert_eq!(read.len(), 1, "ended cleanly after the whole frame");
    }

    #[tokio::test]
    async fn a_frame_longer_than_a_peer_message_may_be_is_refused_before_it_is_read() {
        let mut header = vec![MESSAGE];
        header.extend_from_slice(&u32::MAX.to_be_bytes());
        let read: Vec<_> = frames(std::io::Cursor::new(header), 1).collect().await;
        assert_eq!(read.len(), 1);
        assert!(read[0].as_ref().expect_err("refused").message().contains("bytes"));
    }

    /// What a test listener does with a dial.
    #[derive(Clone, Copy)]
    enum Listener {
        Answers(&'static [u8]),
        Closes,
        Silent,
    }

    /// A listener on a loopback port of its own; what it answers is held open
    /// long past the dial's timeout.
    async fn listener(does: Listener) -> Dial {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let mut hello = [0u8; 16];
                if tcp.read_exact(&mut hello).await.is_err() {
                    continue;
                }
                match does {
                    Listener::Answers(answer) => {
                        let _ = tcp.write_all(answer).await;
                    }
                    Listener::Closes => continue,
                    Listener::Silent => {}
                }
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    drop(tcp)
                });
            }
        });
        Dial { host: "127.0.0.1".into(), port, tls: None, timeout: Duration::from_millis(300) }
    }

    #[tokio::test]
    async fn a_dial_tells_a_link_from_an_older_build_from_another_cluster_from_silence() {
        assert!(dial(&listener(Listener::Answers(&[ACCEPTED])).await, 1).await.is_ok());
        let other = dial(&listener(Listener::Answers(&[OTHER_CLUSTER])).await, 1).await;
        assert!(matches!(other, Err(DialError::OtherCluster)), "{:?}", other.err());
        // An older build's gRPC server answers in HTTP/2 (a SETTINGS frame).
        let http2 = dial(&listener(Listener::Answers(&[0, 0, 0, 4])).await, 1).await;
        assert!(matches!(http2, Err(DialError::Lacking(_))), "{:?}", http2.err());
        // A stopping member closes: not a reason to give up on links.
        let closed = dial(&listener(Listener::Closes).await, 1).await;
        assert!(matches!(closed, Err(DialError::Unreachable(_))), "{:?}", closed.err());
        let silent = dial(&listener(Listener::Silent).await, 1).await;
        assert!(matches!(silent, Err(DialError::Unreachable(_))), "{:?}", silent.err());
    }
}
