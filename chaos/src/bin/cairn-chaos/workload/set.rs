//! Sets: unique elements appended to a key by compare-and-set, read in full
//! at the end. An acknowledged element must be there; nothing else may be.

use cairn_chaos::record::{AddOutcome, OpKind, SetRecord};
use cairn_chaos::watch::Change;
use etcd_client::{Compare, CompareOp, Txn, TxnOp};

use super::{text, Conn, Failure, Pace, Shared};

pub const PREFIX: &str = "s/";
/// Tries per element when other clients win the compare.
const TRIES: usize = 5;
/// Elements per key before the workload moves to the next key: the whole set
/// is rewritten on every add, so it must stay small.
const ELEMENTS_PER_KEY: u64 = 200;

pub fn elements(value: &str) -> Vec<String> {
    value.split(',').filter(|element| !element.is_empty()).map(String::from).collect()
}

/// Adds elements to `s/<set>/<n>`, moving to the next `n` every so many elements.
pub async fn run(id: u32, set: u32, recorder: Shared, mut conn: Conn, per_second: f64) {
    let mut pace = Pace::new(per_second);
    let mut adds = Vec::new();
    let mut next = 0u64;
    let mut key = format!("{PREFIX}{set}/0");
    while pace.next(&recorder).await {
        next += 1;
        if next.is_multiple_of(ELEMENTS_PER_KEY) {
            let full = std::mem::take(&mut adds);
            recorder.record().sets.push(SetRecord { key: key.clone(), adds: full, final_read: None });
            key = format!("{PREFIX}{set}/{}", next / ELEMENTS_PER_KEY);
        }
        let element = format!("e{id}.{next}");
        let mut outcome = AddOutcome::Refused;
        for _ in 0..TRIES {
            let invoked = recorder.now();
            let owned = key.clone();
            let Ok(current) = conn.call(|mut client| async move { client.get(owned, None).await }).await else {
                // Nothing was tried yet: this element is simply not added.
                break;
            };
            let (value, mod_revision) =
                current.kvs().first().map_or((String::new(), 0), |kv| (text(kv.value()), kv.mod_revision()));
            let new_value = format!("{value},{element}");
            let txn = Txn::new()
                .when([Compare::mod_revision(key.as_str(), CompareOp::Equal, mod_revision)])
                .and_then([TxnOp::put(key.as_str(), new_value.clone(), None)]);
            let response = conn.call(|mut client| async move { client.txn(txn).await }).await;
            recorder.latency(OpKind::SetAdd, response.is_ok(), invoked);
            match response {
                Err(Failure::Unknown) => {
                    outcome = AddOutcome::Unknown;
                    break;
                }
                // Never sent: not added (the outcome stays Refused unless an earlier try is unknown).
                Err(Failure::NotSent) => break,
                Ok(response) if response.succeeded() => {
                    outcome = AddOutcome::Acknowledged;
                    let revision = response.header().map_or(0, |header| header.revision());
                    let change = Change { revision, key: key.clone(), value: Some(new_value) };
                    recorder.record().writes.push(change);
                    break;
                }
                Ok(_) => {}
            }
        }
        adds.push((element, outcome));
    }
    recorder.record().sets.push(SetRecord { key, adds, final_read: None });
}
