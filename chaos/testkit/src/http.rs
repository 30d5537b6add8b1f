//! A small HTTP/1.1 client over a plain socket, for the JSON gateway's tests:
//! it sends exactly the bytes a test asks for, and reads a stream for a
//! bounded time, line by line, as Patroni and lua-resty-etcd read it.

use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An answer: its status, headers (names lower-cased) and body, de-chunked.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body's lines: a stream's messages (a failed stream's error has no newline after it).
    pub fn lines(&self) -> Vec<String> {
        self.text().lines().map(str::to_string).collect()
    }
}

/// One request: method, path, extra headers, body.
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a str,
}

impl<'a> Request<'a> {
    pub fn post(path: &'a str, body: &'a str) -> Self {
        Request { method: "POST", path, headers: &[], body }
    }
}

/// A plain GET with curl, as an operator would, bounded at 5 s: the body, or nothing.
pub fn curl_get(url: &str) -> String {
    let out = std::process::Command::new("curl").args(["-s", "--max-time", "5", url]).output();
    out.map(|out| String::from_utf8_lossy(&out.stdout).into_owned()).unwrap_or_default()
}

/// `endpoint` is `http://host:port`.
pub async fn send(endpoint: &str, request: &Request<'_>) -> anyhow::Result<Reply> {
    exchange(endpoint, request, None, Duration::from_secs(30)).await
}

/// Reads a streaming answer until it holds `lines` lines (and whatever more
/// comes in the next 200 ms, so that an extra message shows), it ends, or
/// `wait` passes; then hangs up, as a client that is done watching does.
pub async fn stream(endpoint: &str, request: &Request<'_>, lines: usize, wait: Duration) -> anyhow::Result<Reply> {
    exchange(endpoint, request, Some(lines), wait).await
}

async fn exchange(
    endpoint: &str,
    request: &Request<'_>,
    lines: Option<usize>,
    wait: Duration,
) -> anyhow::Result<Reply> {
    let addr = endpoint.strip_prefix("http://").context("a plain http:// endpoint")?;
    let mut socket = TcpStream::connect(addr).await.with_context(|| format!("connect {addr}"))?;
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n",
        request.method,
        request.path,
        request.body.len()
    );
    for (name, value) in request.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    // One write: a server that answers from the head alone and closes with
    // the body still unread resets the connection, and the answer is lost.
    head.push_str(request.body);
    socket.write_all(head.as_bytes()).await?;

    let mut deadline = tokio::time::Instant::now() + wait;
    let mut enough = false;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if let Some(reply) = parse(&raw)? {
            if !enough && lines.is_some_and(|lines| reply.body.iter().filter(|&&b| b == b'\n').count() >= lines) {
                enough = true;
                deadline = deadline.min(tokio::time::Instant::now() + Duration::from_millis(200));
            }
        }
        let read = match tokio::time::timeout_at(deadline, socket.read(&mut buf)).await {
            // A reset after a whole answer ends it as a close would.
            Ok(Err(err)) if err.kind() == std::io::ErrorKind::ConnectionReset && complete(&raw) => 0,
            Ok(read) => read?,
            Err(_) if lines.is_some() => 0,
            Err(_) => bail!("no complete answer to {} within {wait:?}", request.path),
        };
        if read == 0 {
            return parse(&raw)?
                .with_context(|| format!("the connection closed mid-answer: {:?}", String::from_utf8_lossy(&raw)));
        }
        raw.extend_from_slice(&buf[..read]);
    }
}

/// The answer so far, once its head is complete.
fn parse(raw: &[u8]) -> anyhow::Result<Option<Reply>> {
    let Some(end) = raw.windows(4).position(|window| window == b"\r\n\r\n") else { return Ok(None) };
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut head_lines = head.split("\r\n");
    let status_line = head_lines.next().unwrap_or_default();
    let status = status_line.split(' ').nth(1).and_then(|code| code.parse().ok()).context("a status line")?;
    let headers: Vec<(String, String)> = head_lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers.iter().any(|(name, value)| name == "transfer-encoding" && value.contains("chunked"));
    let body = if chunked { dechunk(rest) } else { rest.to_vec() };
    Ok(Some(Reply { status, headers, body }))
}

/// Whether `raw` holds a whole answer: its Content-Length, or its last chunk.
fn complete(raw: &[u8]) -> bool {
    let Some(end) = raw.windows(4).position(|window| window == b"\r\n\r\n") else { return false };
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let rest = &raw[end + 4..];
    let length = head.lines().find_map(|line| line.strip_prefix("content-length:")).and_then(|n| n.trim().parse().ok());
    match length {
        Some(length) => rest.len() >= length,
        None => rest.ends_with(b"0\r\n\r\n"),
    }
}

/// The complete chunks' data.
fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(line_end) = rest.windows(2).position(|window| window == b"\r\n") {
        let size = String::from_utf8_lossy(&rest[..line_end]);
        let Ok(size) = usize::from_str_radix(size.split(';').next().unwrap_or_default().trim(), 16) else { break };
        let start = line_end + 2;
        if size == 0 || rest.len() < start + size + 2 {
            break;
        }
        body.extend_from_slice(&rest[start..start + size]);
        rest = &rest[start + size + 2..];
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunks_complete_chunks_only() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab\ncd\r\n3\r\nef\n\r\n4\r\ngh";
        let reply = parse(raw).expect("parses").expect("a head");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), "ab\ncdef\n");
        assert_eq!(reply.lines(), vec!["ab", "cdef"]);
        assert_eq!(dechunk(b"2\r\nab\r\n0\r\n\r\n"), b"ab");
    }

    #[test]
    fn an_answer_is_complete_at_its_length_or_last_chunk() {
        assert!(complete(b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nab"));
        assert!(!complete(b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nab"));
        assert!(complete(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n"));
        assert!(!complete(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n"));
        assert!(!complete(b"HTTP/1.1 200 OK\r\n"));
    }
}
