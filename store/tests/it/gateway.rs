//! The JSON gateway, compared with etcd 3.5.1's as raw HTTP: about fifty
//! requests over every service, streams and errors included, then the calls
//! that Patroni's etcd3 module and lua-resty-etcd make, replayed as they send
//! them. Each answer is compared whole, after naming the values that differ
//! between two servers by nature (IDs, terms, tokens, sizes).

use std::collections::HashMap;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use cairn_testkit::http::{self, Reply, Request};
use cairn_testkit::{assert_same_as_etcd, Cluster, Flavor};
use serde_json::Value;

fn b64(text: &str) -> String {
    B64.encode(text)
}

/// What a comparison must not see.
#[derive(Clone, Copy, Default)]
struct Mask {
    /// The text of an error, where Go's JSON decoder and serde word it differently.
    message: bool,
    /// A remaining TTL, which may have ticked.
    ttl: bool,
    /// A stream's deadline error. etcd's gateway client and its server race
    /// to end the stream: 504 (DeadlineExceeded) if the client's timer wins,
    /// 500 (Unknown, the server's raw context error) if the server's does,
    /// about one time in five.
    deadline_race: bool,
}

/// Names the values that differ between two servers, in the order they appear,
/// so that a value seen twice must be the same value twice.
#[derive(Default)]
struct Names {
    ids: HashMap<String, String>,
}

impl Names {
    fn id(&mut self, value: &str) -> String {
        let next = self.ids.len() + 1;
        self.ids.entry(value.to_string()).or_insert_with(|| format!("<id{next}>")).clone()
    }

    /// A key that embeds a lease ID in hex, as lock and election keys do.
    fn key(&self, key: &str) -> String {
        let Ok(decoded) = B64.decode(key) else { return key.to_string() };
        let mut text = String::from_utf8_lossy(&decoded).into_owned();
        for (id, name) in &self.ids {
            match id.parse::<u64>() {
                // Small numbers (watch IDs) would match inside any hex.
                Ok(id) if id > u64::from(u32::MAX) => text = text.replace(&format!("{id:x}"), name),
                _ => {}
            }
        }
        text
    }

