//! Peer links: connections of their own, beside the gRPC peer service on the
//! same peer URL, for the messages every write waits on: replication, and a
//! follower's forwarded writes and read-index requests. A message on a gRPC
//! stream passes through hyper's tasks on both members (the request body's
//! pipe, the response body's task and the connection's task each way); on a
//! link the sending task writes the socket itself and the reading task reads
//! it. Measured on these machines, a round trip on a link took 47 µs against
//! 77 µs on a gRPC stream (docs/benchmarks.md).
//!
//! The wire: the dialer sends its [`Kind`]'s magic and its cluster id (8
//! bytes, big endian); the listener answers one byte, [`ACCEPTED`],
//! [`OTHER_CLUSTER`] or [`UNKNOWN_KIND`]. Then each side sends frames: a kind
//! byte, a 4-byte big-endian length and that many bytes, a message (requests
//! one way, answers the other, as on the kind's gRPC stream) or, from the
//! listener, an error that ends the link.
//! - [`Kind::Replication`]: `RaftPayload` data, as on `StreamAppend`; requests
//!   are sent ahead of their answers ([`exchange`]).
//! - [`Kind::Propose`] and [`Kind::ReadIndex`]: the protobuf messages of
//!   `ProposeStream` and `ReadIndexStream`, one call at a time ([`CallLink`]).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use cairn_proto::cairnpb::RaftPayload;
use futures::{FutureExt, Stream, StreamExt};
use prost::bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tonic::{Code, Status};

use crate::tls::PeerDialer;

/// How every link's magic starts. A gRPC connection starts otherwise, with
/// HTTP/2's preface ("PRI * HTTP/2.0"), so both share the peer URL.
pub const MAGIC_PREFIX: &[u8; 6] = b"cairn-";
pub const MAGIC_BYTES: usize = 8;

/// What a link carries, named by the magic its dialer sends first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A leader's replication stream to a follower.
    Replication,
    /// A follower's forwarded writes to the leader.
    Propose,
    /// A follower's read-index requests to the leader.
    ReadIndex,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Replication, Kind::Propose, Kind::ReadIndex];

    pub fn magic(self) -> &'static [u8; MAGIC_BYTES] {
        match self {
            Kind::Replication => b"cairn-rl",
            Kind::Propose => b"cairn-pw",
            Kind::ReadIndex => b"cairn-ri",
        }
    }

    pub fn of_magic(magic: &[u8]) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.magic() == magic)
    }
}

/// The listener takes the link.
pub const ACCEPTED: u8 = 1;
/// The listener belongs to another cluster.
pub const OTHER_CLUSTER: u8 = 2;
/// The listener takes links, but not of this kind (a build older than the kind).
pub const UNKNOWN_KIND: u8 = 3;

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
    #[error("the peer does not take this kind of link: {0}")]
    Lacking(String),
    #[error("the peer belongs to another cluster")]
    OtherCluster,
    #[error("{0}")]
    Unreachable(String),
}

/// A connection to the peer whose listener has taken a link of `kind`.
pub async fn dial(dial: &Dial, kind: Kind, cluster_id: u64) -> Result<Box<dyn Io>, DialError> {
    match tokio::time::timeout(dial.timeout, connect_and_greet(dial, kind, cluster_id)).await {
        Ok(linked) => linked,
        Err(_) => Err(DialError::Unreachable(format!("{}:{}: no answer in {:?}", dial.host, dial.port, dial.timeout))),
    }
}

