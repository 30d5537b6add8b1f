//! etcd's snapshot file, what `etcdctl snapshot save` gets from etcd: a bbolt
//! database with etcd 3.5's buckets, then the SHA-256 of it. Cairn writes it
//! from the engine, so that etcdctl, etcdutl and etcd itself read cairn's
//! backups, and reads it, from etcd or from cairn, for status and restore.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use cairn_proto::authpb::{Role, User};
use cairn_proto::cairnpb::snapshot_record::Record;
use cairn_proto::cairnpb::{AuthState, KvRecord, LeaseRecord, MetaRecord};
use prost::Message;
use sha2::{Digest, Sha256};

use super::bbolt::{self, BboltError, Bucket, Reader};
use super::format::{hex, SnapshotError, SnapshotSummary, ALIGNMENT, CHECKSUM_BYTES};
use crate::engine::schema::{self, meta};
use crate::engine::{Engine, EngineError, KeyValuePair};
use crate::mvcc::Revision;
use crate::types::LogId;

/// etcd 3.5's bucket names (`server/mvcc/buckets`) and the keys cairn uses in them.
mod buckets {
    pub const KEY: &[u8] = b"key";
    pub const META: &[u8] = b"meta";
    pub const LEASE: &[u8] = b"lease";
    pub const AUTH: &[u8] = b"auth";
    pub const AUTH_USERS: &[u8] = b"authUsers";
    pub const AUTH_ROLES: &[u8] = b"authRoles";
    /// Created empty, as a new etcd creates them: a restore fills in the members.
    pub const EMPTY: [&[u8]; 3] = [b"alarm", b"members", b"members_removed"];
    pub const CLUSTER: &[u8] = b"cluster";

    pub const CONSISTENT_INDEX: &[u8] = b"consistent_index";
    pub const TERM: &[u8] = b"term";
    pub const SCHEDULED_COMPACT: &[u8] = b"scheduledCompactRev";
    pub const FINISHED_COMPACT: &[u8] = b"finishedCompactRev";
    pub const AUTH_ENABLED: &[u8] = b"authEnabled";
    pub const AUTH_REVISION: &[u8] = b"authRevision";
    pub const CLUSTER_VERSION: &[u8] = b"clusterVersion";
}

/// The cluster version a cairn snapshot declares: the etcd API it speaks.
const CLUSTER_VERSION: &[u8] = b"3.5.0";

/// etcd's `leasepb.Lease`.
#[derive(Clone, PartialEq, Message)]
struct Lease {
    #[prost(int64, tag = "1")]
    id: i64,
    #[prost(int64, tag = "2")]
    ttl: i64,
    #[prost(int64, tag = "3")]
    remaining_ttl: i64,
}

fn bbolt_error(err: BboltError) -> EngineError {
    match err {
        BboltError::Io(err) => EngineError::Io(err),
        other => EngineError::Io(std::io::Error::other(other.to_string())),
    }
}

impl From<BboltError> for SnapshotError {
    fn from(err: BboltError) -> Self {
        match err {
            BboltError::Io(err) => SnapshotError::Io(err),
            other => SnapshotError::Corrupt(other.to_string()),
        }
    }
}

