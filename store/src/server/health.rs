//! etcd's health checks: `/health`, whose JSON load balancers and kubeadm's
//! probes read (`?exclude=NOSPACE&serializable=true`), `/livez` and `/readyz`
//! with their named checks (etcd 3.5.11 and later), and the gRPC health
//! service (`grpc.health.v1.Health`) on the client port.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use cairn_proto::etcdserverpb::{AlarmType, RangeRequest};
use cairn_proto::grpc::health::v1::health_check_response::ServingStatus;
use cairn_proto::grpc::health::v1::{health_server, HealthCheckRequest, HealthCheckResponse};
use futures::{Stream, StreamExt};
use tokio::sync::watch as signal;

use super::node::Node;
use crate::metrics::METRICS;

/// A health request's query, read as Go's `url.Values` reads it.
#[derive(Debug, Default, PartialEq)]
pub struct HealthQuery {
    /// Alarms that `/health` overlooks; checks that `/livez` and `/readyz` skip.
    exclude: BTreeSet<String>,
    /// `/health` reads locally and does not ask for a leader.
    serializable: bool,
    /// `/livez` and `/readyz` list each check that passed, too.
    verbose: bool,
}

impl HealthQuery {
    pub fn parse(pairs: &[(String, String)]) -> Self {
        let mut query = Self::default();
        let mut serializable = None;
        for (key, value) in pairs {
            match key.as_str() {
                "exclude" if !value.is_empty() => {
                    query.exclude.insert(value.clone());
                }
                // Go's `Query().Get`: the first value counts.
                "serializable" => {
                    serializable.get_or_insert(value == "true");
                }
                "verbose" => query.verbose = true,
                _ => {}
            }
        }
        query.serializable = serializable.unwrap_or(false);
        query
    }
}

/// The first alarm not excluded, as `/health` reports it.
fn alarm_reason(alarms: &[AlarmType], exclude: &BTreeSet<String>) -> Option<&'static str> {
    let alarm = alarms.iter().find(|alarm| !exclude.contains(alarm.as_str_name()))?;
    Some(match alarm {
        AlarmType::Nospace => "ALARM NOSPACE",
        AlarmType::Corrupt => "ALARM CORRUPT",
        AlarmType::None => "ALARM UNKNOWN",
    })
}

/// The named checks of `/livez` and `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Check {
    DataCorruption,
    SerializableRead,
    LinearizableRead,
}

impl Check {
    fn name(self) -> &'static str {
        match self {
            Check::DataCorruption => "data_corruption",
            Check::SerializableRead => "serializable_read",
            Check::LinearizableRead => "linearizable_read",
        }
    }
}

/// Each endpoint's checks, in the order etcd reports them.
const ENDPOINTS: [(&str, &[Check]); 2] = [
    ("livez", &[Check::SerializableRead]),
    ("readyz", &[Check::DataCorruption, Check::SerializableRead, Check::LinearizableRead]),
];

/// A `/livez` or `/readyz` answer from its checks' results: whether all
/// passed, and the lines `[+]name ok` or `[-]name failed: why`.
fn report(results: &[(Check, Result<(), String>)]) -> (bool, String) {
    let mut lines = String::new();
    for (check, result) in results {
        match result {
            Ok(()) => lines.push_str(&format!("[+]{} ok\n", check.name())),
            Err(why) => lines.push_str(&format!("[-]{} failed: {why}\n", check.name())),
        }
    }
    (results.iter().all(|(_, result)| result.is_ok()), lines)
}

type NodeState = State<Arc<Node>>;
/// The query's pairs in order, repeated keys kept; no query is malformed.
type RawPairs = Query<Vec<(String, String)>>;

