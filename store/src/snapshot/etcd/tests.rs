use cairn_proto::mvccpb::KeyValue;

use super::*;
use crate::engine::{Durability, WriteOp};

fn create(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(path).expect("create")
}

fn put(cf: &'static str, key: Vec<u8>, value: Vec<u8>) -> WriteOp {
    WriteOp::Put { cf, key, value }
}

/// A store with 1,000 revisions (one a deletion), a compaction, two leases and an auth store.
fn populated(dir: &Path) -> Engine {
    let engine = Engine::open(&dir.join("db")).expect("engine");
    let mut ops = Vec::new();
    for main in 2..1002i64 {
        let key = format!("key/{:04}", main % 300).into_bytes();
        let tombstone = main == 1001;
        let kv = if tombstone {
            KeyValue { key, ..Default::default() }
        } else {
            KeyValue {
                key,
                value: vec![b'v'; (main % 7) as usize],
                create_revision: main,
                mod_revision: main,
                version: 1,
                lease: main % 2,
            }
        };
        ops.push(put(schema::CF_KV, Revision { main, sub: 0 }.to_key(tombstone), kv.encode_to_vec()));
    }
    ops.push(schema::lease_record(1, 60));
    ops.push(schema::lease_record(7, 3600));
    ops.push(put(schema::CF_META, meta::SM_CURRENT_REV.to_vec(), schema::encode_i64(1001)));
    ops.push(put(schema::CF_META, meta::SM_COMPACT_REV.to_vec(), schema::encode_i64(500)));
    let auth = AuthState {
        enabled: true,
        revision: 9,
        users: vec![User {
            name: b"root".to_vec(),
            password: b"$2a$04$hash".to_vec(),
            roles: vec!["root".into()],
            options: None,
        }],
        roles: vec![Role { name: b"root".to_vec(), key_permission: Vec::new() }],
    };
    ops.push(put(schema::CF_META, meta::SM_AUTH.to_vec(), auth.encode_to_vec()));
    engine.write(&ops, Durability::Sync).expect("write");
    engine
}

#[test]
fn a_written_snapshot_reads_back_as_the_engine_holds_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = populated(dir.path());
    let path = dir.path().join("snap.db");
    let (_, length) = write_etcd_snapshot(&engine, 500, create(&path)).expect("writes");
    assert_eq!(std::fs::metadata(&path).expect("stat").len(), length);
    assert_eq!(length % ALIGNMENT, CHECKSUM_BYTES as u64, "whole pages and the checksum, as etcdutl expects");

    let summary = verify(&path, false).expect("verifies");
    assert_eq!((summary.revision, summary.compact_revision), (1001, 500));
    assert_eq!((summary.kv_records, summary.lease_records), (1000, 2));
    assert_eq!(summary.total_size, length - CHECKSUM_BYTES as u64);
    // key, lease, meta (consistent_index, term and both compaction marks), auth (2), users, roles, cluster.
    assert_eq!(summary.total_key, 1000 + 2 + 4 + 2 + 1 + 1 + 1);

    let mut records = Vec::new();
    scan(&path, |record| {
        records.push(record);
        Ok(())
    })
    .expect("scans");
    let mut expected = Vec::new();
    engine
        .scan_consistent(&[schema::CF_KV], |_, key, value| {
            expected.push(Record::Kv(KvRecord { key: key.to_vec(), value: value.to_vec() }));
            Ok(())
        })
        .expect("engine scan");
    let kvs: Vec<_> = records.iter().filter(|record| matches!(record, Record::Kv(_))).cloned().collect();
    assert_eq!(kvs, expected);
    assert!(records.contains(&Record::Lease(LeaseRecord { id: 7, ttl: 3600 })));
    let Some(Record::Meta(auth)) = records.first() else { panic!("the auth store comes first: {:?}", records.first()) };
    let auth = AuthState::decode(auth.value.as_slice()).expect("auth state");
    assert!(auth.enabled && auth.revision == 9 && auth.users.len() == 1 && auth.roles.len() == 1, "{auth:?}");
}

#[test]
fn a_damaged_or_unhashed_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = populated(dir.path());
    let path = dir.path().join("snap.db");
    let (_, length) = write_etcd_snapshot(&engine, 500, create(&path)).expect("writes");
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[length as usize / 2] ^= 1;
    std::fs::write(&path, &bytes).expect("write");
    assert!(matches!(verify(&path, false), Err(SnapshotError::ChecksumMismatch { .. })));
    std::fs::write(&path, &bytes[..bytes.len() - CHECKSUM_BYTES]).expect("write");
    assert!(matches!(verify(&path, false), Err(SnapshotError::MissingHash)));
}
