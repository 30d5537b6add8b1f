//! Applying committed writes to the MVCC state, as etcd's applier.
//!
//! Pure: no I/O and no clock. [`Applier`] mutates the in-memory [`Mvcc`] and
//! collects the [`WriteOp`]s that the caller writes in one batch, together
//! with the applied log id. A failed compare is a result, not an error.

#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz;
#[cfg(any(test, feature = "fuzzing"))]
pub mod memory;
pub mod validate;

use std::collections::HashMap;

use cairn_proto::cairnpb::{write_request, write_response, AuthInfo, AuthResponse, WriteRequest, WriteResponse};
use cairn_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use cairn_proto::etcdserverpb::request_op::Request;
use cairn_proto::etcdserverpb::response_op::Response;
use cairn_proto::etcdserverpb::{
    AlarmType, CompactionRequest, CompactionResponse, Compare, DeleteRangeRequest, DeleteRangeResponse,
    LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeRequest, LeaseRevokeResponse, PutRequest, PutResponse,
    RangeRequest, RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use cairn_proto::mvccpb::event::EventType;
use cairn_proto::mvccpb::{Event, KeyValue};
use prost::Message;

use crate::auth::{Access, AuthStore, TokenEffect};
use crate::engine::{schema, WriteOp};
use crate::error::{EtcdError, StoreError};
use crate::lease::{Leases, MAX_LEASE_TTL};
use crate::mvcc::{self, KeyRange, Mvcc, Revision, ValueReader};

/// Previous values a delete reads at once.
const DELETE_READ_CHUNK: usize = 4096;

/// Applies writes; one [`Applier`] covers one Raft entry's batch.
pub struct Applier<'a, R: ValueReader> {
    mvcc: &'a mut Mvcc,
    reader: OverlayReader<'a, R>,
    leases: &'a mut Leases,
    auth: &'a mut AuthStore,
    auth_changed: bool,
    token_effect: Option<TokenEffect>,
    ops: Vec<WriteOp>,
    events: Vec<Event>,
    /// A delete of more keys than this keeps no events in memory for watchers.
    event_limit: usize,
    events_dropped: bool,
    /// Whether a put's event carries the value it replaced (see
    /// [`Applier::previous_in_events`]).
    previous_in_events: bool,
    /// The NOSPACE alarm is active: only writes that free space are applied.
    no_space: bool,
    /// The CORRUPT alarm is active: no key or lease is changed any more.
    corrupt: bool,
}

/// What applying a batch produced: engine writes, and the events watchers see.
pub struct Applied {
    pub ops: Vec<WriteOp>,
    /// In revision order. Every delete carries its `prev_kv`, and so does every
    /// put that replaced a value unless [`Applier::previous_in_events`] was off.
    pub events: Vec<Event>,
    /// A delete had more keys than the event limit: `events` is empty and
    /// watchers read this batch's events from storage.
    pub events_dropped: bool,
}

/// Reads values written earlier in this batch before they reach the engine.
struct OverlayReader<'a, R> {
    base: &'a R,
    written: HashMap<Revision, KeyValue>,
}

impl<R: ValueReader> ValueReader for OverlayReader<'_, R> {
    fn read(&self, revs: &[Revision]) -> Result<Vec<KeyValue>, StoreError> {
        let missing: Vec<Revision> = revs.iter().filter(|rev| !self.written.contains_key(rev)).copied().collect();
        let mut from_base = self.base.read(&missing)?.into_iter();
        revs.iter()
            .map(|rev| match self.written.get(rev) {
                Some(kv) => Ok(kv.clone()),
                None => from_base.next().ok_or_else(|| EtcdError::Internal("value missing".into()).into()),
            })
            .collect()
    }
}

/// The revision a write transaction writes at, and how many changes it made.
struct TxnRev {
    main: i64,
    changes: i64,
}

impl TxnRev {
    /// Reads inside a write transaction see its own changes.
    fn read_rev(&self) -> i64 {
        if self.changes > 0 {
            self.main
        } else {
            self.main - 1
        }
    }

    fn next(&mut self) -> Revision {
        let rev = Revision::new(self.main, self.changes);
        self.changes += 1;
        rev
    }
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader { revision, ..Default::default() })
}