/// Writes the state machine as of now into `file` (empty, open to read and write) in etcd's
/// format; returns the file and its length, checksum included. `physically_compacted` is
/// the revision through which compaction had deleted old revisions before the call:
/// beyond it, up to the compact revision, the file may still hold some, and says so
/// as etcd does (a scheduled compaction not yet finished, which a restore finishes).
pub fn write_etcd_snapshot(
    engine: &Engine,
    physically_compacted: i64,
    file: File,
) -> Result<(File, u64), SnapshotError> {
    let mut writer = bbolt::Writer::new(BufWriter::new(file))?;
    let mut meta_values = Vec::new();
    let mut leases = Vec::new();
    // The key bucket streams from the engine: the meta records come first and write nothing.
    writer.begin_bucket(buckets::KEY)?;
    engine.scan_consistent(&[schema::CF_META, schema::CF_KV, schema::CF_LEASE], |cf, key, value| {
        if cf == schema::CF_META {
            meta_values.push((key.to_vec(), value.to_vec()));
        } else if cf == schema::CF_KV {
            writer.put(key, value).map_err(bbolt_error)?;
        } else {
            let (id, ttl) = schema::decode_lease_record(key, value)?;
            leases.push((key.to_vec(), Lease { id, ttl, remaining_ttl: 0 }.encode_to_vec()));
        }
        Ok(())
    })?;
    writer.end_bucket()?;
    let find = |wanted: &[u8]| meta_values.iter().find(|(key, _)| key == wanted).map(|(_, value)| value.as_slice());
    let compact = find(meta::SM_COMPACT_REV).map(|value| schema::decode_i64("compact revision", value)).transpose()?;
    let applied: Option<LogId> = match find(meta::SM_LAST_APPLIED) {
        Some(bytes) => crate::types::decode(bytes)
            .map_err(|err| EngineError::Corrupt { what: "last applied".into(), detail: err.to_string() })?,
        None => None,
    };
    let mut meta_bucket = vec![
        (buckets::CONSISTENT_INDEX.to_vec(), applied.map_or(0, |log_id| log_id.index).to_be_bytes().to_vec()),
        (buckets::TERM.to_vec(), applied.map_or(0, |log_id| log_id.leader_id.term).to_be_bytes().to_vec()),
    ];
    let at = |main: i64| Revision { main, sub: 0 }.to_key(false);
    if let Some(compact) = compact.filter(|compact| *compact > 0) {
        meta_bucket.push((buckets::SCHEDULED_COMPACT.to_vec(), at(compact)));
        let finished = physically_compacted.min(compact);
        if finished > 0 {
            meta_bucket.push((buckets::FINISHED_COMPACT.to_vec(), at(finished)));
        }
    }
    meta_bucket.sort();
    writer.bucket_from(buckets::META, &meta_bucket)?;
    writer.bucket_from(buckets::LEASE, &leases)?;
    let auth = match find(meta::SM_AUTH) {
        Some(bytes) => AuthState::decode(bytes).map_err(|err| SnapshotError::Corrupt(format!("auth store: {err}")))?,
        None => AuthState { revision: 1, ..Default::default() },
    };
    writer.bucket_from(
        buckets::AUTH,
        &[
            (buckets::AUTH_ENABLED.to_vec(), vec![u8::from(auth.enabled)]),
            (buckets::AUTH_REVISION.to_vec(), auth.revision.to_be_bytes().to_vec()),
        ],
    )?;
    let by_name = |pairs: &mut Vec<(Vec<u8>, Vec<u8>)>| pairs.sort_by(|left, right| left.0.cmp(&right.0));
    let mut users: Vec<_> = auth.users.iter().map(|user| (user.name.clone(), user.encode_to_vec())).collect();
    by_name(&mut users);
    writer.bucket_from(buckets::AUTH_USERS, &users)?;
    let mut roles: Vec<_> = auth.roles.iter().map(|role| (role.name.clone(), role.encode_to_vec())).collect();
    by_name(&mut roles);
    writer.bucket_from(buckets::AUTH_ROLES, &roles)?;
    writer.bucket_from(buckets::CLUSTER, &[(buckets::CLUSTER_VERSION.to_vec(), CLUSTER_VERSION.to_vec())])?;
    for name in buckets::EMPTY {
        writer.bucket_from(name, &[])?;
    }
    let (buffered, length) = writer.finish()?;
    let mut file = buffered.into_inner().map_err(|err| SnapshotError::Io(err.into_error()))?;
    let checksum = sha256_of(&mut file, length)?;
    file.write_all(&checksum)?;
    file.flush()?;
    Ok((file, length + CHECKSUM_BYTES as u64))
}

/// The SHA-256 of the first `length` bytes; leaves the file positioned after them.
fn sha256_of(file: &mut File, length: u64) -> Result<[u8; CHECKSUM_BYTES], SnapshotError> {
    file.seek(SeekFrom::Start(0))?;
    let mut sha = Sha256::new();
    let copied = std::io::copy(&mut BufReader::new(&mut *file).take(length), &mut sha)?;
    if copied != length {
        return Err(SnapshotError::Truncated(format!("{copied} of {length} bytes")));
    }
    file.seek(SeekFrom::Start(length))?;
    Ok(sha.finalize().into())
}

/// Opens an etcd snapshot: checks its SHA-256 trailer as etcdutl does (a
/// database copied from a data dir has none) and its meta pages.
fn open(path: &Path, skip_hash_check: bool) -> Result<Reader, SnapshotError> {
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
    // etcdutl's test: a bbolt file is whole pages, so a trailer leaves 32 bytes over.
    let has_hash = size % ALIGNMENT == CHECKSUM_BYTES as u64;
    let length = if has_hash { size - CHECKSUM_BYTES as u64 } else { size };
    if !has_hash && !skip_hash_check {
        return Err(SnapshotError::MissingHash);
    }
    if has_hash && !skip_hash_check {
        let computed = sha256_of(&mut file, length)?;
        let mut trailer = [0u8; CHECKSUM_BYTES];
        file.read_exact(&mut trailer)?;
        if computed != trailer {
            return Err(SnapshotError::ChecksumMismatch { expected: hex(&trailer), computed: hex(&computed) });
        }
    }
    let reader = Reader::open(file, length)?;
    Ok(reader)
}

