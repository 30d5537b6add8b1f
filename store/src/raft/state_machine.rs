//! openraft's view of the replicated state: [`KvState`] behind the
//! `RaftStateMachine` trait, with snapshots kept as files under
//! `<data-dir>/member/snap` so that none is ever held in memory whole.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use openraft_legacy::network_v1::SnapshotReceiverFactory;

use super::types::{decode, Applied, LogId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig};
use crate::engine::schema::meta;
use crate::metrics::METRICS;
use crate::snapshot::{write_snapshot, WriteOptions};
use crate::state::{decode_snapshot_record, encode_snapshot_record, AppliedState, KvState};

pub struct StateMachine {
    state: Arc<KvState>,
    snapshot_dir: PathBuf,
    ids: (u64, u64),
    receiving: Option<PathBuf>,
    /// Applying a batch for longer than this is logged (`--warning-apply-duration`).
    slow_apply: Duration,
}

impl StateMachine {
    pub fn new(state: Arc<KvState>, snapshot_dir: PathBuf, cluster_id: u64, member_id: u64) -> Self {
        let slow_apply = crate::config::defaults::WARNING_APPLY_DURATION;
        Self { state, snapshot_dir, ids: (cluster_id, member_id), receiving: None, slow_apply }
    }

    pub fn warn_apply_after(self, slow_apply: Duration) -> Self {
        Self { slow_apply, ..self }
    }
}

/// Puts the installed snapshot's data at `path`. Usually it is the file that
/// `begin_receiving_snapshot` opened, which is renamed; data handed over in
/// another file is copied from its start.
async fn keep_received(
    mut data: tokio::fs::File,
    receiving: Option<PathBuf>,
    path: &std::path::Path,
) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    use tokio::io::AsyncSeekExt;

    data.sync_all().await?;
    let given = data.metadata().await?;
    if let Some(received) = &receiving {
        let opened = tokio::fs::metadata(received).await?;
        if (opened.dev(), opened.ino()) == (given.dev(), given.ino()) {
            drop(data);
            return tokio::fs::rename(received, path).await;
        }
        tokio::fs::remove_file(received).await?;
    }
    data.seek(std::io::SeekFrom::Start(0)).await?;
    let mut copy = tokio::fs::File::create(path).await?;
    tokio::io::copy(&mut data, &mut copy).await?;
    copy.sync_all().await
}

fn unique_suffix() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_nanos())
}

/// Removes the snapshot files older than `keep`. Names sort by index, so a
/// build that finishes after a newer snapshot was installed leaves that one
/// alone, and files still being written (`.part`: a snapshot being built or
/// received beside this one) are never touched.
fn remove_older(dir: &Path, keep: &str) {
    remove_snapshot_files(dir, |name| name.ends_with(SNAPSHOT_SUFFIX) && name < keep);
}

/// Removes what a stopped member left half written. Only at startup, when
/// nothing is being built or received.
pub fn remove_unfinished(dir: &Path) {
    remove_snapshot_files(dir, |name| name.ends_with(PART_SUFFIX));
}