impl<'a, R: ValueReader> Applier<'a, R> {
    pub fn new(mvcc: &'a mut Mvcc, reader: &'a R, leases: &'a mut Leases, auth: &'a mut AuthStore) -> Self {
        Self {
            mvcc,
            reader: OverlayReader { base: reader, written: HashMap::new() },
            leases,
            auth,
            auth_changed: false,
            token_effect: None,
            ops: Vec::new(),
            events: Vec::new(),
            event_limit: usize::MAX,
            events_dropped: false,
            previous_in_events: true,
            no_space: false,
            corrupt: false,
        }
    }

    /// A delete of more than `limit` keys would be evicted from the watchers'
    /// event log at once: its previous values are not held in memory (a
    /// delete of millions of keys would hold them all).
    pub fn limit_events(&mut self, limit: usize) {
        self.event_limit = limit;
    }

    /// Without watchers that want previous values, a put reads none (as
    /// etcd's): its event then lacks `prev_kv`, which a watcher that asks for
    /// it later reads back ([`crate::state::KvState::fill_prev_kvs`]).
    pub fn previous_in_events(&mut self, keep: bool) {
        self.previous_in_events = keep;
    }

    /// Heeds the active alarms: NOSPACE and CORRUPT change what is applied.
    pub fn set_alarms<'x>(&mut self, active: impl IntoIterator<Item = &'x AlarmType>) {
        (self.no_space, self.corrupt) = (false, false);
        for alarm in active {
            match alarm {
                AlarmType::Nospace => self.no_space = true,
                AlarmType::Corrupt => self.corrupt = true,
                AlarmType::None => {}
            }
        }
    }

    /// The engine writes for everything applied so far, revision counters
    /// included, and the events.
    pub fn finish(mut self) -> Applied {
        let counters = [
            (schema::meta::SM_CURRENT_REV, self.mvcc.current_rev),
            (schema::meta::SM_COMPACT_REV, self.mvcc.compact_rev),
        ];
        for (key, value) in counters {
            self.ops.push(WriteOp::Put { cf: schema::CF_META, key: key.to_vec(), value: schema::encode_i64(value) });
        }
        if self.auth_changed {
            let record = self.auth.to_state().encode_to_vec();
            self.ops.push(WriteOp::Put { cf: schema::CF_META, key: schema::meta::SM_AUTH.to_vec(), value: record });
        }
        Applied { ops: self.ops, events: self.events, events_dropped: self.events_dropped }
    }

    /// Applies one client write. Errors that a client should see become a response;
    /// only a storage failure is an `Err`.
    pub fn apply(&mut self, mut req: WriteRequest) -> Result<WriteResponse, StoreError> {
        let who = req.auth_info.take();
        let outcome = if self.corrupt && changes_keys_or_leases(&req) {
            Err(EtcdError::Corrupt.into())
        } else if self.no_space && adds_data(&req) {
            Err(EtcdError::NoSpace.into())
        } else {
            self.check_access(&req, who.as_ref()).map_err(StoreError::from).and_then(|()| self.dispatch(req, who))
        };
        let response = match outcome {
            Ok(response) => response,
            Err(StoreError::Etcd(err)) => write_response::Response::Error(err.to_write_error()),
            Err(fault) => return Err(fault),
        };
        Ok(WriteResponse { response: Some(response) })
    }

    /// What the last auth request applied means for the members' tokens.
    pub fn take_token_effect(&mut self) -> Option<TokenEffect> {
        self.token_effect.take()
    }

    /// etcd's auth applier: a write is checked against the permissions its
    /// sender had when it was applied, so every member decides alike.
    /// A lease revoke without an identity comes from the leader expiring it
    /// and is not checked; client requests always carry one, empty when the
    /// client sent no credentials.
    fn check_access(&self, req: &WriteRequest, who: Option<&AuthInfo>) -> Result<(), EtcdError> {
        if !self.auth.is_enabled() {
            return Ok(());
        }
        // Members send only these without an identity; anything else without one is anonymous.
        let anonymous = AuthInfo::default();
        let who = match (&req.request, who) {
            (Some(write_request::Request::LeaseRevoke(_)), None) => return Ok(()),
            (_, who) => Some(who.unwrap_or(&anonymous)),
        };
        match &req.request {
            Some(write_request::Request::Put(put)) => {
                self.auth.check(who, Access::Write, &put.key, &[])?;
                self.check_lease_keys(who, put.lease)?;
                if put.prev_kv {
                    self.auth.check(who, Access::Read, &put.key, &[])?;
                }
                Ok(())
            }
            Some(write_request::Request::DeleteRange(delete)) => {
                self.auth.check(who, Access::Write, &delete.key, &delete.range_end)?;
                if delete.prev_kv {
                    self.auth.check(who, Access::Read, &delete.key, &delete.range_end)?;
                }
                Ok(())
            }
            Some(write_request::Request::Txn(txn)) => self.auth.check_txn(who, txn),
            Some(write_request::Request::LeaseRevoke(revoke)) => self.check_lease_keys(who, revoke.id),
            // Stricter than etcd 3.5: a compaction takes history from every client.
            Some(write_request::Request::Compaction(_)) => self.auth.check_admin(who),
            // Auth requests are checked by the auth store; the rest come from members or need nothing.
            _ => Ok(()),
        }
    }

    /// Writing through a lease needs write access to every key it holds.
    fn check_lease_keys(&self, who: Option<&AuthInfo>, lease: i64) -> Result<(), EtcdError> {
        let Some(lease) = self.leases.get(lease) else { return Ok(()) };
        lease.keys.iter().try_for_each(|key| self.auth.check(who, Access::Write, key, &[]))
    }

    fn dispatch(&mut self, req: WriteRequest, who: Option<AuthInfo>) -> Result<write_response::Response, StoreError> {
        match req.request {
            Some(write_request::Request::Put(put)) => self.put_txn(put).map(write_response::Response::Put),
            Some(write_request::Request::DeleteRange(delete)) => {
                self.delete_txn(delete).map(write_response::Response::DeleteRange)
            }
            Some(write_request::Request::Txn(txn)) => self.txn(txn).map(write_response::Response::Txn),
            Some(write_request::Request::Compaction(compaction)) => {
                self.compact(compaction).map(write_response::Response::Compaction)
            }
            // Published attributes are the state machine's, not MVCC's.
            Some(write_request::Request::Publish(_)) => Ok(write_response::Response::Published(true)),
            Some(write_request::Request::LeaseGrant(grant)) => {
                self.lease_grant(grant).map(write_response::Response::LeaseGrant)
            }
            Some(write_request::Request::LeaseRevoke(revoke)) => {
                self.lease_revoke(revoke).map(write_response::Response::LeaseRevoke)
            }
            // Alarms are the state machine's; it answers them before the applier sees them.
            Some(write_request::Request::Alarm(_)) => Ok(write_response::Response::Alarm(Default::default())),
            Some(write_request::Request::Auth(auth)) => {
                let before = (self.auth.revision(), self.auth.is_enabled());
                // Auth requests only ever come from clients: no identity is an anonymous one.
                let (response, effect) = self.auth.apply(auth, Some(&who.unwrap_or_default()))?;
                self.auth_changed |= before != (self.auth.revision(), self.auth.is_enabled());
                self.token_effect = effect;
                Ok(write_response::Response::Auth(AuthResponse { response: Some(response) }))
            }
            None => Err(EtcdError::Internal("empty write request".into()).into()),
        }
    }

    fn begin(&self) -> TxnRev {
        TxnRev { main: self.mvcc.current_rev + 1, changes: 0 }
    }

    fn end(&mut self, txn: &TxnRev) -> i64 {
        if txn.changes > 0 {
            self.mvcc.current_rev = txn.main;
        }
        self.mvcc.current_rev
    }

    fn put_txn(&mut self, req: PutRequest) -> Result<PutResponse, StoreError> {
        let mut txn = self.begin();
        self.check_put(&req, txn.read_rev())?;
        let mut resp = self.put(&mut txn, req)?;
        resp.header = header(self.end(&txn));
        Ok(resp)
    }

    fn delete_txn(&mut self, req: DeleteRangeRequest) -> Result<DeleteRangeResponse, StoreError> {
        let mut txn = self.begin();
        let mut resp = self.delete(&mut txn, &req)?;
        resp.header = header(self.end(&txn));
        Ok(resp)
    }

    fn txn(&mut self, req: TxnRequest) -> Result<TxnResponse, StoreError> {
        let mut txn = self.begin();
        // etcd decides every branch, nested ones too, before any write.
        let mut path = Vec::new();
        self.choose_path(&req, txn.read_rev(), &mut path)?;
        self.check_path(&req, &path, &mut 0, txn.read_rev())?;
        let mut resp = self.run_txn(&mut txn, req, &path, &mut 0)?;
        resp.header = header(self.end(&txn));
        Ok(resp)
    }

    fn choose_path(&self, req: &TxnRequest, at: i64, path: &mut Vec<bool>) -> Result<(), StoreError> {
        let mut succeeded = true;
        for cmp in &req.compare {
            if !self.compare(cmp, at)? {
                succeeded = false;
                break;
            }
        }
        path.push(succeeded);
        for op in if succeeded { &req.success } else { &req.failure } {
            if let Some(Request::RequestTxn(nested)) = &op.request {
                self.choose_path(nested, at, path)?;
            }
        }
        Ok(())
    }

    /// etcd's `checkRequests`: fail the whole txn before it writes anything.
    fn check_path(&self, req: &TxnRequest, path: &[bool], step: &mut usize, at: i64) -> Result<(), StoreError> {
        let succeeded = path.get(*step).copied().unwrap_or(false);
        *step += 1;
        for op in if succeeded { &req.success } else { &req.failure } {
            match &op.request {
                Some(Request::RequestPut(put)) => self.check_put(put, at)?,
                Some(Request::RequestRange(range)) => self.check_range_rev(range, at)?,
                Some(Request::RequestTxn(nested)) => self.check_path(nested, path, step, at)?,
                Some(Request::RequestDeleteRange(_)) | None => {}
            }
        }
        Ok(())
    }

    fn check_range_rev(&self, req: &RangeRequest, at: i64) -> Result<(), EtcdError> {
        if req.revision > at {
            return Err(EtcdError::FutureRev);
        }
        if req.revision > 0 && req.revision < self.mvcc.compact_rev {
            return Err(EtcdError::Compacted);
        }
        Ok(())
    }

    fn check_put(&self, req: &PutRequest, at: i64) -> Result<(), EtcdError> {
        if (req.ignore_value || req.ignore_lease) && self.mvcc.index.get(&req.key, at).is_none() {
            return Err(EtcdError::KeyNotFound);
        }
        if !req.ignore_lease && req.lease != 0 && !self.leases.contains(req.lease) {
            return Err(EtcdError::LeaseNotFound);
        }
        Ok(())
    }

    fn run_txn(
        &mut self,
        txn: &mut TxnRev,
        req: TxnRequest,
        path: &[bool],
        step: &mut usize,
    ) -> Result<TxnResponse, StoreError> {
        let succeeded = path.get(*step).copied().unwrap_or(false);
        *step += 1;
        let ops = if succeeded { req.success } else { req.failure };
        let mut responses = Vec::with_capacity(ops.len());
        for RequestOp { request } in ops {
            let response = match request {
                Some(Request::RequestRange(range)) => {
                    Response::ResponseRange(mvcc::range(self.mvcc, &self.reader, &range, txn.read_rev())?)
                }
                Some(Request::RequestPut(put)) => Response::ResponsePut(self.put(txn, put)?),
                Some(Request::RequestDeleteRange(delete)) => Response::ResponseDeleteRange(self.delete(txn, &delete)?),
                Some(Request::RequestTxn(nested)) => {
                    let mut resp = self.run_txn(txn, nested, path, step)?;
                    // etcd gives a nested txn a header with no fields set.
                    resp.header = Some(Default::default());
                    Response::ResponseTxn(resp)
                }
                None => continue,
            };
            responses.push(ResponseOp { response: Some(response) });
        }
        Ok(TxnResponse { header: None, succeeded, responses })
    }

    fn compare(&self, cmp: &Compare, at: i64) -> Result<bool, StoreError> {
        let mut revs = Vec::new();
        self.mvcc.index.visit(KeyRange::new(&cmp.key, &cmp.range_end), at, |_, found| {
            revs.push(found.modified);
            true
        });
        if revs.is_empty() {
            // A missing key has no value to compare; etcd fails the compare.
            if cmp.target == CompareTarget::Value as i32 {
                return Ok(false);
            }
            return Ok(compare_kv(cmp, &KeyValue::default()));
        }
        let kvs = self.reader.read(&revs)?;
        Ok(kvs.iter().all(|kv| compare_kv(cmp, kv)))
    }

    fn put(&mut self, txn: &mut TxnRev, req: PutRequest) -> Result<PutResponse, StoreError> {
        let found = self.mvcc.index.get(&req.key, txn.read_rev());
        let needs_previous = req.prev_kv || req.ignore_value || req.ignore_lease || self.previous_in_events;
        let previous = match found {
            Some(found) if needs_previous => Some(self.read_one(found.modified)?),
            _ => None,
        };
        let rev = txn.next();
        let (create_revision, version) = match found {
            Some(found) => (found.created.main, found.version + 1),
            None => (rev.main, 1),
        };
        let value = match (&previous, req.ignore_value) {
            (Some(prev), true) => prev.value.clone(),
            _ => req.value,
        };
        let lease = match (&previous, req.ignore_lease) {
            (Some(prev), true) => prev.lease,
            _ => req.lease,
        };
        let kv = KeyValue { key: req.key, create_revision, mod_revision: rev.main, version, value, lease };
        let replaced_lease = self.leases.lease_of(&kv.key);
        if replaced_lease != lease {
            self.leases.detach(replaced_lease, &kv.key);
        }
        self.leases.attach(lease, &kv.key);
        self.mvcc.index.put(&kv.key, rev);
        if !self.events_dropped {
            self.events.push(Event { r#type: EventType::Put as i32, kv: Some(kv.clone()), prev_kv: previous.clone() });
        }
        self.write_value(rev, kv, false);
        let prev_kv = if req.prev_kv { previous } else { None };
        Ok(PutResponse { header: header(rev.main), prev_kv })
    }

    fn delete(&mut self, txn: &mut TxnRev, req: &DeleteRangeRequest) -> Result<DeleteRangeResponse, StoreError> {
        let live = self.mvcc.index.live_keys(KeyRange::new(&req.key, &req.range_end), txn.read_rev());
        if live.len() > self.event_limit {
            self.drop_events();
        }
        let mut prev_kvs = Vec::new();
        // Read in chunks: unless the client or the watchers keep them, the
        // previous values are needed only for their leases.
        for chunk in live.chunks(DELETE_READ_CHUNK) {
            let revs: Vec<Revision> = chunk.iter().map(|(_, found)| found.modified).collect();
            let previous = self.reader.read(&revs)?;
            for ((key, _), prev_kv) in chunk.iter().zip(previous) {
                let rev = txn.next();
                self.leases.detach(prev_kv.lease, key);
                self.mvcc.index.tombstone(key, rev);
                // etcd stores a tombstone as the bare key; the event also carries its revision.
                let tombstone = KeyValue { key: key.clone(), ..Default::default() };
                if req.prev_kv {
                    prev_kvs.push(prev_kv.clone());
                }
                if !self.events_dropped {
                    self.events.push(Event {
                        r#type: EventType::Delete as i32,
                        kv: Some(KeyValue { mod_revision: rev.main, ..tombstone.clone() }),
                        prev_kv: Some(prev_kv),
                    });
                }
                self.write_value(rev, tombstone, true);
            }
        }
        Ok(DeleteRangeResponse { header: header(txn.read_rev()), deleted: live.len() as i64, prev_kvs })
    }

    /// From now on this batch keeps no events: watchers read them from storage.
    fn drop_events(&mut self) {
        self.events = Vec::new();
        self.events_dropped = true;
    }

    fn compact(&mut self, req: CompactionRequest) -> Result<CompactionResponse, StoreError> {
        if req.revision <= self.mvcc.compact_rev {
            return Err(EtcdError::Compacted.into());
        }
        if req.revision > self.mvcc.current_rev {
            return Err(EtcdError::FutureRev.into());
        }
        // Only the compact revision: the index walk and the deletes are the
        // compactor's (`state::compactor`), after this batch. Nothing at or after
        // the compact revision reads what they drop, and older reads are refused.
        self.mvcc.compact_rev = req.revision;
        Ok(CompactionResponse { header: header(self.mvcc.current_rev) })
    }

    fn lease_grant(&mut self, req: LeaseGrantRequest) -> Result<LeaseGrantResponse, StoreError> {
        if req.ttl > MAX_LEASE_TTL {
            return Err(EtcdError::LeaseTtlTooLarge.into());
        }
        if self.leases.contains(req.id) {
            return Err(EtcdError::LeaseExist.into());
        }
        let ttl = self.leases.grant(req.id, req.ttl);
        self.ops.push(schema::lease_record(req.id, ttl));
        Ok(LeaseGrantResponse { header: header(self.mvcc.current_rev), id: req.id, ttl, error: String::new() })
    }

    /// Deletes every key the lease holds in one revision, then the lease.
    fn lease_revoke(&mut self, req: LeaseRevokeRequest) -> Result<LeaseRevokeResponse, StoreError> {
        let keys: Vec<Vec<u8>> = match self.leases.get(req.id) {
            Some(lease) => lease.keys.iter().cloned().collect(),
            None => return Err(EtcdError::LeaseNotFound.into()),
        };
        let mut txn = self.begin();
        for key in keys {
            self.delete(&mut txn, &DeleteRangeRequest { key, range_end: Vec::new(), prev_kv: false })?;
        }
        self.leases.remove(req.id);
        self.ops.push(WriteOp::Delete { cf: schema::CF_LEASE, key: schema::encode_i64(req.id) });
        Ok(LeaseRevokeResponse { header: header(self.end(&txn)) })
    }

    fn read_one(&self, rev: Revision) -> Result<KeyValue, StoreError> {
        self.reader.read(&[rev])?.pop().ok_or_else(|| EtcdError::Internal("value missing".into()).into())
    }

    fn write_value(&mut self, rev: Revision, kv: KeyValue, tombstone: bool) {
        self.ops.push(WriteOp::Put { cf: schema::CF_KV, key: rev.to_key(tombstone), value: kv.encode_to_vec() });
        // A tombstone is never a live key's value: nothing in this batch reads it back.
        if !tombstone {
            self.reader.written.insert(rev, kv);
        }
    }
}

/// What etcd's corrupt applier refuses: every KV and lease write.
fn changes_keys_or_leases(req: &WriteRequest) -> bool {
    use write_request::Request::*;
    matches!(req.request, Some(Put(_) | DeleteRange(_) | Txn(_) | Compaction(_) | LeaseGrant(_) | LeaseRevoke(_)))
}

/// Whether a request can grow the store (etcd's quota cost above zero).
pub fn adds_data(req: &WriteRequest) -> bool {
    fn txn_puts(txn: &TxnRequest) -> bool {
        txn.success.iter().chain(&txn.failure).any(|op| match &op.request {
            Some(Request::RequestPut(_)) => true,
            Some(Request::RequestTxn(nested)) => txn_puts(nested),
            _ => false,
        })
    }
    match &req.request {
        Some(write_request::Request::Put(_)) | Some(write_request::Request::LeaseGrant(_)) => true,
        Some(write_request::Request::Txn(txn)) => txn_puts(txn),
        _ => false,
    }
}

fn compare_kv(cmp: &Compare, kv: &KeyValue) -> bool {
    use std::cmp::Ordering;
    let ordering = match (CompareTarget::try_from(cmp.target), &cmp.target_union) {
        (Ok(CompareTarget::Value), Some(TargetUnion::Value(value))) => kv.value.as_slice().cmp(value.as_slice()),
        (Ok(CompareTarget::Value), _) => kv.value.as_slice().cmp(&[][..]),
        (Ok(CompareTarget::Version), target) => kv.version.cmp(&int_target(target)),
        (Ok(CompareTarget::Create), target) => kv.create_revision.cmp(&int_target(target)),
        (Ok(CompareTarget::Mod), target) => kv.mod_revision.cmp(&int_target(target)),
        (Ok(CompareTarget::Lease), target) => kv.lease.cmp(&int_target(target)),
        (Err(_), _) => return true,
    };
    match CompareResult::try_from(cmp.result) {
        Ok(CompareResult::Equal) => ordering == Ordering::Equal,
        Ok(CompareResult::NotEqual) => ordering != Ordering::Equal,
        Ok(CompareResult::Greater) => ordering == Ordering::Greater,
        Ok(CompareResult::Less) => ordering == Ordering::Less,
        Err(_) => true,
    }
}

/// The integer a compare names; etcd reads a mismatched union member as 0.
fn int_target(target: &Option<TargetUnion>) -> i64 {
    match target {
        Some(TargetUnion::Version(v) | TargetUnion::CreateRevision(v) | TargetUnion::ModRevision(v))
        | Some(TargetUnion::Lease(v)) => *v,
        _ => 0,
    }
}

#[cfg(test)]
mod tests;