pub fn routes(mut router: axum::Router<Arc<Node>>) -> axum::Router<Arc<Node>> {
    router = router.route("/health", any(health));
    for (kind, checks) in ENDPOINTS {
        let all = move |node: NodeState, method: Method, query: RawPairs| {
            checks_endpoint(node, method, query, kind, checks, true)
        };
        router = router.route(&format!("/{kind}"), any(all));
        for check in checks {
            let one = move |node: NodeState, method: Method, query: RawPairs| {
                checks_endpoint(node, method, query, kind, std::slice::from_ref(check), false)
            };
            router = router.route(&format!("/{kind}/{}", check.name()), any(one));
        }
    }
    router
}

async fn health(State(node): NodeState, method: Method, Query(query): RawPairs) -> Response {
    if method != Method::GET {
        return method_not_allowed();
    }
    let query = HealthQuery::parse(&query);
    let verdict = health_verdict(&node, &query).await;
    METRICS.count_health(verdict.is_ok());
    match verdict {
        Ok(()) => text(StatusCode::OK, r#"{"health":"true","reason":""}"#.to_string(), false),
        Err(reason) => {
            let body = serde_json::json!({ "health": "false", "reason": reason });
            go_http_error(StatusCode::SERVICE_UNAVAILABLE, &body.to_string())
        }
    }
}

/// etcd's order: the alarms, then a leader (unless serializable), then a read.
async fn health_verdict(node: &Node, query: &HealthQuery) -> Result<(), String> {
    let alarms: Vec<AlarmType> = node.state.alarms().into_iter().map(|(_, alarm)| alarm).collect();
    if let Some(reason) = alarm_reason(&alarms, &query.exclude) {
        return Err(reason.to_string());
    }
    if !query.serializable && node.known_leader().is_none() {
        return Err("RAFT NO LEADER".to_string());
    }
    read(node, query.serializable).await.map_err(|why| format!("RANGE ERROR:{why}"))
}

async fn checks_endpoint(
    State(node): NodeState,
    method: Method,
    Query(query): RawPairs,
    kind: &'static str,
    checks: &'static [Check],
    excludable: bool,
) -> Response {
    if method != Method::GET {
        return method_not_allowed();
    }
    let query = HealthQuery::parse(&query);
    let mut results = Vec::with_capacity(checks.len());
    for check in checks.iter().filter(|check| !excludable || !query.exclude.contains(check.name())) {
        let result = match check {
            Check::DataCorruption => match node.state.alarms().iter().any(|(_, alarm)| *alarm == AlarmType::Corrupt) {
                true => Err("alarm activated: CORRUPT".to_string()),
                false => Ok(()),
            },
            Check::SerializableRead => read(&node, true).await,
            Check::LinearizableRead => read(&node, false).await,
        };
        METRICS.record_health_check(kind, check.name(), result.is_ok());
        results.push((*check, result));
    }
    let (passed, lines) = report(&results);
    if !passed {
        return go_http_error(StatusCode::SERVICE_UNAVAILABLE, &lines);
    }
    let body = if query.verbose { format!("{lines}ok\n") } else { "ok\n".to_string() };
    text(StatusCode::OK, body, true)
}

/// The read etcd's checks make: one key, keys only, as root.
async fn read(node: &Node, serializable: bool) -> Result<(), String> {
    if !serializable {
        node.linearizable_barrier().await.map_err(|status| status.message().to_string())?;
    }
    let request = RangeRequest { limit: 1, keys_only: true, serializable, ..Default::default() };
    node.state.range(&request).map(|_| ()).map_err(|err| tonic::Status::from(err).message().to_string())
}

fn text(status: StatusCode, body: String, nosniff: bool) -> Response {
    let mut response = (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response();
    if nosniff {
        response.headers_mut().insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    }
    response
}

/// Go's `http.Error`: the message and a newline, not to be sniffed.
pub(super) fn go_http_error(status: StatusCode, message: &str) -> Response {
    text(status, format!("{message}\n"), true)
}

fn method_not_allowed() -> Response {
    let mut response = go_http_error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET"));
    response
}

/// The gRPC health service as etcd registers it: the server as a whole ("")
/// is serving; any other service name is unknown.
pub struct HealthService {
    pub stopped: signal::Receiver<bool>,
}

fn serving_status(service: &str) -> Option<ServingStatus> {
    service.is_empty().then_some(ServingStatus::Serving)
}

#[tonic::async_trait]
impl health_server::Health for HealthService {
    async fn check(
        &self,
        request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<HealthCheckResponse>, tonic::Status> {
        match serving_status(&request.get_ref().service) {
            Some(status) => Ok(tonic::Response::new(HealthCheckResponse { status: status as i32 })),
            None => Err(tonic::Status::not_found("unknown service")),
        }
    }

    type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, tonic::Status>> + Send>>;

    /// The status now, then nothing more until the member stops: etcd's never changes.
    async fn watch(
        &self,
        request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<Self::WatchStream>, tonic::Status> {
        let status = serving_status(&request.get_ref().service).unwrap_or(ServingStatus::ServiceUnknown);
        let now = HealthCheckResponse { status: status as i32 };
        let mut stopped = self.stopped.clone();
        let end = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
            Err(tonic::Status::unavailable("the member is stopping"))
        };
        let stream = futures::stream::once(async move { Ok(now) }).chain(futures::stream::once(end));
        Ok(tonic::Response::new(Box::pin(stream)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(query: &[(&str, &str)]) -> Vec<(String, String)> {
        query.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect()
    }

    #[test]
    fn the_query_is_read_as_go_reads_it() {
        let query = HealthQuery::parse(&pairs(&[
            ("exclude", "NOSPACE"),
            ("exclude", ""),
            ("serializable", "true"),
            ("serializable", "false"),
            ("verbose", ""),
        ]));
        assert_eq!(query.exclude, BTreeSet::from(["NOSPACE".to_string()]));
        assert!(query.serializable && query.verbose);
        // Only "true" is true; anything else, or nothing, is linearizable.
        assert!(!HealthQuery::parse(&pairs(&[("serializable", "1")])).serializable);
        assert_eq!(HealthQuery::parse(&[]), HealthQuery::default());
    }

    #[test]
    fn an_excluded_alarm_is_overlooked_and_the_next_reported() {
        let none = BTreeSet::new();
        let nospace = BTreeSet::from(["NOSPACE".to_string()]);
        assert_eq!(alarm_reason(&[], &none), None);
        assert_eq!(alarm_reason(&[AlarmType::Nospace], &none), Some("ALARM NOSPACE"));
        assert_eq!(alarm_reason(&[AlarmType::Nospace], &nospace), None);
        assert_eq!(alarm_reason(&[AlarmType::Nospace, AlarmType::Corrupt], &nospace), Some("ALARM CORRUPT"));
        // The names are the enum's, in capitals: "nospace" excludes nothing.
        assert_eq!(
            alarm_reason(&[AlarmType::Nospace], &BTreeSet::from(["nospace".to_string()])),
            Some("ALARM NOSPACE")
        );
    }

    #[test]
    fn a_report_lists_every_check_and_fails_if_one_failed() {
        let passed = [(Check::DataCorruption, Ok(())), (Check::SerializableRead, Ok(()))];
        assert_eq!(report(&passed), (true, "[+]data_corruption ok\n[+]serializable_read ok\n".to_string()));
        let failed = [(Check::SerializableRead, Ok(())), (Check::LinearizableRead, Err("no answer in time".into()))];
        let (ok, lines) = report(&failed);
        assert!(!ok);
        assert_eq!(lines, "[+]serializable_read ok\n[-]linearizable_read failed: no answer in time\n");
    }

    #[test]
    fn only_the_whole_server_is_a_known_service() {
        assert_eq!(serving_status(""), Some(ServingStatus::Serving));
        assert_eq!(serving_status("etcdserverpb.KV"), None);
    }
}
