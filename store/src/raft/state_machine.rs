//! openraft's view of the replicated state: [`KvState`] behind the
//! `RaftStateMachine` trait.

use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageIOError};

use super::types::{Applied, Entry, LogId, Member, NodeId, StorageError, StoredMembership, TypeConfig};
use crate::state::KvState;

#[derive(Clone)]
pub struct StateMachine {
    state: Arc<KvState>,
}

impl StateMachine {
    pub fn new(state: Arc<KvState>) -> Self {
        Self { state }
    }
}

fn snapshots_unsupported() -> StorageError {
    // Log compaction and snapshot transfer arrive with the snapshot issue; until
    // then the log is never purged, so no member needs one.
    StorageIOError::read_snapshot(None, openraft::AnyError::error("raft snapshots are not implemented yet")).into()
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        Err(snapshots_unsupported())
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
            .collect();
        let responses = self
            .state
            .apply_entries(batch)
            .map_err(|err| StorageIOError::write_state_machine(openraft::AnyError::error(err.to_string())))?;
        Ok(responses.into_iter().map(Applied).collect())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Err(snapshots_unsupported())
    }

    async fn install_snapshot(
        &mut self,
        _meta: &SnapshotMeta<NodeId, Member>,
        _snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        Err(snapshots_unsupported())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(None)
    }
}