    fn normalize(&mut self, value: &mut Value, mask: Mask) {
        match value {
            Value::Object(map) => {
                for (name, field) in map.iter_mut() {
                    match (name.as_str(), &*field) {
                        ("cluster_id" | "member_id" | "ID" | "lease" | "leader" | "watch_id", Value::String(_))
                        | ("ID" | "lease", Value::Number(_)) => {
                            let id = field.as_str().map_or_else(|| field.to_string(), str::to_string);
                            *field = Value::String(self.id(&id));
                        }
                        (
                            "raft_term" | "raftTerm" | "raftIndex" | "raftAppliedIndex" | "dbSize" | "dbSizeInUse"
                            | "token" | "hash" | "peerURLs" | "clientURLs",
                            _,
                        ) => *field = Value::String(format!("<{name}>")),
                        // A status's release; a key's version is data.
                        ("version", Value::String(release)) if release.contains('.') => {
                            *field = Value::String("<version>".into());
                        }
                        ("message" | "error", Value::String(_)) if mask.message => {
                            *field = Value::String("<decode error>".into());
                        }
                        ("TTL", _) if mask.ttl => *field = Value::String("<ttl>".into()),
                        ("error", Value::Object(error)) if mask.deadline_race && is_deadline_error(error) => {
                            *field = Value::String("<context deadline exceeded, 504 or 500>".into());
                        }
                        ("key", Value::String(key)) => *field = Value::String(self.key(key)),
                        _ => self.normalize(field, mask),
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|item| self.normalize(item, mask)),
            _ => {}
        }
    }
}

/// grpc-gateway's error line for a deadline, as the client (code 4) or the server (code 2) saw it.
fn is_deadline_error(error: &serde_json::Map<String, Value>) -> bool {
    let code = error.get("grpc_code").and_then(Value::as_u64);
    error.get("message").and_then(Value::as_str) == Some("context deadline exceeded") && matches!(code, Some(2 | 4))
}

/// A body as the comparison prints it: its JSON objects (a stream's
/// requests come one after another), or its text.
fn shown(names: &mut Names, text: &str, mask: Mask) -> String {
    let values: Result<Vec<Value>, _> = serde_json::Deserializer::from_str(text).into_iter().collect();
    match values {
        Ok(mut values) if !values.is_empty() => {
            values.iter_mut().for_each(|value| names.normalize(value, mask));
            values.iter().map(Value::to_string).collect::<Vec<_>>().join(" ")
        }
        _ => format!("text {text:?}"),
    }
}

/// A client of one server, keeping its record.
struct Gateway {
    endpoint: String,
    names: Names,
    out: Vec<String>,
    token: Option<String>,
    /// The header the token goes in: `Authorization`, or grpc-gateway's `Grpc-Metadata-Token`.
    token_header: &'static str,
    /// A `Grpc-Timeout` header to send.
    timeout: Option<&'static str>,
}

impl Gateway {
    fn new(endpoint: String) -> Self {
        Gateway {
            endpoint,
            names: Names::default(),
            out: Vec::new(),
            token: None,
            token_header: "Authorization",
            timeout: None,
        }
    }

    fn headers<'a>(&self, token: Option<&'a str>) -> Vec<(&'static str, &'a str)> {
        let token = token.map(|token| (self.token_header, token));
        token.into_iter().chain(self.timeout.map(|timeout| ("Grpc-Timeout", timeout))).collect()
    }

    /// The request as the record shows it.
    fn sent(&mut self, path: &str, body: &str) -> String {
        let body = shown(&mut self.names, body, Mask::default());
        match self.timeout {
            Some(timeout) => format!("{path} (Grpc-Timeout {timeout:?}) {body}"),
            None => format!("{path} {body}"),
        }
    }

    async fn send(&mut self, path: &str, body: &str) -> Value {
        self.send_masked(path, body, Mask::default()).await
    }

    async fn send_masked(&mut self, path: &str, body: &str, mask: Mask) -> Value {
        let token = self.token.clone();
        let headers = self.headers(token.as_deref());
        let request = Request { method: "POST", path, headers: &headers, body };
        let reply = http::send(&self.endpoint, &request).await.expect("an answer");
        self.record(path, body, &reply, mask);
        serde_json::from_slice(&reply.body).unwrap_or(Value::Null)
    }

    async fn stream(&mut self, path: &str, body: &str, lines: usize) -> Vec<Value> {
        self.stream_lines(path, body, lines, true, Mask::default()).await
    }

    async fn stream_masked(&mut self, path: &str, body: &str, lines: usize, mask: Mask) -> Vec<Value> {
        self.stream_lines(path, body, lines, true, mask).await
    }

    /// A stream whose watchers each send in order, but in no order between them.
    async fn stream_unordered(&mut self, path: &str, body: &str, lines: usize) -> Vec<Value> {
        self.stream_lines(path, body, lines, false, Mask::default()).await
    }

    async fn stream_lines(&mut self, path: &str, body: &str, lines: usize, ordered: bool, mask: Mask) -> Vec<Value> {
        let token = self.token.clone();
        let headers = self.headers(token.as_deref());
        let request = Request { method: "POST", path, headers: &headers, body };
        let reply = http::stream(&self.endpoint, &request, lines, Duration::from_secs(10)).await.expect("an answer");
        let got = reply.lines();
        let sent = self.sent(path, body);
        let mut shown_lines: Vec<String> = got.iter().map(|line| shown(&mut self.names, line, mask)).collect();
        if !ordered {
            shown_lines.sort();
        }
        self.out.push(format!(
            "{sent} -> {} {} stream [{}]",
            reply.status,
            reply.header("content-type").unwrap_or_default(),
            shown_lines.join(" | ")
        ));
        got.iter().filter_map(|line| serde_json::from_str(line).ok()).collect()
    }

    fn record(&mut self, path: &str, body: &str, reply: &Reply, mask: Mask) {
        let sent = self.sent(path, body);
        let answer = shown(&mut self.names, &reply.text(), mask);
        let content_type = reply.header("content-type").unwrap_or_default();
        self.out.push(format!("{sent} -> {} {content_type} {answer}", reply.status));
    }
}

fn string(value: &Value, pointer: &str) -> String {
    match value.pointer(pointer) {
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
        None => panic!("{pointer} missing in {value}"),
    }
}

async fn requests(endpoint: String) -> Vec<String> {
    let mut g = Gateway::new(endpoint);
    let (k, v1, v2) = (b64("foo"), b64("bar"), b64("baz"));

    // KV, both spellings of field names, both prefixes.
    g.send("/v3/kv/put", &format!(r#"{{"key":"{k}","value":"{v1}"}}"#)).await;
    g.send("/v3/kv/range", &format!(r#"{{"key":"{k}"}}"#)).await;
    g.send("/v3beta/kv/range", &format!(r#"{{"key":"{k}"}}"#)).await;
    g.send("/v3alpha/kv/range", &format!(r#"{{"key":"{k}"}}"#)).await;
    g.send("/v3/kv/nosuch", "{}").await;
    g.send("/v3beta/kv/nosuch", "{}").await;
    g.send("/v3/kv/range", &format!(r#"{{"key":"{k}"}} and what follows"#)).await;
    g.send("/v3/kv/range", "null").await;
    g.send("/v3/kv/range", &format!(r#"{{"key":"{k}","rangeEnd":"AA==","keysOnly":true,"unknown":1}}"#)).await;
    g.send("/v3/kv/range", &format!(r#"{{"key":"{k}","revision":"100"}}"#)).await;
    g.send_masked("/v3/kv/range", "{bad", Mask { message: true, ..Mask::default() }).await;
    g.send_masked("/v3/kv/range", r#"{"key":"!!!"}"#, Mask { message: true, ..Mask::default() }).await;
    // Grpc-Timeout as grpc-gateway reads it: a bad one is refused before the
    // body is read; a spent one (1n, negative, or past Go's int64 and wrapped
    // negative) fails the call, after the body, as a unary answer even for a stream.
    let range = format!(r#"{{"key":"{k}"}}"#);
    for timeout in ["10S", "", "0S", "1n", "-1S", "99999999999H", "1", "H", "zz", "5x"] {
        g.timeout = Some(timeout);
        g.send("/v3/kv/range", &range).await;
    }
    g.send("/v3/kv/range", "{bad").await;
    g.timeout = Some("1n");
    g.send_masked("/v3/kv/range", "{bad", Mask { message: true, ..Mask::default() }).await;
    let watch = format!(r#"{{"create_request":{{"key":"{k}"}}}}"#);
    g.send("/v3/watch", &watch).await;
    // A stream is opened before its requests are read.
    g.send("/v3/watch", "{bad").await;
    g.send("/v3/maintenance/snapshot", "{}").await;
    // A stream that outlives its timeout ends with the deadline's error line.
    g.timeout = Some("1S");
    g.stream_masked("/v3/watch", &watch, 2, Mask { deadline_race: true, ..Mask::default() }).await;
    // One that ends first ends without it (read for 10 s: no error line at 8).
    g.timeout = Some("8S");
    let snapshot = g.stream_summary("/v3/maintenance/snapshot").await;
    g.out.push(snapshot);
    g.timeout = None;
    g.send("/v3/kv/put", &format!(r#"{{"key":"{k}","value":"{v2}","prev_kv":true}}"#)).await;
    g.send("/v3/kv/put", &format!(r#"{{"key":"","value":"{v2}"}}"#)).await;
    g.send("/v3/kv/range", r#"{"key":"AA==","range_end":"AA==","sort_order":"DESCEND","sort_target":"KEY"}"#).await;
    g.send(
        "/v3/kv/txn",
        &format!(
            r#"{{"compare":[{{"key":"{k}","target":"VALUE","result":"EQUAL","value":"{v2}"}}],"success":[{{"request_range":{{"key":"{k}"}}}}],"failure":[{{"request_put":{{"key":"{k}","value":"{v1}"}}}}]}}"#
        ),
    )
    .await;
    g.send(
        "/v3/kv/txn",
        &format!(
            r#"{{"compare":[{{"key":"{k}","target":"MOD","result":"LESS","mod_revision":"1"}}],"success":[{{"requestRange":{{"key":"{k}"}}}}],"failure":[{{"requestDeleteRange":{{"key":"{}","prevKv":true}}}},{{"request_txn":{{"compare":[{{"key":"{k}","target":"CREATE","createRevision":0}}],"success":[{{"requestPut":{{"key":"{k}","value":"{v1}"}}}}]}}}}]}}"#,
            b64("zz")
        ),
    )
    .await;
    g.send("/v3/kv/deleterange", &format!(r#"{{"key":"{k}","prev_kv":true}}"#)).await;
    g.send("/v3/kv/put", &format!(r#"{{"key":"{k}","value":"{v1}"}}"#)).await;
    g.send("/v3/kv/compaction", r#"{"revision":"3","physical":true}"#).await;
    g.send("/v3/kv/range", &format!(r#"{{"key":"{k}","revision":2}}"#)).await;

    // An answer over gRPC's default 4 MiB: etcd's gateway takes any size.
    let megabyte = B64.encode(vec![b'x'; 1_000_000]);
    for i in 0..5 {
        let put = format!(r#"{{"key":"{}","value":"{megabyte}"}}"#, b64(&format!("big/{i}")));
        let reply = http::send(&g.endpoint, &Request::post("/v3/kv/put", &put)).await.expect("an answer");
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let big = format!(r#"{{"key":"{}","range_end":"{}"}}"#, b64("big/"), b64("big0"));
    let reply = http::send(&g.endpoint, &Request::post("/v3/kv/range", &big)).await.expect("an answer");
    let range: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    let bytes: usize = range["kvs"]
        .as_array()
        .map(|kvs| {
            kvs.iter().filter_map(|kv| kv["value"].as_str()).map(|value| B64.decode(value).map_or(0, |v| v.len())).sum()
        })
        .unwrap_or(0);
    g.out.push(format!(
        "a {} byte range -> {} count {} values {bytes} bytes",
        reply.body.len() > 4 << 20,
        reply.status,
        range["count"]
    ));
    g.send("/v3/kv/deleterange", &big).await;

    // Leases, and their /v3/kv/lease/ aliases.
    let grant = g.send("/v3/lease/grant", r#"{"TTL":30}"#).await;
    let lease = string(&grant, "/ID");
    g.send("/v3/kv/put", &format!(r#"{{"key":"{}","value":"{v1}","lease":"{lease}"}}"#, b64("leased"))).await;
    let ttl = Mask { ttl: true, ..Mask::default() };
    g.send_masked("/v3/lease/timetolive", &format!(r#"{{"ID":"{lease}","keys":true}}"#), ttl).await;
    g.send_masked("/v3/kv/lease/timetolive", &format!(r#"{{"ID":{lease}}}"#), ttl).await;
    g.send("/v3/lease/leases", "").await;
    g.send("/v3/kv/lease/leases", "{}").await;
    g.stream("/v3/lease/keepalive", &format!(r#"{{"ID":"{lease}"}}{{"ID":"{lease}"}}"#), 2).await;
    g.stream("/v3/lease/keepalive", r#"{"ID":"5"}"#, 1).await;
    g.send("/v3/lease/revoke", r#"{"ID":"123"}"#).await;
    g.send("/v3/kv/lease/revoke", &format!(r#"{{"ID":"{lease}"}}"#)).await;

    // Watch: history, two watchers on one stream, a compacted start, a bad request.
    g.stream("/v3/watch", &format!(r#"{{"create_request":{{"key":"{k}","start_revision":"3"}}}}"#), 2).await;
    g.stream_unordered(
        "/v3/watch",
        &format!(
            r#"{{"create_request":{{"key":"{k}","start_revision":3}}}}{{"createRequest":{{"key":"AA==","rangeEnd":"AA==","prevKv":true,"startRevision":4}}}}"#
        ),
        4,
    )
    .await;
    g.stream("/v3/watch", &format!(r#"{{"create_request":{{"key":"{k}","start_revision":1}}}}"#), 2).await;
    g.send_masked("/v3/watch", r#"{"create_request":{"key":"!!"}}"#, Mask { message: true, ..Mask::default() }).await;
    // A live event reaches a watch whose request body has ended.
    let live = b64("live");
    let watching = {
        let (endpoint, body) = (g.endpoint.clone(), format!(r#"{{"create_request":{{"key":"{live}"}}}}"#));
        tokio::spawn(async move {
            http::stream(&endpoint, &Request::post("/v3/watch", &body), 2, Duration::from_secs(10)).await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    g.send("/v3/kv/put", &format!(r#"{{"key":"{live}","value":"{v1}"}}"#)).await;
    let reply = watching.await.expect("joins").expect("an answer");
    let lines: Vec<String> = reply.lines().iter().map(|line| shown(&mut g.names, line, Mask::default())).collect();
    g.out.push(format!("live watch -> {} [{}]", reply.status, lines.join(" | ")));

    // Cluster and maintenance.
    g.send("/v3/cluster/member/list", "{}").await;
    g.send("/v3/cluster/member/promote", r#"{"ID":1}"#).await;
    g.send("/v3/maintenance/status", "{}").await;
    g.send("/v3/maintenance/alarm", r#"{"action":"GET"}"#).await;
    g.send("/v3/maintenance/alarm", r#"{"action":1,"memberID":0,"alarm":"NONE"}"#).await;
    g.send("/v3/maintenance/hash", "{}").await;
    g.send("/v3/maintenance/defragment", "{}").await;
    g.send("/v3/maintenance/downgrade", r#"{"action":"VALIDATE","version":"v3.4"}"#).await;
    g.send("/v3/maintenance/downgrade", r#"{"action":"CANCEL"}"#).await;
    g.send("/v3/maintenance/downgrade", r#"{"action":"VALIDATE","version":"3.5"}"#).await;
    let snapshot = g.stream_summary("/v3/maintenance/snapshot").await;
    g.out.push(snapshot);

    // Lock and Election.
    let grant = g.send("/v3/lease/grant", r#"{"TTL":60}"#).await;
    let lease = string(&grant, "/ID");
    let locked = g.send("/v3/lock/lock", &format!(r#"{{"name":"{}","lease":"{lease}"}}"#, b64("mylock"))).await;
    g.send("/v3/lock/unlock", &format!(r#"{{"key":"{}"}}"#, string(&locked, "/key"))).await;
    let campaign = g
        .send(
            "/v3/election/campaign",
            &format!(r#"{{"name":"{}","lease":"{lease}","value":"{}"}}"#, b64("el"), b64("v1")),
        )
        .await;
    let leader = campaign.get("leader").cloned().unwrap_or(Value::Null);
    g.send("/v3/election/leader", &format!(r#"{{"name":"{}"}}"#, b64("el"))).await;
    g.send("/v3/election/leader", &format!(r#"{{"name":"{}"}}"#, b64("none"))).await;
    g.send("/v3/election/proclaim", &format!(r#"{{"leader":{leader},"value":"{}"}}"#, b64("v2"))).await;
    g.stream("/v3/election/observe", &format!(r#"{{"name":"{}"}}"#, b64("el")), 1).await;
    g.send("/v3/election/resign", &format!(r#"{{"leader":{leader}}}"#)).await;

    // Auth: the token travels in the Authorization header.
    g.send("/v3/auth/user/add", r#"{"name":"root","password":"rootpw"}"#).await;
    g.send("/v3/auth/role/add", r#"{"name":"root"}"#).await;
    g.send("/v3/auth/user/grant", r#"{"user":"root","role":"root"}"#).await;
    g.send("/v3/auth/user/add", r#"{"name":"reader","password":"readerpw"}"#).await;
    g.send("/v3/auth/role/add", r#"{"name":"readers"}"#).await;
    g.send(
        "/v3/auth/role/grant",
        &format!(
            r#"{{"name":"readers","perm":{{"permType":"READ","key":"{}","range_end":"{}"}}}}"#,
            b64("a"),
            b64("b")
        ),
    )
    .await;
    g.send("/v3/auth/user/grant", r#"{"user":"reader","role":"readers"}"#).await;
    g.send("/v3/auth/role/get", r#"{"role":"readers"}"#).await;
    g.send("/v3/auth/enable", "{}").await;
    g.send("/v3/kv/range", &format!(r#"{{"key":"{k}"}}"#)).await;
    g.send("/v3/auth/authenticate", r#"{"name":"root","password":"wrong"}"#).await;
    let reader = g.send("/v3/auth/authenticate", r#"{"name":"reader","password":"readerpw"}"#).await;
    g.token = Some(string(&reader, "/token"));
    g.send("/v3/kv/range", &format!(r#"{{"key":"{}"}}"#, b64("a1"))).await;
    g.token_header = "Grpc-Metadata-Token";
    g.send("/v3/kv/range", &format!(r#"{{"key":"{}"}}"#, b64("a1"))).await;
    g.token_header = "Authorization";
    g.send("/v3/kv/put", &format!(r#"{{"key":"{}","value":"{v1}"}}"#, b64("a1"))).await;
    g.stream("/v3/watch", &format!(r#"{{"create_request":{{"key":"{k}"}}}}"#), 1).await;
    let refused = g.refused_stream("/v3/maintenance/snapshot").await;
    g.out.push(refused);
    g.token = Some("garbage".into());
    g.send("/v3/kv/range", &format!(r#"{{"key":"{k}"}}"#)).await;
    let root = g.send("/v3/auth/authenticate", r#"{"name":"root","password":"rootpw"}"#).await;
    g.token = Some(format!("Bearer {}", string(&root, "/token")));
    g.send("/v3/kv/range", &format!(r#"{{"key":"{k}"}}"#)).await;
    g.token = Some(string(&root, "/token"));
    g.send("/v3/auth/user/list", "{}").await;
    g.send("/v3/auth/status", "{}").await;
    g.send("/v3/auth/disable", "{}").await;

    // HTTP around the API: CORS, a preflight, a GET.
    let reply = http::send(&g.endpoint, &Request { method: "OPTIONS", path: "/v3/kv/range", headers: &[], body: "" })
        .await
        .expect("an answer");
    g.out.push(format!("OPTIONS -> {} cors {:?}", reply.status, cors(&reply)));
    let reply = http::send(&g.endpoint, &Request::post("/v3/kv/range", "{bad")).await.expect("an answer");
    g.out.push(format!("an error's cors {:?}", cors(&reply)));
    let reply = http::send(&g.endpoint, &Request { method: "GET", path: "/v3/kv/range", headers: &[], body: "" })
        .await
        .expect("an answer");
    g.out.push(format!("GET -> {} {:?} {:?}", reply.status, reply.header("content-type"), reply.text()));
    let reply = http::send(&g.endpoint, &Request { method: "OPTIONS", path: "/nothing", headers: &[], body: "" })
        .await
        .expect("an answer");
    g.out.push(format!("OPTIONS elsewhere -> {} cors {:?}", reply.status, cors(&reply)));
    g.out
}

fn cors(reply: &Reply) -> Vec<Option<&str>> {
    ["access-control-allow-origin", "access-control-allow-methods", "access-control-allow-headers"]
        .iter()
        .map(|name| reply.header(name))
        .collect()
}

impl Gateway {
    /// A stream refused at once, by its shape: etcd 3.5 refuses a snapshot to
    /// a non-root user with code Unknown, Cairn as etcd 3.6 does (see t160).
    async fn refused_stream(&self, path: &str) -> String {
        let token = self.token.clone().unwrap_or_default();
        let request = Request { method: "POST", path, headers: &[("Authorization", &token)], body: "{}" };
        let reply = http::stream(&self.endpoint, &request, 1, Duration::from_secs(3)).await.expect("an answer");
        let text = reply.text();
        let error: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let fields: Vec<&String> =
            error.get("error").and_then(Value::as_object).map(|e| e.keys().collect()).unwrap_or_default();
        let status_matches = error.pointer("/error/http_code").and_then(Value::as_u64) == Some(u64::from(reply.status));
        format!(
            "{path} refused -> error status {}, fields {fields:?}, http_code is the status {status_matches}, ends without a newline {}",
            reply.status >= 400,
            !text.ends_with('\n')
        )
    }

    /// A snapshot stream, summed up: its bytes differ between servers, its shape must not.
    async fn stream_summary(&self, path: &str) -> String {
        let headers = self.headers(None);
        let request = Request { method: "POST", path, headers: &headers, body: "{}" };
        let reply =
            http::stream(&self.endpoint, &request, usize::MAX, Duration::from_secs(10)).await.expect("an answer");
        let lines: Vec<Value> = reply.lines().iter().filter_map(|line| serde_json::from_str(line).ok()).collect();
        let blobs = lines.iter().all(|line| line.pointer("/result/blob").is_some());
        let last = lines.last().and_then(|line| line.pointer("/result/remaining_bytes")).cloned();
        let bytes: usize = lines
            .iter()
            .filter_map(|line| line.pointer("/result/blob").and_then(Value::as_str))
            .map(|blob| B64.decode(blob).map_or(0, |blob| blob.len()))
            .sum();
        format!(
            "{path} -> {} lines {} each a blob {blobs}, last remaining {last:?}, a bbolt file {}",
            reply.status,
            !lines.is_empty(),
            bytes >= 16 * 1024
        )
    }
}

#[tokio::test]
async fn t180_the_json_gateway_answers_as_etcd_3_5_1() {
    let out = assert_same_as_etcd(&[], requests).await;
    assert!(out.len() >= 40, "{} requests compared", out.len());
}

/// Patroni's etcd3 module as one leader's life: version check, member list,
/// the cluster prefix read and watched from its revision, a lease, the
/// leader key taken by a create-if-absent txn, a status put, the lease kept
/// alive, the nested txn that re-takes the key, and the delete on shutdown.
async fn patroni(endpoint: String) -> Vec<String> {
    let mut g = Gateway::new(endpoint);
    let version = http::send(&g.endpoint, &Request { method: "GET", path: "/version", headers: &[], body: "" })
        .await
        .expect("an answer");
    let version: Value = serde_json::from_slice(&version.body).expect("json");
    let cluster = string(&version, "/etcdcluster");
    // Patroni picks /v3 for a cluster of 3.4 and later.
    let minor: u32 = cluster.split('.').nth(1).and_then(|minor| minor.parse().ok()).expect("a version");
    g.out.push(format!("GET /version: cluster 3.{minor}, prefix /v3 {}", minor >= 4));
    let members = g.send("/v3/cluster/member/list", "{}").await;
    assert!(members.pointer("/members/0/clientURLs/0").is_some(), "Patroni reads clientURLs: {members}");

    let (prefix, end) = (b64("/service/batman/"), b64("/service/batman0"));
    let (leader_key, member_key, status_key, name) =
        (b64("/service/batman/leader"), b64("/service/batman/members/pg1"), b64("/service/batman/status"), b64("pg1"));
    let range =
        g.send("/v3/kv/range", &format!(r#"{{"key":"{prefix}","range_end":"{end}","serializable":true}}"#)).await;
    let revision = string(&range, "/header/revision");
    let grant = g.send("/v3/lease/grant", r#"{"TTL":30}"#).await;
    let lease = string(&grant, "/ID");
    let alive = g.stream("/v3/lease/keepalive", &format!(r#"{{"ID":"{lease}"}}"#), 1).await;
    assert_eq!(alive.first().and_then(|line| line.pointer("/result/TTL")), Some(&Value::from("30")));
    let take = format!(
        r#"{{"compare":[{{"target":"CREATE","create_revision":"0","key":"{leader_key}"}}],"success":[{{"request_put":{{"key":"{leader_key}","value":"{name}","lease":"{lease}"}}}}]}}"#
    );
    let taken = g.send("/v3/kv/txn", &take).await;
    assert_eq!(taken.get("succeeded"), Some(&Value::Bool(true)), "{taken}");
    g.send("/v3/kv/txn", &take).await;
    g.send("/v3/kv/put", &format!(r#"{{"key":"{status_key}","value":"{}"}}"#, b64(r#"{"optime":67109024}"#))).await;
    g.send(
        "/v3/kv/put",
        &format!(r#"{{"key":"{member_key}","value":"{}","lease":"{lease}"}}"#, b64(r#"{"conn_url":"postgres://x"}"#)),
    )
    .await;
    g.stream("/v3/lease/keepalive", &format!(r#"{{"ID":"{lease}"}}"#), 1).await;
    let retake = format!(
        r#"{{"compare":[{{"key":"{leader_key}","target":"VALUE","value":"{name}"}}],"success":[{{"request_put":{{"key":"{leader_key}","value":"{name}","lease":"{lease}"}}}}],"failure":[{{"request_txn":{{"compare":[{{"key":"{leader_key}","target":"CREATE","create_revision":"0"}}],"success":[{{"request_put":{{"key":"{leader_key}","value":"{name}","lease":"{lease}"}}}}]}}}}]}}"#
    );
    g.send("/v3/kv/txn", &retake).await;
    g.send(
        "/v3/kv/txn",
        &format!(
            r#"{{"compare":[{{"key":"{leader_key}","target":"VALUE","value":"{name}"}}],"success":[{{"request_delete_range":{{"key":"{leader_key}"}}}}]}}"#
        ),
    )
    .await;
    // Its cache's watch, from the revision of its range: every change above, in order.
    let watch = format!(
        r#"{{"create_request":{{"key":"{prefix}","range_end":"{end}","start_revision":"{revision}","filters":[]}}}}"#
    );
    let events = g.stream("/v3/watch", &watch, 2).await;
    let seen: Vec<String> = events
        .iter()
        .flat_map(|line| line.pointer("/result/events").and_then(Value::as_array).cloned().unwrap_or_default())
        .map(|event| {
            let key = event.pointer("/kv/key").and_then(Value::as_str).map(|key| g.names.key(key)).unwrap_or_default();
            format!("{} {key}", event.get("type").and_then(Value::as_str).unwrap_or("PUT"))
        })
        .collect();
    assert_eq!(seen.len(), 5, "the watch replays every change: {seen:?}");
    g.out.push(format!("watched {seen:?}"));
    g.send("/v3/lease/keepalive", r#"{"ID":"1"}"#).await;
    g.out
}

#[tokio::test]
async fn t181_patrionis_etcd3_calls_replayed_against_etcd_and_cairn() {
    assert_same_as_etcd(&[], patroni).await;
}

/// lua-resty-etcd as APISIX drives it: auth, readdir with its full range
/// body, watchdir, set with prev_kv, a leased set kept alive, setnx/setx
/// txns in camelCase, an atomic set on mod_revision, delete, and the
/// /v3/kv/lease/ aliases.
async fn lua_resty_etcd(endpoint: String) -> Vec<String> {
    let mut g = Gateway::new(endpoint);
    g.send("/v3/auth/user/add", r#"{"name":"root","password":"apisix"}"#).await;
    g.send("/v3/auth/user/grant", r#"{"user":"root","role":"root"}"#).await;
    g.send("/v3/auth/enable", "{}").await;
    let auth = g.send("/v3/auth/authenticate", r#"{"name":"root","password":"apisix"}"#).await;
    g.token = Some(string(&auth, "/token"));

    let (dir, end) = (b64("/apisix/"), b64("/apisix0"));
    let readdir = |key: &str, end: &str| {
        format!(
            r#"{{"key":"{key}","range_end":"{end}","limit":0,"revision":0,"sort_order":0,"sort_target":0,"serializable":false,"keys_only":false,"count_only":false,"min_mod_revision":0,"max_mod_revision":0,"min_create_revision":0,"max_create_revision":0}}"#
        )
    };
    let listed = g.send("/v3/kv/range", &readdir(&dir, &end)).await;
    assert!(listed.get("kvs").is_none(), "no kvs field when nothing matches: {listed}");
    let revision: i64 = string(&listed, "/header/revision").parse().expect("a revision");
    let route = b64("/apisix/routes/1");
    let value = b64(r#"{"uri":"/x"}"#);
    g.send("/v3/kv/put", &format!(r#"{{"key":"{route}","value":"{value}","prev_kv":true}}"#)).await;
    g.send("/v3/kv/put", &format!(r#"{{"key":"{route}","value":"{value}","prev_kv":true}}"#)).await;
    let grant = g.send("/v3/lease/grant", r#"{"TTL":60,"ID":0}"#).await;
    let lease = string(&grant, "/ID");
    let server = b64("/apisix/data_plane/server_info/a");
    g.send("/v3/kv/put", &format!(r#"{{"key":"{server}","value":"{value}","lease":"{lease}","prev_kv":true}}"#)).await;
    g.stream("/v3/lease/keepalive", &format!(r#"{{"ID":"{lease}"}}"#), 1).await;
    let got = g.send("/v3/kv/range", &readdir(&route, &b64("/apisix/routes/2"))).await;
    let modified = string(&got, "/kvs/0/mod_revision");
    g.send(
        "/v3/kv/txn",
        &format!(
            r#"{{"compare":[{{"key":"{route}","target":"MOD","result":"EQUAL","mod_revision":{modified}}}],"success":[{{"requestPut":{{"key":"{route}","value":"{value}","lease":"{lease}"}}}}]}}"#
        ),
    )
    .await;
    let other = b64("/apisix/upstreams/1");
    let setnx = format!(
        r#"{{"compare":[{{"target":"CREATE","key":"{other}","createRevision":0}}],"success":[{{"requestPut":{{"key":"{other}","value":"{value}"}}}}]}}"#
    );
    g.send("/v3/kv/txn", &setnx).await;
    g.send("/v3/kv/txn", &setnx).await;
    g.send(
        "/v3/kv/txn",
        &format!(
            r#"{{"compare":[{{"target":"CREATE","key":"{other}","createRevision":0}}],"failure":[{{"requestPut":{{"key":"{other}","value":"{value}"}}}}]}}"#
        ),
    )
    .await;
    g.send("/v3/kv/deleterange", &format!(r#"{{"key":"{route}"}}"#)).await;
    g.send("/v3/kv/deleterange", &format!(r#"{{"key":"{route}"}}"#)).await;
    g.send_masked(
        "/v3/kv/lease/timetolive",
        &format!(r#"{{"ID":"{lease}","keys":false}}"#),
        Mask { ttl: true, ..Mask::default() },
    )
    .await;
    g.send("/v3/lease/leases", "").await;
    g.send("/v3/kv/lease/revoke", &format!(r#"{{"ID":"{lease}"}}"#)).await;
    let watch =
        format!(r#"{{"create_request":{{"key":"{dir}","range_end":"{end}","start_revision":{}}}}}"#, revision + 1);
    let lines = g.stream("/v3/watch", &watch, 3).await;
    assert!(lines.iter().all(|line| line.get("result").is_some()), "{lines:?}");
    g.out
}

#[tokio::test]
async fn t182_lua_resty_etcd_calls_replayed_against_etcd_and_cairn() {
    assert_same_as_etcd(&[], lua_resty_etcd).await;
}

/// Off by `--enable-grpc-gateway=false`, as in etcd; gRPC and /health stay.
#[tokio::test]
async fn t183_the_gateway_can_be_turned_off() {
    let cluster = Cluster::start_with(Flavor::Cairn, 1, &["--enable-grpc-gateway=false"]).await.expect("starts");
    let endpoint = cluster.members[0].endpoint();
    let reply = http::send(endpoint, &Request::post("/v3/kv/range", r#"{"key":"Zm9v"}"#)).await.expect("an answer");
    assert_eq!((reply.status, reply.text()), (404, "404 page not found\n".to_string()));
    let health = http::send(endpoint, &Request { method: "GET", path: "/health", headers: &[], body: "" })
        .await
        .expect("an answer");
    assert_eq!(health.status, 200, "{}", health.text());
}
