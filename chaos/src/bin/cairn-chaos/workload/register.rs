//! Registers: linearizable gets, puts of unique values, and compare-and-set
//! as a Txn on `mod_revision`. Values are unique, so comparing the
//! revision a client read is comparing the value it read.
//!
//! Keys rotate every epoch (`r/<epoch>/<n>`), which keeps each key's
//! history short enough for an exact linearizability check.

use std::time::Duration;

use cairn_chaos::history::{Call, Operation, Outcome};
use cairn_chaos::record::OpKind;
use cairn_chaos::schedule::Rng;
use etcd_client::{Compare, CompareOp, Txn, TxnOp};

use super::{text, Conn, Failure, Pace, Session, Shared};

pub const PREFIX: &str = "r/";

pub struct Client {
    pub id: u32,
    pub keys: u64,
    pub epoch: Duration,
    pub per_second: f64,
}

struct State(Session);

impl State {
    fn operation(&self, key: &str, call: Call, outcome: Outcome, invoked: u64, completed: Option<u64>) {
        let op = Operation { client: self.0.id, key: key.to_string(), call, outcome, invoked, completed };
        self.0.recorder.record().register.push(op);
    }

    /// A get; returns the value and its mod revision (0 when absent).
    async fn read(&mut self, key: &str) -> Option<(Option<String>, i64)> {
        let invoked = self.0.recorder.now();
        let owned = key.to_string();
        let response = self.0.conn.call(|mut client| async move { client.get(owned, None).await }).await.ok();
        self.0.recorder.latency(OpKind::Get, response.is_some(), invoked);
        // A failed read changes nothing: it is left out of the history.
        let response = response?;
        let completed = self.0.recorder.now();
        let kv = response.kvs().first();
        let value = kv.map(|kv| text(kv.value()));
        self.operation(key, Call::Read, Outcome::Read(value.clone()), invoked, Some(completed));
        self.0.observed(response.header().map_or(0, |header| header.revision()), false);
        Some((value, kv.map_or(0, |kv| kv.mod_revision())))
    }

    async fn write(&mut self, key: &str, value: String) {
        let invoked = self.0.recorder.now();
        let (owned_key, owned_value) = (key.to_string(), value.clone());
        let response =
            self.0.conn.call(|mut client| async move { client.put(owned_key, owned_value, None).await }).await;
        self.0.recorder.latency(OpKind::Put, response.is_ok(), invoked);
        match response {
            Ok(response) => {
                let completed = self.0.recorder.now();
                self.operation(key, Call::Write(value.clone()), Outcome::Written, invoked, Some(completed));
                self.0.acknowledged(key, Some(value.clone()), response.header().map_or(0, |header| header.revision()));
            }
            Err(Failure::Unknown) => self.operation(key, Call::Write(value), Outcome::Unknown, invoked, None),
            // Never sent: no effect, nothing to check.
            Err(Failure::NotSent) => {}
        }
    }

    async fn compare_and_set(&mut self, key: &str, new: String) {
        let Some((expected, mod_revision)) = self.read(key).await else { return };
        let invoked = self.0.recorder.now();
        let txn = Txn::new().when([Compare::mod_revision(key, CompareOp::Equal, mod_revision)]).and_then([TxnOp::put(
            key,
            new.clone(),
            None,
        )]);
        let response = self.0.conn.call(|mut client| async move { client.txn(txn).await }).await;
        self.0.recorder.latency(OpKind::Cas, response.is_ok(), invoked);
        let call = Call::Cas { expected, new: new.clone() };
        match response {
            Ok(response) => {
                let completed = self.0.recorder.now();
                let revision = response.header().map_or(0, |header| header.revision());
                self.operation(key, call, Outcome::Cas(response.succeeded()), invoked, Some(completed));
                if response.succeeded() {
                    self.0.acknowledged(key, Some(new.clone()), revision);
                } else {
                    self.0.observed(revision, false);
                }
            }
            Err(Failure::Unknown) => self.operation(key, call, Outcome::Unknown, invoked, None),
            Err(Failure::NotSent) => {}
        }
    }
}

impl Client {
    pub async fn run(self, recorder: Shared, conn: Conn, mut rng: Rng) {
        let mut state = State(Session::new(self.id, recorder.clone(), conn));
        let mut pace = Pace::new(self.per_second);
        let epoch_nanos = self.epoch.as_nanos().max(1) as u64;
        let mut written = 0u64;
        while pace.next(&recorder).await {
            let key = format!("{PREFIX}{:05}/{}", recorder.now() / epoch_nanos, rng.below(self.keys));
            written += 1;
            let value = format!("{}.{written}", self.id);
            match rng.below(10) {
                0..=3 => {
                    state.read(&key).await;
                }
                4..=6 => state.write(&key, value).await,
                _ => state.compare_and_set(&key, value).await,
            }
        }
    }
}
