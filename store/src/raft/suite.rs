//! openraft's storage conformance suite, run against the log store and the
//! state machine over a real engine in a temporary folder.

use std::sync::Arc;

use openraft::testing::log::{StoreBuilder, Suite};

use super::log_store::LogStore;
use super::state_machine::StateMachine;
use super::types::TypeConfig;
use crate::engine::{schema, Engine};
use crate::state::{KvState, StateOptions};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), openraft::StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = Arc::new(Engine::open(&dir.path().join(schema::DB_DIR)).expect("engine"));
        let options = StateOptions {
            event_log_capacity: 64,
            min_lease_ttl: 2,
            compaction_batch_limit: 1000,
            compaction_sleep: std::time::Duration::from_millis(10),
            simple_token_ttl: std::time::Duration::from_secs(300),
        };
        let state = Arc::new(KvState::open(engine.clone(), options).expect("state"));
        let snapshot_dir = dir.path().join(schema::SNAPSHOT_DIR);
        std::fs::create_dir_all(&snapshot_dir).expect("snapshot dir");
        let log_store = LogStore::open(engine, &dir.path().join(schema::WAL_DIR)).expect("log store");
        Ok((dir, log_store, StateMachine::new(state, snapshot_dir, 1, 1)))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_store_and_state_machine_pass_openraft_suite() {
    Suite::test_all(Builder).await.expect("every suite test passes");
}