fn bucket<'a>(buckets: &'a [(Vec<u8>, Bucket)], name: &[u8]) -> Option<&'a Bucket> {
    buckets.iter().find(|(found, _)| found == name).map(|(_, bucket)| bucket)
}

/// What `etcdutl snapshot status` reports: a CRC-32C over every bucket's name,
/// keys and values, the last revision in the key bucket, the number of keys in
/// all buckets and the database's size. Also counts what a restore loads.
pub fn verify(path: &Path, skip_hash_check: bool) -> Result<SnapshotSummary, SnapshotError> {
    let reader = open(path, skip_hash_check)?;
    let buckets = reader.buckets()?;
    let mut summary = SnapshotSummary { total_size: reader.size(), ..Default::default() };
    for (name, bucket) in &buckets {
        summary.hash = crc32c::crc32c_append(summary.hash, name);
        let is_key = name == buckets::KEY;
        let is_lease = name == buckets::LEASE;
        reader.for_each::<SnapshotError>(bucket, &mut |key, value| {
            summary.hash = crc32c::crc32c_append(crc32c::crc32c_append(summary.hash, key), value);
            summary.total_key += 1;
            if is_key {
                let (revision, _) = revision_of(key)?;
                summary.revision = revision.main;
                summary.kv_records += 1;
            }
            summary.lease_records += u64::from(is_lease);
            Ok(())
        })?;
    }
    if let Some(meta) = bucket(&buckets, buckets::META) {
        reader.for_each::<SnapshotError>(meta, &mut |key, value| {
            // A compaction scheduled but not finished when the snapshot was
            // taken is finished by the member it is restored into, as etcd does.
            if key == buckets::FINISHED_COMPACT || key == buckets::SCHEDULED_COMPACT {
                summary.compact_revision = summary.compact_revision.max(revision_of(value)?.0.main);
            }
            Ok(())
        })?;
    }
    Ok(summary)
}

fn revision_of(key: &[u8]) -> Result<(Revision, bool), SnapshotError> {
    Revision::from_key(key).ok_or_else(|| SnapshotError::Corrupt(format!("bad revision key {key:02x?}")))
}

/// Visits what a restore loads, as cairn's own format carries it: the auth
/// store, every revision of every key, and the leases.
pub fn scan(path: &Path, mut visit: impl FnMut(Record) -> Result<(), SnapshotError>) -> Result<(), SnapshotError> {
    let reader = open(path, true)?;
    let buckets = reader.buckets()?;
    let pairs = |name: &[u8]| -> Result<Vec<KeyValuePair>, SnapshotError> {
        let mut pairs = Vec::new();
        if let Some(found) = bucket(&buckets, name) {
            reader.for_each::<SnapshotError>(found, &mut |key, value| {
                pairs.push((key.to_vec(), value.to_vec()));
                Ok(())
            })?;
        }
        Ok(pairs)
    };
    let corrupt = |what: &str, err: prost::DecodeError| SnapshotError::Corrupt(format!("{what}: {err}"));
    let mut auth = AuthState { revision: 1, ..Default::default() };
    for (key, value) in pairs(buckets::AUTH)? {
        if key == buckets::AUTH_ENABLED {
            auth.enabled = value == [1];
        } else if key == buckets::AUTH_REVISION {
            let bytes = value.try_into().map_err(|_| SnapshotError::Corrupt("auth revision".into()))?;
            auth.revision = u64::from_be_bytes(bytes);
        }
    }
    for (_, value) in pairs(buckets::AUTH_USERS)? {
        auth.users.push(User::decode(value.as_slice()).map_err(|err| corrupt("auth user", err))?);
    }
    for (_, value) in pairs(buckets::AUTH_ROLES)? {
        auth.roles.push(Role::decode(value.as_slice()).map_err(|err| corrupt("auth role", err))?);
    }
    if auth.enabled || !auth.users.is_empty() || !auth.roles.is_empty() {
        visit(Record::Meta(MetaRecord { key: meta::SM_AUTH.to_vec(), value: auth.encode_to_vec() }))?;
    }
    if let Some(keys) = bucket(&buckets, buckets::KEY) {
        reader.for_each::<SnapshotError>(keys, &mut |key, value| {
            revision_of(key)?;
            visit(Record::Kv(KvRecord { key: key.to_vec(), value: value.to_vec() }))
        })?;
    }
    for (_, value) in pairs(buckets::LEASE)? {
        let lease = Lease::decode(value.as_slice()).map_err(|err| corrupt("lease", err))?;
        visit(Record::Lease(LeaseRecord { id: lease.id, ttl: lease.ttl }))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
