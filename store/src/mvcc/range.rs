//! A Range request, with etcd's semantics for limits, counts, filters and sorting.

use cairn_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use cairn_proto::etcdserverpb::{RangeRequest, RangeResponse, ResponseHeader};
use cairn_proto::mvccpb::KeyValue;

use super::{KeyRange, Mvcc, Revision, ValueReader};
use crate::error::{EtcdError, StoreError};

/// Serves `req` from `mvcc` as of revision `current` (the store's revision, or
/// one past it inside a write transaction, which sees its own writes).
pub fn range(
    mvcc: &Mvcc,
    reader: &impl ValueReader,
    req: &RangeRequest,
    current: i64,
) -> Result<RangeResponse, StoreError> {
    plan(mvcc, req, current)?.execute(reader)
}

/// What a Range takes from the index: the revisions to read and the count.
/// Planned under the MVCC lock; the values are read after it is released,
/// from a view of the engine taken with the plan, so that a large read never
/// holds up apply.
pub struct RangePlan<'r> {
    req: &'r RangeRequest,
    revision: i64,
    revs: Vec<Revision>,
    total: i64,
}

/// Walks the index for `req` as of `current`; see [`range`].
pub fn plan<'r>(mvcc: &Mvcc, req: &'r RangeRequest, current: i64) -> Result<RangePlan<'r>, StoreError> {
    if req.revision > current {
        return Err(EtcdError::FutureRev.into());
    }
    let at = if req.revision <= 0 { current } else { req.revision };
    if at < mvcc.compact_rev {
        return Err(EtcdError::Compacted.into());
    }
    let key_range = KeyRange::new(&req.key, &req.range_end);
    let filtered_or_sorted = req.sort_order != SortOrder::None as i32
        || req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0;
    // One extra, to tell whether there are more.
    let fetch_limit = if req.count_only {
        0
    } else if filtered_or_sorted || req.limit <= 0 {
        usize::MAX
    } else {
        req.limit as usize + 1
    };

    let mut total = 0i64;
    let mut revs: Vec<Revision> = Vec::new();
    mvcc.index.visit(key_range, at, |_, found| {
        total += 1;
        if revs.len() < fetch_limit {
            revs.push(found.modified);
        }
        true
    });
    Ok(RangePlan { req, revision: current, revs, total })
}

impl RangePlan<'_> {
    /// Reads the planned values and applies filters, sorting and the limit.
    pub fn execute(self, reader: &impl ValueReader) -> Result<RangeResponse, StoreError> {
        let RangePlan { req, revision, revs, total } = self;
        let header = Some(ResponseHeader { revision, ..Default::default() });
        if req.count_only {
            return Ok(RangeResponse { header, kvs: vec![], more: false, count: total });
        }
        let mut kvs = reader.read(&revs)?;

        if req.max_mod_revision != 0 {
            kvs.retain(|kv| kv.mod_revision <= req.max_mod_revision);
        }
        if req.min_mod_revision != 0 {
            kvs.retain(|kv| kv.mod_revision >= req.min_mod_revision);
        }
        if req.max_create_revision != 0 {
            kvs.retain(|kv| kv.create_revision <= req.max_create_revision);
        }
        if req.min_create_revision != 0 {
            kvs.retain(|kv| kv.create_revision >= req.min_create_revision);
        }
        sort(&mut kvs, req.sort_order, req.sort_target);

        let mut more = false;
        if req.limit > 0 && kvs.len() > req.limit as usize {
            kvs.truncate(req.limit as usize);
            more = true;
        }
        if req.keys_only {
            for kv in &mut kvs {
                kv.value.clear();
            }
        }
        Ok(RangeResponse { header, kvs, more, count: total })
    }
}

fn sort(kvs: &mut [KeyValue], order: i32, target: i32) {
    let target = SortTarget::try_from(target).unwrap_or(SortTarget::Key);
    let mut order = SortOrder::try_from(order).unwrap_or(SortOrder::None);
    // The index yields keys in ascending order already.
    if target != SortTarget::Key && order == SortOrder::None {
        order = SortOrder::Ascend;
    } else if target == SortTarget::Key && order == SortOrder::Ascend {
        order = SortOrder::None;
    }
    if order == SortOrder::None {
        return;
    }
    let descending = order == SortOrder::Descend;
    // Stable, so ties keep key order in both directions, as etcd's sort does for small results.
    let ordered = |ordering: std::cmp::Ordering| if descending { ordering.reverse() } else { ordering };
    match target {
        SortTarget::Key => kvs.sort_by(|a, b| ordered(a.key.cmp(&b.key))),
        SortTarget::Version => kvs.sort_by(|a, b| ordered(a.version.cmp(&b.version))),
        SortTarget::Create => kvs.sort_by(|a, b| ordered(a.create_revision.cmp(&b.create_revision))),
        SortTarget::Mod => kvs.sort_by(|a, b| ordered(a.mod_revision.cmp(&b.mod_revision))),
        SortTarget::Value => kvs.sort_by(|a, b| ordered(a.value.cmp(&b.value))),
    }
}
