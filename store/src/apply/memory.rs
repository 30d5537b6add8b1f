//! The applier over an in-memory engine: no disk, no sockets. The applier's
//! tests and the fuzz targets apply requests to it.

use std::collections::BTreeMap;

use cairn_proto::cairnpb::{write_request, write_response, AuthInfo, WriteRequest};
use cairn_proto::etcdserverpb::{RangeRequest, RangeResponse};
use cairn_proto::mvccpb::KeyValue;
use prost::Message;

use super::{Applied, Applier};
use crate::auth::AuthStore;
use crate::engine::{schema, WriteOp};
use crate::error::{EtcdError, StoreError};
use crate::lease::Leases;
use crate::mvcc::{self, Mvcc, Revision, ValueReader};

/// The KV column family: encoded values by revision key.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Values(pub BTreeMap<Vec<u8>, Vec<u8>>);

impl ValueReader for Values {
    fn read(&self, revs: &[Revision]) -> Result<Vec<KeyValue>, StoreError> {
        revs.iter()
            .map(|rev| {
                let bytes = self.0.get(&rev.to_key(false)).ok_or(EtcdError::Internal("missing".into()))?;
                Ok(KeyValue::decode(bytes.as_slice()).map_err(|err| EtcdError::Internal(err.to_string()))?)
            })
            .collect()
    }
}

/// A member's replicated state, kept in memory.
pub struct MemoryStore {
    pub mvcc: Mvcc,
    pub values: Values,
    pub leases: Leases,
    pub auth: AuthStore,
    /// See [`Applier::previous_in_events`].
    pub previous_in_events: bool,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self {
            mvcc: Mvcc::new(),
            values: Values::default(),
            leases: Leases::new(2),
            auth: AuthStore::default(),
            previous_in_events: true,
        }
    }
}

impl MemoryStore {
    /// Applies one entry as a member does, and returns the answer with what the
    /// entry wrote besides the revision counters (which every entry writes).
    pub fn apply_entry(
        &mut self,
        request: write_request::Request,
        who: Option<AuthInfo>,
    ) -> Result<(write_response::Response, Applied), StoreError> {
        let mut applier = Applier::new(&mut self.mvcc, &self.values, &mut self.leases, &mut self.auth);
        applier.previous_in_events(self.previous_in_events);
        let response = applier.apply(WriteRequest { request: Some(request), auth_info: who })?;
        let mut applied = applier.finish();
        for op in &applied.ops {
            match op {
                WriteOp::Put { cf: schema::CF_KV, key, value } => {
                    self.values.0.insert(key.clone(), value.clone());
                }
                WriteOp::Delete { cf: schema::CF_KV, key } => {
                    self.values.0.remove(key);
                }
                _ => {}
            }
        }
        applied.ops.retain(|op| !is_revision_counter(op));
        let response = response.response.ok_or_else(|| EtcdError::Internal("no response".into()))?;
        Ok((response, applied))
    }

    /// What the compactor does after a compaction applies: walks the index at
    /// the compact revision and deletes the values that walk drops.
    pub fn walk_compacted_index(&mut self) {
        for rev in self.mvcc.index.compact(self.mvcc.compact_rev) {
            for op in schema::revision_deletes(rev) {
                if let WriteOp::Delete { key, .. } = op {
                    self.values.0.remove(&key);
                }
            }
        }
    }

    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, StoreError> {
        mvcc::range(&self.mvcc, &self.values, req, self.mvcc.current_rev)
    }
}

fn is_revision_counter(op: &WriteOp) -> bool {
    matches!(op, WriteOp::Put { cf: schema::CF_META, key, .. }
        if key == schema::meta::SM_CURRENT_REV || key == schema::meta::SM_COMPACT_REV)
}