async fn connect_and_greet(dial: &Dial, kind: Kind, cluster_id: u64) -> Result<Box<dyn Io>, DialError> {
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
    let mut hello = kind.magic().to_vec();
    hello.extend_from_slice(&cluster_id.to_be_bytes());
    io.write_all(&hello).await.map_err(|err| unreachable(&err))?;
    io.flush().await.map_err(|err| unreachable(&err))?;
    let mut answer = [0u8; 1];
    match io.read(&mut answer).await {
        Ok(1) if answer[0] == ACCEPTED => Ok(io),
        Ok(1) if answer[0] == OTHER_CLUSTER => Err(DialError::OtherCluster),
        Ok(1) if answer[0] == UNKNOWN_KIND => Err(DialError::Lacking(format!("no {kind:?} links")).at(dial)),
        // An older build's gRPC server answers in HTTP/2 first (its SETTINGS frame).
        Ok(1) => Err(DialError::Lacking("answered in another protocol".into()).at(dial)),
        // The first builds with links (24aab03, 06c1c0f) close a link of
        // another kind unanswered, with its cluster id unread: a reset as a
        // rule. A forwarded call costs little more on gRPC, and a stopping
        // member refuses it there too.
        Ok(_) | Err(_) if kind != Kind::Replication => {
            Err(DialError::Lacking(format!("closed a {kind:?} link without an answer")).at(dial))
        }
        // Closed unanswered: a stopping member, or a TLS check that failed.
        Ok(_) => Err(unreachable(&"closed without an answer")),
        Err(err) => Err(unreachable(&err)),
    }
}

impl DialError {
    fn at(self, dial: &Dial) -> DialError {
        match self {
            DialError::Lacking(reason) => DialError::Lacking(format!("{}:{}: {reason}", dial.host, dial.port)),
            other => other,
        }
    }
}

/// Reads the dialer's cluster id, the magic having been read.
pub async fn read_cluster_id(io: &mut impl Io) -> io::Result<u64> {
    let mut id = [0u8; 8];
    io.read_exact(&mut id).await?;
    Ok(u64::from_be_bytes(id))
}

/// Sends each of `requests` on the link and returns the answers, in order. The
/// requests stop being sent once the answers are dropped.
/// The dialer's side of a [`Kind::Replication`] link.
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
            _ = write_frames(writer, requests.map(|payload| Ok::<_, Status>(payload.data))) => {}
        }
    });
    frames(reader).map(move |answer| {
        let _held_until_the_answers_are_dropped = &answers_dropped;
        answer.map(|data| RaftPayload { cluster_id, data })
    })
}

/// The dialer's side of a link of calls ([`Kind::Propose`], [`Kind::ReadIndex`]):
/// a request, then its answer, in turn.
pub struct CallLink {
    io: BufReader<Box<dyn Io>>,
}

impl CallLink {
    /// A link that [`dial`] opened for a kind of calls.
    pub fn new(io: Box<dyn Io>) -> CallLink {
        CallLink { io: BufReader::new(io) }
    }

    /// Sends `request` and waits for its answer. A link whose call failed, or
    /// was dropped unanswered, must not be used again.
    pub async fn call(&mut self, request: &[u8]) -> Result<Bytes, Status> {
        let broken = |err: io::Error| Status::unavailable(format!("peer link: {err}"));
        self.io.write_all(&frame(MESSAGE, request).map_err(broken)?).await.map_err(broken)?;
        self.io.flush().await.map_err(broken)?;
        match read_frame(&mut self.io).await.map_err(broken)? {
            Some((MESSAGE, answer)) => Ok(answer),
            Some((_, error)) => Err(error_status(&error)),
            None => Err(Status::unavailable("peer link ended")),
        }
    }

    /// Whether an idle link has ended: its connection closed (the peer
    /// restarted or stopped), or it holds bytes nobody asked for.
    pub fn has_ended(&mut self) -> bool {
        self.io.fill_buf().now_or_never().is_some()
    }
}

/// The frames read from `reader`. An error frame, or a broken connection, is
/// the last item; the end of the connection ends the stream.
pub fn frames(
    reader: impl AsyncRead + Send + Unpin + 'static,
) -> impl Stream<Item = Result<Bytes, Status>> + Send + 'static {
    futures::stream::unfold(Some(BufReader::new(reader)), move |reader| async move {
        let mut reader = reader?;
        match read_frame(&mut reader).await {
            Ok(Some((MESSAGE, data))) => Some((Ok(data), Some(reader))),
            Ok(Some((_, data))) => Some((Err(error_status(&data)), None)),
            Ok(None) => None,
            Err(err) => Some((Err(Status::unavailable(format!("peer link: {err}"))), None)),
        }
    })
}

