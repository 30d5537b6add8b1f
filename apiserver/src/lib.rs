//! cairn-kube: a thin Kubernetes control plane on Cairn. This crate reaches
//! its store only through the etcd v3 API; it never links cairn-store.

pub mod apply;
pub mod balancer;
pub mod cacher;
pub mod certificates;
pub mod config;
pub mod error;
pub mod http;
pub mod meta;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod rbac;
pub mod registry;
pub mod resources;
pub mod selector;
pub mod server;
pub mod storage;
pub mod table;

// The cluster's other components; they reach the API server only.
pub mod client;
pub mod controllers;
pub mod kubelet;
pub mod proxy;
pub mod quantity;
pub mod scheduler;
pub mod up;

/// Resolves on Ctrl-C or SIGTERM, as every component stops on either.
pub async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
