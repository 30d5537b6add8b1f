//! Cairn: an etcd-v3-compatible key-value store on Raft (openraft) and RocksDB.
//!
//! See `docs/ARCHITECTURE.md` for the map of this crate.

// openraft's `StorageError` is large by design; boxing it at every call would only add noise.
#![allow(clippy::result_large_err)]

pub mod apply;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod engine;
pub mod error;
pub mod failpoint;
pub mod lease;
pub mod metrics;
pub mod mvcc;
pub mod raft;
pub mod server;
pub mod snapshot;
pub mod state;
pub mod tls;
pub mod types;
pub mod wal;
pub mod watch;
