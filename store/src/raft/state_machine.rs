//! openraft's view of the replicated state: [`KvState`] behind the
//! `RaftStateMachine` trait, with snapshots kept as files under
//! `<data-dir>/member/snap` so that none is ever held in memory whole.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageIOError};

use super::types::{decode, Applied, Entry, LogId, Member, NodeId, StorageError, StoredMembership, TypeConfig};
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

fn io_error(err: impl std::fmt::Display) -> StorageError {
    StorageIOError::write_snapshot(None, openraft::AnyError::error(err.to_string())).into()
}

/// Puts the installed snapshot's data at `path`. Usually it is the file that
/// `begin_receiving_snapshot` opened, which is renamed; data handed over in
/// another file is copied from its start.
async fn keep_received(
    mut data: Box<tokio::fs::File>,
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
    tokio::io::copy(&mut *data, &mut copy).await?;
    copy.sync_all().await
}

fn unique_suffix() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_nanos())
}

/// Removes every snapshot file but `keep`.
fn remove_others(dir: &Path, keep: &str) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy() != keep {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

fn meta_of(file: &str, applied: &AppliedState) -> SnapshotMeta<NodeId, Member> {
    SnapshotMeta {
        last_log_id: applied.last_applied,
        last_membership: applied.membership.clone(),
        snapshot_id: file.trim_end_matches(".snap").to_string(),
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    /// Writes the state as of one moment to a file; writes go on meanwhile.
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let state = self.state.clone();
        let dir = self.snapshot_dir.clone();
        let (cluster_id, member_id) = self.ids;
        let (file, applied) = tokio::task::spawn_blocking(move || -> Result<(String, AppliedState), StorageError> {
            std::fs::create_dir_all(&dir).map_err(io_error)?;
            let building = dir.join(format!("building-{}.part", unique_suffix()));
            let mut out = std::io::BufWriter::new(std::fs::File::create(&building).map_err(io_error)?);
            let options = WriteOptions { cluster_id, member_id };
            let (_, meta_values) = write_snapshot(state.engine(), &options, &mut out).map_err(io_error)?;
            let file = out.into_inner().map_err(io_error)?;
            file.sync_all().map_err(io_error)?;
            let find = |wanted: &[u8]| meta_values.iter().find(|(key, _)| key == wanted).map(|(_, value)| value);
            let last_applied: Option<LogId> = match find(meta::SM_LAST_APPLIED) {
                Some(bytes) => decode(bytes).map_err(io_error)?,
                None => None,
            };
            let membership: StoredMembership = match find(meta::SM_MEMBERSHIP) {
                Some(bytes) => decode(bytes).map_err(io_error)?,
                None => StoredMembership::default(),
            };
            let applied = AppliedState { last_applied, membership };
            let index = last_applied.map_or(0, |log_id| log_id.index);
            let name = format!("{index:016x}-{:x}.snap", unique_suffix());
            std::fs::rename(&building, dir.join(&name)).map_err(io_error)?;
            let record = encode_snapshot_record(&name, &applied).map_err(io_error)?;
            state.record_snapshot(&record).map_err(io_error)?;
            remove_others(&dir, &name);
            Ok((name, applied))
        })
        .await
        .map_err(io_error)??;
        METRICS.snapshots_built.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(snapshot = %file, "built a raft snapshot");
        let data = tokio::fs::File::open(self.snapshot_dir.join(&file)).await.map_err(io_error)?;
        Ok(Snapshot { meta: meta_of(&file, &applied), snapshot: Box::new(data) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let applied = self.state.applied_state();
        Ok((applied.last_applied, applied.membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let batch = entries
            .into_iter()
            .map(|entry| match entry.payload {
                EntryPayload::Blank => (entry.log_id, None, None),
                EntryPayload::Normal(proposal) => (entry.log_id, Some(proposal), None),
                EntryPayload::Membership(membership) => {
                    (entry.log_id, None, Some(StoredMembership::new(Some(entry.log_id), membership)))
                }
            })
            .collect::<Vec<_>>();
        let (entries, started) = (batch.len(), Instant::now());
        let responses = self
            .state
            .apply_entries(batch)
            .map_err(|err| StorageIOError::write_state_machine(openraft::AnyError::error(err.to_string())))?;
        let took = started.elapsed();
        if took > self.slow_apply {
            tracing::warn!(?took, entries, expected = ?self.slow_apply, "apply request took too long");
        }
        Ok(responses.into_iter().map(Applied).collect())
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

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        tokio::fs::create_dir_all(&self.snapshot_dir).await.map_err(io_error)?;
        let path = self.snapshot_dir.join(format!("incoming-{}.part", unique_suffix()));
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(io_error)?;
        self.receiving = Some(path);
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Member>,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        let name = format!("{}.snap", meta.snapshot_id);
        let path = self.snapshot_dir.join(&name);
        keep_received(snapshot, self.receiving.take(), &path).await.map_err(io_error)?;
        let applied = AppliedState { last_applied: meta.last_log_id, membership: meta.last_membership.clone() };
        let state = self.state.clone();
        let dir = self.snapshot_dir.clone();
        tokio::task::spawn_blocking(move || -> Result<(), StorageError> {
            let record = encode_snapshot_record(&name, &applied).map_err(io_error)?;
            state.install_snapshot(&path, &record, &applied).map_err(io_error)?;
            remove_others(&dir, &name);
            Ok(())
        })
        .await
        .map_err(io_error)??;
        METRICS.snapshots_installed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(snapshot = %meta.snapshot_id, "installed a raft snapshot from the leader");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let Some(record) = self.state.current_snapshot_record().map_err(io_error)? else { return Ok(None) };
        let (file, applied) = decode_snapshot_record(&record).map_err(io_error)?;
        let data = match tokio::fs::File::open(self.snapshot_dir.join(&file)).await {
            Ok(data) => data,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(io_error(err)),
        };
        Ok(Some(Snapshot { meta: meta_of(&file, &applied), snapshot: Box::new(data) }))
    }
}