/// Writes each message of `items` as a frame, and an error as the last; then
/// closes the writing side.
pub async fn write_frames(
    mut writer: impl AsyncWrite + Unpin,
    items: impl Stream<Item = Result<Bytes, Status>>,
) -> io::Result<()> {
    let mut items = std::pin::pin!(items);
    while let Some(item) = items.next().await {
        let (kind, data) = match &item {
            Ok(message) => (MESSAGE, message.clone()),
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
        None => Status::unknown("peer link: an empty error"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(data: &'static [u8]) -> Bytes {
        Bytes::from_static(data)
    }

    #[tokio::test]
    async fn frames_carry_payloads_then_an_error_that_ends_them() {
        let (ours, theirs) = tokio::io::duplex(64);
        let sent = futures::stream::iter([
            Ok(message(b"first")),
            Ok(message(b"")),
            Err(Status::unavailable("core stopped")),
            Ok(message(b"never sent")),
        ]);
        write_frames(ours, sent).await.expect("written");
        let read: Vec<_> = frames(theirs).collect().await;
        assert_eq!(read.len(), 3, "the error is the last item: {read:?}");
        assert_eq!(read[0].as_ref().expect("a message"), &message(b"first"));
        assert_eq!(read[1].as_ref().expect("a message"), &message(b""));
        let status = read[2].as_ref().expect_err("the error");
        assert_eq!((status.code(), status.message()), (Code::Unavailable, "core stopped"));
    }

    #[tokio::test]
    async fn a_connection_cut_inside_a_frame_is_an_error_and_one_cut_between_frames_an_end() {
        let mut cut = frame(MESSAGE, b"whole").expect("frame");
        let whole = cut.len();
        cut.extend_from_slice(&frame(MESSAGE, b"cut short").expect("frame")[..8]);
        let read: Vec<_> = frames(std::io::Cursor::new(cut.clone())).collect().await;
        assert_eq!(read.len(), 2);
        assert!(read[0].is_ok());
        assert_eq!(read[1].as_ref().expect_err("cut").code(), Code::Unavailable);

        let read: Vec<_> = frames(std::io::Cursor::new(cut[..whole].to_vec())).collect().await;
        assert_eq!(read.len(), 1, "ended cleanly after the whole frame");
    }

    #[tokio::test]
    async fn a_frame_longer_than_a_peer_message_may_be_is_refused_before_it_is_read() {
        let mut header = vec![MESSAGE];
        header.extend_from_slice(&u32::MAX.to_be_bytes());
        let read: Vec<_> = frames(std::io::Cursor::new(header)).collect().await;
        assert_eq!(read.len(), 1);
        assert!(read[0].as_ref().expect_err("refused").message().contains("bytes"));
    }

    /// What a test listener does with a dial.
    #[derive(Clone, Copy)]
    enum Listener {
        Answers(&'static [u8]),
        Closes,
        /// As the first builds with links close a kind they lack: the
        /// cluster id unread, so that the dialer sees a reset.
        ClosesAfterTheMagic,
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
                let heard = match does {
                    Listener::ClosesAfterTheMagic => &mut hello[..MAGIC_BYTES],
                    _ => &mut hello[..],
                };
                if tcp.read_exact(heard).await.is_err() {
                    continue;
                }
                match does {
                    Listener::Answers(answer) => {
                        let _ = tcp.write_all(answer).await;
                    }
                    Listener::Closes | Listener::ClosesAfterTheMagic => continue,
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
        let replication = Kind::Replication;
        assert!(dial(&listener(Listener::Answers(&[ACCEPTED])).await, replication, 1).await.is_ok());
        let other = dial(&listener(Listener::Answers(&[OTHER_CLUSTER])).await, replication, 1).await;
        assert!(matches!(other, Err(DialError::OtherCluster)), "{:?}", other.err());
        // An older build's gRPC server answers in HTTP/2 (a SETTINGS frame).
        let http2 = dial(&listener(Listener::Answers(&[0, 0, 0, 4])).await, replication, 1).await;
        assert!(matches!(http2, Err(DialError::Lacking(_))), "{:?}", http2.err());
        let unknown = dial(&listener(Listener::Answers(&[UNKNOWN_KIND])).await, Kind::Propose, 1).await;
        assert!(matches!(unknown, Err(DialError::Lacking(_))), "{:?}", unknown.err());
        // A stopping member closes: not a reason to give up on replication
        // links. A build with replication links alone closes a call link so.
        let closed = dial(&listener(Listener::Closes).await, replication, 1).await;
        assert!(matches!(closed, Err(DialError::Unreachable(_))), "{:?}", closed.err());
        let closed = dial(&listener(Listener::Closes).await, Kind::ReadIndex, 1).await;
        assert!(matches!(closed, Err(DialError::Lacking(_))), "{:?}", closed.err());
        let reset = dial(&listener(Listener::ClosesAfterTheMagic).await, Kind::Propose, 1).await;
        assert!(matches!(reset, Err(DialError::Lacking(_))), "{:?}", reset.err());
        let reset = dial(&listener(Listener::ClosesAfterTheMagic).await, replication, 1).await;
        assert!(matches!(reset, Err(DialError::Unreachable(_))), "{:?}", reset.err());
        let silent = dial(&listener(Listener::Silent).await, Kind::Propose, 1).await;
        assert!(matches!(silent, Err(DialError::Unreachable(_))), "{:?}", silent.err());
    }

    #[test]
    fn every_kind_has_a_magic_of_its_own_with_the_common_prefix() {
        for kind in Kind::ALL {
            assert!(kind.magic().starts_with(MAGIC_PREFIX));
            assert_eq!(Kind::of_magic(kind.magic()), Some(kind));
        }
        assert_eq!(Kind::of_magic(b"cairn-zz"), None);
    }

    /// A listener that takes a call link and answers each request with
    /// itself reversed, an error for "fail", and closes after "close".
    async fn reversing_listener() -> Dial {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.expect("accept");
            let mut hello = [0u8; 16];
            tcp.read_exact(&mut hello).await.expect("hello");
            assert_eq!(&hello[..MAGIC_BYTES], Kind::Propose.magic());
            tcp.write_all(&[ACCEPTED]).await.expect("answer");
            let (reader, writer) = tokio::io::split(tcp);
            let answers = frames(reader)
                .take_while(|request| std::future::ready(!matches!(request, Ok(request) if &request[..] == b"close")));
            let answers = answers.map(|request| match request {
                Ok(request) if &request[..] == b"fail" => Err(Status::not_found("no such thing")),
                Ok(request) => Ok(Bytes::from(request.iter().rev().copied().collect::<Vec<u8>>())),
                Err(status) => Err(status),
            });
            let _ = write_frames(writer, answers).await;
        });
        Dial { host: "127.0.0.1".into(), port, tls: None, timeout: Duration::from_secs(5) }
    }

    #[tokio::test]
    async fn a_call_link_answers_each_call_in_turn_and_tells_when_it_has_ended() {
        let mut link = CallLink::new(dial(&reversing_listener().await, Kind::Propose, 1).await.expect("opened"));
        for request in [&b"abc"[..], b"", b"hello"] {
            let answer = link.call(request).await.expect("answered");
            assert_eq!(answer.iter().rev().copied().collect::<Vec<u8>>(), request);
            assert!(!link.has_ended(), "an idle link that was answered is alive");
        }
        let failed = link.call(b"fail").await.expect_err("an error frame");
        assert_eq!((failed.code(), failed.message()), (Code::NotFound, "no such thing"));
        let bounded = Duration::from_secs(5);
        tokio::time::timeout(bounded, async {
            while !link.has_ended() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the listener closed the link after its error");

        let mut link = CallLink::new(dial(&reversing_listener().await, Kind::Propose, 1).await.expect("opened"));
        let ended = link.call(b"close").await.expect_err("closed unanswered");
        assert_eq!(ended.code(), Code::Unavailable);
    }
}
