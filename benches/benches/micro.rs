//! Micro-benchmarks of the hot paths: apply, the key index, ranges, the engine
//! write batch, protobuf, and a log entry's encoding. Save a baseline with
//! `cargo bench -p cairn-bench --bench micro -- --save-baseline main` and compare
//! a change with `-- --baseline main`.

use std::collections::BTreeMap;

use cairn_proto::cairnpb::{write_request, WriteRequest};
use cairn_proto::etcdserverpb::{PutRequest, RangeRequest, RangeResponse, RequestOp, TxnRequest};
use cairn_proto::mvccpb::KeyValue;
use cairn_store::apply::Applier;
use cairn_store::auth::AuthStore;
use cairn_store::engine::{schema, Durability, Engine, WriteOp};
use cairn_store::error::StoreError;
use cairn_store::lease::Leases;
use cairn_store::mvcc::{self, Index, KeyRange, Mvcc, Revision, ValueReader};
use cairn_store::types::{self, Proposal};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use prost::Message;

/// Values in memory, as the engine would return them.
#[derive(Default)]
struct Values(BTreeMap<Revision, KeyValue>);

impl ValueReader for Values {
    fn read(&self, revs: &[Revision]) -> Result<Vec<KeyValue>, StoreError> {
        Ok(revs.iter().filter_map(|rev| self.0.get(rev).cloned()).collect())
    }
}

fn key(i: usize) -> Vec<u8> {
    format!("key/{i:08}").into_bytes()
}

/// A store with `n` keys, each written once.
fn filled(n: usize) -> (Mvcc, Values) {
    let mut mvcc = Mvcc::new();
    let mut values = Values::default();
    for i in 0..n {
        let rev = Revision::new(i as i64 + 2, 0);
        mvcc.index.put(&key(i), rev);
        let kv = KeyValue {
            key: key(i),
            create_revision: rev.main,
            mod_revision: rev.main,
            version: 1,
            value: vec![b'v'; 256],
            lease: 0,
        };
        values.0.insert(rev, kv);
    }
    mvcc.current_rev = n as i64 + 1;
    (mvcc, values)
}

fn put(i: usize) -> WriteRequest {
    let put = PutRequest { key: key(i), value: vec![b'v'; 256], ..Default::default() };
    WriteRequest { request: Some(write_request::Request::Put(put)), auth_info: None }
}

fn apply(c: &mut Criterion) {
    let (mvcc, values) = filled(10_000);
    let mut leases = Leases::new(2);
    let mut auth = AuthStore::default();
    c.bench_function("apply/put", |b| {
        let mut mvcc = mvcc.clone();
        let mut i = 0;
        b.iter(|| {
            i = (i + 7919) % 10_000;
            let mut applier = Applier::new(&mut mvcc, &values, &mut leases, &mut auth);
            applier.apply(put(i)).expect("apply");
            applier.finish()
        })
    });
    let mut leases = Leases::new(2);
    c.bench_function("apply/txn", |b| {
        let mut mvcc = mvcc.clone();
        let mut i = 0;
        b.iter(|| {
            i = (i + 7919) % 9_999;
            let op = |j: usize| RequestOp {
                request: Some(cairn_proto::etcdserverpb::request_op::Request::RequestPut(PutRequest {
                    key: key(j),
                    value: b"v".to_vec(),
                    ..Default::default()
                })),
            };
            let txn = TxnRequest { compare: vec![], success: vec![op(i), op(i + 1)], failure: vec![] };
            let mut applier = Applier::new(&mut mvcc, &values, &mut leases, &mut auth);
            applier
                .apply(WriteRequest { request: Some(write_request::Request::Txn(txn)), auth_info: None })
                .expect("apply");
            applier.finish()
        })
    });
}

fn index(c: &mut Criterion) {
    let (mvcc, _) = filled(100_000);
    c.bench_function("index/get in 100k", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 7919) % 100_000;
            mvcc.index.get(&key(i), mvcc.current_rev)
        })
    });
    c.bench_function("index/put 10k", |b| {
        b.iter_batched(
            Index::default,
            |mut index| {
                for i in 0..10_000 {
                    index.put(&key(i), Revision::new(i as i64 + 2, 0));
                }
                index
            },
            BatchSize::LargeInput,
        )
    });
    c.bench_function("index/visit 100k", |b| {
        b.iter(|| {
            let mut count = 0;
            mvcc.index.visit(KeyRange::new(b"key/", b"key0"), mvcc.current_rev, |_, _| {
                count += 1;
                true
            });
            count
        })
    });
}

fn range(c: &mut Criterion) {
    let (mvcc, values) = filled(100_000);
    let request = RangeRequest { key: b"key/".to_vec(), range_end: b"key0".to_vec(), ..Default::default() };
    c.bench_function("range/100k keys with values", |b| {
        b.iter(|| mvcc::range(&mvcc, &values, &request, mvcc.current_rev).expect("range"))
    });
}

fn engine(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Engine::open(dir.path()).expect("engine");
    let mut n = 0u64;
    c.bench_function("engine/write batch of 100 puts", |b| {
        b.iter(|| {
            let ops: Vec<WriteOp> = (0..100)
                .map(|_| {
                    n += 1;
                    WriteOp::Put { cf: schema::CF_KV, key: n.to_be_bytes().to_vec(), value: vec![b'v'; 256] }
                })
                .collect();
            engine.write(&ops, Durability::Buffered).expect("write")
        })
    });
}

fn proto(c: &mut Criterion) {
    let request = put(42);
    c.bench_function("proto/encode put", |b| b.iter(|| request.encode_to_vec()));
    let bytes = request.encode_to_vec();
    c.bench_function("proto/decode put", |b| b.iter(|| WriteRequest::decode(bytes.as_slice()).expect("decode")));
    let (_, values) = filled(100);
    let response = RangeResponse { kvs: values.0.values().cloned().collect(), count: 100, ..Default::default() };
    c.bench_function("proto/encode range of 100", |b| b.iter(|| response.encode_to_vec()));
}

/// A log entry's payload as it is written to the WAL and sent to followers:
/// 22 puts, a 64-client batch at one member.
fn entry(c: &mut Criterion) {
    let proposal = Proposal((0..22).map(put).collect());
    c.bench_function("entry/encode proposal of 22 puts", |b| b.iter(|| types::encode(&proposal).expect("encode")));
    let bytes = types::encode(&proposal).expect("encode");
    c.bench_function("entry/decode proposal of 22 puts", |b| {
        b.iter(|| types::decode::<Proposal>(&bytes).expect("decode"))
    });
}

criterion_group!(benches, apply, index, range, engine, proto, entry);
criterion_main!(benches);
