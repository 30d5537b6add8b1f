//! Leases: grant, attach a key, keep alive for a while, then revoke or let
//! expire. Reads of the key along the way show whether the lease held.

use std::time::Duration;

use cairn_chaos::record::{LeaseRead, LeaseRecord, OpKind, Renewal};
use cairn_chaos::schedule::Rng;
use cairn_chaos::watch::Change;
use etcd_client::PutOptions;

use super::{Conn, Failure, Shared};

pub const PREFIX: &str = "l/";
const KEEPALIVE_EVERY: Duration = Duration::from_secs(1);

struct Lease<'a> {
    recorder: &'a Shared,
    conn: &'a mut Conn,
    record: LeaseRecord,
}

impl Lease<'_> {
    async fn read(&mut self) {
        let invoked = self.recorder.now();
        let key = self.record.key.clone();
        let response = self.conn.call(|mut client| async move { client.get(key, None).await }).await.ok();
        self.recorder.latency(OpKind::Get, response.is_some(), invoked);
        if let Some(response) = response {
            let read = LeaseRead { invoked, completed: self.recorder.now(), present: !response.kvs().is_empty() };
            self.record.reads.push(read);
        }
    }

    async fn keep_alive(&mut self) {
        let sent = self.recorder.now();
        let id = self.record.id;
        let response = self
            .conn
            .call(|mut client| async move {
                let (mut keeper, mut stream) = client.lease_keep_alive(id).await?;
                keeper.keep_alive().await?;
                stream.message().await
            })
            .await;
        let ttl = response.ok().flatten().map(|response| response.ttl());
        self.recorder.latency(OpKind::KeepAlive, ttl.is_some(), sent);
        if let Some(ttl_s) = ttl.filter(|ttl| *ttl > 0) {
            self.record.renewals.push(Renewal { sent, acknowledged: self.recorder.now(), ttl_s });
        }
    }

    async fn revoke(&mut self) {
        let invoked = self.recorder.now();
        self.record.revoke_sent = Some(invoked);
        let id = self.record.id;
        let response = self.conn.call(|mut client| async move { client.lease_revoke(id).await }).await;
        self.recorder.latency(OpKind::LeaseRevoke, response.is_ok(), invoked);
        match response {
            Ok(_) => self.record.revoked = Some(self.recorder.now()),
            Err(Failure::NotSent) => self.record.revoke_sent = None,
            Err(Failure::Unknown) => {}
        }
    }
}

pub async fn run(recorder: Shared, mut conn: Conn, mut rng: Rng, ttl: i64) {
    while !recorder.stopping() {
        let sent = recorder.now();
        let granted = conn.call(|mut client| async move { client.lease_grant(ttl, None).await }).await.ok();
        recorder.latency(OpKind::LeaseGrant, granted.is_some(), sent);
        let Some(granted) = granted else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let renewal = Renewal { sent, acknowledged: recorder.now(), ttl_s: granted.ttl() };
        let record = LeaseRecord {
            id: granted.id(),
            key: format!("{PREFIX}{:016x}", granted.id()),
            renewals: vec![renewal],
            ..Default::default()
        };
        let mut lease = Lease { recorder: &recorder, conn: &mut conn, record };
        let (key, id) = (lease.record.key.clone(), lease.record.id);
        let put = lease
            .conn
            .call(|mut client| async move { client.put(key, "", Some(PutOptions::new().with_lease(id))).await })
            .await
            .ok();
        if let Some(put) = put {
            lease.record.attached = Some(recorder.now());
            let revision = put.header().map_or(0, |header| header.revision());
            let change = Change { revision, key: lease.record.key.clone(), value: Some(String::new()) };
            recorder.record().writes.push(change);
            lease.read().await;
            for _ in 0..rng.below(8) {
                tokio::time::sleep(KEEPALIVE_EVERY).await;
                if recorder.stopping() {
                    break;
                }
                lease.keep_alive().await;
                lease.read().await;
            }
            // Half are revoked, half are left to expire.
            if rng.below(2) == 0 {
                lease.revoke().await;
                lease.read().await;
            }
        }
        let record = lease.record;
        recorder.record().leases.push(record);
    }
}