fn remove_snapshot_files(dir: &Path, doomed: impl Fn(&str) -> bool) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if doomed(&entry.file_name().to_string_lossy()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

const SNAPSHOT_SUFFIX: &str = ".snap";
const PART_SUFFIX: &str = ".part";

/// A snapshot's file name: its index, then a suffix that no other file of this member has.
fn snapshot_file_name(last_applied: Option<LogId>) -> String {
    format!("{:016x}-{:x}{SNAPSHOT_SUFFIX}", last_applied.map_or(0, |log_id| log_id.index), unique_suffix())
}

fn meta_of(applied: &AppliedState) -> SnapshotMeta {
    SnapshotMeta { last_log_id: applied.last_applied, last_membership: applied.membership.clone() }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = tokio::fs::File;

    /// Writes the state as of one moment to a file; writes go on meanwhile.
    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let state = self.state.clone();
        let dir = self.snapshot_dir.clone();
        let (cluster_id, member_id) = self.ids;
        let (file, applied) = tokio::task::spawn_blocking(move || -> Result<(String, AppliedState), io::Error> {
            std::fs::create_dir_all(&dir)?;
            let building = dir.join(format!("building-{}{PART_SUFFIX}", unique_suffix()));
            let mut out = std::io::BufWriter::new(std::fs::File::create(&building)?);
            let options = WriteOptions { cluster_id, member_id };
            let (_, meta_values) = write_snapshot(state.engine(), &options, &mut out).map_err(io::Error::other)?;
            let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
            file.sync_all()?;
            let find = |wanted: &[u8]| meta_values.iter().find(|(key, _)| key == wanted).map(|(_, value)| value);
            let last_applied: Option<LogId> = match find(meta::SM_LAST_APPLIED) {
                Some(bytes) => decode(bytes).map_err(io::Error::other)?,
                None => None,
            };
            let membership: StoredMembership = match find(meta::SM_MEMBERSHIP) {
                Some(bytes) => decode(bytes).map_err(io::Error::other)?,
                None => StoredMembership::default(),
            };
            let applied = AppliedState { last_applied, membership };
            let name = snapshot_file_name(last_applied);
            std::fs::rename(&building, dir.join(&name))?;
            let record = encode_snapshot_record(&name, &applied).map_err(io::Error::other)?;
            state.record_snapshot(&record).map_err(io::Error::other)?;
            remove_older(&dir, &name);
            Ok((name, applied))
        })
        .await
        .map_err(io::Error::other)??;
        METRICS.snapshots_built.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(snapshot = %file, "built a raft snapshot");
        let data = tokio::fs::File::open(self.snapshot_dir.join(&file)).await?;
        Ok(Snapshot { meta: meta_of(&applied), snapshot: data })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = tokio::fs::File;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let applied = self.state.applied_state();
        Ok((applied.last_applied, applied.membership))
    }

    /// Applies every committed entry handed over in one engine write, then
    /// answers the proposers (membership changes wait on an answer too).
    async fn apply<Strm>(&mut self, entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let (batch, responders): (Vec<_>, Vec<_>) = entries
            .map_ok(|(entry, responder)| {
                let applied = match entry.payload {
                    EntryPayload::Blank => (entry.log_id, None, None),
                    EntryPayload::Normal(proposal) => (entry.log_id, Some(proposal), None),
                    EntryPayload::Membership(membership) => {
                        (entry.log_id, None, Some(StoredMembership::new(Some(entry.log_id), membership)))
                    }
                };
                (applied, responder)
            })
            .try_collect::<Vec<_>>()
            .await?
            .into_iter()
            .unzip();
        let (entries, started) = (batch.len(), Instant::now());
        crate::failpoint::hit("apply-abort");
        let responses = self.state.apply_entries(batch).map_err(io::Error::other)?;
        let took = started.elapsed();
        if took > self.slow_apply {
            tracing::warn!(?took, entries, expected = ?self.slow_apply, "apply request took too long");
        }
        for (responder, response) in responders.into_iter().zip(responses) {
            if let Some(responder) = responder {
                responder.send(Applied(response));
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        StateMachine {
            state: self.state.clone(),
            snapshot_dir: self.snapshot_dir.clone(),
            ids: self.ids,
            receiving: None,
            slow_apply: self.slow_apply,
        }
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: tokio::fs::File) -> Result<(), io::Error> {
        let name = snapshot_file_name(meta.last_log_id);
        let path = self.snapshot_dir.join(&name);
        keep_received(snapshot, self.receiving.take(), &path).await?;
        let applied = AppliedState { last_applied: meta.last_log_id, membership: meta.last_membership.clone() };
        let state = self.state.clone();
        let dir = self.snapshot_dir.clone();
        let installed = name.clone();
        tokio::task::spawn_blocking(move || -> Result<(), io::Error> {
            let record = encode_snapshot_record(&installed, &applied).map_err(io::Error::other)?;
            state.install_snapshot(&path, &record, &applied).map_err(io::Error::other)?;
            remove_older(&dir, &installed);
            Ok(())
        })
        .await
        .map_err(io::Error::other)??;
        METRICS.snapshots_installed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(snapshot = %name, "installed a raft snapshot from the leader");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let Some(record) = self.state.current_snapshot_record().map_err(io::Error::other)? else { return Ok(None) };
        let (file, applied) = decode_snapshot_record(&record).map_err(io::Error::other)?;
        let data = match tokio::fs::File::open(self.snapshot_dir.join(&file)).await {
            Ok(data) => data,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err),
        };
        Ok(Some(Snapshot { meta: meta_of(&applied), snapshot: data }))
    }
}

/// A snapshot from a leader arrives in chunks (the InstallSnapshot RPC) into a
/// file of its own; `install_snapshot` then renames it into place.
impl SnapshotReceiverFactory<TypeConfig> for StateMachine {
    type SnapshotReceiver = tokio::fs::File;

    async fn begin_receiving_snapshot(&mut self) -> Result<tokio::fs::File, io::Error> {
        tokio::fs::create_dir_all(&self.snapshot_dir).await?;
        let path = self.snapshot_dir.join(format!("incoming-{}{PART_SUFFIX}", unique_suffix()));
        let file = tokio::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path).await?;
        self.receiving = Some(path);
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use openraft::vote::RaftLeaderId;

    use super::*;
    use crate::types::CommittedLeaderId;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|entries| entries.flatten().map(|entry| entry.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        names.sort();
        names
    }

    /// A snapshot built while one is received (or after a newer one was
    /// installed) must leave the other's file alone: removing it once stopped
    /// a member's Raft in a chaos run.
    #[test]
    fn a_finished_snapshot_removes_only_older_finished_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log_id = |index| Some(LogId::new(CommittedLeaderId::new(1, 1), index));
        let older = snapshot_file_name(log_id(5));
        let kept = snapshot_file_name(log_id(90));
        let newer = snapshot_file_name(log_id(91));
        for name in [&older, &kept, &newer, &"incoming-1.part".to_string(), &"building-2.part".to_string()] {
            std::fs::write(dir.path().join(name), b"x").expect("write");
        }
        remove_older(dir.path(), &kept);
        assert_eq!(names(dir.path()), [kept.as_str(), newer.as_str(), "building-2.part", "incoming-1.part"]);
        remove_unfinished(dir.path());
        assert_eq!(names(dir.path()), [kept.as_str(), newer.as_str()]);
    }
}
