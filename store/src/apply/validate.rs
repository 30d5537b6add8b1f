//! Request checks done before a request is proposed, as etcd's `v3rpc/key.go`.
//! Kept apart from execution: these need no state.

use std::collections::HashSet;

use cairn_proto::etcdserverpb::request_op::Request;
use cairn_proto::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest};

use crate::error::EtcdError;
use crate::mvcc::KeyRange;

/// etcd's `--max-txn-ops` default.
pub const MAX_TXN_OPS: usize = 128;

pub fn check_range(req: &RangeRequest) -> Result<(), EtcdError> {
    if req.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if !(0..=2).contains(&req.sort_order) || !(0..=4).contains(&req.sort_target) {
        return Err(EtcdError::InvalidSortOption);
    }
    Ok(())
}

pub fn check_put(req: &PutRequest) -> Result<(), EtcdError> {
    if req.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if req.ignore_value && !req.value.is_empty() {
        return Err(EtcdError::ValueProvided);
    }
    if req.ignore_lease && req.lease != 0 {
        return Err(EtcdError::LeaseProvided);
    }
    Ok(())
}

pub fn check_delete(req: &DeleteRangeRequest) -> Result<(), EtcdError> {
    if req.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    Ok(())
}

pub fn check_txn(req: &TxnRequest) -> Result<(), EtcdError> {
    check_txn_ops(req, MAX_TXN_OPS)?;
    check_overlaps(&req.success)?;
    check_overlaps(&req.failure)?;
    Ok(())
}

fn check_txn_ops(req: &TxnRequest, max_ops: usize) -> Result<(), EtcdError> {
    let ops = req.compare.len().max(req.success.len()).max(req.failure.len());
    if ops > max_ops {
        return Err(EtcdError::TooManyOps);
    }
    if req.compare.iter().any(|cmp| cmp.key.is_empty()) {
        return Err(EtcdError::EmptyKey);
    }
    for op in req.success.iter().chain(&req.failure) {
        check_op(op, max_ops - ops)?;
    }
    Ok(())
}

fn check_op(op: &RequestOp, max_ops: usize) -> Result<(), EtcdError> {
    match &op.request {
        Some(Request::RequestRange(range)) => check_range(range),
        Some(Request::RequestPut(put)) => check_put(put),
        Some(Request::RequestDeleteRange(delete)) => check_delete(delete),
        Some(Request::RequestTxn(txn)) => check_txn_ops(txn, max_ops),
        // etcd answers an empty op this way.
        None => Err(EtcdError::KeyNotFound),
    }
}

/// Keys put and ranges deleted by one branch, to find overlaps (etcd's `checkIntervals`).
#[derive(Default)]
struct Writes {
    puts: HashSet<Vec<u8>>,
    deletes: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Writes {
    fn deleted(&self, key: &[u8]) -> bool {
        self.deletes.iter().any(|(start, end)| KeyRange::new(start, end).contains(key))
    }
}

fn check_overlaps(ops: &[RequestOp]) -> Result<Writes, EtcdError> {
    let mut writes = Writes::default();
    for op in ops {
        if let Some(Request::RequestDeleteRange(delete)) = &op.request {
            writes.deletes.push((delete.key.clone(), delete.range_end.clone()));
        }
    }
    for op in ops {
        let Some(Request::RequestTxn(txn)) = &op.request else { continue };
        let then = check_overlaps(&txn.success)?;
        let otherwise = check_overlaps(&txn.failure)?;
        for key in &then.puts {
            if writes.puts.contains(key) || writes.deleted(key) {
                return Err(EtcdError::DuplicateKey);
            }
        }
        let mut puts = writes.puts.clone();
        puts.extend(then.puts.iter().cloned());
        for key in &otherwise.puts {
            // A key in both branches is fine: only one branch runs.
            if (writes.puts.contains(key) && !then.puts.contains(key)) || writes.deleted(key) {
                return Err(EtcdError::DuplicateKey);
            }
        }
        puts.extend(otherwise.puts);
        writes.puts = puts;
        writes.deletes.extend(then.deletes);
        writes.deletes.extend(otherwise.deletes);
    }
    for op in ops {
        let Some(Request::RequestPut(put)) = &op.request else { continue };
        if writes.puts.contains(&put.key) || writes.deleted(&put.key) {
            return Err(EtcdError::DuplicateKey);
        }
        writes.puts.insert(put.key.clone());
    }
    Ok(writes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str) -> RequestOp {
        RequestOp { request: Some(Request::RequestPut(PutRequest { key: key.into(), ..Default::default() })) }
    }

    fn delete(key: &str, end: &str) -> RequestOp {
        let req = DeleteRangeRequest { key: key.into(), range_end: end.into(), ..Default::default() };
        RequestOp { request: Some(Request::RequestDeleteRange(req)) }
    }

    fn txn(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
        TxnRequest { compare: vec![], success, failure }
    }

    #[test]
    fn duplicate_puts_and_put_in_deleted_range_are_refused() {
        assert_eq!(check_txn(&txn(vec![put("a"), put("a")], vec![])), Err(EtcdError::DuplicateKey));
        assert_eq!(check_txn(&txn(vec![delete("a", "c"), put("b")], vec![])), Err(EtcdError::DuplicateKey));
        assert_eq!(check_txn(&txn(vec![put("a")], vec![put("a")])), Ok(()), "branches are exclusive");
        assert_eq!(check_txn(&txn(vec![delete("a", "c"), put("c")], vec![])), Ok(()));
    }

    #[test]
    fn nested_txn_puts_count_against_the_parent() {
        let nested = RequestOp { request: Some(Request::RequestTxn(txn(vec![put("k")], vec![put("k")]))) };
        assert_eq!(check_txn(&txn(vec![nested.clone()], vec![])), Ok(()));
        assert_eq!(check_txn(&txn(vec![nested, put("k")], vec![])), Err(EtcdError::DuplicateKey));
    }

    #[test]
    fn op_count_and_empty_keys() {
        let many = (0..129).map(|i| put(&format!("k{i}"))).collect();
        assert_eq!(check_txn(&txn(many, vec![])), Err(EtcdError::TooManyOps));
        assert_eq!(check_txn(&txn(vec![put("")], vec![])), Err(EtcdError::EmptyKey));
        assert_eq!(check_txn(&txn(vec![RequestOp { request: None }], vec![])), Err(EtcdError::KeyNotFound));
    }
}
