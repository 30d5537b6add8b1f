//! The same operations against a fresh etcd 3.5.1 and a fresh cairn; every
//! response is compared field by field (revisions, values, counts, `more`,
//! errors with their gRPC codes).

use etcd_client::{
    Compare, CompareOp, DeleteOptions, GetOptions, KvClient, PutOptions, SortOrder, SortTarget, Txn, TxnOp,
};

use cairn_testkit::{assert_same_as_etcd, client, err_of};

/// A response reduced to what must be identical between etcd and cairn.
fn kvs_of(kvs: &[etcd_client::KeyValue]) -> String {
    kvs.iter()
        .map(|kv| {
            format!(
                "{}={} c{} m{} v{} l{}",
                String::from_utf8_lossy(kv.key()),
                String::from_utf8_lossy(kv.value()),
                kv.create_revision(),
                kv.mod_revision(),
                kv.version(),
                kv.lease()
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn txn_ops(resp: &etcd_client::TxnResponse) -> String {
    resp.op_responses()
        .iter()
        .map(|op| match op {
            etcd_client::TxnOpResponse::Get(get) => {
                format!("get[{} more={} count={}]", kvs_of(get.kvs()), get.more(), get.count())
            }
            etcd_client::TxnOpResponse::Put(put) => {
                format!("put[prev={:?}]", put.prev_key().map(|kv| kv.mod_revision()))
            }
            etcd_client::TxnOpResponse::Delete(del) => {
                format!("del[{} prev={}]", del.deleted(), kvs_of(del.prev_kvs()))
            }
            etcd_client::TxnOpResponse::Txn(txn) => format!("txn[{} {}]", txn.succeeded(), txn_ops(txn)),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs the script and returns one line per operation.
async fn script(kv: &mut KvClient) -> Vec<String> {
    let mut out = Vec::new();
    macro_rules! record {
        ($label:expr, $result:expr, $fmt:expr) => {
            out.push(match $result {
                Ok(resp) => format!("{}: {}", $label, $fmt(resp)),
                Err(err) => format!("{}: {}", $label, err_of(err)),
            })
        };
    }
    let get_fmt = |resp: etcd_client::GetResponse| {
        format!(
            "rev={} count={} more={} [{}]",
            resp.header().map_or(0, |h| h.revision()),
            resp.count(),
            resp.more(),
            kvs_of(resp.kvs())
        )
    };
    let put_fmt = |resp: etcd_client::PutResponse| {
        format!(
            "rev={} prev=[{}]",
            resp.header().map_or(0, |h| h.revision()),
            resp.prev_key().map(|kv| kvs_of(std::slice::from_ref(kv))).unwrap_or_default()
        )
    };
    let del_fmt = |resp: etcd_client::DeleteResponse| {
        format!(
            "rev={} deleted={} prev=[{}]",
            resp.header().map_or(0, |h| h.revision()),
            resp.deleted(),
            kvs_of(resp.prev_kvs())
        )
    };
    let txn_fmt = |resp: etcd_client::TxnResponse| {
        format!("rev={} succeeded={} [{}]", resp.header().map_or(0, |h| h.revision()), resp.succeeded(), txn_ops(&resp))
    };

    for (key, value) in [("a", "1"), ("b", "2"), ("c", "3"), ("d/x", "4"), ("d/y", "5"), ("e", "0")] {
        record!(format!("put {key}"), kv.put(key, value, None).await, put_fmt);
    }
    record!("put a prev", kv.put("a", "11", Some(PutOptions::new().with_prev_key())).await, put_fmt);
    record!("put a ignore_value", kv.put("a", "", Some(PutOptions::new().with_ignore_value())).await, put_fmt);
    record!("put zz ignore_value", kv.put("zz", "", Some(PutOptions::new().with_ignore_value())).await, put_fmt);
    record!("put a ignore_value+value", kv.put("a", "x", Some(PutOptions::new().with_ignore_value())).await, put_fmt);
    record!("put a ignore_lease", kv.put("a", "12", Some(PutOptions::new().with_ignore_lease())).await, put_fmt);
    record!("put a lease", kv.put("a", "13", Some(PutOptions::new().with_lease(12345))).await, put_fmt);
    record!("put empty key", kv.put("", "x", None).await, put_fmt);

    record!("get a", kv.get("a", None).await, get_fmt);
    record!("get missing", kv.get("nope", None).await, get_fmt);
    record!("get prefix d/", kv.get("d/", Some(GetOptions::new().with_prefix())).await, get_fmt);
    record!("get from b", kv.get("b", Some(GetOptions::new().with_from_key())).await, get_fmt);
    record!("get all", kv.get("\0", Some(GetOptions::new().with_from_key())).await, get_fmt);
    record!("get range a..c", kv.get("a", Some(GetOptions::new().with_range("c"))).await, get_fmt);
    record!("get inverted range", kv.get("c", Some(GetOptions::new().with_range("a"))).await, get_fmt);
    record!("get limit 2", kv.get("a", Some(GetOptions::new().with_from_key().with_limit(2))).await, get_fmt);
    record!("get limit 100", kv.get("a", Some(GetOptions::new().with_from_key().with_limit(100))).await, get_fmt);
    record!("get count_only", kv.get("a", Some(GetOptions::new().with_from_key().with_count_only())).await, get_fmt);
    record!("get keys_only", kv.get("a", Some(GetOptions::new().with_from_key().with_keys_only())).await, get_fmt);
    record!("get serializable", kv.get("a", Some(GetOptions::new().with_serializable())).await, get_fmt);
    record!("get rev 3", kv.get("a", Some(GetOptions::new().with_from_key().with_revision(3))).await, get_fmt);
    record!("get future rev", kv.get("a", Some(GetOptions::new().with_revision(1000))).await, get_fmt);
    record!("get empty key", kv.get("", None).await, get_fmt);
    for (target, order) in [
        (SortTarget::Key, SortOrder::Descend),
        (SortTarget::Value, SortOrder::Ascend),
        (SortTarget::Version, SortOrder::Descend),
        (SortTarget::Create, SortOrder::Descend),
        (SortTarget::Mod, SortOrder::Ascend),
        (SortTarget::Mod, SortOrder::None),
    ] {
        record!(
            format!("get sort {target:?} {order:?} limit 3"),
            kv.get("a", Some(GetOptions::new().with_from_key().with_sort(target, order).with_limit(3))).await,
            get_fmt
        );
    }
    record!(
        "get min_mod 4",
        kv.get("a", Some(GetOptions::new().with_from_key().with_min_mod_revision(4))).await,
        get_fmt
    );
    record!(
        "get max_mod 4",
        kv.get("a", Some(GetOptions::new().with_from_key().with_max_mod_revision(4))).await,
        get_fmt
    );
    record!(
        "get min_create 3 max_create 5",
        kv.get("a", Some(GetOptions::new().with_from_key().with_min_create_revision(3).with_max_create_revision(5)))
            .await,
        get_fmt
    );

    record!("del missing", kv.delete("nope", None).await, del_fmt);
    record!("del b prev", kv.delete("b", Some(DeleteOptions::new().with_prev_key())).await, del_fmt);
    record!("del prefix d/", kv.delete("d/", Some(DeleteOptions::new().with_prefix().with_prev_key())).await, del_fmt);
    record!("put b again", kv.put("b", "22", None).await, put_fmt);
    record!("get b", kv.get("b", None).await, get_fmt);
    record!("get b at deleted rev", kv.get("b", Some(GetOptions::new().with_revision(13))).await, get_fmt);

    let txn = Txn::new()
        .when([Compare::value("a", CompareOp::Equal, "12"), Compare::version("c", CompareOp::Greater, 0)])
        .and_then([
            TxnOp::put("t1", "v", None),
            TxnOp::get("t1", None),
            TxnOp::delete("c", Some(DeleteOptions::new().with_prev_key())),
            TxnOp::txn(Txn::new().when([Compare::create_revision("t1", CompareOp::Less, 1)]).or_else([TxnOp::put(
                "t2",
                "nested",
                Some(PutOptions::new().with_prev_key()),
            )])),
        ])
        .or_else([TxnOp::put("t3", "else", None)]);
    record!("txn success", kv.txn(txn).await, txn_fmt);
    let txn =
        Txn::new().when([Compare::mod_revision("a", CompareOp::NotEqual, 0)]).or_else([TxnOp::put("x", "y", None)]);
    record!("txn read-only success", kv.txn(txn).await, txn_fmt);
    let txn = Txn::new()
        .when([Compare::value("missing", CompareOp::Equal, "")])
        .and_then([TxnOp::put("no", "no", None)])
        .or_else([TxnOp::get("a", None), TxnOp::delete("zzz", None)]);
    record!("txn failure branch", kv.txn(txn).await, txn_fmt);
    let txn = Txn::new().when([Compare::lease("a", CompareOp::Equal, 0)]).and_then([TxnOp::put("l", "1", None)]);
    record!("txn lease compare", kv.txn(txn).await, txn_fmt);
    let txn = Txn::new().and_then([TxnOp::put("dup", "1", None), TxnOp::put("dup", "2", None)]);
    record!("txn duplicate key", kv.txn(txn).await, txn_fmt);
    let txn = Txn::new()
        .and_then([TxnOp::delete("a", Some(DeleteOptions::new().with_range("c"))), TxnOp::put("b", "x", None)]);
    record!("txn put in deleted range", kv.txn(txn).await, txn_fmt);
    let many: Vec<TxnOp> = (0..129).map(|i| TxnOp::put(format!("many{i}"), "v", None)).collect();
    record!("txn too many ops", kv.txn(Txn::new().and_then(many)).await, txn_fmt);
    let txn = Txn::new().and_then([TxnOp::put("k", "v", Some(PutOptions::new().with_lease(999)))]);
    record!("txn missing lease", kv.txn(txn).await, txn_fmt);
    let txn = Txn::new().and_then([TxnOp::get("a", Some(GetOptions::new().with_revision(9999)))]);
    record!("txn future rev read", kv.txn(txn).await, txn_fmt);
    let txn = Txn::new()
        .when([Compare::version("t", CompareOp::Equal, 1).with_prefix()])
        .and_then([TxnOp::put("pfx", "ok", None)])
        .or_else([TxnOp::put("pfx", "no", None)]);
    record!("txn compare with range_end", kv.txn(txn).await, txn_fmt);

    record!("compact 5", kv.compact(5, None).await.map(|_| ()), |_| "ok".to_string());
    record!("compact 5 again", kv.compact(5, None).await.map(|_| ()), |_| "ok".to_string());
    record!("compact 4", kv.compact(4, None).await.map(|_| ()), |_| "ok".to_string());
    record!("compact future", kv.compact(10000, None).await.map(|_| ()), |_| "ok".to_string());
    record!("get at compacted rev", kv.get("a", Some(GetOptions::new().with_revision(4))).await, get_fmt);
    record!("get at compact rev", kv.get("a", Some(GetOptions::new().with_from_key().with_revision(5))).await, get_fmt);
    record!(
        "compact physical",
        kv.compact(8, Some(etcd_client::CompactionOptions::new().with_physical())).await.map(|_| ()),
        |_| "ok".to_string()
    );
    record!("get all after compaction", kv.get("\0", Some(GetOptions::new().with_from_key())).await, get_fmt);
    let big = "x".repeat(1_600_000);
    record!("put too large", kv.put("big", big, None).await, put_fmt);
    out
}

#[tokio::test]
async fn t30_kv_matches_etcd_3_5_1() {
    assert_same_as_etcd(&[], |endpoint| async move { script(&mut client(&endpoint).await.kv_client()).await }).await;
}
