//! The workloads: clients that drive the cluster through faults and record
//! every call with its outcome into one shared record.

pub mod kube;
pub mod lease;
pub mod register;
pub mod set;
pub mod watch;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cairn_chaos::history::Nanos;
use cairn_chaos::record::{OpKind, OpLatency, Recorded};
use cairn_chaos::revisions::Observed;
use cairn_chaos::watch::Change;
use etcd_client::Client;

use cairn_testkit::connect;

/// The shared record and the run's clock.
pub struct Recorder {
    started: Instant,
    run: Mutex<Recorded>,
    stop: AtomicBool,
}

impl Recorder {
    pub fn new(run: Recorded) -> Self {
        Recorder { started: Instant::now(), run: Mutex::new(run), stop: AtomicBool::new(false) }
    }

    pub fn now(&self) -> Nanos {
        self.started.elapsed().as_nanos() as Nanos
    }

    pub fn record(&self) -> MutexGuard<'_, Recorded> {
        // A worker that panicked mid-record leaves a usable record behind.
        self.run.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn latency(&self, kind: OpKind, ok: bool, invoked: Nanos) {
        let nanos = self.now().saturating_sub(invoked);
        self.record().latencies.push(OpLatency { kind, ok, nanos });
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    pub fn take(&self) -> Recorded {
        std::mem::take(&mut *self.record())
    }
}

/// A client's connection: one member at a time, moving to the next member
/// after any failure, as an etcd client with several endpoints does.
pub struct Conn {
    endpoints: Vec<String>,
    at: usize,
    client: Option<Client>,
    pub timeout: Duration,
}

impl Conn {
    pub fn new(endpoints: Vec<String>, first: usize, timeout: Duration) -> Self {
        let at = first % endpoints.len().max(1);
        Conn { endpoints, at, client: None, timeout }
    }

    async fn client(&mut self) -> Option<Client> {
        if self.client.is_none() {
            let endpoint = self.endpoints.get(self.at)?;
            self.client = connect(endpoint, self.timeout).await.ok();
            if self.client.is_none() {
                self.failed();
            }
        }
        self.client.clone()
    }

    pub fn failed(&mut self) {
        self.client = None;
        self.at = (self.at + 1) % self.endpoints.len().max(1);
    }

    /// One call, bounded by the timeout. After a failure the next call goes to
    /// another member, after a short pause so that an outage does not pile up
    /// indeterminate operations.
    pub async fn call<T, F, Fut>(&mut self, call: F) -> Result<T, Failure>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let failure = match self.client().await {
            None => Failure::NotSent,
            Some(client) => match tokio::time::timeout(self.timeout, call(client)).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(err)) => classify(&err),
                Err(_) => Failure::Unknown,
            },
        };
        self.failed();
        tokio::time::sleep(FAILURE_PAUSE).await;
        Err(failure)
    }
}

const FAILURE_PAUSE: Duration = Duration::from_millis(300);

/// Why a call gave no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No connection could be made: the request never left, and had no effect.
    NotSent,
    /// It may or may not have taken effect.
    Unknown,
}

fn classify(err: &etcd_client::Error) -> Failure {
    match err {
        etcd_client::Error::TransportError(_) => Failure::NotSent,
        etcd_client::Error::GRpcStatus(status)
            if status.code() == tonic::Code::Unavailable && status.message().contains("connect error") =>
        {
            Failure::NotSent
        }
        _ => Failure::Unknown,
    }
}

/// Paces a closed-loop client at `per_second`; returns false once the run stops.
pub struct Pace {
    interval: tokio::time::Interval,
}

impl Pace {
    pub fn new(per_second: f64) -> Self {
        let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / per_second.max(0.1)));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Pace { interval }
    }

    pub async fn next(&mut self, recorder: &Recorder) -> bool {
        self.interval.tick().await;
        !recorder.stopping()
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub type Shared = Arc<Recorder>;

/// What every recording client has: its id, the record, its connection, and
/// its own order of the header revisions it saw.
pub struct Session {
    pub id: u32,
    pub recorder: Shared,
    pub conn: Conn,
    sequence: u64,
}

impl Session {
    pub fn new(id: u32, recorder: Shared, conn: Conn) -> Self {
        Session { id, recorder, conn, sequence: 0 }
    }

    /// A header revision this client saw, in its order.
    pub fn observed(&mut self, revision: i64, acknowledged_write: bool) {
        self.sequence += 1;
        let seen = Observed { client: self.id, sequence: self.sequence, revision, acknowledged_write };
        self.recorder.record().observed.push(seen);
    }

    /// An acknowledged write (`None`: a delete): seen, and part of the KV history.
    pub fn acknowledged(&mut self, key: &str, value: Option<String>, revision: i64) {
        self.observed(revision, true);
        self.recorder.record().writes.push(Change { revision, key: key.to_string(), value });
    }
}
